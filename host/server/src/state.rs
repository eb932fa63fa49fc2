//! What every handler shares, and the decide path common to the API and
//! ext_authz.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter_engine::Decider;
use arbiter_engine::readiness::ServerFacts;
use arbiter_types::{Action, Decision, DecisionReason, Request, VerdictKind, format_rfc3339_ms};
use axum::http::StatusCode;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Map, Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::alerts::Alerts;
use crate::api::{ApiError, Caller};
use crate::audit::AuditLog;
use crate::bundles::Bundles;
use crate::config::{Clock, ExtProcConfig, WireConfig};
use crate::console::Sessions;
use crate::credentials::Credentials;
use crate::metrics::Metrics;
use crate::recent::RecentDecisions;
use crate::webhook::Webhook;

#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) decider: Decider,
    pub(crate) audit: Option<Arc<AuditLog>>,
    pub(crate) metrics: Metrics,
    pub(crate) credentials: Arc<Credentials>,
    pub(crate) clock: Clock,
    pub(crate) wire: Arc<WireConfig>,
    pub(crate) ext_proc: ExtProcConfig,
    pub(crate) webhook: Option<Webhook>,
    /// Present when bundles can be reloaded and rolled back.
    pub(crate) bundles: Option<Arc<Bundles>>,
    pub(crate) in_flight: InFlight,
    /// The effective settings `GET /v1/admin/settings` reports (the active
    /// bundle is added per request).
    pub(crate) facts: Arc<ServerFacts>,
    /// Console logins.
    pub(crate) sessions: Arc<Sessions>,
    /// This replica's latest decisions, for the console.
    pub(crate) recent: Arc<RecentDecisions>,
    /// Budget alerts: thresholds, and the ones fired lately.
    pub(crate) alerts: Arc<Alerts>,
}

/// Bounds the evaluations and reports running on blocking threads at once:
/// beyond the limit a request waits briefly for a turn, then is refused,
/// instead of queueing work without bound.
#[derive(Clone, Debug)]
pub(crate) struct InFlight {
    permits: Arc<Semaphore>,
    wait: Duration,
    running: Gauge,
}

/// Every evaluation slot stayed taken for as long as a request may wait.
#[derive(Debug, thiserror::Error)]
#[error("the server is at its limit of concurrent evaluations; retry shortly")]
pub(crate) struct Overloaded;

impl From<Overloaded> for ApiError {
    fn from(overloaded: Overloaded) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", overloaded.to_string())
    }
}

/// Why bounded work did not produce its value.
#[derive(Debug)]
pub(crate) enum Unfinished {
    Overloaded,
    /// The work panicked.
    Failed(tokio::task::JoinError),
}

/// A slot, counted in the gauge while held.
struct Slot {
    _permit: OwnedSemaphorePermit,
    running: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running.dec();
    }
}

impl InFlight {
    /// `max` must be 1 to [`Semaphore::MAX_PERMITS`].
    pub(crate) fn new(max: usize, wait: Duration, running: Gauge) -> Self {
        InFlight { permits: Arc::new(Semaphore::new(max)), wait, running }
    }

    async fn slot(&self) -> Result<Slot, Unfinished> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await;
        // The semaphore is never closed; a closed one refuses like a full one.
        let permit = permit.ok().and_then(Result::ok).ok_or(Unfinished::Overloaded)?;
        self.running.inc();
        Ok(Slot { _permit: permit, running: self.running.clone() })
    }

    /// Runs `f` on a blocking thread once a slot is free (waiting at most
    /// the configured time for one).
    pub(crate) async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, Unfinished> {
        let slot = self.slot().await?;
        // The slot goes with the work: a request that times out or whose
        // client leaves does not free it while the work still runs.
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            f()
        })
        .await
        .map_err(Unfinished::Failed)
    }
}

pub(crate) use arbiter_types::clock::now_ms;

