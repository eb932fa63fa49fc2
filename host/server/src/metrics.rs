//! Prometheus metrics (`GET /metrics`).

use std::sync::Arc;

use arbiter_state::{BreakerState, Gauges, SpendEntry};
use arbiter_types::{Decision, PolicyOutcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    policy: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FaultLabels {
    policy: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    pipeline: String,
    agent: String,
    team: String,
    model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    scope: String,
    window: String,
    unit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabels {
    key: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpendLabels {
    pipeline: String,
    agent: String,
    team: String,
    model: String,
    kind: String,
}

/// Every metric the server exports.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
    decisions: Family<DecisionLabels, Counter>,
    reasons: Family<ReasonLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
    decision_seconds: Histogram,
    policy_seconds: Family<PolicyLabels, Histogram>,
    reserved_tokens: Family<TokenLabels, Counter>,
    actual_tokens: Family<EventLabels, Counter>,
    escalations: Family<EventLabels, Counter>,
    budget_used: Family<BudgetLabels, Gauge>,
    budget_limit: Family<BudgetLabels, Gauge>,
    breakers: Family<BreakerLabels, Gauge>,
    spend_today: Family<SpendLabels, Gauge>,
    bundle_loads: Family<EventLabels, Counter>,
    state_up: Gauge,
    audit_write_failures: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_histogram() -> Histogram {
    // 5 µs .. ~80 ms.
    Histogram::new(exponential_buckets(0.000_005, 2.0, 15))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("arbiter");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let reasons = Family::<ReasonLabels, Counter>::default();
        let faults = Family::<FaultLabels, Counter>::default();
        let decision_seconds = latency_histogram();
        let policy_seconds =
            Family::<PolicyLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let reserved_tokens = Family::<TokenLabels, Counter>::default();
        let actual_tokens = Family::<EventLabels, Counter>::default();
        let escalations = Family::<EventLabels, Counter>::default();
        let budget_used = Family::<BudgetLabels, Gauge>::default();
        let budget_limit = Family::<BudgetLabels, Gauge>::default();
        let breakers = Family::<BreakerLabels, Gauge>::default();
        let spend_today = Family::<SpendLabels, Gauge>::default();
        let bundle_loads = Family::<EventLabels, Counter>::default();
        let state_up = Gauge::default();
        registry.register("decisions", "Decisions by verdict and source (api, ext_authz)", decisions.clone());
        registry.register("reasons", "Reasons of deny and escalate decisions, by policy and code", reasons.clone());
        registry.register("policy_faults", "Policy faults (trap, fuel, deadline, memory, bad verdict)", faults.clone());
        registry.register("decision_seconds", "Time to decide, policies and commit included", decision_seconds.clone());
        registry.register("policy_seconds", "Time to evaluate one policy", policy_seconds.clone());
        registry.register("llm_reserved_tokens", "Tokens reserved by allowed LLM requests", reserved_tokens.clone());
        registry.register("llm_reported_tokens", "Tokens reported by usage reports, by outcome", actual_tokens.clone());
        registry.register("escalations", "Escalations created, approved and rejected", escalations.clone());
        registry.register("budget_used", "Used budget of the current calendar period", budget_used.clone());
        registry.register("budget_limit", "Limit of the current calendar period's budget", budget_limit.clone());
        registry.register("breaker_state", "1 for each breaker's current state", breakers.clone());
        registry.register("spend_today", "Today's (UTC) LLM tokens and charged micro-USD", spend_today.clone());
        registry.register("bundle_loads", "Bundle loads through the admin API, by result", bundle_loads.clone());
        registry.register(
            "state_up",
            "1 if the state store answered the last health or metrics check",
            state_up.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Audit records that could not be written (denied under --audit-required, else served)",
            audit_write_failures.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            decisions,
            reasons,
            faults,
            decision_seconds,
            policy_seconds,
            reserved_tokens,
            actual_tokens,
            escalations,
            budget_used,
            budget_limit,
            breakers,
            spend_today,
            bundle_loads,
            state_up,
            audit_write_failures,
        }
    }

    pub(crate) fn audit_write_failure(&self) {
        self.audit_write_failures.inc();
    }

    pub(crate) fn state_up(&self, up: bool) {
        self.state_up.set(i64::from(up));
    }

    pub(crate) fn bundle_load(&self, accepted: bool) {
        let event = if accepted { "activated" } else { "rejected" };
        self.bundle_loads.get_or_create(&EventLabels { event: event.to_owned() }).inc();
    }

    /// Sets the gauges from state, just before a scrape. Series of past
    /// periods and forgotten breakers disappear.
    pub(crate) fn refresh(&self, gauges: &Gauges, spend: &[SpendEntry]) {
        self.budget_used.clear();
        self.budget_limit.clear();
        self.breakers.clear();
        self.spend_today.clear();
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for b in &gauges.budgets {
            let labels = BudgetLabels { scope: b.scope.clone(), window: b.window.clone(), unit: b.unit.clone() };
            self.budget_used.get_or_create(&labels).set(signed(b.used));
            self.budget_limit.get_or_create(&labels).set(signed(b.limit));
        }
        for (key, state) in &gauges.breakers {
            let state = match state {
                BreakerState::Closed => "closed",
                BreakerState::Open { .. } => "open",
                BreakerState::HalfOpen { .. } => "half_open",
            };
            self.breakers.get_or_create(&BreakerLabels { key: key.clone(), state: state.to_owned() }).set(1);
        }
        for e in spend {
            let labels = |kind: &str| SpendLabels {
                pipeline: e.pipeline.clone(),
                agent: e.agent.clone(),
                team: e.team.clone(),
                model: e.model.clone(),
                kind: kind.to_owned(),
            };
            self.spend_today.get_or_create(&labels("prompt_tokens")).inc_by(signed(e.prompt_tokens));
            self.spend_today.get_or_create(&labels("output_tokens")).inc_by(signed(e.output_tokens));
            self.spend_today.get_or_create(&labels("charged_micro_usd")).inc_by(signed(e.charged_micro_usd));
        }
    }

    pub(crate) fn decision(
        &self,
        decision: &Decision,
        source: &str,
        seconds: f64,
        llm: Option<(&arbiter_types::Principal, &str, u64)>,
    ) {
        let labels = DecisionLabels { decision: decision.decision.as_str().to_owned(), source: source.to_owned() };
        self.decisions.get_or_create(&labels).inc();
        self.decision_seconds.observe(seconds);
        for reason in &decision.reasons {
            self.reasons
                .get_or_create(&ReasonLabels { policy: reason.policy.clone(), code: reason.code.clone() })
                .inc();
        }
        for policy in &decision.policies {
            let labels = PolicyLabels { policy: policy.name.clone() };
            self.policy_seconds.get_or_create(&labels).observe(policy.elapsed_us as f64 / 1e6);
            if let PolicyOutcome::Fault { kind, .. } = &policy.outcome {
                self.faults.get_or_create(&FaultLabels { policy: policy.name.clone(), kind: kind.clone() }).inc();
            }
        }
        if let (arbiter_types::VerdictKind::Allow, Some((p, model, tokens))) = (decision.decision, llm) {
            let labels = TokenLabels {
                pipeline: p.pipeline.clone(),
                agent: p.agent.clone(),
                team: p.team.clone(),
                model: model.to_owned(),
            };
            self.reserved_tokens.get_or_create(&labels).inc_by(tokens);
        }
        if decision.escalation.as_ref().is_some_and(|e| e.id.is_some()) && decision.approved_by.is_none() {
            self.escalation_event("created");
        }
    }

    pub(crate) fn usage(&self, accepted: bool, tokens: u64) {
        let event = if accepted { "accepted" } else { "rejected" };
        self.actual_tokens.get_or_create(&EventLabels { event: event.to_owned() }).inc_by(tokens);
    }

    pub(crate) fn escalation_event(&self, event: &str) {
        self.escalations.get_or_create(&EventLabels { event: event.to_owned() }).inc();
    }

    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        text
    }
}
