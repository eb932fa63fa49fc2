//! One HTTP exchange through ext_proc: Envoy's messages, translated to the
//! gateway exchange (`crate::gateway::Exchange`) and its answers back.

use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Message;
use envoy_types::pb::envoy::service::ext_proc::v3::{HttpBody, HttpHeaders, ProcessingRequest, ProcessingResponse};
use tonic::Status;

use super::messages::{Phase, header_map, header_mutation, immediate, proceed};
use crate::ext_authz::grpc::GatewayMetadata;
use crate::ext_authz::{Refusal, error_answer};
use crate::gateway::{Admission, Exchange as GatewayExchange};
use crate::state::AppState;
use crate::wire::Protocol;

pub(super) struct Exchange {
    exchange: GatewayExchange,
}

impl Exchange {
    pub(super) fn new(state: AppState, metadata: GatewayMetadata) -> Self {
        Exchange { exchange: GatewayExchange::new(state, metadata, "ext_proc") }
    }

    /// The answer to one message of Envoy's.
    pub(super) async fn on(&mut self, message: ProcessingRequest) -> Result<ProcessingResponse, Status> {
        match message.request {
            Some(Message::RequestHeaders(headers)) => Ok(self.request_headers(&headers).await),
            Some(Message::RequestBody(body)) => Ok(self.request_body(body).await),
            Some(Message::ResponseHeaders(headers)) => Ok(self.response_headers(&headers).await),
            Some(Message::ResponseBody(body)) => {
                let forward = self.exchange.response_body(&body.body, body.end_of_stream).await;
                Ok(proceed(Phase::ResponseBody, None, forward))
            }
            Some(Message::RequestTrailers(_)) => Ok(proceed(Phase::RequestTrailers, None, None)),
            Some(Message::ResponseTrailers(_)) => Ok(proceed(Phase::ResponseTrailers, None, None)),
            None => Err(Status::invalid_argument("ProcessingRequest carries no message")),
        }
    }

    async fn request_headers(&mut self, headers: &HttpHeaders) -> ProcessingResponse {
        self.exchange.request_headers(header_map(Some(headers)));
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
        let max = self.exchange.max_request_bytes();
        if body.body.len() > max {
            let message = format!("the request body is larger than {max} bytes");
            return local_reply(error_answer(&Protocol::Http, 413, "body_too_large", &message));
        }
        self.decide(Phase::RequestBody, &body.body).await
    }

    async fn decide(&mut self, phase: Phase, body: &[u8]) -> ProcessingResponse {
        match self.exchange.decide(body).await {
            Admission::Refuse(refusal) => local_reply(refusal),
            Admission::Forward { headers, remove, body } => proceed(phase, header_mutation(headers, remove), body),
        }
    }

    async fn response_headers(&mut self, headers: &HttpHeaders) -> ProcessingResponse {
        let map = header_map(Some(headers));
        let status = map.get(":status").and_then(|s| s.parse().ok());
        let content_type = map.get("content-type").map_or("", String::as_str);
        let encoding = map.get("content-encoding").map(String::as_str);
        let remove = self.exchange.response_headers(status, content_type, encoding, headers.end_of_stream).await;
        proceed(Phase::ResponseHeaders, header_mutation(vec![], remove), None)
    }

    /// The stream closed: an exchange whose answer was not read to its end
    /// settles as cut.
    pub(super) async fn finish(self) {
        self.exchange.finish().await;
    }
}

/// Envoy's local reply for a refusal; MCP errors keep status 200, in band.
fn local_reply(refusal: Refusal) -> ProcessingResponse {
    let Refusal { status, in_band, headers, body } = refusal;
    immediate(if in_band { 200 } else { status }, headers, body, "arbiter_refused")
}
