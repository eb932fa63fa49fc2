//! Notifying a webhook of new escalations, off the decision path: the
//! decision is answered at once and the notification queued; a fixed set of
//! workers delivers the queue with retries. A full queue (a slow or dead
//! webhook under a flood of escalations) drops new notifications, counted,
//! instead of holding work without bound.

use std::sync::Arc;
use std::time::Duration;

use arbiter_types::Decision;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus_client::metrics::counter::Counter;
use serde_json::json;
use tokio::sync::{Mutex, mpsc};

const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// More would only open more connections to one webhook.
const MAX_WORKERS: usize = 1024;

#[derive(Clone, Debug)]
pub(crate) struct Webhook {
    queue: mpsc::Sender<Bytes>,
    dropped: Counter,
}

/// Where and how notifications are delivered.
struct Delivery {
    url: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Webhook {
    /// Starts `workers` delivery tasks draining a queue of `queue`
    /// notifications (on the current runtime); `dropped` counts the
    /// notifications that found the queue full.
    pub(crate) fn start(url: &str, queue: usize, workers: usize, dropped: Counter) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("escalation webhook `{url}`: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("escalation webhook `{url}`: only http:// is supported (put a TLS proxy in front)"));
        }
        if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&queue) {
            return Err(format!(
                "the webhook queue must hold 1 to {} notifications",
                tokio::sync::Semaphore::MAX_PERMITS
            ));
        }
        if !(1..=MAX_WORKERS).contains(&workers) {
            return Err(format!("the webhook needs 1 to {MAX_WORKERS} workers"));
        }
        let delivery = Arc::new(Delivery { url: uri, client: Client::builder(TokioExecutor::new()).build_http() });
        let (sender, receiver) = mpsc::channel(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers {
            let (delivery, receiver) = (Arc::clone(&delivery), Arc::clone(&receiver));
            tokio::spawn(async move {
                loop {
                    let next = receiver.lock().await.recv().await;
                    // `None`: every sender is gone, the server has stopped.
                    let Some(body) = next else { return };
                    delivery.deliver(body).await;
                }
            });
        }
        Ok(Webhook { queue: sender, dropped })
    }

    /// Queues the escalation of `decision`, if it opened one; never waits.
    pub(crate) fn notify(&self, decision: &Decision) {
        let Some(escalation) = decision.escalation.as_ref().filter(|e| e.id.is_some()) else { return };
        let first = decision.reasons.first().map_or(String::new(), |r| format!(": {} ({})", r.message, r.code));
        self.send(json!({
            "event": "escalation_created",
            // What a Slack incoming webhook shows.
            "text": format!("arbiter: request `{}` waits for approval by {}{first}", decision.id, escalation.approvers.join(", ")),
            "escalation": escalation,
            "request_id": decision.id,
            "reasons": decision.reasons,
            "bundle": decision.bundle,
        }));
    }

    /// Queues a notification; never waits. A full queue drops it, counted.
    pub(crate) fn send(&self, body: serde_json::Value) {
        if self.queue.try_send(Bytes::from(body.to_string())).is_err() {
            self.dropped.inc();
            tracing::warn!(event = ?body["event"], "webhook queue is full: notification dropped");
        }
    }

