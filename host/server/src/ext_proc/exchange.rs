//! One HTTP exchange through ext_proc: decide on the request, hold the
//! upstream to the decision, read the answer, settle when it ends.

use std::collections::HashMap;
use std::time::Instant;

use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Message;
use envoy_types::pb::envoy::service::ext_proc::v3::{HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse};
use tonic::Status;

use super::messages::{Phase, header_map, header_mutation, immediate, proceed};
use super::settle::{Ending, settle};
use super::watch::decide_answer;
use crate::ext_authz::grpc::GatewayMetadata;
use crate::ext_authz::{Admitted, Answer, Checked, Refusal, Watch, check, error_answer};
use crate::state::{AppState, now_ms};
use crate::wire::{GatewayRequest, HeldAnswer, Protocol, ResponseReader, SessionStream};

pub(super) struct Exchange {
    state: AppState,
    metadata: GatewayMetadata,
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
    pub(super) fn new(state: AppState, metadata: GatewayMetadata) -> Self {
        Exchange {
            state,
            metadata,
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

    /// The answer to one message of Envoy's.
    pub(super) async fn on(&mut self, message: ProcessingRequest) -> Result<ProcessingResponse, Status> {
        match message.request {
            Some(Message::RequestHeaders(headers)) => Ok(self.request_headers(&headers).await),
            Some(Message::RequestBody(body)) => Ok(self.request_body(body).await),
            Some(Message::ResponseHeaders(headers)) => Ok(self.response_headers(&headers).await),
            Some(Message::ResponseBody(body)) => Ok(self.response_body(&body).await),
            Some(Message::RequestTrailers(_)) => Ok(proceed(Phase::RequestTrailers, None, None)),
            Some(Message::ResponseTrailers(_)) => Ok(proceed(Phase::ResponseTrailers, None, None)),
            None => Err(Status::invalid_argument("ProcessingRequest carries no message")),
        }
    }

    async fn request_headers(&mut self, headers: &HttpHeaders) -> ProcessingResponse {
        self.request_headers = header_map(Some(headers));
        let session_get = self.request_headers.get(":method").is_some_and(|m| m == "GET")
            && self.request_headers.contains_key("mcp-session-id");
        if session_get && self.metadata.mcp_server.is_some() {
            self.session_stream = Some(SessionStream::new(self.state.ext_proc.max_response_read_bytes));
        }
        if !headers.end_of_stream {
            // The (buffered) body follows: the decision waits for it.
            return proceed(Phase::RequestHeaders, None, None);
        }
        self.decide(Phase::RequestHeaders, &[]).await
    }

    async fn request_body(&mut self, body: HttpBody) -> ProcessingResponse {
        if !body.end_of_stream {
            // A streamed body would reach the upstream before the decision.
            let message = "arbiter's ext_proc needs request_body_mode: BUFFERED";
            return local_reply(error_answer(&Protocol::Http, 500, "ext_proc_misconfigured", message));
        }
        if body.body.len() > self.state.ext_proc.max_request_bytes {
            let message = format!("the request body is larger than {} bytes", self.state.ext_proc.max_request_bytes);
            return local_reply(error_answer(&Protocol::Http, 413, "body_too_large", &message));
        }
        self.decide(Phase::RequestBody, &body.body).await
    }

    async fn decide(&mut self, phase: Phase, body: &[u8]) -> ProcessingResponse {
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
            check(&self.state, gateway, self.metadata.key.as_deref(), "ext_proc").await;
        self.watch = watch;
        match answer {
            Answer::Deny(refusal) => local_reply(refusal),
            Answer::Allow { mut headers, remove } => {
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
                        return local_reply(error_answer(&Protocol::Http, 400, "bad_request", &message));
                    }
                };
                self.admitted = admitted;
                self.forwarded = Some(Instant::now());
                proceed(phase, header_mutation(headers, remove), rewritten)
            }
        }
    }

    async fn response_headers(&mut self, headers: &HttpHeaders) -> ProcessingResponse {
        let map = header_map(Some(headers));
        self.status = map.get(":status").and_then(|s| s.parse().ok());
        self.latency_ms = self.forwarded.map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
        let content_type = map.get("content-type").map_or("", String::as_str);
        let max = self.state.ext_proc.max_response_read_bytes;
        self.reader = self.admitted.as_ref().and_then(|admitted| match &admitted.protocol {
            Protocol::Llm(call) => Some(ResponseReader::llm(call, content_type, max)),
            Protocol::Mcp { id } => Some(ResponseReader::mcp(id.clone(), content_type, max)),
            Protocol::Http => None,
        });
        if self.watch.is_some() {
            self.held = Some(HeldAnswer::new(content_type, max));
        }
        // A body that changes as it streams cannot keep its length.
        let remove = match &self.reader {
            _ if self.held.is_some() || self.session_stream.is_some() => vec!["content-length".to_owned()],
            Some(reader) if reader.rewrites() => vec!["content-length".to_owned()],
            _ => vec![],
        };
        if headers.end_of_stream {
            self.settle(Ending::Complete).await;
        }
        proceed(Phase::ResponseHeaders, header_mutation(vec![], remove), None)
    }

    async fn response_body(&mut self, body: &HttpBody) -> ProcessingResponse {
        if let Some(stream) = self.session_stream.as_mut() {
            return proceed(Phase::ResponseBody, None, Some(stream.read(&body.body, body.end_of_stream)));
        }
        if let Some(held) = self.held.as_mut() {
            // Nothing reaches the client before the whole answer is decided.
            held.push(&body.body);
            if !body.end_of_stream {
                return proceed(Phase::ResponseBody, None, Some(Vec::new()));
            }
            let (Some(held), Some(watch)) = (self.held.take(), self.watch.take()) else {
                return proceed(Phase::ResponseBody, None, Some(Vec::new()));
            };
            let forward = decide_answer(&self.state, watch, held).await;
            if let Some(reader) = self.reader.as_mut() {
                reader.read(&forward, true);
            }
            self.settle(Ending::Complete).await;
            return proceed(Phase::ResponseBody, None, Some(forward));
        }
        let forward = self.reader.as_mut().and_then(|reader| reader.read(&body.body, body.end_of_stream));
        if body.end_of_stream {
            self.settle(Ending::Complete).await;
        }
        proceed(Phase::ResponseBody, None, forward)
    }

    /// The stream closed: an exchange whose answer was not read to its end
    /// settles as cut.
    pub(super) async fn finish(mut self) {
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

/// Envoy's local reply for a refusal; MCP errors keep status 200, in band.
fn local_reply(refusal: Refusal) -> ProcessingResponse {
    let Refusal { status, in_band, headers, body } = refusal;
    immediate(if in_band { 200 } else { status }, headers, body, "arbiter_refused")
}
