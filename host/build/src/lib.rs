//! `arbiter build`: compile a policy crate for `wasm32-unknown-unknown`,
//! wrap the core module into a component, and check that the component is
//! a well-formed arbiter policy that imports nothing but the contract.
//!
//! Builds are reproducible: source paths are remapped so the same source,
//! toolchain and lockfile give the same digest on any machine.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

use arbiter_component::{
    ComponentInfo, ComponentProblems, Expected, Grants, Identity, IdentitySource, InspectError,
    check as check_component,
};

/// The Cargo profile policies are built with, defined on the command line
/// so a policy workspace needs no profile of its own.
pub const PROFILE: &str = "arbiter-policy";
const TARGET: &str = "wasm32-unknown-unknown";

/// Why a policy crate could not be built into a component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// cargo cannot be started.
    #[error("cannot run cargo: {0}")]
    Spawn(#[source] std::io::Error),
    /// A cargo step failed; its stderr says why.
    #[error("`cargo {step}` failed for {manifest}:\n{stderr}")]
    Cargo {
        /// `build` or `metadata`.
        step: &'static str,
        /// The crate's `Cargo.toml`.
        manifest: PathBuf,
        /// What cargo printed.
        stderr: String,
    },
    /// `cargo metadata` does not describe a policy crate.
    #[error("cannot understand `cargo metadata` output: {0}")]
    Metadata(String),
    /// A file cannot be read or written.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The core module cannot be wrapped into a component.
    #[error("cannot make a component of {path}: {error}")]
    Componentize {
        /// The core module.
        path: PathBuf,
        /// What wit-component said.
        error: ComponentizeError,
    },
    /// The component is not a policy arbiter accepts.
    #[error("{path} is not a valid arbiter policy: {problem}")]
    Invalid {
        /// Where it would have been written.
        path: PathBuf,
        /// Why not.
        problem: CheckError,
    },
}

/// wit-component refused a core module (its message, with causes).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ComponentizeError(pub String);

/// Why a component is not a policy arbiter accepts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The bytes are not a component.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The component is refused ([`arbiter_component::check`]).
    #[error(transparent)]
    Refused(#[from] ComponentProblems),
}

/// A built policy component.
#[derive(Debug, Clone)]
pub struct BuiltPolicy {
    /// Where it was written.
    pub path: PathBuf,
    /// What it is.
    pub info: ComponentInfo,
}

/// Builds the policy crate at `crate_dir` into `<out_dir>/<package>.wasm`.
pub fn build_policy(crate_dir: &Path, out_dir: &Path) -> Result<BuiltPolicy, BuildError> {
    let manifest = crate_dir.join("Cargo.toml");
    let package = PackageInfo::read(&manifest)?;
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["rustc", "--lib", "--target", TARGET, "--profile", PROFILE, "--manifest-path"])
        .arg(&manifest)
        .args(profile_config())
        .env(format!("CARGO_TARGET_{}_RUSTFLAGS", TARGET.to_uppercase().replace('-', "_")), rustflags(&package))
        // The stack size is the policy's own link argument, not a flag of
        // every crate: were it in RUSTFLAGS, building a policy of another
        // stack size would rebuild every dependency for the next one.
        .args(["--", &format!("-Clink-arg=-zstack-size={}", package.stack_size)]);
    run(&mut cargo, "build", &manifest)?;
    let core_path = package.target_dir.join(TARGET).join(PROFILE).join(format!("{}.wasm", package.lib_name));
    let core = std::fs::read(&core_path).map_err(|source| BuildError::Io { path: core_path.clone(), source })?;
    let component = componentize(&core).map_err(|error| BuildError::Componentize { path: core_path, error })?;
    std::fs::create_dir_all(out_dir).map_err(|source| BuildError::Io { path: out_dir.to_owned(), source })?;
    let path = out_dir.join(format!("{}.wasm", package.name));
    let info = check(&component, &package.name, &package.version)
        .map_err(|problem| BuildError::Invalid { path: path.clone(), problem })?;
    // Write then rename: a bundle being loaded meanwhile sees the old or the
    // new component, never half of one.
    let tmp = path.with_extension(format!("wasm.tmp{}", std::process::id()));
    std::fs::write(&tmp, &component).map_err(|source| BuildError::Io { path: tmp.clone(), source })?;
    std::fs::rename(&tmp, &path).map_err(|source| BuildError::Io { path: path.clone(), source })?;
    Ok(BuiltPolicy { path, info })
}

