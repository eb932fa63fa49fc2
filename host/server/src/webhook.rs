//! Notifying a webhook of new escalations, off the decision path: the
//! decision is answered at once, the notification is sent by a background
//! task with retries.

use std::time::Duration;

use arbiter_types::Decision;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub(crate) struct Webhook {
    url: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Webhook {
    pub(crate) fn new(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("escalation webhook `{url}`: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("escalation webhook `{url}`: only http:// is supported (put a TLS proxy in front)"));
        }
        Ok(Webhook { url: uri, client: Client::builder(TokioExecutor::new()).build_http() })
    }

    /// Sends the escalation of `decision`, if it opened one, in the
    /// background.
    pub(crate) fn notify(&self, decision: &Decision) {
        let Some(escalation) = decision.escalation.as_ref().filter(|e| e.id.is_some()) else { return };
        let body = json!({
            "event": "escalation_created",
            "escalation": escalation,
            "request_id": decision.id,
            "reasons": decision.reasons,
            "bundle": decision.bundle,
        })
        .to_string();
        let webhook = self.clone();
        tokio::spawn(async move { webhook.deliver(Bytes::from(body)).await });
    }

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
