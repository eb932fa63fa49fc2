//! Hot reload and rollback: a new bundle is loaded and validated off to the
//! side, then swapped in atomically; the last activated bundles are kept so
//! a rollback is a pointer swap.
//!
//! The admin API names a manifest relative to the bundle directory, never
//! an arbitrary path on the server, and a deploy only moves the version
//! forward (rollback is the way back).

use std::cmp::Ordering;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arbiter_engine::{Bundle, BundleError, Decider, PolicyEngine};
use ed25519_dalek::VerifyingKey;
use serde::Serialize;

/// Where new bundles come from and what they must be signed by.
#[derive(Debug, Clone)]
pub struct ReloadConfig {
    pub engine: PolicyEngine,
    /// Bundles must be signed by one of these; empty accepts unsigned ones.
    pub trusted_keys: Vec<VerifyingKey>,
    /// The manifest of the bundle the server started with.
    pub initial_manifest: PathBuf,
    /// The only directory manifests are loaded from (symlinks in it are
    /// followed, but must end inside it).
    pub bundle_dir: PathBuf,
    /// Activated bundles kept for rollback.
    pub keep: usize,
}

/// Why a bundle was not activated; the active one keeps serving.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("the manifest must be a path relative to the bundle directory, and stay inside it")]
    OutsideBundleDir,
    #[error("cannot open `{requested}` in the bundle directory: {source}")]
    Unreadable {
        requested: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the manifest must be a regular file whose name ends in `.toml`")]
    NotAManifest,
    #[error("the bundle directory cannot be read: {0}")]
    BundleDir(#[source] std::io::Error),
    #[error("{0}")]
    Rejected(String),
    #[error(
        "bundle version {offered} is not newer than the active {active}: deploy a higher version, or roll back to a kept one"
    )]
    NotNewer { active: String, offered: String },
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Activation {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) manifest: PathBuf,
    pub(crate) activated_at: String,
    #[serde(skip)]
    bundle: Arc<Bundle>,
}

#[derive(Debug)]
pub(crate) struct Bundles {
    config: ReloadConfig,
    /// Newest last; the last one is active.
    history: Mutex<Vec<Activation>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Swapped {
    pub(crate) active: Activation,
    pub(crate) previous: Option<Activation>,
    /// Time to load and validate off to the side.
    pub(crate) load_ms: f64,
    /// Time the swap itself took.
    pub(crate) swap_us: f64,
}

fn activation(bundle: Arc<Bundle>, manifest: PathBuf) -> Activation {
    Activation {
        name: bundle.name().to_owned(),
        version: bundle.version().to_owned(),
        manifest,
        activated_at: arbiter_types::format_rfc3339_ms(crate::state::now_ms()),
        bundle,
    }
}

/// The real path of `requested`, a manifest path relative to `bundle_dir`.
fn resolve(bundle_dir: &Path, requested: &Path) -> Result<PathBuf, LoadError> {
    // Refused before touching the file system: an absolute path or `..`
    // would let a caller probe which files exist outside.
    let plain = requested.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if requested.as_os_str().is_empty() || !plain {
        return Err(LoadError::OutsideBundleDir);
    }
    // Resolved on every load, so a directory that is a symlink can be
    // switched to a new release.
    let dir = bundle_dir.canonicalize().map_err(LoadError::BundleDir)?;
    let path = dir
        .join(requested)
        .canonicalize()
        .map_err(|source| LoadError::Unreadable { requested: requested.display().to_string(), source })?;
    // After symlinks are resolved: a link inside to a file outside is outside.
    if !path.starts_with(&dir) {
        return Err(LoadError::OutsideBundleDir);
    }
    let regular = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
    if !regular || path.extension().is_none_or(|e| e != "toml") {
        return Err(LoadError::NotAManifest);
    }
    Ok(path)
}

/// Whether `offered` comes after `active` in semver precedence (build
/// metadata does not count).
fn is_newer(offered: &str, active: &str) -> bool {
    match (semver::Version::parse(offered), semver::Version::parse(active)) {
        (Ok(offered), Ok(active)) => offered.cmp_precedence(&active) == Ordering::Greater,
        // Loading checks that versions are semver; what cannot be compared
        // cannot be shown to be newer.
        _ => false,
    }
}

/// A load error a remote caller may read: manifest parse errors lose the
/// file's text (the caller could have named some other TOML file).
fn public_message(error: &BundleError) -> String {
    match error {
        BundleError::Manifest(e) => e.without_contents(),
        other => other.to_string(),
    }
}

impl Bundles {
    pub(crate) fn new(config: ReloadConfig, active: Arc<Bundle>) -> Self {
        let first = activation(active, config.initial_manifest.clone());
        Bundles { config, history: Mutex::new(vec![first]) }
    }

