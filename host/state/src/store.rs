//! The one interface every backend implements.

use std::fmt::Debug;

use arbiter_types::{BreakerConfig, ChargeUnit, Window};

use crate::breaker::BreakerState;
use crate::error::{OutcomeRejected, StateError, UsageRejected};
use crate::escalation::{Escalation, EscalationRefused, PendingLimits, Resolution};
use crate::halt::{Halt, HaltScope};
use crate::history::{Mention, MentionQuery, PastToolCall, RunKey, SimilarQuery, count_similar_in, first_mention_in};
use crate::ledger::BudgetGauge;
use crate::ops::{Commit, CommitRefused, OutcomeReport, UsageReport};
use crate::prefetch::{Prefetched, ReadSet};
use crate::spend::SpendEntry;
use crate::tools::{ListedToolInput, ListingRefused, ToolView};

/// Retention and expiry settings shared by all backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// An unreconciled reservation is finalised at its reserved amount, and
    /// a later usage report for it rejected, after this long (swept once a
    /// second of event time, so up to a second later).
    pub reservation_ttl_ms: i64,
    /// How long an allowed request waits for its outcome report.
    pub outcome_ttl_ms: i64,
    /// Runs with no allowed action for this long are forgotten.
    pub history_ttl_ms: i64,
    /// Tool calls kept per run (the oldest go first).
    pub history_per_run: usize,
    /// In-memory and journal stores: runs whose history is kept. Past it by
    /// a tenth, the least recently active runs are forgotten down to it.
    /// Redis keeps every run until its TTL (see the crate docs).
    pub history_runs: usize,
    /// In-memory and journal stores: bytes (as JSON) of all tool calls kept
    /// in run history, bounded like `history_runs`. A single run over it
    /// loses its oldest calls (never its newest).
    pub history_bytes: usize,
    /// Escalations one principal (`<pipeline>/<agent>`) may have waiting
    /// for approval at once; more are refused (`too_many_escalations`).
    pub max_pending_per_principal: usize,
    /// Escalations the store may have waiting for approval at once.
    pub max_pending: usize,
    /// Tool registry: MCP servers whose listings are kept. A listing from
    /// one more server is refused (`too_many_tool_servers`).
    pub max_tool_servers: usize,
    /// Tool registry: tool names kept per server, delisted ones included
    /// (their first digest is kept for good). A listing that would make
    /// more is refused (`too_many_tools`).
    pub max_tools_per_server: usize,
    /// Tool registry: bytes of one listing's digests and definitions. A
    /// larger listing is refused (`tool_listing_too_large`).
    pub max_listing_bytes: usize,
    /// Journal store: operations between snapshots (100,000: a restart
    /// replays at most that many, ~0.6 s for 88k of the bench's; a
    /// snapshot serializes the whole state under the lock, so rarer ones
    /// keep that pause out of the p99, decision 0022). A snapshot is also
    /// taken once the journal outgrows the last one (and 64 MiB), so large
    /// operations (tool listings) keep it within the size of the state.
    pub snapshot_every: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            reservation_ttl_ms: 3_600_000,
            outcome_ttl_ms: 3_600_000,
            history_ttl_ms: 7 * 86_400_000,
            history_per_run: 1024,
            history_runs: 10_000,
            history_bytes: 256 << 20,
            max_pending_per_principal: 100,
            max_pending: 10_000,
            max_tool_servers: 1024,
            max_tools_per_server: 1024,
            max_listing_bytes: 1 << 20,
            snapshot_every: 100_000,
        }
    }
}

impl StoreConfig {
    pub(crate) fn pending_limits(&self) -> PendingLimits {
        PendingLimits { per_principal: self.max_pending_per_principal, overall: self.max_pending }
    }
}

/// Current budgets and breaker states, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gauges {
    pub budgets: Vec<BudgetGauge>,
    pub breakers: Vec<(String, BreakerState)>,
    /// Failure rate (percent) of each breaker's current window of outcomes.
    #[serde(default)]
    pub failure_percent: std::collections::BTreeMap<String, u32>,
}

