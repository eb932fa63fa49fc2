//! One policy component, prepared once and evaluated many times.
//!
//! Loading checks what the component is and what it imports, links only the
//! capabilities it was granted, and prepares an `InstancePre`. Instances are
//! kept in a bounded pool and reused across evaluations, up to a reuse limit;
//! an instance that faulted is dropped (a trapped instance cannot be entered
//! again) and replaced lazily.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arbiter_types::{PolicyOutcome, Verdict};
use wasmtime::component::Linker;
use wasmtime::{Store, Trap};

use crate::capability::{Capability, ImportKind, classify_import};
use crate::combine::STATE_UNAVAILABLE;
use crate::component_info::{ComponentInfo, InspectError};
use crate::config::SandboxLimits;
use crate::contract::{CONTRACT_VERSIONS, Instance, Pre, Requests, Returned, Version};
use crate::engine::PolicyEngine;
use crate::sandbox::{Deadline, DecisionContext, SandboxState, StateUnavailable};

/// Why a component cannot be loaded as a policy.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Inspect(#[from] InspectError),
    #[error("exports no `arbiter:policy/evaluator` interface: not an arbiter policy")]
    NotAPolicy,
    #[error("targets contract arbiter:policy@{found}; this host serves arbiter:policy@{}", CONTRACT_VERSIONS.join(", @"))]
    UnsupportedContract { found: String },
    #[error("imports `{import}`, which arbiter never provides to policies (no WASI, no ambient authority)")]
    ForbiddenImport { import: String },
    #[error(
        "imports capability `{capability}` ({import}), which the bundle does not grant it; add \"{capability}\" to its `capabilities`"
    )]
    CapabilityNotGranted { capability: Capability, import: String },
    #[error("cannot be compiled: {0}")]
    Compile(String),
    #[error("cannot be instantiated: {0}")]
    Instantiate(String),
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
    pub(crate) kind: &'static str,
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
        Self::load_inspected(engine, name, bytes, info, granted, settings_json, limits)
    }

    pub(crate) fn load_inspected(
        engine: &PolicyEngine,
        name: &str,
        bytes: &[u8],
        info: ComponentInfo,
        granted: &[Capability],
        settings_json: String,
        limits: SandboxLimits,
    ) -> Result<Self, LoadError> {
        let version = check_contract(&info, granted)?;
        let mut linker = Linker::<SandboxState>::new(engine.wasmtime());
        let imported = granted.iter().copied().filter(|c| info.imports.contains(&c.interface(version.as_str())));
        version.link(&mut linker, imported).map_err(|e| LoadError::Instantiate(e.to_string()))?;
        let component = engine.compile(bytes, &info.digest).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let pre = version.prepare(instance_pre).map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
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
            "settings_rejected" => LoadError::Settings(fault.detail),
            _ => LoadError::Instantiate(format!("{}: {}", fault.kind, fault.detail)),
        })?;
        policy.release(first);
        Ok(policy)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

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
                tracing::warn!(policy = &*self.name, kind = fault.kind, "policy fault: {}", fault.detail);
                PolicyOutcome::Fault { kind: fault.kind.to_owned(), detail: fault.detail }
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
                        .map_err(|detail| Fault { kind: "invalid_verdict", detail }),
                    Returned::Invalid(detail) => Err(Fault { kind: "invalid_verdict", detail }),
                    Returned::Unexpressible(detail) => Err(Fault { kind: "unsupported_action", detail }),
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
            store.set_fuel(fuel).map_err(|e| Fault { kind: "trap", detail: e.to_string() })?;
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
        initialised.map_err(|message| Fault { kind: "settings_rejected", detail: message })?;
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

/// Checks, without compiling, that a component targets a served contract
/// version, imports the contract at that version only, and imports only
/// granted capabilities.
pub(crate) fn check_contract(info: &ComponentInfo, granted: &[Capability]) -> Result<Version, LoadError> {
    let target = info.contract_version.as_deref().ok_or(LoadError::NotAPolicy)?;
    let version = Version::of(target).ok_or_else(|| LoadError::UnsupportedContract { found: target.to_owned() })?;
    for import in &info.imports {
        match classify_import(import) {
            ImportKind::ContractTypes { version: v } | ImportKind::Capability { version: v, .. } if v != target => {
                return Err(LoadError::UnsupportedContract { found: v });
            }
            ImportKind::ContractTypes { .. } => {}
            ImportKind::Capability { capability, .. } if granted.contains(&capability) => {}
            ImportKind::Capability { capability, .. } => {
                return Err(LoadError::CapabilityNotGranted { capability, import: import.clone() });
            }
            ImportKind::OtherContractVersion(found) => return Err(LoadError::UnsupportedContract { found }),
            ImportKind::Foreign => return Err(LoadError::ForbiddenImport { import: import.clone() }),
        }
    }
    Ok(version)
}

/// Names what stopped the policy.
fn classify(error: &wasmtime::Error, store: &Store<SandboxState>) -> Fault {
    let detail = format!("{error:#}");
    if let Some(unavailable) = error.downcast_ref::<StateUnavailable>() {
        return Fault { kind: STATE_UNAVAILABLE, detail: unavailable.to_string() };
    }
    if store.data().memory_refused {
        return Fault { kind: "memory_limit", detail };
    }
    let kind = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => "out_of_fuel",
        Some(Trap::Interrupt) => "deadline_exceeded",
        Some(Trap::StackOverflow) => "stack_overflow",
        Some(Trap::UnreachableCodeReached) => "panic",
        Some(_) => "trap",
        None => "invalid_return",
    };
    Fault { kind, detail }
}
