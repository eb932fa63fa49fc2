//! The shared wasmtime engine: compilation (with an on-disk cache keyed by
//! component digest) and the clock that enforces wall-clock deadlines.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::config::EngineConfig;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot configure the wasmtime engine: {0}")]
    Config(String),
    #[error("cannot start the deadline clock thread: {0}")]
    Ticker(#[source] std::io::Error),
    #[error("cannot create the compilation cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One wasmtime engine for all bundles; cheap to clone.
#[derive(Clone)]
pub struct PolicyEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    config: EngineConfig,
    /// Distinguishes cache entries of incompatible engine builds.
    compatibility: String,
    // Held for its Drop, which stops the clock thread.
    _ticker: Ticker,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl PolicyEngine {
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(config.limits.fuel.is_some())
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack);
        let engine = Engine::new(&wasm).map_err(|e| EngineError::Config(e.to_string()))?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|source| EngineError::CacheDir { path: dir.clone(), source })?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compatibility = format!("{:016x}", hasher.finish());
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)?;
        Ok(PolicyEngine { inner: Arc::new(Inner { engine, config, compatibility, _ticker: ticker }) })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// Epoch ticks that make up `deadline`, rounded up, plus one because the
    /// first tick may come at once.
    pub(crate) fn deadline_ticks(&self, deadline: std::time::Duration) -> u64 {
        let tick = self.inner.config.epoch_tick.as_nanos().max(1);
        u64::try_from(deadline.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX).saturating_add(1)
    }

    /// Compiles a component, or loads it from the cache when its digest was
    /// compiled before by a compatible engine.
    pub(crate) fn compile(&self, bytes: &[u8], digest: &str) -> wasmtime::Result<Component> {
        let Some(path) = self.cache_path(digest) else {
            return Component::new(&self.inner.engine, bytes);
        };
        if path.exists() {
            match self.load_cached(&path) {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(path = %path.display(), "ignoring unusable cache entry: {e}"),
            }
        }
        let component = Component::new(&self.inner.engine, bytes)?;
        if let Err(e) = self.store_cached(&path, &component) {
            tracing::warn!(path = %path.display(), "cannot write compilation cache: {e}");
        }
        Ok(component)
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.inner.config.cache_dir.as_ref()?;
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        Some(dir.join(format!("{hex}-{}.cwasm", self.inner.compatibility)))
    }

    #[allow(unsafe_code)]
    fn load_cached(&self, path: &Path) -> wasmtime::Result<Component> {
        // SAFETY: the file was written by `store_cached` of an engine with the
        // same compatibility hash (it is in the file name), and the cache
        // directory is trusted like the binary itself (see EngineConfig).
        // wasmtime additionally checks the artifact's header and version.
        unsafe { Component::deserialize_file(&self.inner.engine, path) }
    }

    fn store_cached(&self, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        // Write then rename, so a crash never leaves a torn entry behind.
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// A thread that advances the engine's epoch, so deadlines are wall-clock.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: std::time::Duration) -> Result<Self, EngineError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("arbiter-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .map_err(EngineError::Ticker)?;
        Ok(Ticker { stop, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
