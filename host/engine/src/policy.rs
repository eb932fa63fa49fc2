//! One policy component, prepared once and evaluated many times.
//!
//! Loading checks what the component is and what it imports, links only the
//! capabilities it was granted, and prepares an `InstancePre`. Instances are
//! kept in a bounded pool and reused across evaluations, up to a reuse limit;
//! an instance that faulted is dropped (a trapped instance cannot be entered
//! again) and replaced lazily.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arbiter_component::{
    Capability, ComponentInfo, ComponentProblems, ContractVersion, Expected, Grants, Identity, InspectError, check,
};
use arbiter_types::{FaultKind, PolicyOutcome, Verdict};
use wasmtime::component::Linker;
use wasmtime::{Store, Trap};

use crate::config::SandboxLimits;
use crate::contract::{self, Instance, Pre, Requests, Returned};
use crate::engine::PolicyEngine;
use crate::sandbox::{CapabilityRefused, Deadline, DecisionContext, SandboxState, StateUnavailable};

/// Why a component cannot be loaded as a policy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The bytes are not a component.
    #[error(transparent)]
    Inspect(#[from] InspectError),
    /// The component is not a policy this host accepts
    /// ([`arbiter_component::check`]).
    #[error(transparent)]
    Refused(#[from] ComponentProblems),
    /// wasmtime cannot compile it.
    #[error("cannot be compiled: {0}")]
    Compile(String),
    /// Linking or creating its first instance failed.
    #[error("cannot be instantiated: {0}")]
    Instantiate(String),
    /// Its `init` refused the bundle's settings.
    #[error("rejected its settings: {0}")]
    Settings(String),
}

/// A policy ready to evaluate: compiled, linked and prepared.
pub struct PreparedPolicy {
    name: Arc<str>,
    info: ComponentInfo,
    settings_json: String,
    limits: SandboxLimits,
    deadline: Deadline,
    /// Whether the engine meters fuel (an engine-wide setting).
    metered: bool,
    engine: wasmtime::Engine,
    pre: Pre,
    pool: Mutex<Vec<Slot>>,
    max_idle: usize,
    reuse_limit: u64,
}

impl std::fmt::Debug for PreparedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedPolicy").field("name", &self.name).field("info", &self.info).finish_non_exhaustive()
    }
}

/// A live instance and the store it lives in.
struct Slot {
    store: Store<SandboxState>,
    policy: Instance,
    /// Evaluations this instance has served.
    evaluations: u64,
}

/// How a policy evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) kind: FaultKind,
    pub(crate) detail: String,
}

impl PreparedPolicy {
    /// Checks, compiles and prepares a component, then creates its first
    /// instance and initialises it with `settings_json`, so that invalid
    /// settings reject the bundle at load rather than at request time.
    pub fn load(
        engine: &PolicyEngine,
        name: &str,
        bytes: &[u8],
        granted: &[Capability],
        settings_json: String,
        limits: SandboxLimits,
    ) -> Result<Self, LoadError> {
        let info = ComponentInfo::read(bytes)?;
        let version = check(&info, &Expected { grants: Grants::Only(granted), identity: Identity::Unchecked })?;
        Self::load_checked(engine, name, bytes, info, version, granted, settings_json, limits)
    }