impl AppState {
    /// The time an event happens at: the server's, or under
    /// [`Clock::Request`] the one the caller gave (`field` names it in the
    /// error when it is too far ahead).
    pub(crate) fn event_time(&self, given_ms: Option<i64>, field: &str) -> Result<i64, ApiError> {
        let now = now_ms();
        match (self.clock, given_ms) {
            (Clock::Server, _) | (Clock::Request { .. }, None) => Ok(now),
            (Clock::Request { max_ahead_ms }, Some(at)) if at > now.saturating_add(max_ahead_ms) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "timestamp_in_future",
                format!("{field}: {} is more than {max_ahead_ms} ms ahead of the server clock", format_rfc3339_ms(at)),
            )),
            (Clock::Request { .. }, Some(at)) => Ok(at),
        }
    }

    /// [`Self::try_decide`], answering a deny (`overloaded`) when the server
    /// is at its limit: the answer for callers that can only allow or deny
    /// (ext_authz).
    pub(crate) async fn decide(&self, request: Request, caller: &Caller, at_ms: i64, source: &'static str) -> Decision {
        match self.try_decide(request, caller, at_ms, source).await {
            Ok(decision) => decision,
            Err(overloaded) => internal_deny(&self.decider, "overloaded", &overloaded.to_string()),
        }
    }

    /// Decides for `caller` at `at_ms` on a blocking thread within the
    /// in-flight limit, then counts and audits the decision.
    pub(crate) async fn try_decide(
        &self,
        request: Request,
        caller: &Caller,
        at_ms: i64,
        source: &'static str,
    ) -> Result<Decision, Overloaded> {
        let started = Instant::now();
        let decider = self.decider.clone();
        let owner = caller.owner().to_owned();
        let evaluated = self
            .in_flight
            .run(move || {
                let decision = decider.decide_as(&owner, &request, at_ms);
                (request, decision)
            })
            .await;
        let (request, decision) = match evaluated {
            Ok(done) => done,
            Err(Unfinished::Overloaded) => {
                self.metrics.overloaded(source);
                return Err(Overloaded);
            }
            // decide() does not panic; if it ever did, fail closed.
            Err(Unfinished::Failed(e)) => {
                tracing::error!("decision task failed: {e}");
                return Ok(internal_deny(&self.decider, "internal_error", "decision task failed"));
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
            Action::ToolCall(_) | Action::ToolListing(_) | Action::ToolResult(_) => None,
        };
        self.metrics.decision(&decision, source, seconds, llm);
        if let Some(webhook) = &self.webhook
            && decision.decision == VerdictKind::Escalate
        {
            webhook.notify(&decision);
        }
        if decision.decision == VerdictKind::Allow {
            self.alerts.check(self, &decision.charges);
        }
        Ok(decision)
    }

    /// Runs a request's blocking state work (usage and outcome reports)
    /// within the in-flight limit: 503 `overloaded` beyond it.
    pub(crate) async fn bounded<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.in_flight.run(f).await.map_err(|unfinished| match unfinished {
            Unfinished::Overloaded => {
                self.metrics.overloaded("report");
                Overloaded.into()
            }
            Unfinished::Failed(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()),
        })
    }

    /// Writes the decision's record; under `--audit-required` a decision
    /// that cannot be recorded is denied instead.
    fn audit_decision(
        &self,
        request: &Request,
        decision: Decision,
        caller: &Caller,
        source: &'static str,
        seconds: f64,
    ) -> Decision {
        let Some(audit) = &self.audit else {
            self.recent.push(request, &decision, source, now_ms(), None);
            return decision;
        };
        let mut request_json = crate::audit::request_view(request, &decision);
        audit.mask(&mut request_json);
        let mut record = Map::new();
        record.insert("kind".into(), "decision".into());
        record.insert("at".into(), format_rfc3339_ms(now_ms()).into());
        record.insert("source".into(), source.into());
        record.insert("caller".into(), caller.owner().into());
        record.insert("request".into(), request_json);
        record.insert("decision".into(), serde_json::to_value(&decision).unwrap_or(Value::Null));
        record.insert("latency_us".into(), ((seconds * 1e6) as u64).into());
        let seq = self.write_audit(audit, record);
        if seq.is_some() || !audit.required() {
            self.recent.push(request, &decision, source, now_ms(), seq);
            return decision;
        }
        let mut denied = decision;
        denied.decision = VerdictKind::Deny;
        denied.reasons =
            vec![arbiter_reason("audit_unavailable", "the audit record cannot be written (--audit-required)")];
        denied.escalation = None;
        denied.obligations.clear();
        denied.approved_by = None;
        self.recent.push(request, &denied, source, now_ms(), None);
        denied
    }

    pub(crate) fn audit_event(&self, kind: &str, details: Value) {
        let Some(audit) = &self.audit else { return };
        let mut record = Map::new();
        record.insert("kind".into(), kind.into());
        record.insert("at".into(), format_rfc3339_ms(now_ms()).into());
        record.insert("details".into(), details);
        self.write_audit(audit, record);
    }

    /// Appends a record; a failure is logged and counted. The record's
    /// `seq`, `None` when it is lost.
    fn write_audit(&self, audit: &AuditLog, record: Map<String, Value>) -> Option<u64> {
        match audit.append(record) {
            Ok(seq) => Some(seq),
            Err(e) => {
                self.metrics.audit_write_failure();
                tracing::error!("audit write failed: {e}");
                None
            }
        }
    }
}