    /// Notifications waiting for a worker.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

impl Delivery {
    async fn deliver(&self, body: Bytes) {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let request = hyper::Request::post(self.url.clone())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()));
            let outcome = match request {
                Ok(request) => tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await,
                Err(e) => {
                    tracing::error!("escalation webhook request cannot be built: {e}");
                    return;
                }
            };
            match outcome {
                Ok(Ok(response)) if response.status().is_success() => return,
                Ok(Ok(response)) => tracing::warn!(attempt, status = %response.status(), "escalation webhook refused"),
                Ok(Err(e)) => tracing::warn!(attempt, "escalation webhook failed: {e}"),
                Err(_) => tracing::warn!(attempt, "escalation webhook timed out"),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        tracing::error!("escalation webhook gave up after {ATTEMPTS} attempts");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use arbiter_types::{BundleRef, EscalationOffer, VerdictKind};
    use axum::extract::State;
    use tokio::sync::watch;

    use super::*;

    fn escalated(id: &str) -> Decision {
        let offer = EscalationOffer {
            id: Some(id.to_owned()),
            approvers: vec!["oncall".into()],
            valid_for_seconds: 60,
            expires_at: None,
        };
        let bundle = BundleRef { name: "b".into(), version: "1.0.0".into() };
        let mut decision = Decision::bare(format!("request-{id}"), VerdictKind::Escalate, vec![], bundle);
        decision.escalation = Some(offer);
        decision
    }

    /// A webhook that holds every request until `open` is true, then
    /// answers 200 and reports the escalation id it was sent.
    struct Hook {
        open: watch::Receiver<bool>,
        received: mpsc::UnboundedSender<String>,
    }

    async fn hook(State(hook): State<Arc<Hook>>, body: Bytes) {
        let _ = hook.open.clone().wait_for(|open| *open).await;
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let _ = hook.received.send(body["escalation"]["id"].as_str().unwrap().to_owned());
    }

    /// Waits (however long it takes) until every id in `expected` arrived.
    async fn receive_all(received: &mut mpsc::UnboundedReceiver<String>, expected: &[String]) {
        let mut missing: HashSet<&String> = expected.iter().collect();
        while !missing.is_empty() {
            let id = received.recv().await.unwrap();
            missing.remove(&id);
        }
    }

    // On the test's own single thread: a worker runs only when the test
    // awaits, so what the flood leaves queued is exact.
    #[tokio::test]
    async fn a_flood_against_a_stuck_webhook_stays_bounded_and_delivery_resumes() {
        const QUEUE: usize = 256;
        const WORKERS: usize = 4;
        let (open, open_rx) = watch::channel(false);
        let (received_tx, mut received) = mpsc::unbounded_channel();
        let state = Arc::new(Hook { open: open_rx, received: received_tx });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dropped = Counter::default();
        let webhook = Webhook::start(&url, QUEUE, WORKERS, dropped.clone()).unwrap();
        // Every worker takes one notification and hangs on the webhook.
        let stuck: Vec<String> = (0..WORKERS).map(|i| format!("stuck-{i}")).collect();
        for id in &stuck {
            webhook.notify(&escalated(id));
        }
        while webhook.queued() > 0 {
            tokio::task::yield_now().await;
        }
        let tasks = tokio::runtime::Handle::current().metrics().num_alive_tasks();

        let flood: Vec<String> = (0..10_000).map(|i| format!("flood-{i}")).collect();
        for id in &flood {
            webhook.notify(&escalated(id));
        }
        assert_eq!(webhook.queued(), QUEUE, "the queue holds its bound, no more");
        assert_eq!(dropped.get(), 10_000 - QUEUE as u64, "the rest is dropped and counted");
        assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), tasks, "no task per notification");

        // The webhook answers again: what was queued is delivered, and so is
        // a notification sent after the flood.
        open.send(true).unwrap();
        let accepted: Vec<String> = stuck.iter().chain(&flood[..QUEUE]).cloned().collect();
        receive_all(&mut received, &accepted).await;
        webhook.notify(&escalated("after"));
        receive_all(&mut received, &["after".to_owned()]).await;
        assert_eq!(dropped.get(), 10_000 - QUEUE as u64);
    }

    #[test]
    fn refuses_an_empty_queue_no_workers_or_too_many() {
        for (queue, workers) in [(0, 4), (256, 0), (256, MAX_WORKERS + 1)] {
            assert!(Webhook::start("http://127.0.0.1:1/", queue, workers, Counter::default()).is_err());
        }
        assert!(Webhook::start("https://example.invalid/", 256, 4, Counter::default()).is_err());
    }
}
