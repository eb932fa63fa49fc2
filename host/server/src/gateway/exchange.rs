//! One HTTP exchange through a gateway that shows arbiter both directions
//! (Envoy's ext_proc, the tower layer): decide on the request, hold the
//! upstream to the decision, read the answer, settle when it ends. The
//! transports only translate their messages to these calls.

use std::collections::HashMap;
use std::time::Instant;

use super::settle::{Ending, settle};
use super::watch::decide_answer;
use crate::ext_authz::grpc::GatewayMetadata;
use crate::ext_authz::{Admitted, Answer, Checked, Refusal, Watch, check, error_answer, holder};
use crate::metrics::Metrics;
use crate::state::{AppState, now_ms};
use crate::wire::{GatewayRequest, HeldAnswer, Protocol, ResponseReader, SessionStream};

/// The headers arbiter adds to a request it lets through.
const ANSWER_HEADERS: [&str; 4] =
    ["x-arbiter-decision", "x-arbiter-request-id", "x-arbiter-clamp-max-output-tokens", "x-arbiter-escalation-id"];

/// What the gateway does with the request.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Send it upstream with these header changes and, when the decision
    /// rewrote it, this body instead of the client's.
    Forward { headers: Vec<(String, String)>, remove: Vec<String>, body: Option<Vec<u8>> },
    /// Answer the client with this; nothing goes upstream.
    Refuse(Refusal),
}

pub(crate) struct Exchange {
    state: AppState,
    metadata: GatewayMetadata,
    /// The gateway path, in metrics and the audit log.
    source: &'static str,
    request_headers: HashMap<String, String>,
    admitted: Option<Admitted>,
    /// An MCP answer to decide before the client reads it, and the answer
    /// held meanwhile.
    watch: Option<Watch>,
    held: Option<HeldAnswer>,
    /// The server's own event stream of an MCP session, filtered as it
    /// streams (responses dropped).
    session_stream: Option<SessionStream>,
    /// When the request went upstream.
    forwarded: Option<Instant>,
    status: Option<u16>,
    latency_ms: Option<u64>,
    reader: Option<ResponseReader>,
    settled: bool,
}

impl Exchange {
    pub(crate) fn new(state: AppState, metadata: GatewayMetadata, source: &'static str) -> Self {
        Exchange {
            state,
            metadata,
            source,
            request_headers: HashMap::new(),
            admitted: None,
            watch: None,
            held: None,
            session_stream: None,
            forwarded: None,
            status: None,
            latency_ms: None,
            reader: None,
            settled: false,
        }
    }

    /// The largest request body the gateway may hand to [`Exchange::decide`].
    pub(crate) fn max_request_bytes(&self) -> usize {
        self.state.ext_proc.max_request_bytes
    }

    /// The request's headers: lowercase names, with the `:method` and
    /// `:path` pseudo-headers.
    pub(crate) fn request_headers(&mut self, headers: HashMap<String, String>) {
        let session_get = headers.get(":method").is_some_and(|m| m == "GET") && headers.contains_key("mcp-session-id");
        if session_get && self.metadata.mcp_server.is_some() {
            self.session_stream = Some(SessionStream::new(self.state.ext_proc.max_response_read_bytes));
        }
        self.request_headers = headers;
    }

    /// The server's metrics.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// Whose share of held request bodies this request draws on, from the
    /// headers given to [`Exchange::request_headers`].
    pub(crate) fn holder(&self) -> String {
        holder(&self.state, &self.request_headers, self.metadata.key.as_deref())
    }

    /// Decides on the request, whose whole body is `body`.
    pub(crate) async fn decide(&mut self, body: &[u8]) -> Admission {
        let headers = &self.request_headers;
        let gateway = GatewayRequest {
            method: headers.get(":method").map_or("", String::as_str),
            path: headers.get(":path").map_or("/", String::as_str),
            headers,
            body,
            now_ms: now_ms(),
            grant: None,
            mcp_server: self.metadata.mcp_server.as_deref(),
            reads_answers: true,
        };
        let Checked { answer, admitted, watch } =
            check(&self.state, gateway, self.metadata.key.as_deref(), self.source).await;
        self.watch = watch;
        match answer {
            Answer::Deny(refusal) => Admission::Refuse(refusal),
            Answer::Allow { mut headers, mut remove } => {
                // The upstream reads arbiter's headers only as arbiter set
                // them: a client's own copies of those it did not set go.
                remove.extend(
                    ANSWER_HEADERS
                        .iter()
                        .filter(|name| !headers.iter().any(|(set, _)| set == *name))
                        .map(|n| (*n).to_owned()),
                );
                let rewrite = admitted.as_ref().and_then(|admitted| match &admitted.protocol {
                    Protocol::Llm(call) => Some(call.provider_body(body, admitted.allowed_output_tokens)),
                    Protocol::Mcp { .. } if !admitted.redactions.is_empty() => {
                        Some(masked_call(body, &admitted.redactions))
                    }
                    Protocol::Http | Protocol::Mcp { .. } => None,
                });
                let rewritten = match rewrite {
                    None => None,
                    Some(Ok(provider_body)) => {
                        headers.push(("content-length".into(), provider_body.len().to_string()));
                        Some(provider_body)
                    }
                    Some(Err(message)) => {
                        // Nothing goes upstream: release what was reserved.
                        self.admitted = admitted;
                        self.settle(Ending::NotSent).await;
                        return Admission::Refuse(error_answer(&Protocol::Http, 400, "bad_request", &message));
                    }
                };
                if admitted.is_some() || self.watch.is_some() {
                    // arbiter reads the answer: ask for it uncompressed
                    // (a compressed one is read as unreadable, below).
                    headers.push(("accept-encoding".into(), "identity".into()));
                }
                self.admitted = admitted;
                self.forwarded = Some(Instant::now());
                Admission::Forward { headers, remove, body: rewritten }
            }
        }
    }