/// Wraps a core module built with `arbiter-sdk` (it carries the contract's
/// component-type section) into a component. No WASI adapter is involved,
/// so the component imports only what the policy uses of the contract.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|e| ComponentizeError(format!("{e:#}")))
}

/// Checks a component is an arbiter policy of a served contract version
/// that imports only contract interfaces and embeds the crate's `name` and
/// `version`: the loader's own check, with any capability allowed (the
/// bundle grants them).
pub fn check(component: &[u8], name: &str, version: &str) -> Result<ComponentInfo, CheckError> {
    let info = ComponentInfo::read(component)?;
    let identity = Identity::Is { name, version, stated_by: IdentitySource::Crate };
    check_component(&info, &Expected { grants: Grants::Any, identity })?;
    Ok(info)
}

/// Small, deterministic guests: see docs/decisions/0002-policy-build.md.
fn profile_config() -> Vec<String> {
    let settings = [
        ("inherits", "\"release\""),
        ("opt-level", "3"),
        ("lto", "true"),
        ("codegen-units", "1"),
        ("strip", "true"),
        ("panic", "\"abort\""),
        ("debug", "false"),
        ("incremental", "false"),
    ];
    settings.iter().flat_map(|(k, v)| ["--config".to_owned(), format!("profile.{PROFILE}.{k}={v}")]).collect()
}

