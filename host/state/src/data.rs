//! All state, and the deterministic application of operations to it.

use arbiter_types::{BreakerConfig, ChargeUnit, Window};
use serde::{Deserialize, Serialize};

use crate::breaker::{BreakerState, Breakers};
use crate::claims::{Claims, Taken};
use crate::error::{OutcomeRejected, UsageRejected};
use crate::escalation::{Escalation, EscalationRefused, Escalations, PendingLimits, Resolution};
use crate::halt::{Halt, HaltScope, Halts, NotHalted};
use crate::history::{History, Mention, MentionQuery, PastToolCall, RunKey, SimilarQuery};
use crate::ledger::Ledger;
use crate::ops::{Commit, CommitRefused, LlmUsage, Op, OutcomeReport, OutcomeStatus, UsageReport};
use crate::reported::Reported;
use crate::spend::{Spend, SpendEntry};
use crate::store::Gauges;
use crate::store::StoreConfig;
use crate::tools::{Listing, ListingRefused, ToolRegistry, ToolView};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct StateData {
    ledger: Ledger,
    breakers: Breakers,
    history: History,
    spend: Spend,
    escalations: Escalations,
    /// Requests whose usage was reconciled.
    #[serde(default)]
    usage_reported: Reported,
    /// Requests whose outcome was recorded.
    #[serde(default)]
    outcome_reported: Reported,
    /// What MCP servers listed. Never swept: bounded by its limits, and
    /// first digests are kept for good.
    #[serde(default)]
    tools: ToolRegistry,
    /// Event time of the last expiry sweep.
    #[serde(default)]
    swept_ms: Option<i64>,
    /// The kill switch.
    #[serde(default)]
    halts: Halts,
    /// Budget alerts fired, until their window ends.
    #[serde(default)]
    claims: Claims,
}

/// Expiry sweeps run at most this often (in event time): a sweep walks
/// every reservation, so running it per operation would make each commit
/// cost O(open reservations).
const SWEEP_INTERVAL_MS: i64 = 1000;

impl StateData {
    /// Re-applies a journaled operation; it succeeded when it was written.
    pub(crate) fn replay(&mut self, op: &Op, config: &StoreConfig) -> bool {
        match op {
            Op::Commit(commit) => self.commit(commit, config).is_ok(),
            Op::Usage(usage) => self.reconcile(usage, config).is_ok(),
            Op::Outcome(outcome) => self.outcome(outcome, config).is_ok(),
            // Accepted when it was written: a limit lowered since must not
            // make the journal unreadable.
            Op::OpenEscalation(escalation) => self.open_escalation(escalation, config, None).is_ok(),
            Op::Resolve(resolution) => self.resolve(resolution, config).is_ok(),
            // Journaled only when it changed state, and accepted then.
            Op::Listing(listing) => self.tools.record(listing, None).is_ok(),
            Op::Halt(halt) => {
                self.halt(halt);
                true
            }
            Op::Resume { scope } => self.resume(scope).is_ok(),
            Op::Claim { key, until_ms, now_ms } => self.claim(key, *until_ms, *now_ms).is_ok(),
        }
    }

    pub(crate) fn halt(&mut self, halt: &Halt) {
        self.halts.set(halt);
    }

    pub(crate) fn resume(&mut self, scope: &HaltScope) -> Result<(), NotHalted> {
        self.halts.lift(scope)
    }

    pub(crate) fn halts(&self) -> Vec<Halt> {
        self.halts.all()
    }

    pub(crate) fn claim(&mut self, key: &str, until_ms: i64, now_ms: i64) -> Result<(), Taken> {
        self.claims.claim(key, until_ms, now_ms)
    }

    fn expire(&mut self, now_ms: i64, config: &StoreConfig) {
        // Event times out of order (a late report, a client's clock) never
        // trigger a sweep: one per operation would make each cost O(state).
        if self.swept_ms.is_some_and(|swept| now_ms < swept.saturating_add(SWEEP_INTERVAL_MS)) {
            return;
        }
        self.swept_ms = Some(now_ms);
        let ttl = config.reservation_ttl_ms;
        self.ledger.expire(now_ms, ttl);
        self.spend.expire(now_ms, ttl);
        self.usage_reported.expire(now_ms, ttl);
        self.breakers.expire(now_ms, config.outcome_ttl_ms);
        self.outcome_reported.expire(now_ms, config.outcome_ttl_ms);
        self.history.age_out(now_ms.saturating_sub(config.history_ttl_ms));
        self.escalations.expire(now_ms);
    }

    pub(crate) fn open_escalation(
        &mut self,
        escalation: &Escalation,
        config: &StoreConfig,
        limits: Option<&PendingLimits>,
    ) -> Result<(), EscalationRefused> {
        self.expire(escalation.created_ms, config);
        self.escalations.open(escalation, limits)
    }

    pub(crate) fn resolve(
        &mut self,
        resolution: &Resolution,
        config: &StoreConfig,
    ) -> Result<Escalation, EscalationRefused> {
        self.expire(resolution.now_ms, config);
        self.escalations.resolve(resolution)
    }

