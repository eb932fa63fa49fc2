//! Envoy external processing (`envoy.service.ext_proc.v3.ExternalProcessor`):
//! the whole exchange passes arbiter, both directions. The request is
//! decided as ext_authz decides it (same credentials, same principal rules),
//! then rewritten so that the provider is held to what was reserved; the
//! answer is read as it streams back, and when it ends (completed, cut,
//! failed or timed out) the reservation is reconciled with the usage the
//! provider reported and the circuit breakers are fed its outcome, with no
//! report from the agent.
//!
//! Envoy must send the request headers and a `FULL_DUPLEX_STREAMED` (or
//! `BUFFERED`) request body, and the response headers and a streamed
//! response body (examples/envoy/envoy-ext-proc.yaml); modes that would let
//! a body pass unread are refused (`modes.rs`).

mod exchange;
mod held;
mod messages;
mod modes;

use std::pin::Pin;

use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{ProcessingRequest, ProcessingResponse};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::ext_authz::grpc::gateway_metadata;
use crate::state::AppState;
use exchange::Exchange;
use held::HeldBodies;

pub(crate) struct ExtProc {
    state: AppState,
    held: HeldBodies,
}

pub(crate) fn service(state: AppState) -> ExternalProcessorServer<ExtProc> {
    // A message too large to decode ends the stream with an error (below):
    // large enough for the largest body arbiter reads, whose own bounds
    // answer 413 or read no further.
    let largest = state.ext_proc.max_request_bytes.max(state.ext_proc.max_response_read_bytes);
    let max_message = largest.max(16 << 20).saturating_add(1 << 20);
    let held = HeldBodies::new(state.ext_proc.max_held_bytes, state.ext_proc.max_held_per_caller_bytes);
    ExternalProcessorServer::new(ExtProc { state, held }).max_decoding_message_size(max_message)
}

type Responses = Pin<Box<dyn Stream<Item = Result<ProcessingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalProcessor for ExtProc {
    type ProcessStream = Responses;

    async fn process(
        &self,
        request: Request<Streaming<ProcessingRequest>>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        let metadata = gateway_metadata(&request);
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(2);
        let exchange = Exchange::new(self.state.clone(), metadata, self.held.clone());
        let max_exchange = self.state.ext_proc.max_exchange;
        let on_panic = tx.clone();
        tokio::spawn(async move {
            // Envoy goes on with an exchange whose stream ends with OK, so
            // it never does while Envoy may wait for an answer: a panic
            // ends it with an error too.
            if tokio::spawn(exchange_loop(exchange, inbound, tx, max_exchange)).await.is_err() {
                let _ = on_panic.send(Err(Status::internal("the exchange failed"))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Answers Envoy's messages in order until the stream ends; any failure
/// ends it with an error status.
async fn exchange_loop(
    mut exchange: Exchange,
    mut inbound: Streaming<ProcessingRequest>,
    tx: mpsc::Sender<Result<ProcessingResponse, Status>>,
    max_exchange: std::time::Duration,
) {
    let deadline = tokio::time::Instant::now() + max_exchange;
    loop {
        match next_answers(&mut exchange, &mut inbound, deadline).await {
            Ok(Some(answers)) => {
                let mut open = true;
                for answer in answers {
                    open = open && tx.send(Ok(answer)).await.is_ok();
                }
                if !open {
                    break;
                }
            }
            // Envoy closed the stream (the exchange ended or was cut).
            Ok(None) => break,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                break;
            }
        }
    }
    exchange.finish().await;
}

/// The answers to Envoy's next message, within the exchange's time;
/// `None` once Envoy closed the stream.
async fn next_answers(
    exchange: &mut Exchange,
    inbound: &mut Streaming<ProcessingRequest>,
    deadline: tokio::time::Instant,
) -> Result<Option<Vec<ProcessingResponse>>, Status> {
    let outlived = |_| Status::deadline_exceeded("the exchange outlived --ext-proc-max-exchange-s");
    let message = tokio::time::timeout_at(deadline, inbound.message())
        .await
        .map_err(outlived)?
        .map_err(|status| Status::invalid_argument(format!("reading Envoy's message: {status}")))?;
    let Some(message) = message else { return Ok(None) };
    tokio::time::timeout_at(deadline, exchange.on(message)).await.map_err(outlived)?.map(Some)
}
