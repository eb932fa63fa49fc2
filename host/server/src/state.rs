//! What every handler shares, and the decide path common to the API and
//! ext_authz.

use std::sync::Arc;
use std::time::Instant;

use arbiter_engine::Decider;
use arbiter_types::{Action, Decision, DecisionReason, Request, VerdictKind, format_rfc3339_ms};
use serde_json::{Map, Value, json};

use crate::audit::AuditLog;
use crate::bundles::Bundles;
use crate::config::WireConfig;
use crate::metrics::Metrics;
use crate::webhook::Webhook;

#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) decider: Decider,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) metrics: Metrics,
    pub(crate) admin_token: Option<Arc<str>>,
    pub(crate) wire: Arc<WireConfig>,
    pub(crate) webhook: Option<Webhook>,
    /// Present when bundles can be reloaded and rolled back.
    pub(crate) bundles: Option<Arc<Bundles>>,
}

/// Wall-clock time in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl AppState {
    /// Decides on a blocking thread, then counts and audits the decision.
    pub(crate) async fn decide(&self, request: Request, source: &'static str) -> Decision {
        let started = Instant::now();
        let decider = self.decider.clone();
        let now = now_ms();
        let evaluated = tokio::task::spawn_blocking(move || {
            let decision = decider.decide(&request, now);
            (request, decision)
        })
        .await;
        let (request, decision) = match evaluated {
            Ok(done) => done,
            // decide() does not panic; if it ever did, fail closed.
            Err(e) => {
                tracing::error!("decision task failed: {e}");
                return internal_deny(&self.decider, "decision task failed");
            }
        };
        let seconds = started.elapsed().as_secs_f64();
        let llm = match &request.action {
            Action::LlmRequest(llm) => {
                let output = llm.allowed_output_tokens(decision.clamp_max_output_tokens());
                Some((&request.principal, llm.model.as_str(), llm.prompt_tokens + output))
            }
            Action::ToolCall(_) => None,
        };
        self.metrics.decision(&decision, source, seconds, llm);
        if let Some(webhook) = &self.webhook
            && decision.decision == VerdictKind::Escalate
        {
            webhook.notify(&decision);
        }
        self.audit_decision(&request, &decision, source, seconds);
        decision
    }

    fn audit_decision(&self, request: &Request, decision: &Decision, source: &str, seconds: f64) {
        let Some(audit) = &self.audit else { return };
        let mut request_json = request.to_json();
        audit.mask(&mut request_json);
        let mut record = Map::new();
        record.insert("kind".into(), "decision".into());
        record.insert("at".into(), format_rfc3339_ms(now_ms()).into());
        record.insert("source".into(), source.into());
        record.insert("request".into(), request_json);
        record.insert("decision".into(), serde_json::to_value(decision).unwrap_or(Value::Null));
        record.insert("latency_us".into(), ((seconds * 1e6) as u64).into());
        self.write_audit(record);
    }

    pub(crate) fn audit_event(&self, kind: &str, details: Value) {
        if self.audit.is_none() {
            return;
        }
        let mut record = Map::new();
        record.insert("kind".into(), kind.into());
        record.insert("at".into(), format_rfc3339_ms(now_ms()).into());
        record.insert("details".into(), details);
        self.write_audit(record);
    }

    fn write_audit(&self, record: Map<String, Value>) {
        if let Some(audit) = &self.audit
            && let Err(e) = audit.append(record)
        {
            tracing::error!("audit write failed: {e}");
        }
    }
}

fn internal_deny(decider: &Decider, why: &str) -> Decision {
    let bundle = decider.bundle();
    Decision {
        id: String::new(),
        decision: VerdictKind::Deny,
        reasons: vec![DecisionReason { policy: "arbiter".into(), code: "internal_error".into(), message: why.into() }],
        escalation: None,
        obligations: vec![],
        charges: vec![],
        breakers: vec![],
        bundle: arbiter_types::BundleRef { name: bundle.name().to_owned(), version: bundle.version().to_owned() },
        policies: vec![],
        approved_by: None,
    }
}

/// The public view of a decision (shared/DESIGN.md §8): no charges, limits
/// or per-policy internals, which go to the audit log.
pub(crate) fn public_decision(decision: &Decision) -> Value {
    let mut body = json!({
        "id": decision.id,
        "decision": decision.decision,
        "reasons": decision.reasons,
        "escalation": decision.escalation,
        "obligations": decision.obligations,
        "bundle": decision.bundle,
    });
    if let Some(by) = &decision.approved_by {
        body["approved_by"] = by.clone().into();
    }
    body
}