/// State shared by every decision. Implementations make each method atomic:
/// `commit` in particular checks every charge and breaker and applies all
/// of them or none, so concurrent decisions never overshoot a limit.
pub trait StateStore: Send + Sync + Debug {
    /// Units booked on `scope` in the window containing `now_ms`.
    fn used(&self, scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> Result<u64, StateError>;

    fn breaker_state(&self, key: &str, config: &BreakerConfig, now_ms: i64) -> Result<BreakerState, StateError>;

    /// Allowed tool calls of a run at or after `since_ms`, oldest first.
    fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Result<Vec<PastToolCall>, StateError>;

    fn count_tool_calls(&self, run: &RunKey, since_ms: i64) -> Result<u32, StateError>;

    /// How many allowed calls of a run answer a near-duplicate question.
    /// This default tokenizes every matching call each time (right for a
    /// store that fetches history anyway, as Redis does); a store keeping
    /// history in process answers from token sets it keeps.
    fn count_similar(&self, run: &RunKey, query: &SimilarQuery<'_>) -> Result<u32, StateError> {
        Ok(count_similar_in(&self.tool_calls(run, Some(query.tool), query.since_ms)?, query))
    }

    /// The answer to an earlier-mention question. This default judges
    /// every call each time (as [`Self::count_similar`]'s does); a store
    /// keeping history in process keeps what each call was found to hold.
    fn first_mention(&self, run: &RunKey, query: &MentionQuery<'_>) -> Result<Option<Mention>, StateError> {
        Ok(first_mention_in(&self.tool_calls(run, None, query.since_ms)?, query))
    }

    /// Commits an allowed decision, all or nothing.
    fn commit(&self, commit: Commit) -> Result<Result<(), CommitRefused>, StateError>;

    /// Reads what `forecast` gives and the halts, for a decision of `run`
    /// at `now_ms`, in one exchange: for a store where each read is a
    /// round trip. `None` (this default, `forecast` not called) for one
    /// that answers reads in process, where a forecast would save nothing.
    fn prefetch(
        &self,
        forecast: &dyn Fn() -> ReadSet,
        run: &RunKey,
        now_ms: i64,
    ) -> Result<Option<Prefetched>, StateError> {
        let _ = (forecast, run, now_ms);
        Ok(None)
    }

    /// [`Self::commit`] after `read`: the records it read are what the
    /// commit expects unchanged, so it need not read them again.
    fn commit_prefetched(&self, commit: Commit, read: &Prefetched) -> Result<Result<(), CommitRefused>, StateError> {
        let _ = read;
        self.commit(commit)
    }

    /// Replaces a reservation with actual usage, once.
    fn reconcile(&self, usage: UsageReport) -> Result<Result<(), UsageRejected>, StateError>;

    /// Feeds an allowed call's outcome to the breakers it passed, once.
    fn record_outcome(&self, outcome: OutcomeReport) -> Result<Result<(), OutcomeRejected>, StateError>;

    /// Records a new escalation. An id already kept keeps its record,
    /// whatever its status (never reopened). Refused with
    /// [`EscalationRefused::TooManyPending`] or
    /// [`EscalationRefused::TooManyPendingOverall`] when that many are
    /// pending and unexpired at its creation time.
    fn open_escalation(&self, escalation: Escalation) -> Result<Result<(), EscalationRefused>, StateError>;

    /// Approves or rejects a pending escalation.
    fn resolve_escalation(&self, resolution: Resolution) -> Result<Result<Escalation, EscalationRefused>, StateError>;

    fn escalation(&self, id: &str) -> Result<Option<Escalation>, StateError>;

    /// Every escalation still kept, oldest first.
    fn escalations(&self) -> Result<Vec<Escalation>, StateError>;

    fn gauges(&self, now_ms: i64) -> Result<Gauges, StateError>;

    /// Spend entries of the UTC days overlapping [since, until).
    fn spend(&self, since_ms: i64, until_ms: i64) -> Result<Vec<SpendEntry>, StateError>;

    /// What the registry knows of each of `names` for `server`, in order:
    /// one read (one round trip on Redis), for one decision.
    fn tool_views(&self, server: &str, names: &[String]) -> Result<Vec<ToolView>, StateError>;

    /// Makes `tools` the server's current listing, all or nothing: each
    /// tool's current digest and definition replaced, its first digest set
    /// only if it has none, and the server's tools missing from `tools`
    /// delisted (their first digest kept). Refused, with nothing applied,
    /// past the registry's bounds ([`StoreConfig`]). A listing that changes
    /// nothing writes nothing.
    fn record_listing(
        &self,
        server: &str,
        tools: &[ListedToolInput],
        now_ms: i64,
    ) -> Result<Result<(), ListingRefused>, StateError>;

    /// Every halt in force (the kill switch).
    fn halts(&self) -> Result<Vec<Halt>, StateError>;

    /// Sets a halt; one already on its scope is replaced.
    fn halt(&self, halt: Halt) -> Result<(), StateError>;

    /// Lifts the halt on `scope`; `false` when there was none.
    fn resume(&self, scope: &HaltScope) -> Result<bool, StateError>;

    /// Claims `key` until `until_ms`: `true` for the first claim only,
    /// across every replica sharing the store (budget alerts fire once).
    fn claim(&self, key: &str, until_ms: i64, now_ms: i64) -> Result<bool, StateError>;
}
