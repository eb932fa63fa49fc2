//! What every handler shares, and the decide path common to the API and
//! ext_authz.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use arbiter_engine::Decider;
use arbiter_types::{Action, Decision, DecisionReason, Request, VerdictKind, format_rfc3339_ms};
use serde_json::{Map, Value, json};

use crate::api::{ApiError, Caller};
use crate::audit::AuditLog;
use crate::bundles::Bundles;
use crate::config::{Clock, WireConfig};
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::webhook::Webhook;

#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) decider: Decider,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) metrics: Metrics,
    pub(crate) credentials: Arc<Credentials>,
    pub(crate) clock: Clock,
    pub(crate) wire: Arc<WireConfig>,
    pub(crate) webhook: Option<Webhook>,
    /// Present when bundles can be reloaded and rolled back.
    pub(crate) bundles: Option<Arc<Bundles>>,
}

/// The latest time [`now_ms`] returned.
static LAST_NOW_MS: AtomicI64 = AtomicI64::new(0);

/// The server's clock, in ms since the epoch. It never runs backwards
/// (a wall-clock step back holds it still), so state time is monotone.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let wall = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
    LAST_NOW_MS.fetch_max(wall, Ordering::Relaxed).max(wall)
}

impl AppState {
    /// The time an event happens at: the server's, or under
    /// [`Clock::Request`] the one the caller gave (`field` names it in the
    /// error when it is too far ahead).
    pub(crate) fn event_time(&self, given_ms: Option<i64>, field: &str) -> Result<i64, ApiError> {
        let now = now_ms();
        match (self.clock, given_ms) {
            (Clock::Server, _) | (Clock::Request { .. }, None) => Ok(now),
            (Clock::Request { max_ahead_ms }, Some(at)) if at > now.saturating_add(max_ahead_ms) => Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "timestamp_in_future",
                format!("{field}: {} is more than {max_ahead_ms} ms ahead of the server clock", format_rfc3339_ms(at)),
            )),
            (Clock::Request { .. }, Some(at)) => Ok(at),
        }
    }

    /// Decides for `caller` at `at_ms` on a blocking thread, then counts
    /// and audits the decision.
    pub(crate) async fn decide(&self, request: Request, caller: &Caller, at_ms: i64, source: &'static str) -> Decision {
        let started = Instant::now();
        let decider = self.decider.clone();
        let owner = caller.owner().to_owned();
        let evaluated = tokio::task::spawn_blocking(move || {
            let decision = decider.decide_as(&owner, &request, at_ms);
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
        // Audited first, so that counts and webhooks see what is served.
        let decision = self.audit_decision(&request, decision, caller, source, seconds);
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
        decision
    }

    /// Writes the decision's record; under `--audit-required` a decision
    /// that cannot be recorded is denied instead.
    fn audit_decision(
        &self,
        request: &Request,
        decision: Decision,
        caller: &Caller,
        source: &str,
        seconds: f64,
    ) -> Decision {
        let Some(audit) = &self.audit else { return decision };
        let mut request_json = request.to_json();
        audit.mask(&mut request_json);
        let mut record = Map::new();
        record.insert("kind".into(), "decision".into());
        record.insert("at".into(), format_rfc3339_ms(now_ms()).into());
        record.insert("source".into(), source.into());
        record.insert("caller".into(), caller.owner().into());
        record.insert("request".into(), request_json);
        record.insert("decision".into(), serde_json::to_value(&decision).unwrap_or(Value::Null));
        record.insert("latency_us".into(), ((seconds * 1e6) as u64).into());
        if self.write_audit(audit, record) || !audit.required() {
            return decision;
        }
        Decision {
            decision: VerdictKind::Deny,
            reasons: vec![arbiter_reason("audit_unavailable", "the audit record cannot be written (--audit-required)")],
            escalation: None,
            obligations: vec![],
            approved_by: None,
            ..decision
        }
    }

    pub(crate) fn audit_event(&self, kind: &str, details: Value) {
        let Some(audit) = &self.audit else { return };
        let mut record = Map::new();
        record.insert("kind".into(), kind.into());
        record.insert("at".into(), format_rfc3339_ms(now_ms()).into());
        record.insert("details".into(), details);
        self.write_audit(audit, record);
    }

    /// Appends a record; a failure is logged and counted. `false` when the
    /// record is lost.
    fn write_audit(&self, audit: &AuditLog, record: Map<String, Value>) -> bool {
        match audit.append(record) {
            Ok(()) => true,
            Err(e) => {
                self.metrics.audit_write_failure();
                tracing::error!("audit write failed: {e}");
                false
            }
        }
    }
}

fn arbiter_reason(code: &str, message: &str) -> DecisionReason {
    DecisionReason { policy: "arbiter".into(), code: code.into(), message: message.into() }
}

fn internal_deny(decider: &Decider, why: &str) -> Decision {
    let bundle = decider.bundle();
    Decision {
        id: String::new(),
        decision: VerdictKind::Deny,
        reasons: vec![arbiter_reason("internal_error", why)],
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
