//! The shared wasmtime engine: compilation (with an authenticated on-disk
//! cache keyed by component digest) and the clock that enforces wall-clock
//! deadlines.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use wasmtime::component::Component;
use wasmtime::{Config, Engine};

use crate::cache::CompileCache;
use crate::config::EngineConfig;

/// Why the engine cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// wasmtime refused the configuration.
    #[error("cannot configure the wasmtime engine: {0}")]
    Config(String),
    /// The thread that advances epochs (deadlines) cannot start.
    #[error("cannot start the deadline clock thread: {0}")]
    Ticker(#[source] std::io::Error),
    /// The compilation cache directory cannot be created.
    #[error("cannot create the compilation cache directory {path}: {source}")]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cache's authentication key cannot be read or created.
    #[error("cannot read or create the compilation cache key {path}: {source}")]
    CacheKey {
        /// The key file.
        path: PathBuf,
        /// Why.
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
    cache: Option<CompileCache>,
    // Held for its Drop, which stops the clock thread.
    _ticker: Ticker,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Configures wasmtime, starts the deadline clock and opens the
    /// compilation cache.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(config.limits.fuel.is_some())
            .epoch_interruption(true)
            .max_wasm_stack(config.max_wasm_stack);
        let engine = Engine::new(&wasm).map_err(|e| EngineError::Config(e.to_string()))?;
        let cache = config
            .cache_dir
            .as_deref()
            .map(|dir| CompileCache::open(&engine, dir, config.cache_key_file.as_deref()))
            .transpose()?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)?;
        Ok(PolicyEngine { inner: Arc::new(Inner { engine, config, cache, _ticker: ticker }) })
    }

    /// The configuration it was made with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles a component, or loads it from the cache when its digest was
    /// compiled before by a compatible engine under the same cache key.
    /// `digest` must be the digest of `bytes`.
    pub(crate) fn compile(&self, bytes: &[u8], digest: &str) -> wasmtime::Result<Component> {
        let Some(cache) = &self.inner.cache else {
            return Component::new(&self.inner.engine, bytes);
        };
        if let Some(component) = cache.load(&self.inner.engine, digest) {
            return Ok(component);
        }
        let component = Component::new(&self.inner.engine, bytes)?;
        if let Err(e) = cache.store(digest, &component) {
            tracing::warn!(digest, "cannot write the compilation cache: {e:#}");
        }
        Ok(component)
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
