//! arbiter in-process: the bundle's Wasm components in their sandboxes,
//! the request parsed by the host, verdicts combined by the bundle.

use std::path::Path;
use std::sync::Arc;

use arbiter_engine::{Bundle, EngineConfig, PolicyEngine, SandboxLimits};
use arbiter_state::{InMemoryStore, StateStore, StoreConfig};
use arbiter_types::{Request, VerdictKind};

use super::{Decide, Engine, Outcome};

/// With the default sandbox: fuel metering and a wall-clock deadline; or,
/// `metered: false`, the deadline alone (no fuel checks compiled in).
pub fn engine(bundle_path: &Path, metered: bool) -> anyhow::Result<Engine> {
    let (bundle, state) = load(bundle_path, metered)?;
    Ok(Engine {
        cedar_subset: false,
        envoy_subset: false,
        server_pid: None,
        make: Box::new(move || {
            Ok(Box::new(Wasm { bundle: Arc::clone(&bundle), state: Arc::clone(&state) }) as Box<dyn Decide>)
        }),
    })
}

/// The bundle at `bundle_path`, loaded as [`engine`] loads it, and fresh,
/// empty state: the stateful policies of the full bundle read it (and find
/// nothing); nothing is committed.
pub fn load(bundle_path: &Path, metered: bool) -> anyhow::Result<(Arc<Bundle>, Arc<dyn StateStore>)> {
    let cache_dir = Some(super::work_dir().join(if metered { "cache" } else { "cache-unmetered" }));
    let mut limits = SandboxLimits::default();
    if !metered {
        limits.fuel = None;
    }
    let engine = PolicyEngine::new(EngineConfig { cache_dir, limits, ..EngineConfig::default() })?;
    let bundle = Arc::new(Bundle::load(&engine, bundle_path)?);
    let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
    Ok((bundle, state))
}

struct Wasm {
    bundle: Arc<Bundle>,
    state: Arc<dyn StateStore>,
}

impl Decide for Wasm {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        let request = Request::from_json_slice(request_json)?;
        let decision = self.bundle.evaluate(&request, request.timestamp_ms.unwrap_or(0), &self.state);
        Ok(match decision.decision {
            VerdictKind::Allow => Outcome::Allow,
            VerdictKind::Deny => Outcome::Deny,
            VerdictKind::Escalate => Outcome::Escalate,
        })
    }
}