/// Remaps the absolute paths rustc embeds (panic locations), so digests do
/// not depend on where the checkout or the Cargo home lie.
fn rustflags(package: &PackageInfo) -> String {
    let mut flags = vec![format!("--remap-path-prefix={}=/policy", package.workspace_root.display())];
    if let Some(home) = cargo_home() {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags.join(" ")
}

/// A 64 KiB shadow stack keeps instances small; a policy whose code
/// recurses deeply (a parser) asks for more in its Cargo.toml:
/// `[package.metadata.arbiter] stack-size = <bytes>`.
const DEFAULT_STACK_SIZE: u64 = 64 << 10;
/// A quarter of the default 16 MiB memory cap, so the heap keeps most of it.
const MAX_STACK_SIZE: u64 = 4 << 20;

/// The stack size `[package.metadata.arbiter]` asks for (`cargo metadata`'s
/// `metadata` of the package, `null` when there is none).
fn stack_size(metadata: &serde_json::Value) -> Result<u64, BuildError> {
    let Some(asked) = metadata.get("arbiter").and_then(|arbiter| arbiter.get("stack-size")) else {
        return Ok(DEFAULT_STACK_SIZE);
    };
    match asked.as_u64() {
        Some(bytes) if (DEFAULT_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) && bytes % 16 == 0 => Ok(bytes),
        _ => Err(BuildError::Metadata(format!(
            "[package.metadata.arbiter] stack-size = {asked}: a multiple of 16 from {DEFAULT_STACK_SIZE} to {MAX_STACK_SIZE} bytes"
        ))),
    }
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

fn run(command: &mut Command, step: &'static str, manifest: &Path) -> Result<Vec<u8>, BuildError> {
    let output = command.output().map_err(BuildError::Spawn)?;
    if !output.status.success() {
        return Err(BuildError::Cargo {
            step,
            manifest: manifest.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(output.stdout)
}

/// What `cargo metadata` says about the policy crate.
struct PackageInfo {
    name: String,
    version: String,
    lib_name: String,
    target_dir: PathBuf,
    workspace_root: PathBuf,
    stack_size: u64,
}

impl PackageInfo {
    fn read(manifest: &Path) -> Result<Self, BuildError> {
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo.args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"]).arg(manifest);
        let stdout = run(&mut cargo, "metadata", manifest)?;
        let meta: serde_json::Value =
            serde_json::from_slice(&stdout).map_err(|e| BuildError::Metadata(e.to_string()))?;
        let manifest_path =
            std::fs::canonicalize(manifest).map_err(|source| BuildError::Io { path: manifest.to_owned(), source })?;
        let package = meta["packages"]
            .as_array()
            .and_then(|packages| {
                packages.iter().find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest_path.as_path()))
            })
            .ok_or_else(|| BuildError::Metadata(format!("no package at {}", manifest_path.display())))?;
        let text = |v: &serde_json::Value, what: &str| {
            v.as_str().map(str::to_owned).ok_or_else(|| BuildError::Metadata(format!("missing {what}")))
        };
        let lib = package["targets"]
            .as_array()
            .and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["crate_types"].as_array().is_some_and(|types| types.iter().any(|c| c == "cdylib")))
            })
            .ok_or_else(|| {
                BuildError::Metadata(format!(
                    "{} has no cdylib target: add `[lib] crate-type = [\"cdylib\", \"rlib\"]`",
                    manifest.display()
                ))
            })?;
        Ok(PackageInfo {
            name: text(&package["name"], "package name")?,
            version: text(&package["version"], "package version")?,
            lib_name: text(&lib["name"], "lib name")?.replace('-', "_"),
            target_dir: PathBuf::from(text(&meta["target_directory"], "target_directory")?),
            workspace_root: PathBuf::from(text(&meta["workspace_root"], "workspace_root")?),
            stack_size: stack_size(&package["metadata"])?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A component exporting a 0.2.0 evaluator, embedding `name` 1.0.0 and
    /// importing `imports` (WAT).
    fn component(imports: &str, name: &str) -> Vec<u8> {
        let identity = format!(r#"{{\"name\":\"{name}\",\"version\":\"1.0.0\"}}"#);
        wat::parse_str(format!(
            r#"(component (@custom "arbiter-policy" "{identity}") {imports}
                (instance $i) (export "arbiter:policy/evaluator@0.2.0" (instance $i)))"#
        ))
        .unwrap()
    }

    #[test]
    fn check_is_the_loaders_check_against_the_crate() {
        assert!(check(&component("", "p"), "p", "1.0.0").is_ok());
        let wasi = r#"(import "wasi:cli/environment@0.2.0" (instance))"#;
        let error = check(&component(wasi, "q"), "p", "1.0.0").unwrap_err();
        assert_eq!(
            error.to_string(),
            "imports `wasi:cli/environment@0.2.0`, which arbiter never provides to policies (no WASI, no ambient \
             authority); the crate names it `p`, the component says `q`"
        );
        let core = wat::parse_str("(module)").unwrap();
        assert!(matches!(check(&core, "p", "1.0.0"), Err(CheckError::Inspect(InspectError::CoreModule))));
    }

    #[test]
    fn stack_size_defaults_and_is_bounded() {
        assert_eq!(stack_size(&json!(null)).unwrap(), DEFAULT_STACK_SIZE);
        assert_eq!(stack_size(&json!({"other": 1})).unwrap(), DEFAULT_STACK_SIZE);
        assert_eq!(stack_size(&json!({"arbiter": {"stack-size": 1 << 20}})).unwrap(), 1 << 20);
        for bad in [json!(1024), json!((8 << 20) as u64), json!((1 << 20) + 1), json!("1M"), json!(-1)] {
            let error = stack_size(&json!({"arbiter": {"stack-size": bad}})).unwrap_err().to_string();
            assert!(error.contains("stack-size"), "{error}");
        }
    }
}
