//! One HTTP exchange through ext_proc: Envoy's messages, translated to the
//! gateway exchange (`crate::gateway::Exchange`) and its answers back.
//!
//! An error ends the gRPC stream with that status, which Envoy answers
//! with a 500 (unless `failure_mode_allow`): the one refusal left once an
//! exchange is out of order, since an answer Envoy does not expect is
//! dropped or fails the exchange anyway.

use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Message;
use envoy_types::pb::envoy::service::ext_proc::v3::{HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse};
use tonic::Status;

use super::held::{Held, HeldBodies, Refused};
use super::messages::{Phase, header_map, header_mutation, immediate, proceed, streamed};
use super::modes::{BodyMode, Modes};
use crate::ext_authz::grpc::GatewayMetadata;
use crate::ext_authz::{Refusal, error_answer};
use crate::gateway::{Admission, Exchange as GatewayExchange};
use crate::state::AppState;
use crate::wire::Protocol;

/// Where the request stands.
enum Request {
    /// No headers yet.
    Expected,
    /// `BUFFERED`: its headers answered, its decision waits for the body.
    Buffering,
    /// `FULL_DUPLEX_STREAMED`: the body received so far (`chunks`: whether
    /// any chunk came) and its share of what all exchanges hold, given
    /// back when the request leaves this state. The headers' answer is
    /// held until the body is whole, then both are answered in one turn.
    Receiving { body: Vec<u8>, chunks: bool, held: Held },
    /// Decided or refused: nothing more of it needs an answer.
    Done,
}

pub(super) struct Exchange {
    exchange: GatewayExchange,
    /// Known from Envoy's first message.
    modes: Option<Modes>,
    request: Request,
    /// What all exchanges' full-duplex bodies hold.
    bodies: HeldBodies,
    /// Whether the answer's headers, and any chunk of its body, came.
    response_headers: bool,
    response_chunks: bool,
}

impl Exchange {
    pub(super) fn new(state: AppState, metadata: GatewayMetadata, bodies: HeldBodies) -> Self {
        Exchange {
            exchange: GatewayExchange::new(state, metadata, "ext_proc"),
            modes: None,
            request: Request::Expected,
            bodies,
            response_headers: false,
            response_chunks: false,
        }
    }

    /// The answers to one message of Envoy's, in order: none while a
    /// full-duplex body is still arriving, two (the headers', the body's)
    /// when it is whole.
    pub(super) async fn on(&mut self, message: ProcessingRequest) -> Result<Vec<ProcessingResponse>, Status> {
        if message.observability_mode {
            // Envoy would not wait for any answer.
            return Err(misconfigured_stream("observability_mode forwards every request before arbiter answers"));
        }
        let modes = *self.modes.get_or_insert_with(|| Modes::of(message.protocol_config.as_ref()));
        match message.request {
            Some(Message::RequestHeaders(headers)) => self.request_headers(modes, &headers).await,
            Some(Message::RequestBody(body)) => Ok(self.request_body(modes, body).await),
            Some(Message::RequestTrailers(_)) => Ok(self.request_trailers().await),
            Some(Message::ResponseHeaders(headers)) => Ok(vec![self.response_headers(&headers).await]),
            Some(Message::ResponseBody(body)) => self.response_body(modes, body).await,
            Some(Message::ResponseTrailers(_)) => Ok(self.response_trailers(modes).await),
            None => Err(Status::invalid_argument("ProcessingRequest carries no message")),
        }
    }

    async fn request_headers(
        &mut self,
        modes: Modes,
        headers: &HttpHeaders,
    ) -> Result<Vec<ProcessingResponse>, Status> {
        if !matches!(self.request, Request::Expected) {
            return Err(Status::failed_precondition("a second request headers message in one exchange"));
        }
        self.exchange.request_headers(header_map(Some(headers)));
        self.request = Request::Done;
        if let Some(problem) = modes.unguarded(headers.end_of_stream) {
            return Ok(vec![local_reply(misconfigured(&problem))]);
        }
        if headers.end_of_stream {
            return Ok(vec![self.decide(Phase::RequestHeaders, &[]).await]);
        }
        Ok(match modes.request {
            BodyMode::FullDuplex => {
                let held = self.bodies.share(self.exchange.holder().into());
                self.request = Request::Receiving { body: Vec::new(), chunks: false, held };
                vec![]
            }
            // The buffered body follows once the headers are answered.
            _ => {
                self.request = Request::Buffering;
                vec![proceed(Phase::RequestHeaders, None, None)]
            }
        })
    }

