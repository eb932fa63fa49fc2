//! State in memory, behind one lock; also the core of the journal store.

use std::fmt::Debug;
use std::sync::{Mutex, MutexGuard};

use arbiter_types::{BreakerConfig, ChargeUnit, Window};

use crate::breaker::BreakerState;
use crate::data::StateData;
use crate::error::{OutcomeRejected, StateError, UsageRejected};
use crate::escalation::{Escalation, EscalationRefused, Resolution};
use crate::group_sync::Pending;
use crate::halt::{Halt, HaltScope};
use crate::history::{Mention, MentionQuery, PastToolCall, RunKey, SimilarQuery};
use crate::ops::{Commit, CommitRefused, OpRef, OutcomeReport, UsageReport};
use crate::spend::SpendEntry;
use crate::store::{Gauges, StateStore, StoreConfig};
use crate::tools::{ListedToolInput, Listing, ListingRefused, ToolView};

/// Where a locked store writes the operations it applies. Sealed: the
/// backends are this crate's.
pub trait Sink: Send + Debug + sealed::Append {}

impl<T: Send + Debug + sealed::Append> Sink for T {}

pub(crate) mod sealed {
    use super::{OpRef, StateData, StateError};
    use crate::group_sync::Pending;

    pub trait Append {
        /// Called under the lock after `op` changed state; an error means
        /// the change is not durable and must not be acknowledged. What it
        /// returns is waited for after the lock is released: the change is
        /// acknowledged once that wait succeeds.
        fn append(&mut self, op: OpRef<'_>, data: &StateData) -> Result<Option<Pending>, StateError>;

        /// Why the sink stopped taking changes, if it did outside
        /// [`Append::append`] (a failed group `fsync`).
        fn failure(&self) -> Option<String> {
            None
        }
    }
}

/// No durability: for tests, replay and embedding without persistence.
#[derive(Debug, Default)]
pub struct Nowhere;

impl sealed::Append for Nowhere {
    fn append(&mut self, _: OpRef<'_>, _: &StateData) -> Result<Option<Pending>, StateError> {
        Ok(None)
    }
}

#[derive(Debug)]
struct Inner<S> {
    data: StateData,
    sink: S,
    /// Set when the sink failed: memory then holds a change that is not
    /// durable, so the store stops (fail-stop) rather than answer from it.
    failed: Option<String>,
}

/// State behind one mutex, with operations written to a sink.
#[derive(Debug)]
pub struct Locked<S: Sink> {
    inner: Mutex<Inner<S>>,
    config: StoreConfig,
}

impl<S: Sink> Locked<S> {
    pub(crate) fn new(data: StateData, sink: S, config: StoreConfig) -> Self {
        Locked { inner: Mutex::new(Inner { data, sink, failed: None }), config }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner<S>>, StateError> {
        let mut guard = self.inner.lock().map_err(|_| StateError::Poisoned)?;
        if guard.failed.is_none() {
            guard.failed = guard.sink.failure();
        }
        match &guard.failed {
            Some(reason) => Err(StateError::Stopped(reason.clone())),
            None => Ok(guard),
        }
    }

    fn read<R>(&self, f: impl FnOnce(&mut StateData) -> R) -> Result<R, StateError> {
        Ok(f(&mut self.lock()?.data))
    }

    /// Applies an operation; when it changed state, makes it durable before
    /// answering.
    fn mutate<T, E>(
        &self,
        op: OpRef<'_>,
        f: impl FnOnce(&mut StateData, &StoreConfig) -> Result<T, E>,
    ) -> Result<Result<T, E>, StateError> {
        self.mutate_if_changed(op, |data, config| f(data, config).map(|value| (value, true)))
    }

    /// [`Locked::mutate`] for an operation that says whether it changed
    /// state: one that did not is not written to the sink.
    fn mutate_if_changed<T, E>(
        &self,
        op: OpRef<'_>,
        f: impl FnOnce(&mut StateData, &StoreConfig) -> Result<(T, bool), E>,
    ) -> Result<Result<T, E>, StateError> {
        let mut guard = self.lock()?;
        let inner = &mut *guard;
        let result = f(&mut inner.data, &self.config);
        let pending = match result {
            Ok((_, true)) => match inner.sink.append(op, &inner.data) {
                Ok(pending) => pending,
                Err(e) => {
                    inner.failed = Some(e.to_string());
                    return Err(e);
                }
            },
            _ => None,
        };
        // Durable outside the lock: concurrent changes share one fsync.
        drop(guard);
        if let Some(pending) = pending {
            pending.wait()?;
        }
        Ok(result.map(|(value, _)| value))
    }
}

impl<S: Sink> StateStore for Locked<S> {
    fn used(&self, scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> Result<u64, StateError> {
        self.read(|d| d.used(scope, window, unit, now_ms))
    }

    fn breaker_state(&self, key: &str, config: &BreakerConfig, now_ms: i64) -> Result<BreakerState, StateError> {
        self.read(|d| d.breaker_state(key, config, now_ms))
    }

    fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Result<Vec<PastToolCall>, StateError> {
        self.read(|d| d.tool_calls(run, tool, since_ms))
    }

    fn count_tool_calls(&self, run: &RunKey, since_ms: i64) -> Result<u32, StateError> {
        self.read(|d| d.count_tool_calls(run, since_ms))
    }

    fn count_similar(&self, run: &RunKey, query: &SimilarQuery<'_>) -> Result<u32, StateError> {
        self.read(|d| d.count_similar(run, query))
    }

    fn first_mention(&self, run: &RunKey, query: &MentionQuery<'_>) -> Result<Option<Mention>, StateError> {
        self.read(|d| d.first_mention(run, query))
    }

    fn commit(&self, commit: Commit) -> Result<Result<(), CommitRefused>, StateError> {
        self.mutate(OpRef::Commit(&commit), |d, config| d.commit(&commit, config))
    }

    fn reconcile(&self, usage: UsageReport) -> Result<Result<(), UsageRejected>, StateError> {
        self.mutate(OpRef::Usage(&usage), |d, config| d.reconcile(&usage, config))
    }

    fn record_outcome(&self, outcome: OutcomeReport) -> Result<Result<(), OutcomeRejected>, StateError> {
        self.mutate(OpRef::Outcome(&outcome), |d, config| d.outcome(&outcome, config))
    }

    fn open_escalation(&self, escalation: Escalation) -> Result<Result<(), EscalationRefused>, StateError> {
        self.mutate(OpRef::OpenEscalation(&escalation), |d, config| {
            d.open_escalation(&escalation, config, Some(&config.pending_limits()))
        })
    }

    fn resolve_escalation(&self, resolution: Resolution) -> Result<Result<Escalation, EscalationRefused>, StateError> {
        self.mutate(OpRef::Resolve(&resolution), |d, config| d.resolve(&resolution, config))
    }

    fn escalation(&self, id: &str) -> Result<Option<Escalation>, StateError> {
        self.read(|d| d.escalation(id))
    }

    fn escalations(&self) -> Result<Vec<Escalation>, StateError> {
        self.read(|d| d.escalations())
    }

    fn gauges(&self, now_ms: i64) -> Result<Gauges, StateError> {
        self.read(|d| d.gauges(now_ms))
    }

    fn spend(&self, since_ms: i64, until_ms: i64) -> Result<Vec<SpendEntry>, StateError> {
        self.read(|d| d.spend(since_ms, until_ms))
    }

    fn tool_views(&self, server: &str, names: &[String]) -> Result<Vec<ToolView>, StateError> {
        self.read(|d| d.tool_views(server, names))
    }

    fn record_listing(
        &self,
        server: &str,
        tools: &[ListedToolInput],
        now_ms: i64,
    ) -> Result<Result<(), ListingRefused>, StateError> {
        let listing = Listing::new(server, tools, now_ms);
        self.mutate_if_changed(OpRef::Listing(&listing), |d, config| {
            d.record_listing(&listing, config).map(|changed| ((), changed))
        })
    }

    fn halts(&self) -> Result<Vec<Halt>, StateError> {
        self.read(|d| d.halts())
    }

    fn halt(&self, halt: Halt) -> Result<(), StateError> {
        self.mutate(OpRef::Halt(&halt), |d, _| {
            d.halt(&halt);
            Ok::<_, ()>(())
        })
        .map(|_| ())
    }

    fn resume(&self, scope: &HaltScope) -> Result<bool, StateError> {
        Ok(self.mutate(OpRef::Resume { scope }, |d, _| d.resume(scope))?.is_ok())
    }

    fn claim(&self, key: &str, until_ms: i64, now_ms: i64) -> Result<bool, StateError> {
        Ok(self.mutate(OpRef::Claim { key, until_ms, now_ms }, |d, _| d.claim(key, until_ms, now_ms))?.is_ok())
    }
}

/// State in memory only: lost when the process ends.
pub type InMemoryStore = Locked<Nowhere>;

impl InMemoryStore {
    pub fn in_memory(config: StoreConfig) -> Self {
        Locked::new(StateData::default(), Nowhere, config)
    }
}