fn arbiter_reason(code: &str, message: &str) -> DecisionReason {
    DecisionReason { policy: "arbiter".into(), code: code.into(), message: message.into() }
}

fn internal_deny(decider: &Decider, code: &str, why: &str) -> Decision {
    let bundle = decider.bundle();
    let bundle = arbiter_types::BundleRef { name: bundle.name().to_owned(), version: bundle.version().to_owned() };
    Decision::bare("", VerdictKind::Deny, vec![arbiter_reason(code, why)], bundle)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Work holding the limiter's slot until `release` is sent; returns once
    /// it runs.
    async fn occupy(
        limiter: &InFlight,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<Result<u8, Unfinished>>) {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let limiter = limiter.clone();
        let busy = tokio::spawn(async move {
            limiter
                .run(move || {
                    let _ = started.send(());
                    let _ = released.recv();
                    1
                })
                .await
        });
        running.await.unwrap();
        (release, busy)
    }

    #[tokio::test]
    async fn beyond_the_limit_work_is_refused_and_resumes_once_a_slot_frees() {
        let running = Gauge::default();
        let limiter = InFlight::new(1, Duration::from_millis(20), running.clone());
        let (release, busy) = occupy(&limiter).await;
        assert_eq!(running.get(), 1);
        for _ in 0..3 {
            assert!(matches!(limiter.run(|| 2).await, Err(Unfinished::Overloaded)));
        }
        release.send(()).unwrap();
        assert!(matches!(busy.await.unwrap(), Ok(1)));
        assert!(matches!(limiter.run(|| 3).await, Ok(3)));
        assert_eq!(running.get(), 0, "every slot was given back");
    }

    #[tokio::test]
    async fn a_request_waits_for_a_slot_that_frees_within_its_wait() {
        let limiter = InFlight::new(1, Duration::from_secs(3600), Gauge::default());
        let (release, busy) = occupy(&limiter).await;
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.run(|| 4).await }
        });
        // On this single-threaded runtime the waiter now runs until it
        // waits for the slot.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        release.send(()).unwrap();
        assert!(matches!(busy.await.unwrap(), Ok(1)));
        assert!(matches!(waiter.await.unwrap(), Ok(4)));
    }

    #[test]
    fn overloaded_is_a_503_with_its_code() {
        let error = ApiError::from(Overloaded);
        assert_eq!((error.status, error.code), (StatusCode::SERVICE_UNAVAILABLE, "overloaded"));
    }
}
