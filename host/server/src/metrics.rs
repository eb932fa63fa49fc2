//! Prometheus metrics (`GET /metrics`).

use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

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
struct ThresholdLabels {
    threshold: String,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BoundLabels {
    bound: &'static str,
}

/// The label value of the series that values beyond the cap fold into.
const OTHER: &str = "_other";

/// Label sets with values that clients (or policies) choose.
trait Fold {
    /// The overflow series: client-chosen values become [`OTHER`], the
    /// server's own (kind, window, state) stay.
    fn folded(&self) -> Self;
}

impl Fold for ReasonLabels {
    fn folded(&self) -> Self {
        // The policy name comes from the bundle; the code from its verdict.
        ReasonLabels { policy: self.policy.clone(), code: OTHER.to_owned() }
    }
}

impl Fold for TokenLabels {
    fn folded(&self) -> Self {
        TokenLabels {
            pipeline: OTHER.to_owned(),
            agent: OTHER.to_owned(),
            team: OTHER.to_owned(),
            model: OTHER.to_owned(),
        }
    }
}

impl Fold for BudgetLabels {
    fn folded(&self) -> Self {
        BudgetLabels { scope: OTHER.to_owned(), window: self.window.clone(), unit: self.unit.clone() }
    }
}

impl Fold for BreakerLabels {
    fn folded(&self) -> Self {
        BreakerLabels { key: OTHER.to_owned(), state: self.state.clone() }
    }
}

impl Fold for SpendLabels {
    fn folded(&self) -> Self {
        SpendLabels {
            pipeline: OTHER.to_owned(),
            agent: OTHER.to_owned(),
            team: OTHER.to_owned(),
            model: OTHER.to_owned(),
            kind: self.kind.clone(),
        }
    }
}

/// A family holding at most `cap` label sets of its own (plus the few
/// overflow ones): a client inventing a new pipeline or model per request
/// cannot grow `/metrics` and the server's memory without bound. Series
/// that exist keep counting; new ones beyond the cap fold into the overflow
/// series, and each fold is counted.
#[derive(Clone)]
struct Capped<L, M> {
    family: Family<L, M>,
    cap: usize,
    /// Series created below the cap (the overflow ones are not counted);
    /// locked while creating, so concurrent requests cannot overshoot.
    created: Arc<Mutex<usize>>,
    dropped: Counter,
}

impl<L: Clone + Hash + Eq + Fold, M: Default> Capped<L, M> {
    fn new(name: &str, cap: usize, dropped: &Family<FamilyLabels, Counter>) -> Self {
        Capped {
            family: Family::default(),
            cap,
            created: Arc::default(),
            dropped: dropped.get_or_create(&FamilyLabels { family: name.to_owned() }).clone(),
        }
    }

    fn with(&self, labels: &L, update: impl FnOnce(&M)) {
        if let Some(metric) = self.family.get(labels) {
            return update(&metric);
        }
        let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(metric) = self.family.get(labels) {
            // Created while this one waited for the lock.
            update(&metric);
        } else if *created < self.cap {
            *created += 1;
            update(&self.family.get_or_create(labels));
        } else {
            self.dropped.inc();
            update(&self.family.get_or_create(&labels.folded()));
        }
    }

