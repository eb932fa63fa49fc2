//! Deciding with state: evaluate a bundle, then commit an allowed
//! decision's charges and breaker admissions atomically.

use std::sync::Arc;

use arc_swap::ArcSwap;

use arbiter_state::{
    ApprovalClaim, Commit, CommitRefused, DecisionReads, Escalation, EscalationRefused, EscalationStatus, Halt,
    ListedToolInput, LlmUsage, OutcomeReport, OutcomeStatus, Resolution, RunKey, StateError, StateStore, UsageReport,
};
use arbiter_types::{
    Action, Decision, DecisionReason, PolicyOutcome, Request, ToolListing, VerdictKind, format_rfc3339_ms,
};

use crate::bundle::{Bundle, apply, run_of};
use crate::combine::STATE_UNAVAILABLE;
use crate::forecast::Forecasts;

/// Attribution of reasons the host itself gives.
const HOST: &str = "arbiter";
/// Reason code of a decision a halt (the kill switch) stopped.
pub const HALTED: &str = "halted";

/// A report (usage or outcome) that was not taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The usage report does not match a reservation.
    #[error(transparent)]
    Usage(#[from] arbiter_state::UsageRejected),
    /// The outcome report is refused (unknown or already reported).
    #[error(transparent)]
    Outcome(#[from] arbiter_state::OutcomeRejected),
    /// The escalation cannot be approved or claimed.
    #[error(transparent)]
    Escalation(#[from] arbiter_state::EscalationRefused),
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The active bundle and the state its decisions share. Clones share both;
/// [`Decider::activate`] swaps the bundle atomically for all of them.
#[derive(Debug, Clone)]
pub struct Decider {
    bundle: Arc<ArcSwap<Bundle>>,
    state: Arc<dyn StateStore>,
    /// What each kind of decision read last (used where reads are round
    /// trips: the store prefetches them).
    forecasts: Arc<Forecasts>,
}

impl Decider {
    /// A decider of `bundle` that commits to `state`.
    pub fn new(bundle: Arc<Bundle>, state: Arc<dyn StateStore>) -> Self {
        Decider { bundle: Arc::new(ArcSwap::new(bundle)), state, forecasts: Arc::default() }
    }

    /// Makes `bundle` the active one and returns the one it replaces.
    /// Decisions in flight finish with the bundle they started with; every
    /// decision sees exactly one bundle.
    pub fn activate(&self, bundle: Arc<Bundle>) -> Arc<Bundle> {
        let replaced = self.bundle.swap(bundle);
        self.forecasts.clear();
        replaced
    }

    /// A decider whose state lives in memory only (tests, `arbiter eval`).
    pub fn in_memory(bundle: Bundle) -> Self {
        let state = arbiter_state::InMemoryStore::in_memory(arbiter_state::StoreConfig::default());
        Decider::new(Arc::new(bundle), Arc::new(state))
    }

    /// The active bundle.
    pub fn bundle(&self) -> Arc<Bundle> {
        self.bundle.load_full()
    }

    /// The state store it commits to.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// Decides a request at `now_ms` (the caller's clock: the server's, or
    /// a trace's when replaying; never the request's own timestamp). An
    /// allow commits its charges (reserving on every budget, all or
    /// nothing), passes its breakers and enters the run's history; if the
    /// commit is refused, the decision becomes a deny with
    /// `budget_exhausted` or `circuit_open`.
    ///
    /// An escalate records an escalation (its id is in the decision). A
    /// retry that names an approved escalation of the same request is
    /// allowed once, with the effects of the allowing policies; a pending
    /// one stays escalated; any other claim is denied.
    pub fn decide(&self, request: &Request, now_ms: i64) -> Decision {
        self.decide_keyed(request.id.clone(), request, now_ms)
    }

    /// [`Decider::decide`] for an authenticated caller: the decision is
    /// `owner`'s, and only `owner` (see [`Decider::report_usage_as`]) can
    /// report its usage and outcome. Request ids of different owners never
    /// meet, so one caller cannot refund, trip or claim another's.
    pub fn decide_as(&self, owner: &str, request: &Request, now_ms: i64) -> Decision {
        self.decide_keyed(owned_id(owner, &request.id), request, now_ms)
    }

    fn decide_keyed(&self, key: String, request: &Request, now_ms: i64) -> Decision {
        let bundle = self.bundle.load_full();
        let forecast = || self.forecasts.forecast(request);
        let prefetched = DecisionReads::prefetch(Arc::clone(&self.state), &forecast, &run_of(request), now_ms);
        let reads = Arc::new(prefetched.unwrap_or_else(|e| {
            // One unreadable record the forecast named must not deny what
            // the policies, reading as asked, would decide otherwise (one
            // of them may fail open): read as asked, and learn afresh.
            tracing::warn!("state store failed reading a decision's forecast, reading as asked: {e}");
            self.forecasts.forget(request);
            DecisionReads::direct(Arc::clone(&self.state))
        }));
        if let Some(halted) = halted(&bundle, request, reads.halts()) {
            return halted;
        }
        let (mut decision, effects) = bundle.evaluate_with_effects(request, now_ms, &reads);
        if let Some(asked) = reads.asked() {
            self.forecasts.learn(request, &asked);
        }
        let at_ms = now_ms;
        if let Action::ToolListing(listing) = &request.action
            && !listing.page
        {
            // After the policies saw what the registry knew before it.
            if let Some(reason) = self.record_listing(listing, at_ms) {
                refuse(&mut decision, reason);
                return decision;
            }
        }
        if decision.decision == VerdictKind::Escalate
            && matches!(request.action, Action::ToolListing(_) | Action::ToolResult(_))
        {
            // What a server answered cannot wait for a human: withheld.
            decision.decision = VerdictKind::Deny;
            decision.escalation = None;
            return decision;
        }
        match (decision.decision, &request.escalation_id) {
            (VerdictKind::Deny, _) => decision,
            (VerdictKind::Allow, _) => {
                apply(&mut decision, effects);
                self.commit(decision, &key, request, at_ms, &reads)
            }
            (VerdictKind::Escalate, None) => self.escalate(decision, &key, request, at_ms),
            (VerdictKind::Escalate, Some(id)) => {
                let claim = ApprovalClaim {
                    escalation_id: id.clone(),
                    fingerprint: request.fingerprint(),
                    request_id: key.clone(),
                };
                let escalated = decision.clone();
                decision.decision = VerdictKind::Allow;
                decision.reasons.clear();
                decision.escalation = None;
                apply(&mut decision, effects);
                match reads.commit(commit_of(&key, request, &decision, at_ms, Some(claim))) {
                    Ok(Ok(())) => {
                        decision.approved_by = self.approver_of(id);
                        decision
                    }
                    // Still waiting: the same escalation, not a new one.
                    Ok(Err(CommitRefused::Escalation(EscalationRefused::Pending(_)))) => {
                        self.pending(escalated, id, at_ms)
                    }
                    committed => refused(decision, committed),
                }
            }
        }
    }

    /// Records what a server listed (whatever the decision: it is what the
    /// server says now); the reason to deny when that cannot be done.
    fn record_listing(&self, listing: &ToolListing, at_ms: i64) -> Option<DecisionReason> {
        let tools: Vec<ListedToolInput> = listing
            .tools
            .iter()
            .map(|t| ListedToolInput { name: t.name.clone(), digest: t.digest(), definition: t.to_mcp().to_string() })
            .collect();
        let reason =
            |code: &str, message: String| DecisionReason { policy: HOST.to_owned(), code: code.to_owned(), message };
        match self.state.record_listing(&listing.server, &tools, at_ms) {
            Ok(Ok(())) => None,
            Ok(Err(refused)) => Some(reason(refused.code(), refused.to_string())),
            Err(e) => Some(reason(STATE_UNAVAILABLE, format!("the listing cannot be recorded: {e}"))),
        }
    }

    fn commit(&self, decision: Decision, key: &str, request: &Request, at_ms: i64, reads: &DecisionReads) -> Decision {
        let committed = reads.commit(commit_of(key, request, &decision, at_ms, None));
        refused(decision, committed)
    }

    /// Records a new escalation and puts its id and expiry in the decision.
    fn escalate(&self, mut decision: Decision, key: &str, request: &Request, at_ms: i64) -> Decision {
        let masks = decision.masks();
        let Some(offer) = decision.escalation.as_mut() else { return decision };
        let fingerprint = request.fingerprint();
        let id = escalation_id(key, &fingerprint, at_ms);
        let expires_ms = at_ms.saturating_add(i64::from(offer.valid_for_seconds) * 1000);
        let escalation = Escalation {
            id: id.clone(),
            principal: format!("{}/{}", request.principal.pipeline, request.principal.agent),
            request_id: request.id.clone(),
            fingerprint,
            approvers: offer.approvers.clone(),
            summary: summary(request, &masks),
            reasons: decision.reasons.iter().map(|r| format!("{}: {}: {}", r.policy, r.code, r.message)).collect(),
            created_ms: at_ms,
            expires_ms,
            status: EscalationStatus::Pending,
        };
        match self.state.open_escalation(escalation) {
            Ok(Ok(())) => {
                offer.id = Some(id);
                offer.expires_at = Some(format_rfc3339_ms(expires_ms));
                decision
            }
            Ok(Err(refused)) => {
                let reason =
                    DecisionReason { policy: HOST.into(), code: refused.code().into(), message: refused.to_string() };
                refuse(&mut decision, reason);
                decision
            }
            Err(e) => state_failed(decision, "the escalation", &e),
        }
    }

    /// The escalated decision of a retry whose escalation awaits approval.
    fn pending(&self, mut decision: Decision, id: &str, at_ms: i64) -> Decision {
        let expires = self.state.escalation(id).ok().flatten().map(|e| e.expires_ms);
        if let Some(offer) = decision.escalation.as_mut() {
            offer.id = Some(id.to_owned());
            offer.expires_at = expires.or(Some(at_ms)).map(format_rfc3339_ms);
        }
        decision
    }

    fn approver_of(&self, id: &str) -> Option<String> {
        match self.state.escalation(id).ok().flatten()?.status {
            EscalationStatus::Used { by, .. } | EscalationStatus::Approved { by, .. } => Some(by),
            _ => None,
        }
    }

    /// Approves or rejects an escalation.
    pub fn resolve_escalation(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        now_ms: i64,
    ) -> Result<Escalation, ReportError> {
        let resolution = Resolution { escalation_id: id.to_owned(), approve, by: by.to_owned(), now_ms };
        Ok(self.state.resolve_escalation(resolution)??)
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

    /// [`Decider::report_usage`] of a decision made by [`Decider::decide_as`]
    /// for `owner`; another owner's request is unknown here.
    pub fn report_usage_as(
        &self,
        owner: &str,
        request_id: &str,
        prompt_tokens: u64,
        output_tokens: u64,
        now_ms: i64,
    ) -> Result<(), ReportError> {
        self.report_usage(&owned_id(owner, request_id), prompt_tokens, output_tokens, now_ms)
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

    /// [`Decider::report_outcome`] of a decision made for `owner`.
    pub fn report_outcome_as(
        &self,
        owner: &str,
        request_id: &str,
        status: OutcomeStatus,
        latency_ms: Option<u64>,
        now_ms: i64,
    ) -> Result<(), ReportError> {
        self.report_outcome(&owned_id(owner, request_id), status, latency_ms, now_ms)
    }
}

/// The deny of a request a halt stops, before any policy runs; a store
/// that cannot say whether one does fails closed.
fn halted(bundle: &Bundle, request: &Request, halts: Result<Vec<Halt>, StateError>) -> Option<Decision> {
    let halts = match halts {
        Ok(halts) => halts,
        Err(e) => return Some(unreadable(bundle, request, &e)),
    };
    let halt = arbiter_state::halting(&halts, &request.principal)?;
    let message =
        format!("halted ({}) by {} at {}: {}", halt.scope, halt.by, format_rfc3339_ms(halt.at_ms), halt.reason);
    Some(host_deny(bundle, request, DecisionReason { policy: HOST.into(), code: HALTED.into(), message }))
}

/// The deny of a request whose halts cannot be read: fail closed, before
/// any policy runs.
fn unreadable(bundle: &Bundle, request: &Request, e: &StateError) -> Decision {
    tracing::error!("state store failed reading halts: {e}");
    let message = format!("whether the request is halted cannot be read: {e}");
    host_deny(bundle, request, DecisionReason { policy: HOST.into(), code: STATE_UNAVAILABLE.into(), message })
}

fn host_deny(bundle: &Bundle, request: &Request, reason: DecisionReason) -> Decision {
    let reference = arbiter_types::BundleRef { name: bundle.name().to_owned(), version: bundle.version().to_owned() };
    Decision::bare(request.id.clone(), VerdictKind::Deny, vec![reason], reference)
}

/// The decision after its commit: unchanged if committed, else a deny.
fn refused(mut decision: Decision, committed: Result<Result<(), CommitRefused>, StateError>) -> Decision {
    match committed {
        Ok(Ok(())) => decision,
        Ok(Err(refused)) => {
            let policy = blame(&decision, &refused);
            let reason = DecisionReason { policy, code: refused.code().to_owned(), message: refused.message() };
            refuse(&mut decision, reason);
            decision
        }
        Err(e) => state_failed(decision, "the decision", &e),
    }
}

/// Fail closed when the state store cannot record what a decision needs.
fn state_failed(mut decision: Decision, what: &str, e: &StateError) -> Decision {
    tracing::error!("state store failed recording {what}: {e}");
    let message = format!("{what} could not be recorded: {e}");
    refuse(&mut decision, DecisionReason { policy: HOST.into(), code: STATE_UNAVAILABLE.into(), message });
    decision
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
        (PolicyOutcome::Fault { .. }, _)
        | (_, arbiter_state::CommitRefused::Escalation(_) | arbiter_state::CommitRefused::DuplicateRequest { .. }) => {
            false
        }
    };
    decision.policies.iter().find(asked).map_or_else(|| HOST.to_owned(), |p| p.name.clone())
}

/// A stable id: the same request escalated at the same instant gets the same
/// id, so replays are deterministic.
fn escalation_id(request_id: &str, fingerprint: &str, at_ms: i64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{request_id}\n{fingerprint}\n{at_ms}").as_bytes());
    format!("esc-{}", hex::encode(&digest[..10]))
}

/// One line an approver can read: who wants to do what, with every span a
/// policy named masked (an approver is shown no secret either).
fn summary(request: &Request, masks: &[arbiter_types::Redaction]) -> String {
    let p = &request.principal;
    let what = match &request.action {
        Action::ToolCall(call) => {
            let mut arguments = call.arguments.clone();
            // Checked against these arguments when each verdict came back.
            let _ = arbiter_types::apply_redactions(&mut arguments, masks);
            format!("tool {} {}", call.tool, serde_json::Value::Object(arguments))
        }
        Action::LlmRequest(llm) => {
            format!("LLM {} ({} prompt + {} max output tokens)", llm.model, llm.prompt_tokens, llm.max_output_tokens)
        }
        Action::ToolListing(listing) => format!("tools listed by {} ({})", listing.server, listing.tools.len()),
        Action::ToolResult(result) => format!("result of tool {}", result.call.tool),
    };
    let mut line = format!("{}/{} in {} (run {}): {what}", p.pipeline, p.agent, p.environment.as_str(), p.run);
    if line.len() > 1024 {
        let mut end = 1024;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}

/// The state key of `owner`'s request `id`. Owner names never contain `/`
/// (credential names are validated), so keys of different owners differ.
fn owned_id(owner: &str, id: &str) -> String {
    format!("{owner}/{id}")
}

fn commit_of(key: &str, request: &Request, decision: &Decision, at_ms: i64, approval: Option<ApprovalClaim>) -> Commit {
    let p = &request.principal;
    let (tool_call, llm) = match &request.action {
        Action::ToolCall(call) => (Some((call.tool.clone(), call.arguments.clone())), None),
        Action::LlmRequest(llm) => {
            let output = llm.allowed_output_tokens(decision.clamp_max_output_tokens());
            let usage = LlmUsage { model: llm.model.clone(), prompt_tokens: llm.prompt_tokens, output_tokens: output };
            (None, Some(usage))
        }
        // The call entered the run's history when it was allowed.
        Action::ToolListing(_) | Action::ToolResult(_) => (None, None),
    };
    Commit {
        request_id: key.to_owned(),
        now_ms: at_ms,
        run: RunKey { pipeline: p.pipeline.clone(), run: p.run.clone() },
        agent: p.agent.clone(),
        team: p.team.clone(),
        charges: decision.charges.clone(),
        breakers: decision.breakers.clone(),
        tool_call,
        llm,
        approval,
    }
}