    pub(crate) fn gauges(&self, now_ms: i64) -> Gauges {
        Gauges {
            budgets: self.ledger.gauges(now_ms),
            breakers: self.breakers.gauges(now_ms),
            failure_percent: self.breakers.failure_rates(),
        }
    }

    pub(crate) fn escalation(&self, id: &str) -> Option<Escalation> {
        self.escalations.get(id).cloned()
    }

    pub(crate) fn escalations(&self) -> Vec<Escalation> {
        self.escalations.all()
    }

    pub(crate) fn commit(&mut self, commit: &Commit, config: &StoreConfig) -> Result<(), CommitRefused> {
        let now = commit.now_ms;
        self.expire(now, config);
        if let Some(claim) = &commit.approval {
            self.escalations.check(claim, now).map_err(CommitRefused::Escalation)?;
        }
        if let Some(guard) = commit.breakers.iter().find(|g| !self.breakers.admits(&g.key, &g.config, now)) {
            return Err(CommitRefused::CircuitOpen { key: guard.key.clone() });
        }
        // A second reservation under an open one's id would replace it, and
        // settling either would release the other (as on Redis).
        let reserves = !commit.charges.is_empty() || commit.spent().is_some();
        if reserves && (self.ledger.is_open(&commit.request_id) || self.spend.is_open(&commit.request_id)) {
            return Err(CommitRefused::DuplicateRequest { request_id: commit.request_id.clone() });
        }
        let reserved_tokens = commit.llm.as_ref().map_or(0, LlmUsage::tokens);
        self.ledger.reserve(&commit.request_id, &commit.charges, reserved_tokens, now)?;
        if let Some(claim) = &commit.approval {
            self.escalations.consume(claim, now);
        }
        if !commit.breakers.is_empty() {
            self.breakers.admit(&commit.request_id, &commit.guards(), now);
        }
        if let Some(call) = commit.past_tool_call() {
            self.history.record(&commit.run, call, config);
        }
        if let Some(spent) = commit.spent() {
            self.spend.record(&commit.request_id, spent, now);
        }
        Ok(())
    }

    pub(crate) fn reconcile(&mut self, usage: &UsageReport, config: &StoreConfig) -> Result<(), UsageRejected> {
        let now = usage.now_ms;
        self.expire(now, config);
        let id = &usage.request_id;
        if self.ledger.reservation(id).is_none() && !self.spend.is_open(id) {
            return Err(if self.usage_reported.contains(id, now, config.reservation_ttl_ms) {
                UsageRejected::AlreadyReported(id.clone())
            } else {
                UsageRejected::NoReservation(id.clone())
            });
        }
        let actual = usage.prompt_tokens.saturating_add(usage.output_tokens);
        self.ledger.reconcile(id, actual, now);
        self.spend.reconcile(id, usage.prompt_tokens, usage.output_tokens);
        self.usage_reported.insert(id, now);
        Ok(())
    }

    pub(crate) fn outcome(&mut self, outcome: &OutcomeReport, config: &StoreConfig) -> Result<(), OutcomeRejected> {
        let (id, now) = (&outcome.request_id, outcome.now_ms);
        self.expire(now, config);
        let failed = outcome.status != OutcomeStatus::Success;
        if self.breakers.record(id, now, failed, outcome.latency_ms) {
            self.outcome_reported.insert(id, now);
            Ok(())
        } else if self.outcome_reported.contains(id, now, config.outcome_ttl_ms) {
            Err(OutcomeRejected::AlreadyReported(id.clone()))
        } else {
            Err(OutcomeRejected::UnknownRequest(id.clone()))
        }
    }

    pub(crate) fn used(&self, scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> u64 {
        self.ledger.used(scope, window, unit, now_ms)
    }

    pub(crate) fn breaker_state(&mut self, key: &str, config: &BreakerConfig, now_ms: i64) -> BreakerState {
        self.breakers.state(key, config, now_ms)
    }

    pub(crate) fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Vec<PastToolCall> {
        self.history.tool_calls(run, tool, since_ms)
    }

    pub(crate) fn count_tool_calls(&self, run: &RunKey, since_ms: i64) -> u32 {
        self.history.count(run, since_ms)
    }

    pub(crate) fn count_similar(&mut self, run: &RunKey, query: &SimilarQuery<'_>) -> u32 {
        self.history.count_similar(run, query)
    }

    pub(crate) fn first_mention(&mut self, run: &RunKey, query: &MentionQuery<'_>) -> Option<Mention> {
        self.history.first_mention(run, query)
    }

    /// Records a listing; `Ok(true)` if it changed state. It sweeps
    /// nothing: an unchanged listing is not journaled, and a sweep it ran
    /// would be missing on replay.
    pub(crate) fn record_listing(
        &mut self,
        listing: &Listing<'_>,
        config: &StoreConfig,
    ) -> Result<bool, ListingRefused> {
        self.tools.record(listing, Some(&config.registry_limits()))
    }

    pub(crate) fn tool_views(&self, server: &str, names: &[String]) -> Vec<ToolView> {
        self.tools.views(server, names)
    }

    pub(crate) fn spend(&self, since_ms: i64, until_ms: i64) -> Vec<SpendEntry> {
        self.spend.entries(since_ms, until_ms)
    }
}