    /// Forgets every series (gauges set afresh at each scrape).
    fn clear(&self) {
        let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        self.family.clear();
        *created = 0;
    }
}

/// Every metric the server exports.
#[derive(Clone)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
    decisions: Family<DecisionLabels, Counter>,
    reasons: Capped<ReasonLabels, Counter>,
    faults: Family<FaultLabels, Counter>,
    decision_seconds: Histogram,
    policy_seconds: Family<PolicyLabels, Histogram>,
    reserved_tokens: Capped<TokenLabels, Counter>,
    actual_tokens: Family<EventLabels, Counter>,
    escalations: Family<EventLabels, Counter>,
    halts: Family<EventLabels, Counter>,
    budget_alerts: Family<ThresholdLabels, Counter>,
    budget_used: Capped<BudgetLabels, Gauge>,
    budget_limit: Capped<BudgetLabels, Gauge>,
    breakers: Capped<BreakerLabels, Gauge>,
    spend_today: Capped<SpendLabels, Gauge>,
    bundle_loads: Family<EventLabels, Counter>,
    state_up: Gauge,
    webhook_dropped: Counter,
    overloaded: Family<SourceLabels, Counter>,
    held_refused: Family<BoundLabels, Counter>,
    in_flight: Gauge,
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
    /// `max_series`: label sets per family whose labels clients choose.
    pub(crate) fn new(max_series: usize) -> Self {
        let mut registry = Registry::with_prefix("arbiter");
        let series_dropped = Family::<FamilyLabels, Counter>::default();
        let decisions = Family::<DecisionLabels, Counter>::default();
        let reasons = Capped::<ReasonLabels, Counter>::new("reasons", max_series, &series_dropped);
        let faults = Family::<FaultLabels, Counter>::default();
        let decision_seconds = latency_histogram();
        let policy_seconds =
            Family::<PolicyLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let reserved_tokens = Capped::<TokenLabels, Counter>::new("llm_reserved_tokens", max_series, &series_dropped);
        let actual_tokens = Family::<EventLabels, Counter>::default();
        let escalations = Family::<EventLabels, Counter>::default();
        let halts = Family::<EventLabels, Counter>::default();
        let budget_alerts = Family::<ThresholdLabels, Counter>::default();
        let budget_used = Capped::<BudgetLabels, Gauge>::new("budget_used", max_series, &series_dropped);
        let budget_limit = Capped::<BudgetLabels, Gauge>::new("budget_limit", max_series, &series_dropped);
        let breakers = Capped::<BreakerLabels, Gauge>::new("breaker_state", max_series, &series_dropped);
        let spend_today = Capped::<SpendLabels, Gauge>::new("spend_today", max_series, &series_dropped);
        let bundle_loads = Family::<EventLabels, Counter>::default();
        let state_up = Gauge::default();
        let webhook_dropped = Counter::default();
        let overloaded = Family::<SourceLabels, Counter>::default();
        let in_flight = Gauge::default();
        registry.register("decisions", "Decisions by verdict and source (api, ext_authz)", decisions.clone());
        registry.register(
            "reasons",
            "Reasons of deny and escalate decisions, by policy and code",
            reasons.family.clone(),
        );
        registry.register("policy_faults", "Policy faults (trap, fuel, deadline, memory, bad verdict)", faults.clone());
        registry.register("decision_seconds", "Time to decide, policies and commit included", decision_seconds.clone());
        registry.register("policy_seconds", "Time to evaluate one policy", policy_seconds.clone());
        registry.register(
            "llm_reserved_tokens",
            "Tokens reserved by allowed LLM requests",
            reserved_tokens.family.clone(),
        );
        registry.register("llm_reported_tokens", "Tokens reported by usage reports, by outcome", actual_tokens.clone());
        registry.register("escalations", "Escalations created, approved and rejected", escalations.clone());
        registry.register("halts", "Kill-switch changes: scopes halted and resumed", halts.clone());
        registry.register("budget_alerts", "Budget alerts fired, by threshold (percent)", budget_alerts.clone());
        registry.register("budget_used", "Used budget of the current calendar period", budget_used.family.clone());
        registry.register("budget_limit", "Limit of the current calendar period's budget", budget_limit.family.clone());
        registry.register("breaker_state", "Breakers in each state", breakers.family.clone());
        registry.register("spend_today", "Today's (UTC) LLM tokens and charged micro-USD", spend_today.family.clone());
        registry.register("bundle_loads", "Bundle loads through the admin API, by result", bundle_loads.clone());
        registry.register(
            "state_up",
            "1 if the state store answered the last health or metrics check",
            state_up.clone(),
        );
        registry.register(
            "metric_series_dropped",
            "Updates folded into a family's `_other` series because it reached --max-metric-series",
            series_dropped,
        );
        registry.register(
            "webhook_dropped",
            "Escalation notifications dropped because the webhook queue was full",
            webhook_dropped.clone(),
        );
        registry.register(
            "overloaded",
            "Requests refused because --max-in-flight evaluations were running, by source",
            overloaded.clone(),
        );
        registry.register("evaluations_in_flight", "Evaluations and reports running now", in_flight.clone());
        let held_refused = Family::<BoundLabels, Counter>::default();
        registry.register(
            "ext_proc_held_refused",
            "ext_proc request bodies refused because held bodies reached a bound (server, caller)",
            held_refused.clone(),
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
            halts,
            budget_alerts,
            budget_used,
            budget_limit,
            breakers,
            spend_today,
            bundle_loads,
            state_up,
            webhook_dropped,
            overloaded,
            held_refused,
            in_flight,
            audit_write_failures,
        }
    }

