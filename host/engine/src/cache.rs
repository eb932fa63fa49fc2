//! The on-disk cache of compiled components.
//!
//! An entry is native code the engine will run, so it is authenticated:
//! `MAGIC | HMAC-SHA256(key; digest, engine compatibility, artifact) |
//! artifact`, under a random key kept in a 0600 file. Loading reads the whole
//! entry into memory, verifies the tag in constant time and only then
//! deserializes; an entry that fails is recompiled and rewritten, never
//! loaded. See [`crate::EngineConfig::cache_dir`] for the threat model.

use std::fs::{File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::EngineError;

type HmacSha256 = Hmac<Sha256>;

/// Starts every entry; bumped if the layout ever changes.
const MAGIC: &[u8; 8] = b"ARBCWSM1";
const TAG_LEN: usize = 32;
const KEY_LEN: usize = 32;
/// The key's file name when it lives in the cache directory.
const KEY_FILE: &str = "cache.key";
/// Far above any policy's artifact: a larger file is not one of ours, and is
/// not read into memory.
const MAX_ENTRY_BYTES: u64 = 256 << 20;
/// Rounds of read-or-create before giving up on a key file that keeps
/// changing (other engines creating or replacing it at the same time).
const KEY_ATTEMPTS: usize = 4;

/// Makes temporary file names unique within the process (threads may store
/// the same entry at once).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A cache directory and the key that authenticates its entries.
pub(crate) struct CompileCache {
    dir: PathBuf,
    /// Keyed once; cloned for each tag.
    mac: HmacSha256,
    /// Distinguishes entries of incompatible engine builds.
    compatibility: String,
}

impl CompileCache {
    /// Creates the directory if needed (0700) and reads the key, creating or
    /// replacing it when it is missing or unsafe.
    pub(crate) fn open(engine: &Engine, dir: &Path, key_file: Option<&Path>) -> Result<Self, EngineError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| EngineError::CacheDir { path: dir.to_path_buf(), source })?;
        let key_path = key_file.map_or_else(|| dir.join(KEY_FILE), Path::to_path_buf);
        let key_error = |source| EngineError::CacheKey { path: key_path.clone(), source };
        let key = load_or_create_key(&key_path).map_err(key_error)?;
        let mac = HmacSha256::new_from_slice(&key).map_err(|e| key_error(io::Error::other(e.to_string())))?;
        Ok(CompileCache { dir: dir.to_path_buf(), mac, compatibility: compatibility(engine) })
    }

    fn entry_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join(format!("{hex}-{}.cwasm", self.compatibility))
    }

    /// The tag of an entry: it binds the artifact to the component digest
    /// (so another component's valid entry does not verify in its place) and
    /// to the engine build.
    fn tag(&self, digest: &str, artifact: &[u8]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        for field in [digest.as_bytes(), self.compatibility.as_bytes()] {
            // Length-prefixed, so field boundaries cannot be shifted.
            mac.update(&(field.len() as u64).to_le_bytes());
            mac.update(field);
        }
        mac.update(artifact);
        mac
    }

    /// The artifact of an entry whose tag verifies for `digest`.
    fn verified<'a>(&self, digest: &str, entry: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, artifact) = entry.strip_prefix(MAGIC)?.split_at_checked(TAG_LEN)?;
        // `verify_slice` compares in constant time.
        self.tag(digest, artifact).verify_slice(tag).ok()?;
        Some(artifact)
    }

    /// The cached compilation of `digest`, if its entry exists and verifies.
    pub(crate) fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.entry_path(digest);
        let entry = match read_entry(&path) {
            Ok(entry) => entry,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(path = %path.display(), "no compilation cache entry; compiling");
                return None;
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "unreadable compilation cache entry ({e}); recompiling");
                return None;
            }
        };
        let Some(artifact) = self.verified(digest, &entry) else {
            tracing::warn!(
                path = %path.display(),
                "compilation cache entry fails its integrity check (corrupt, truncated, another component's or \
                 written under another key); recompiling"
            );
            return None;
        };
        #[allow(unsafe_code)]
        // SAFETY: deserializing trusts the bytes to be wasmtime's own output
        // (they become native code). These are: the tag over exactly these
        // bytes (already in memory, so the file cannot change after the
        // check) verified under the engine's secret key for this digest, and
        // only `store` makes such tags, right after compiling the component
        // itself. wasmtime additionally checks the artifact's header and
        // engine compatibility.
        let loaded = unsafe { Component::deserialize(engine, artifact) };
        match loaded {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "cannot load compilation cache entry ({e:#}); recompiling");
                None
            }
        }
    }

    /// Writes the entry of a freshly compiled component, atomically.
    pub(crate) fn store(&self, digest: &str, component: &Component) -> wasmtime::Result<()> {
        let artifact = component.serialize()?;
        let tag = self.tag(digest, &artifact).finalize().into_bytes();
        let path = self.entry_path(digest);
        // Write then rename, so a reader never sees a torn entry (and a torn
        // one left by a crash fails its tag).
        let tmp = temp_path(&path);
        let written = write_new(&tmp, &[MAGIC, &tag, &artifact]).and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        Ok(written?)
    }
}