    /// Compiles and prepares a component [`check`] accepted as `version`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load_checked(
        engine: &PolicyEngine,
        name: &str,
        bytes: &[u8],
        info: ComponentInfo,
        version: ContractVersion,
        granted: &[Capability],
        settings_json: String,
        limits: SandboxLimits,
    ) -> Result<Self, LoadError> {
        let mut linker = Linker::<SandboxState>::new(engine.wasmtime());
        let imported = granted.iter().copied().filter(|c| info.imports.contains(&c.interface(version.as_str())));
        contract::link(version, &mut linker, imported).map_err(|e| LoadError::Instantiate(e.to_string()))?;
        let component = engine.compile(bytes, &info.digest).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let pre = contract::prepare(version, instance_pre).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let config = engine.config();
        let policy = PreparedPolicy {
            name: Arc::from(name),
            info,
            settings_json,
            limits,
            deadline: Deadline {
                limit: limits.deadline,
                tick: config.epoch_tick,
                host_wait_allowance: config.host_wait_allowance,
            },
            metered: config.limits.fuel.is_some(),
            engine: engine.wasmtime().clone(),
            pre,
            pool: Mutex::new(Vec::new()),
            max_idle: config.max_idle_instances.get(),
            reuse_limit: config.instance_reuse_limit.get(),
        };
        let first = policy.instantiate().map_err(|fault| match fault.kind {
            FaultKind::SettingsRejected => LoadError::Settings(fault.detail),
            _ => LoadError::Instantiate(format!("{}: {}", fault.kind, fault.detail)),
        })?;
        policy.release(first);
        Ok(policy)
    }

    /// Its name in the bundle.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What its component says about itself.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// Evaluates one request. Never panics and never returns an error: any
    /// failure inside the policy is reported as [`PolicyOutcome::Fault`].
    pub(crate) fn evaluate(&self, requests: &Requests<'_>, context: &Arc<DecisionContext>) -> (PolicyOutcome, u64) {
        let started = Instant::now();
        let outcome = match self.evaluate_in_sandbox(requests, context) {
            Ok(verdict) => PolicyOutcome::Verdict(verdict),
            Err(fault) => {
                tracing::warn!(policy = &*self.name, kind = fault.kind.code(), "policy fault: {}", fault.detail);
                PolicyOutcome::Fault { kind: fault.kind, detail: fault.detail }
            }
        };
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        (outcome, elapsed_us)
    }

    fn evaluate_in_sandbox(&self, requests: &Requests<'_>, context: &Arc<DecisionContext>) -> Result<Verdict, Fault> {
        let pooled = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let mut slot = match pooled {
            Some(slot) => slot,
            None => self.instantiate()?,
        };
        self.arm(&mut slot.store)?;
        slot.store.data_mut().decision = Some(Arc::clone(context));
        let returned = slot.policy.evaluate(&mut slot.store, requests);
        slot.store.data_mut().decision = None;
        match returned {
            Ok(returned) => {
                slot.evaluations += 1;
                self.release(slot);
                match returned {
                    Returned::Verdict(verdict) => crate::obligations::check(&verdict, requests.request())
                        .map(|()| verdict)
                        .map_err(|refused| Fault { kind: FaultKind::InvalidVerdict, detail: refused.to_string() }),
                    Returned::Invalid(detail) => Err(Fault { kind: FaultKind::InvalidVerdict, detail }),
                    Returned::Unexpressible(detail) => Err(Fault { kind: FaultKind::UnsupportedAction, detail }),
                }
            }
            // The instance may be mid-trap or out of memory: never reuse it.
            Err(error) => Err(classify(&error, &slot.store)),
        }
    }

    /// Resets the per-call budgets of a store.
    fn arm(&self, store: &mut Store<SandboxState>) -> Result<(), Fault> {
        store.data_mut().memory_refused = false;
        if self.metered {
            let fuel = self.limits.fuel.unwrap_or(u64::MAX);
            store.set_fuel(fuel).map_err(|e| Fault { kind: FaultKind::Trap, detail: e.to_string() })?;
        }
        store.data_mut().start_call();
        store.set_epoch_deadline(self.deadline.initial_ticks());
        Ok(())
    }

    fn instantiate(&self) -> Result<Slot, Fault> {
        let state = SandboxState::new(Arc::clone(&self.name), self.limits.memory_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        // The deadline is on the guest's own time: when the epoch deadline
        // passes, host-call time is taken out before deciding to stop it.
        let deadline = self.deadline;
        store.epoch_deadline_callback(move |store| Ok(deadline.on_expiry(store.data())));
        self.arm(&mut store)?;
        let policy = self.pre.instantiate(&mut store).map_err(|e| classify(&e, &store))?;
        self.arm(&mut store)?;
        let initialised = policy.init(&mut store, &self.settings_json).map_err(|e| classify(&e, &store))?;
        initialised.map_err(|message| Fault { kind: FaultKind::SettingsRejected, detail: message })?;
        Ok(Slot { store, policy, evaluations: 0 })
    }

    /// Returns a healthy instance to the pool, unless it has served its
    /// evaluations or the pool is full; then it is dropped.
    fn release(&self, slot: Slot) {
        if slot.evaluations >= self.reuse_limit {
            return;
        }
        let rejected = {
            let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < self.max_idle {
                pool.push(slot);
                None
            } else {
                Some(slot)
            }
        };
        // Outside the lock: tearing a store down unmaps its memory.
        drop(rejected);
    }
}

/// Names what stopped the policy.
fn classify(error: &wasmtime::Error, store: &Store<SandboxState>) -> Fault {
    let detail = format!("{error:#}");
    if let Some(unavailable) = error.downcast_ref::<StateUnavailable>() {
        return Fault { kind: FaultKind::StateUnavailable, detail: unavailable.to_string() };
    }
    if let Some(refused) = error.downcast_ref::<CapabilityRefused>() {
        return Fault { kind: FaultKind::CapabilityRefused, detail: refused.to_string() };
    }
    if store.data().memory_refused {
        return Fault { kind: FaultKind::MemoryLimit, detail };
    }
    let kind = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => FaultKind::OutOfFuel,
        Some(Trap::Interrupt) => FaultKind::DeadlineExceeded,
        Some(Trap::StackOverflow) => FaultKind::StackOverflow,
        Some(Trap::UnreachableCodeReached) => FaultKind::Panic,
        Some(_) => FaultKind::Trap,
        None => FaultKind::InvalidReturn,
    };
    Fault { kind, detail }
}