    pub(crate) fn audit_write_failure(&self) {
        self.audit_write_failures.inc();
    }

    /// Counts notifications the webhook queue had no room for.
    pub(crate) fn webhook_dropped(&self) -> Counter {
        self.webhook_dropped.clone()
    }

    /// Evaluations running now (moved by the in-flight limiter).
    pub(crate) fn in_flight(&self) -> Gauge {
        self.in_flight.clone()
    }

    pub(crate) fn overloaded(&self, source: &str) {
        self.overloaded.get_or_create(&SourceLabels { source: source.to_owned() }).inc();
    }

    /// An ext_proc body refused at the held bound `bound` (`server` or
    /// `caller`).
    pub(crate) fn held_refused(&self, bound: &'static str) {
        self.held_refused.get_or_create(&BoundLabels { bound }).inc();
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
        // Added up, not set: past the cap, many budgets or breakers share
        // the overflow series.
        for b in &gauges.budgets {
            let labels = BudgetLabels { scope: b.scope.clone(), window: b.window.clone(), unit: b.unit.clone() };
            self.budget_used.with(&labels, |g| _ = g.inc_by(signed(b.used)));
            self.budget_limit.with(&labels, |g| _ = g.inc_by(signed(b.limit)));
        }
        for (key, state) in &gauges.breakers {
            let state = match state {
                BreakerState::Closed => "closed",
                BreakerState::Open { .. } => "open",
                BreakerState::HalfOpen { .. } => "half_open",
            };
            self.breakers.with(&BreakerLabels { key: key.clone(), state: state.to_owned() }, |g| _ = g.inc());
        }
        for e in spend {
            let labels = |kind: &str| SpendLabels {
                pipeline: e.pipeline.clone(),
                agent: e.agent.clone(),
                team: e.team.clone(),
                model: e.model.clone(),
                kind: kind.to_owned(),
            };
            self.spend_today.with(&labels("prompt_tokens"), |g| _ = g.inc_by(signed(e.prompt_tokens)));
            self.spend_today.with(&labels("output_tokens"), |g| _ = g.inc_by(signed(e.output_tokens)));
            self.spend_today.with(&labels("charged_micro_usd"), |g| _ = g.inc_by(signed(e.charged_micro_usd)));
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
            self.reasons.with(&ReasonLabels { policy: reason.policy.clone(), code: reason.code.clone() }, |c| {
                c.inc();
            });
        }
        for policy in &decision.policies {
            let labels = PolicyLabels { policy: policy.name.clone() };
            self.policy_seconds.get_or_create(&labels).observe(policy.elapsed_us as f64 / 1e6);
            if let PolicyOutcome::Fault { kind, .. } = &policy.outcome {
                self.faults
                    .get_or_create(&FaultLabels { policy: policy.name.clone(), kind: kind.code().to_owned() })
                    .inc();
            }
        }
        if let (arbiter_types::VerdictKind::Allow, Some((p, model, tokens))) = (decision.decision, llm) {
            let labels = TokenLabels {
                pipeline: p.pipeline.clone(),
                agent: p.agent.clone(),
                team: p.team.clone(),
                model: model.to_owned(),
            };
            self.reserved_tokens.with(&labels, |c| _ = c.inc_by(tokens));
        }
        if decision.escalation.as_ref().is_some_and(|e| e.id.is_some()) && decision.approved_by.is_none() {
            self.escalation_event("created");
        }
    }

    pub(crate) fn usage(&self, accepted: bool, tokens: u64) {
        let event = if accepted { "accepted" } else { "rejected" };
        self.actual_tokens.get_or_create(&EventLabels { event: event.to_owned() }).inc_by(tokens);
    }

    pub(crate) fn budget_alert(&self, threshold: u32) {
        self.budget_alerts.get_or_create(&ThresholdLabels { threshold: threshold.to_string() }).inc();
    }

