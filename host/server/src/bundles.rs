//! Hot reload and rollback: a new bundle is loaded and validated off to the
//! side, then swapped in atomically; the last activated bundles are kept so
//! a rollback is a pointer swap.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arbiter_engine::{Bundle, Decider, PolicyEngine};
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
    /// Activated bundles kept for rollback.
    pub keep: usize,
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

impl Bundles {
    pub(crate) fn new(config: ReloadConfig, active: Arc<Bundle>) -> Self {
        let first = activation(active, config.initial_manifest.clone());
        Bundles { config, history: Mutex::new(vec![first]) }
    }

    pub(crate) fn list(&self) -> Vec<Activation> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Loads `manifest` (blocking: compiles components), then activates it.
    /// On any error nothing changes.
    pub(crate) fn load(&self, decider: &Decider, manifest: PathBuf) -> Result<Swapped, String> {
        let started = Instant::now();
        let bundle = Bundle::load_trusted(&self.config.engine, &manifest, &self.config.trusted_keys)
            .map_err(|e| e.to_string())?;
        let load_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok(self.activate(decider, activation(Arc::new(bundle), manifest), load_ms))
    }

    /// Re-activates the newest kept bundle before the active one, or the
    /// newest with `version`.
    pub(crate) fn rollback(&self, decider: &Decider, version: Option<&str>) -> Result<Swapped, String> {
        let target = {
            let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
            let earlier = &history[..history.len().saturating_sub(1)];
            match version {
                None => earlier.last().cloned().ok_or("no earlier bundle to roll back to")?,
                Some(v) => earlier
                    .iter()
                    .rev()
                    .find(|a| a.version == v)
                    .cloned()
                    .ok_or_else(|| format!("no kept bundle has version {v}"))?,
            }
        };
        let mut target = target;
        target.activated_at = arbiter_types::format_rfc3339_ms(crate::state::now_ms());
        Ok(self.activate(decider, target, 0.0))
    }

    fn activate(&self, decider: &Decider, next: Activation, load_ms: f64) -> Swapped {
        let mut history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
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