    async fn request_body(&mut self, modes: Modes, body: HttpBody) -> Vec<ProcessingResponse> {
        let max = self.exchange.max_request_bytes();
        match &mut self.request {
            Request::Done => vec![],
            Request::Expected => {
                self.request = Request::Done;
                vec![local_reply(misconfigured("request_header_mode must be SEND"))]
            }
            Request::Receiving { body: received, chunks, held } => {
                *chunks = true;
                if received.len().saturating_add(body.body.len()) > max {
                    self.end_request();
                    return vec![too_large(max)];
                }
                if let Err(refused) = held.take(body.body.len()) {
                    self.end_request();
                    self.exchange.metrics().held_refused(refused.bound());
                    return vec![local_reply(busy(refused))];
                }
                if received.is_empty() {
                    *received = body.body;
                } else {
                    received.extend_from_slice(&body.body);
                }
                if !body.end_of_stream {
                    return vec![];
                }
                self.answer_whole_body(true).await
            }
            Request::Buffering => {
                self.request = Request::Done;
                // Envoy buffers the whole body; it sends it without
                // `end_of_stream` when trailers follow. An Envoy that does not
                // name its modes may be streaming it: that would reach the
                // upstream before the decision.
                if !body.end_of_stream && !modes.stated {
                    return vec![local_reply(misconfigured(
                        "request_body_mode must be FULL_DUPLEX_STREAMED or BUFFERED",
                    ))];
                }
                if body.body.len() > max {
                    return vec![too_large(max)];
                }
                vec![self.decide(Phase::RequestBody, &body.body).await]
            }
        }
    }

    /// Trailers end a full-duplex body whose last chunk did not. A buffered
    /// request whose trailers come with no body cannot have its headers
    /// changed any more: it is refused.
    async fn request_trailers(&mut self) -> Vec<ProcessingResponse> {
        let mut answers = match self.request {
            Request::Receiving { .. } => self.answer_whole_body(false).await,
            Request::Buffering => {
                self.request = Request::Done;
                let message =
                    "a request with trailers and no body; send it with request_body_mode FULL_DUPLEX_STREAMED";
                vec![local_reply(error_answer(&Protocol::Http, 400, "bad_request", message))]
            }
            Request::Expected | Request::Done => vec![],
        };
        answers.push(proceed(Phase::RequestTrailers, None, None));
        answers
    }

    /// Full duplex: decides on the whole body, then answers the held headers
    /// (with the length of what goes upstream: Envoy keeps it when
    /// `allow_content_length_header` is set) and streams the body back
    /// unless no chunk of it came (trailers alone end it).
    async fn answer_whole_body(&mut self, end_of_stream: bool) -> Vec<ProcessingResponse> {
        let Request::Receiving { body: received, chunks, held } = std::mem::replace(&mut self.request, Request::Done)
        else {
            return vec![];
        };
        // `held` counts the body until its answer is built, the decision
        // included: it is in memory until then.
        let answers = match self.exchange.decide(&received).await {
            Admission::Refuse(refusal) => vec![local_reply(refusal)],
            Admission::Forward { mut headers, remove, body } => {
                let forward = body.unwrap_or(received);
                headers.retain(|(name, _)| name != "content-length");
                headers.push(("content-length".into(), forward.len().to_string()));
                let mut answers = vec![proceed(Phase::RequestHeaders, header_mutation(headers, remove), None)];
                if chunks || !forward.is_empty() {
                    answers.extend(streamed(Phase::RequestBody, forward, end_of_stream));
                }
                answers
            }
        };
        drop(held);
        answers
    }

    async fn decide(&mut self, phase: Phase, body: &[u8]) -> ProcessingResponse {
        match self.exchange.decide(body).await {
            Admission::Refuse(refusal) => local_reply(refusal),
            Admission::Forward { headers, remove, body } => proceed(phase, header_mutation(headers, remove), body),
        }
    }