    /// The upstream answered with `status`: returns the response headers
    /// to remove. `end_of_stream`: the answer has no body.
    ///
    /// An answer in a `content-encoding` (the upstream ignored the request
    /// for `identity`) cannot be read: it is handled as one too large to
    /// read — an LLM call is charged its whole reservation, an MCP answer
    /// to be decided is withheld.
    pub(crate) async fn response_headers(
        &mut self,
        status: Option<u16>,
        content_type: &str,
        content_encoding: Option<&str>,
        end_of_stream: bool,
    ) -> Vec<String> {
        self.status = status;
        self.latency_ms = self.forwarded.map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
        let encoded =
            content_encoding.is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"));
        let max = if encoded { 0 } else { self.state.ext_proc.max_response_read_bytes };
        self.reader = self.admitted.as_ref().and_then(|admitted| match &admitted.protocol {
            Protocol::Llm(call) => Some(ResponseReader::llm(call, content_type, max)),
            Protocol::Mcp { id } => Some(ResponseReader::mcp(id.clone(), content_type, max)),
            Protocol::Http => None,
        });
        if self.watch.is_some() {
            self.held = Some(HeldAnswer::new(content_type, max));
        }
        if end_of_stream {
            self.settle(Ending::Complete).await;
        }
        // A body that changes as it streams cannot keep its length; a held
        // answer is forwarded rebuilt, as plain JSON.
        let mut remove = match &self.reader {
            _ if self.held.is_some() || self.session_stream.is_some() => vec!["content-length".to_owned()],
            Some(reader) if reader.rewrites() => vec!["content-length".to_owned()],
            _ => vec![],
        };
        if encoded && self.held.is_some() {
            remove.push("content-encoding".to_owned());
        }
        remove
    }

    /// A chunk of the answer; `end` marks the last. Returns what the client
    /// gets instead of `chunk` (`None`: the chunk as it is).
    pub(crate) async fn response_body(&mut self, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        if let Some(stream) = self.session_stream.as_mut() {
            let forward = stream.read(chunk, end);
            if end {
                self.settle(Ending::Complete).await;
            }
            return Some(forward);
        }
        if let Some(held) = self.held.as_mut() {
            // Nothing reaches the client before the whole answer is decided.
            held.push(chunk);
            if !end {
                return Some(Vec::new());
            }
            let (Some(held), Some(watch)) = (self.held.take(), self.watch.take()) else { return Some(Vec::new()) };
            let forward = decide_answer(&self.state, watch, held, self.source).await;
            if let Some(reader) = self.reader.as_mut() {
                reader.read(&forward, true);
            }
            self.settle(Ending::Complete).await;
            return Some(forward);
        }
        let forward = self.reader.as_mut().and_then(|reader| reader.read(chunk, end));
        if end {
            self.settle(Ending::Complete).await;
        }
        forward
    }

    /// The request was decided but never sent upstream: what it reserved
    /// is released.
    pub(crate) async fn not_sent(mut self) {
        self.settle(Ending::NotSent).await;
    }

    /// The exchange is over: one whose answer was not read to its end
    /// settles as cut.
    pub(crate) async fn finish(mut self) {
        let ending = match (&self.reader, self.forwarded) {
            (Some(reader), _) if reader.complete() => Ending::Complete,
            (_, Some(_)) => Ending::Cut,
            (_, None) => Ending::NotSent,
        };
        self.settle(ending).await;
    }

    async fn settle(&mut self, ending: Ending) {
        if self.settled {
            return;
        }
        self.settled = true;
        let Some(admitted) = self.admitted.take() else { return };
        settle(&self.state, admitted, ending, self.status, self.latency_ms, self.reader.as_ref()).await;
    }
}

/// A `tools/call` body with the decision's spans of its arguments masked.
fn masked_call(body: &[u8], redactions: &[arbiter_types::Redaction]) -> Result<Vec<u8>, String> {
    let mut message: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let arguments = message
        .pointer_mut("/params/arguments")
        .and_then(serde_json::Value::as_object_mut)
        .ok_or("the call has no arguments to mask")?;
    arbiter_types::apply_redactions(arguments, redactions).map_err(|e| e.to_string())?;
    Ok(message.to_string().into_bytes())
}