/// Names the engine build and settings an artifact needs.
fn compatibility(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Reads a whole entry, refusing symlinks, FIFOs, devices and oversized
/// files (which could make loading hang or exhaust memory).
fn read_entry(path: &Path) -> io::Result<Vec<u8>> {
    let file = open_no_follow(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
    }
    if meta.len() > MAX_ENTRY_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} bytes, too large", meta.len())));
    }
    let mut entry = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check: read no more than the cap.
    file.take(MAX_ENTRY_BYTES).read_to_end(&mut entry)?;
    Ok(entry)
}

/// Opens for reading without following a final symlink (ELOOP instead) and
/// without blocking on a FIFO.
fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)
}

/// Creates `path` (never an existing file or symlink) with mode 0600.
fn write_new(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    for part in parts {
        file.write_all(part)?;
    }
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_extension(format!("tmp{}-{n}", std::process::id()))
}

enum KeyFile {
    Missing,
    /// Present but not safe to use, for this reason.
    Refused(String),
    Key([u8; KEY_LEN]),
}

fn load_or_create_key(path: &Path) -> io::Result<[u8; KEY_LEN]> {
    for _ in 0..KEY_ATTEMPTS {
        match read_key(path)? {
            KeyFile::Key(key) => return Ok(key),
            KeyFile::Refused(reason) => {
                tracing::warn!(path = %path.display(), "refusing the compilation cache key: {reason}; replacing it");
                match std::fs::remove_file(path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            KeyFile::Missing => {}
        }
        if let Some(key) = create_key(path)? {
            return Ok(key);
        }
    }
    Err(io::Error::other("the key file keeps changing while the engine reads it"))
}

/// Reads the key if the file is one only this user could have written and
/// only this user can read: a regular file (not a symlink), owned by the
/// effective user, with no group or other permissions, of the right size.
fn read_key(path: &Path) -> io::Result<KeyFile> {
    let mut file = match open_no_follow(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(KeyFile::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(KeyFile::Refused("it is a symbolic link".to_owned()));
        }
        Err(e) => return Err(e),
    };
    // Checked on the open file, not the path, so it cannot be swapped after.
    let meta = file.metadata()?;
    let uid = effective_uid();
    let refusal = if !meta.is_file() {
        Some("it is not a regular file".to_owned())
    } else if meta.uid() != uid {
        Some(format!("it is owned by uid {}, not the engine's uid {uid}", meta.uid()))
    } else if meta.mode() & 0o077 != 0 {
        Some(format!("its mode {:o} lets group or others in", meta.mode() & 0o777))
    } else if meta.len() != KEY_LEN as u64 {
        Some(format!("it holds {} bytes, not {KEY_LEN}", meta.len()))
    } else {
        None
    };
    if let Some(reason) = refusal {
        return Ok(KeyFile::Refused(reason));
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key)?;
    Ok(KeyFile::Key(key))
}

/// Creates a key file, unless another engine created one first (`None`:
/// read theirs).
fn create_key(path: &Path) -> io::Result<Option<[u8; KEY_LEN]>> {
    let mut key = [0u8; KEY_LEN];
    getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
    // Written in full under a temporary name, then linked into place: the
    // link fails rather than replaces if the name exists, so concurrent
    // engines agree on one key and a reader never sees a partial one.
    let tmp = temp_path(path);
    let linked = write_new(&tmp, &[&key]).and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some(key)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e),
    }
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{EngineConfig, PolicyEngine, digest_of};

    const A: &str = r#"(component (core module (func (export "a") (result i32) i32.const 1)))"#;
    const B: &str = r#"(component (core module (func (export "b") (result i64) i64.const 2)))"#;
    /// Not a component: compiling it fails, so `compile(NOT_A_COMPONENT,
    /// digest)` succeeds only by loading the cache entry of `digest`.
    const NOT_A_COMPONENT: &[u8] = b"not a component";

    fn engine(dir: &Path, key_file: Option<PathBuf>) -> PolicyEngine {
        let config =
            EngineConfig { cache_dir: Some(dir.to_path_buf()), cache_key_file: key_file, ..Default::default() };
        PolicyEngine::new(config).unwrap_or_else(|e| panic!("engine: {e}"))
    }

    fn component(wat: &str) -> (Vec<u8>, String) {
        let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("wat: {e}"));
        let digest = digest_of(&bytes);
        (bytes, digest)
    }

    fn entry_of(dir: &Path, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names
            .iter()
            .find(|p| p.extension().is_some_and(|x| x == "cwasm") && p.to_string_lossy().contains(hex))
            .unwrap_or_else(|| panic!("no cache entry for {digest} in {names:?}"))
            .clone()
    }

    fn loads_from_cache(engine: &PolicyEngine, digest: &str) -> bool {
        engine.compile(NOT_A_COMPONENT, digest).is_ok()
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{e}")).permissions().mode() & 0o777
    }

    #[test]
    fn a_valid_entry_is_loaded_by_the_next_engine() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("cache");
        let (a, digest) = component(A);
        assert!(!loads_from_cache(&engine(&dir, None), &digest), "nothing cached yet");
        engine(&dir, None).compile(&a, &digest).unwrap();
        assert!(loads_from_cache(&engine(&dir, None), &digest));
        assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&dir), 0o700, "a directory the engine creates is private");
    }

    #[test]
    fn tampered_entries_are_never_loaded_and_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let (a, digest_a) = component(A);
        let (b, digest_b) = component(B);
        let first = engine(dir.path(), None);
        first.compile(&a, &digest_a).unwrap();
        first.compile(&b, &digest_b).unwrap();
        let entry = entry_of(dir.path(), &digest_a);
        let valid = std::fs::read(&entry).unwrap();
        let b_entry = std::fs::read(entry_of(dir.path(), &digest_b)).unwrap();
        let artifact = first.compile(&a, &digest_a).unwrap().serialize().unwrap();
        let flip = |at: usize| {
            let mut bytes = valid.clone();
            bytes[at] ^= 0x40;
            bytes
        };
        let cases: [(&str, Vec<u8>); 7] = [
            ("a byte of the artifact flipped", flip(MAGIC.len() + TAG_LEN + (valid.len() - MAGIC.len() - TAG_LEN) / 2)),
            ("a byte of the tag flipped", flip(MAGIC.len() + 3)),
            ("truncated", valid[..valid.len() - 1].to_vec()),
            ("cut inside the tag", valid[..MAGIC.len() + 5].to_vec()),
            ("empty", Vec::new()),
            // A valid entry, of the wrong component.
            ("another component's entry", b_entry),
            // What an unauthenticated cache held: wasmtime's own artifact.
            ("a bare artifact", artifact),
        ];
        for (what, bytes) in cases {
            std::fs::write(&entry, &bytes).unwrap();
            let engine = engine(dir.path(), None);
            assert!(!loads_from_cache(&engine, &digest_a), "{what}: loaded");
            engine.compile(&a, &digest_a).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(loads_from_cache(&engine, &digest_a), "{what}: not rewritten to a valid entry");
        }
    }

    #[test]
    fn an_entry_written_under_another_key_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let (a, digest) = component(A);
        let foreign = engine(dir.path(), Some(elsewhere.path().join("foreign.key")));
        foreign.compile(&a, &digest).unwrap();
        assert!(loads_from_cache(&foreign, &digest));
        let ours = engine(dir.path(), None);
        assert!(!loads_from_cache(&ours, &digest));
        ours.compile(&a, &digest).unwrap();
        assert!(loads_from_cache(&ours, &digest));
        assert!(!loads_from_cache(&foreign, &digest), "rewritten under our key");
    }

    /// Writes an entry with B's code under A's digest, tagged with `key`: what
    /// someone who knows the key could forge.
    fn forge(dir: &Path, key: &[u8; KEY_LEN], engine: &PolicyEngine) -> String {
        let (_, digest_a) = component(A);
        let (b, digest_b) = component(B);
        let compatibility = compatibility(engine.wasmtime());
        let mac = HmacSha256::new_from_slice(key).unwrap();
        let forger = CompileCache { dir: dir.to_path_buf(), mac, compatibility };
        let code_b = engine.compile(&b, &digest_b).unwrap();
        forger.store(&digest_a, &code_b).unwrap();
        digest_a
    }

    #[test]
    fn a_key_file_others_could_read_or_plant_is_replaced() {
        const KNOWN: [u8; KEY_LEN] = [7; KEY_LEN];
        type Setup = (&'static str, fn(&Path));
        let setups: [Setup; 4] = [
            ("readable by others", |key| {
                std::fs::write(key, KNOWN).unwrap();
                std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o644)).unwrap();
            }),
            ("writable by the group", |key| {
                std::fs::write(key, KNOWN).unwrap();
                std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o620)).unwrap();
            }),
            ("a symlink to a private file", |key| {
                let target = key.with_file_name("target");
                std::fs::write(&target, KNOWN).unwrap();
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
                std::os::unix::fs::symlink(&target, key).unwrap();
            }),
            ("the wrong size", |key| {
                std::fs::write(key, &KNOWN[..16]).unwrap();
                std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
            }),
        ];
        for (what, setup) in setups {
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join(KEY_FILE);
            let digest_a = forge(dir.path(), &KNOWN, &engine(tempfile::tempdir().unwrap().path(), None));
            setup(&key);
            let engine = engine(dir.path(), None);
            assert!(!loads_from_cache(&engine, &digest_a), "{what}: the forged entry was loaded");
            let meta = std::fs::symlink_metadata(&key).unwrap();
            assert!(meta.is_file() && mode(&key) == 0o600, "{what}: key not replaced by a private file");
            assert_ne!(std::fs::read(&key).unwrap(), KNOWN, "{what}: the planted key is still in use");
        }
    }

    #[test]
    fn a_key_file_owned_by_another_user_is_replaced() {
        const KNOWN: [u8; KEY_LEN] = [9; KEY_LEN];
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join(KEY_FILE);
        let digest_a = forge(dir.path(), &KNOWN, &engine(tempfile::tempdir().unwrap().path(), None));
        std::fs::write(&key, KNOWN).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        if let Err(e) = std::os::unix::fs::chown(&key, Some(effective_uid().wrapping_add(1)), None) {
            // Giving a file away takes privileges the test run may lack.
            eprintln!("skipped: cannot chown the key file: {e}");
            return;
        }
        let engine = engine(dir.path(), None);
        assert!(!loads_from_cache(&engine, &digest_a), "the forged entry was loaded");
        assert_eq!(std::fs::metadata(&key).unwrap().uid(), effective_uid());
        assert_ne!(std::fs::read(&key).unwrap(), KNOWN);
    }

    #[test]
    fn a_key_path_that_cannot_be_replaced_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(KEY_FILE)).unwrap();
        let config = EngineConfig { cache_dir: Some(dir.path().to_path_buf()), ..Default::default() };
        let err = PolicyEngine::new(config).unwrap_err();
        assert!(matches!(err, EngineError::CacheKey { .. }), "{err}");
    }

    #[test]
    fn engines_starting_together_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, digest) = component(A);
        let start = std::sync::Barrier::new(8);
        let engines: Vec<PolicyEngine> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        engine(dir.path(), None)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        engines[0].compile(&a, &digest).unwrap();
        for (i, engine) in engines.iter().enumerate() {
            assert!(loads_from_cache(engine, &digest), "engine {i} holds another key");
        }
    }
}