    async fn response_headers(&mut self, headers: &HttpHeaders) -> ProcessingResponse {
        self.response_headers = true;
        let map = header_map(Some(headers));
        let status: Option<u16> = map.get(":status").and_then(|s| s.parse().ok());
        if matches!(self.request, Request::Buffering | Request::Receiving { .. }) && status.is_none_or(|s| s < 400) {
            // arbiter saw the request's headers but never decided it, yet
            // it reached the upstream (a buffered request whose trailers
            // Envoy did not send): its answer does not reach the client.
            // Error answers pass (Envoy's own: a timeout, a buffer limit).
            // Without the request's headers (`Expected`) this is a local
            // reply of a filter before this one (a health check, CORS), which
            // passes as it is.
            self.end_request();
            return local_reply(misconfigured("the request went upstream undecided; set request_trailer_mode: SEND"));
        }
        let content_type = map.get("content-type").map_or("", String::as_str);
        let encoding = map.get("content-encoding").map(String::as_str);
        let remove = self.exchange.response_headers(status, content_type, encoding, headers.end_of_stream).await;
        proceed(Phase::ResponseHeaders, header_mutation(vec![], remove), None)
    }

    async fn response_body(&mut self, modes: Modes, body: HttpBody) -> Result<Vec<ProcessingResponse>, Status> {
        if !self.response_headers {
            // The answer would be read without its status and type: an MCP
            // result to decide would pass undecided.
            return Err(misconfigured_stream("response_header_mode must be SEND"));
        }
        self.response_chunks = true;
        let forward = self.exchange.response_body(&body.body, body.end_of_stream).await;
        Ok(match modes.response {
            BodyMode::FullDuplex => streamed(Phase::ResponseBody, forward.unwrap_or(body.body), body.end_of_stream),
            _ => vec![proceed(Phase::ResponseBody, None, forward)],
        })
    }

    /// Trailers end a full-duplex answer whose last chunk did not.
    async fn response_trailers(&mut self, modes: Modes) -> Vec<ProcessingResponse> {
        let mut answers = Vec::new();
        if modes.response == BodyMode::FullDuplex && self.response_chunks {
            let rest = self.exchange.response_body(&[], true).await.unwrap_or_default();
            answers.extend(streamed(Phase::ResponseBody, rest, false));
        }
        answers.push(proceed(Phase::ResponseTrailers, None, None));
        answers
    }

    /// Nothing more of the request needs an answer: what it held is given
    /// back with it.
    fn end_request(&mut self) {
        self.request = Request::Done;
    }

    /// The stream closed: an exchange whose answer was not read to its end
    /// settles as cut.
    pub(super) async fn finish(self) {
        self.exchange.finish().await;
    }
}

fn misconfigured(problem: &str) -> Refusal {
    let message = format!("arbiter's ext_proc cannot guard this exchange: {problem}");
    error_answer(&Protocol::Http, 500, "ext_proc_misconfigured", &message)
}

fn misconfigured_stream(problem: &str) -> Status {
    Status::failed_precondition(format!("ext_proc_misconfigured: {problem}"))
}

/// A body that cannot be held: 503 when the server holds all it may
/// (anyone's retry may pass), 429 when it is this caller's own share.
fn busy(refused: Refused) -> Refusal {
    match refused {
        Refused::ServerFull => {
            let message = "too many request bodies are held for their decision; retry";
            error_answer(&Protocol::Http, 503, "ext_proc_busy", message)
        }
        Refused::CallerFull => {
            let message =
                "this caller's request bodies held for their decision reach its share; retry when they are decided";
            error_answer(&Protocol::Http, 429, "ext_proc_caller_busy", message)
        }
    }
}

fn too_large(max: usize) -> ProcessingResponse {
    let message = format!("the request body is larger than {max} bytes");
    local_reply(error_answer(&Protocol::Http, 413, "body_too_large", &message))
}

/// Envoy's local reply for a refusal; MCP errors keep status 200, in band.
fn local_reply(refusal: Refusal) -> ProcessingResponse {
    let Refusal { status, in_band, headers, body } = refusal;
    immediate(if in_band { 200 } else { status }, headers, body, "arbiter_refused")
}