    pub(crate) fn halt_event(&self, event: &str) {
        self.halts.get_or_create(&EventLabels { event: event.to_owned() }).inc();
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

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_types::{BundleRef, Environment, Principal, VerdictKind};

    fn allowed() -> Decision {
        Decision::bare("r", VerdictKind::Allow, vec![], BundleRef { name: "b".into(), version: "1.0.0".into() })
    }

    fn principal(pipeline: &str) -> Principal {
        Principal {
            pipeline: pipeline.into(),
            agent: "agent".into(),
            team: "team".into(),
            environment: Environment::Prod,
            run: "run".into(),
        }
    }

    /// The value of each series of `family`, by its label text.
    fn series(metrics: &Metrics, family: &str) -> Vec<(String, i64)> {
        let prefix = format!("arbiter_{family}{{");
        metrics
            .encode()
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| rest.split_once("} ").map(|(labels, value)| (labels.to_owned(), value.parse().unwrap())))
            .collect()
    }

    fn value(metrics: &Metrics, family: &str, needle: &str) -> i64 {
        series(metrics, family).iter().find(|(labels, _)| labels.contains(needle)).map_or(0, |(_, v)| *v)
    }

    #[test]
    fn client_chosen_labels_stay_under_the_cap_and_known_series_keep_counting() {
        const CAP: usize = 100;
        let metrics = Metrics::new(CAP);
        let decision = allowed();
        for i in 0..5_000 {
            let model = format!("model-{i}");
            metrics.decision(&decision, "api", 0.0, Some((&principal(&format!("p-{i}")), &model, 1)));
        }
        let reserved = series(&metrics, "llm_reserved_tokens_total");
        assert_eq!(reserved.len(), CAP + 1, "the cap, plus the overflow series");
        let other = format!("pipeline=\"{OTHER}\",agent=\"{OTHER}\",team=\"{OTHER}\",model=\"{OTHER}\"");
        assert_eq!(value(&metrics, "llm_reserved_tokens_total", &other), 5_000 - CAP as i64);
        assert_eq!(value(&metrics, "metric_series_dropped_total", "family=\"llm_reserved_tokens\""), 4_900);
        // A series admitted before the cap was reached keeps its own count.
        metrics.decision(&decision, "api", 0.0, Some((&principal("p-7"), "model-7", 10)));
        assert_eq!(value(&metrics, "llm_reserved_tokens_total", "pipeline=\"p-7\""), 11);
        assert_eq!(series(&metrics, "llm_reserved_tokens_total").len(), CAP + 1);
    }

    #[test]
    fn refreshed_gauges_fold_past_the_cap_and_start_afresh_at_each_scrape() {
        const CAP: usize = 30;
        let metrics = Metrics::new(CAP);
        let entry = |i: usize| SpendEntry {
            day_ms: 0,
            pipeline: format!("p-{i}"),
            agent: "a".into(),
            team: "t".into(),
            model: "m".into(),
            requests: 1,
            reconciled: 0,
            prompt_tokens: 2,
            output_tokens: 3,
            charged_micro_usd: 5,
        };
        let many: Vec<SpendEntry> = (0..5_000).map(entry).collect();
        metrics.refresh(&Gauges::default(), &many);
        let spend = series(&metrics, "spend_today");
        // Three kinds per entry: ten entries fit, each kind has an overflow.
        assert_eq!(spend.len(), CAP + 3, "{spend:?}");
        let folded = |kind: &str| value(&metrics, "spend_today", &format!("model=\"{OTHER}\",kind=\"{kind}\""));
        assert_eq!((folded("prompt_tokens"), folded("charged_micro_usd")), (4_990 * 2, 4_990 * 5));
        // The next scrape starts from nothing: its few entries are all their own.
        metrics.refresh(&Gauges::default(), &many[..2]);
        let spend = series(&metrics, "spend_today");
        assert_eq!(spend.len(), 6, "{spend:?}");
        assert_eq!(
            value(
                &metrics,
                "spend_today",
                "pipeline=\"p-1\",agent=\"a\",team=\"t\",model=\"m\",kind=\"output_tokens\""
            ),
            3
        );
    }
}