    pub(crate) fn list(&self) -> Vec<Activation> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Loads `requested` (relative to the bundle directory; blocking:
    /// compiles components), then activates it if its version is newer
    /// than the active one. On any error nothing changes.
    pub(crate) fn load(&self, decider: &Decider, requested: &Path) -> Result<Swapped, LoadError> {
        let manifest = resolve(&self.config.bundle_dir, requested)?;
        let started = Instant::now();
        let bundle = Bundle::load_trusted(&self.config.engine, &manifest, &self.config.trusted_keys)
            .map_err(|e| LoadError::Rejected(public_message(&e)))?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        let next = activation(Arc::new(bundle), manifest);
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock: of two concurrent deploys, the second
        // compares with the first.
        if let Some(active) = history.last()
            && !is_newer(&next.version, &active.version)
        {
            return Err(LoadError::NotNewer { active: active.version.clone(), offered: next.version });
        }
        Ok(self.activate(&mut history, decider, next, load_ms))
    }

    /// Re-activates the newest kept bundle before the active one, or the
    /// newest with `version`.
    pub(crate) fn rollback(&self, decider: &Decider, version: Option<&str>) -> Result<Swapped, String> {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let earlier = &history[..history.len().saturating_sub(1)];
        let mut target = match version {
            None => earlier.last().cloned().ok_or("no earlier bundle to roll back to")?,
            Some(v) => earlier
                .iter()
                .rev()
                .find(|a| a.version == v)
                .cloned()
                .ok_or_else(|| format!("no kept bundle has version {v}"))?,
        };
        target.activated_at = arbiter_types::format_rfc3339_ms(crate::state::now_ms());
        Ok(self.activate(&mut history, decider, target, 0.0))
    }

    fn activate(&self, history: &mut Vec<Activation>, decider: &Decider, next: Activation, load_ms: f64) -> Swapped {
        let started = Instant::now();
        decider.activate(Arc::clone(&next.bundle));
        let swap_us = started.elapsed().as_secs_f64() * 1e6;
        let previous = history.last().cloned();
        history.push(next.clone());
        let excess = history.len().saturating_sub(self.config.keep.max(2));
        history.drain(..excess);
        tracing::info!(bundle = %next.name, version = %next.version, "bundle activated");
        Swapped { active: next, previous, load_ms, swap_us }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `root/bundles/` with a manifest, a subdirectory, a non-TOML file, a
    /// directory named like a manifest, and symlinks in and out; beside it,
    /// `root/secrets.toml` and `root/bundles-evil/x.toml` (a sibling whose
    /// name starts like the bundle directory's).
    fn layout() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("bundles");
        std::fs::create_dir_all(dir.join("releases/v2")).unwrap();
        std::fs::create_dir_all(dir.join("dir.toml")).unwrap();
        std::fs::create_dir_all(root.path().join("bundles-evil")).unwrap();
        for file in ["bundles/bundle.toml", "bundles/releases/v2/bundle.toml", "bundles/notes.txt"] {
            std::fs::write(root.path().join(file), "").unwrap();
        }
        std::fs::write(root.path().join("secrets.toml"), "password = 1").unwrap();
        std::fs::write(root.path().join("bundles-evil/x.toml"), "").unwrap();
        std::os::unix::fs::symlink(root.path().join("secrets.toml"), dir.join("linked-out.toml")).unwrap();
        std::os::unix::fs::symlink(dir.join("releases/v2/bundle.toml"), dir.join("current.toml")).unwrap();
        std::os::unix::fs::symlink(dir.join("notes.txt"), dir.join("notes.toml")).unwrap();
        (root, dir)
    }

    #[test]
    fn manifests_resolve_only_inside_the_bundle_directory() {
        let (root, dir) = layout();
        let real = dir.canonicalize().unwrap();
        for (requested, expected) in [
            ("bundle.toml", real.join("bundle.toml")),
            ("./releases/v2/bundle.toml", real.join("releases/v2/bundle.toml")),
            ("current.toml", real.join("releases/v2/bundle.toml")),
        ] {
            assert_eq!(resolve(&dir, Path::new(requested)).unwrap(), expected, "{requested}");
        }
        let secrets = root.path().join("secrets.toml");
        let outside = [
            secrets.to_str().unwrap(),
            "../secrets.toml",
            "releases/../../secrets.toml",
            "../bundles-evil/x.toml",
            // Inside by name, outside once the symlink is resolved.
            "linked-out.toml",
            "",
        ];
        for requested in outside {
            let err = resolve(&dir, Path::new(requested)).unwrap_err();
            assert!(matches!(err, LoadError::OutsideBundleDir), "{requested}: {err}");
        }
        for requested in ["notes.txt", "notes.toml", "dir.toml", "releases"] {
            let err = resolve(&dir, Path::new(requested)).unwrap_err();
            assert!(matches!(err, LoadError::NotAManifest), "{requested}: {err}");
        }
        let err = resolve(&dir, Path::new("missing.toml")).unwrap_err();
        assert!(matches!(err, LoadError::Unreadable { .. }), "{err}");
        // A `..` that would land inside again is still refused: nothing
        // outside is looked at.
        let err = resolve(&dir, Path::new("../bundles/bundle.toml")).unwrap_err();
        assert!(matches!(err, LoadError::OutsideBundleDir), "{err}");
    }

    #[test]
    fn only_a_higher_semver_is_newer() {
        for (offered, active, newer) in [
            ("1.0.1", "1.0.0", true),
            ("1.10.0", "1.9.0", true),
            ("1.0.0", "1.0.0-rc.1", true),
            ("1.0.0", "1.0.0", false),
            ("0.9.0", "1.0.0", false),
            ("1.0.0-rc.1", "1.0.0", false),
            // Build metadata does not order versions.
            ("1.0.0+build.2", "1.0.0+build.1", false),
            ("not-a-version", "1.0.0", false),
        ] {
            assert_eq!(is_newer(offered, active), newer, "{offered} over {active}");
        }
    }
}
