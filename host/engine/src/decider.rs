//! Deciding with state: evaluate a bundle, then commit an allowed
//! decision's charges and breaker admissions atomically.

use std::sync::Arc;

use arbiter_state::{Commit, LlmUsage, OutcomeReport, OutcomeStatus, RunKey, StateError, StateStore, UsageReport};
use arbiter_types::{Action, Decision, DecisionReason, PolicyOutcome, Request, VerdictKind};

use crate::bundle::Bundle;

/// Reason code when the state store cannot be reached.
pub const STATE_UNAVAILABLE: &str = "state_unavailable";
/// Attribution of reasons the host itself gives.
const HOST: &str = "arbiter";

/// A report (usage or outcome) that was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Usage(#[from] arbiter_state::UsageRejected),
    #[error(transparent)]
    Outcome(#[from] arbiter_state::OutcomeRejected),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A bundle and the state its decisions share.
#[derive(Debug, Clone)]
pub struct Decider {
    bundle: Arc<Bundle>,
    state: Arc<dyn StateStore>,
}

impl Decider {
    pub fn new(bundle: Arc<Bundle>, state: Arc<dyn StateStore>) -> Self {
        Decider { bundle, state }
    }

    /// A decider whose state lives in memory only (tests, `arbiter eval`).
    pub fn in_memory(bundle: Bundle) -> Self {
        let state = arbiter_state::InMemoryStore::in_memory(arbiter_state::StoreConfig::default());
        Decider::new(Arc::new(bundle), Arc::new(state))
    }

    pub fn bundle(&self) -> &Arc<Bundle> {
        &self.bundle
    }

    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// Decides a request. An allow commits its charges (reserving on every
    /// budget, all or nothing), passes its breakers and enters the run's
    /// history; if the commit is refused, the decision becomes a deny with
    /// `budget_exhausted` or `circuit_open`.
    pub fn decide(&self, request: &Request, now_ms: i64) -> Decision {
        let mut decision = self.bundle.evaluate(request, now_ms, &self.state);
        if decision.decision != VerdictKind::Allow {
            return decision;
        }
        let at_ms = request.timestamp_ms.unwrap_or(now_ms);
        match self.state.commit(commit_of(request, &decision, at_ms)) {
            Ok(Ok(())) => decision,
            Ok(Err(refused)) => {
                let policy = blame(&decision, &refused);
                refuse(
                    &mut decision,
                    DecisionReason { policy, code: refused.code().to_owned(), message: refused.message() },
                );
                decision
            }
            Err(e) => {
                tracing::error!("state store failed on commit: {e}");
                let message = format!("the decision could not be recorded: {e}");
                refuse(&mut decision, DecisionReason { policy: HOST.into(), code: STATE_UNAVAILABLE.into(), message });
                decision
            }
        }
    }

    /// Replaces the reservation of an allowed LLM request with its actual
    /// usage.
    pub fn report_usage(
        &self,
        request_id: &str,
        prompt_tokens: u64,
        output_tokens: u64,
        now_ms: i64,
    ) -> Result<(), ReportError> {
        let report = UsageReport { request_id: request_id.to_owned(), now_ms, prompt_tokens, output_tokens };
        Ok(self.state.reconcile(report)??)
    }

    /// Feeds the outcome of an allowed call to the breakers it passed.
    pub fn report_outcome(
        &self,
        request_id: &str,
        status: OutcomeStatus,
        latency_ms: Option<u64>,
        now_ms: i64,
    ) -> Result<(), ReportError> {
        let report = OutcomeReport { request_id: request_id.to_owned(), now_ms, status, latency_ms };
        Ok(self.state.record_outcome(report)??)
    }
}

fn refuse(decision: &mut Decision, reason: DecisionReason) {
    decision.decision = VerdictKind::Deny;
    decision.reasons = vec![reason];
    decision.obligations.clear();
    decision.charges.clear();
    decision.breakers.clear();
}

/// The policy whose charge or breaker the commit refused.
fn blame(decision: &Decision, refused: &arbiter_state::CommitRefused) -> String {
    let asked = |p: &&arbiter_types::PolicyResult| match (&p.outcome, refused) {
        (PolicyOutcome::Verdict(v), arbiter_state::CommitRefused::BudgetExhausted { scope, .. }) => {
            v.charges.iter().any(|c| &c.scope == scope)
        }
        (PolicyOutcome::Verdict(v), arbiter_state::CommitRefused::CircuitOpen { key }) => {
            v.breakers.iter().any(|b| &b.key == key)
        }
        (PolicyOutcome::Fault { .. }, _) => false,
    };
    decision.policies.iter().find(asked).map_or_else(|| HOST.to_owned(), |p| p.name.clone())
}

fn commit_of(request: &Request, decision: &Decision, at_ms: i64) -> Commit {
    let p = &request.principal;
    let (tool_call, llm) = match &request.action {
        Action::ToolCall(call) => (Some((call.tool.clone(), call.arguments.clone())), None),
        Action::LlmRequest(llm) => {
            let output =
                decision.clamp_max_output_tokens().map_or(llm.max_output_tokens, |c| c.min(llm.max_output_tokens));
            let usage = LlmUsage { model: llm.model.clone(), prompt_tokens: llm.prompt_tokens, output_tokens: output };
            (None, Some(usage))
        }
    };
    Commit {
        request_id: request.id.clone(),
        now_ms: at_ms,
        run: RunKey { pipeline: p.pipeline.clone(), run: p.run.clone() },
        agent: p.agent.clone(),
        team: p.team.clone(),
        charges: decision.charges.clone(),
        breakers: decision.breakers.clone(),
        tool_call,
        llm,
    }
}
