//! The `tower` layer: a request is buffered (up to the ext_proc request
//! bound), decided, forwarded as the decision rewrote it or answered in
//! the caller's protocol; the answer streams back through the exchange,
//! which settles when its body ends or is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, SizeHint};

use super::{Admission, Exchange};
use crate::ext_authz::grpc::GatewayMetadata;
use crate::ext_authz::{Refusal, error_answer};
use crate::state::AppState;
use crate::wire::Protocol;

/// Errors of a guarded answer's body (the upstream's, boxed).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Guards the services it wraps: see [`super::Gateway::layer`].
#[derive(Clone, Debug)]
pub struct GuardLayer {
    state: AppState,
    metadata: GatewayMetadata,
}

impl GuardLayer {
    pub(super) fn new(state: AppState, metadata: GatewayMetadata) -> Self {
        GuardLayer { state, metadata }
    }
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard { inner, state: self.state.clone(), metadata: self.metadata.clone() }
    }
}

/// A service behind arbiter: it sees only requests the bundle allowed,
/// as the decision rewrote them (output tokens clamped, masked arguments).
#[derive(Clone, Debug)]
pub struct Guard<S> {
    inner: S,
    state: AppState,
    metadata: GatewayMetadata,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, ResBody> tower::Service<Request<B>> for Guard<S>
where
    S: tower::Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<GuardedBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        // The upstream's body boxed as it comes back: one `GuardedBody`
        // type for every upstream.
        let mut inner =
            tower::ServiceExt::map_response(inner, |response: Response<ResBody>| response.map(upstream_body));
        let mut exchange = Exchange::new(self.state.clone(), self.metadata.clone(), "gateway");
        // While the client waits for the answer: an exchange whose client
        // left before the upstream was called is not sent at all.
        let (waiting, mut client) = tokio::sync::oneshot::channel::<()>();
        let exchange_run = async move {
            let (mut parts, body) = request.into_parts();
            exchange.request_headers(header_map(&parts));
            let body = match Limited::new(body, exchange.max_request_bytes()).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let (status, code) = match e.downcast_ref::<http_body_util::LengthLimitError>() {
                        Some(_) => (413, "body_too_large"),
                        None => (400, "bad_request"),
                    };
                    let message = format!("the request body could not be read: {e}");
                    return Ok(local_reply(error_answer(&Protocol::Http, status, code, &message)));
                }
            };
            let forward = match exchange.decide(&body).await {
                Admission::Refuse(refusal) => return Ok(local_reply(refusal)),
                Admission::Forward { headers, remove, body: rewritten } => {
                    mutate(&mut parts.headers, headers, &remove);
                    Request::from_parts(parts, Full::new(rewritten.map_or(body, Bytes::from)))
                }
            };
            if matches!(client.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed)) {
                exchange.not_sent().await;
                return Ok(local_reply(error_answer(&Protocol::Http, 499, "client_gone", "the client left")));
            }
            let response = match inner.call(forward).await {
                Ok(response) => response,
                Err(e) => {
                    exchange.finish().await;
                    return Err(e);
                }
            };
            let (mut parts, body) = response.into_parts();
            let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
            // An encoding arbiter cannot name is one it cannot read.
            let encoding = parts.headers.get("content-encoding").map(|v| v.to_str().unwrap_or("unreadable"));
            let status = Some(parts.status.as_u16());
            let remove = exchange.response_headers(status, content_type, encoding, body.is_end_stream()).await;
            mutate(&mut parts.headers, vec![], &remove);
            let body = GuardedBody(Inner::Upstream { body, exchange: Reading::Idle(Some(Box::new(exchange))) });
            Ok(Response::from_parts(parts, body))
        };
        Box::pin(async move {
            // Run to its end even if this future is dropped (the client
            // left): the decision's reservation is then settled, not left
            // to expire, and its breakers learn how the call went.
            let run = tokio::spawn(exchange_run).await;
            drop(waiting);
            match run {
                Ok(answered) => answered,
                Err(failed) if failed.is_panic() => std::panic::resume_unwind(failed.into_panic()),
                Err(_) => {
                    Ok(local_reply(error_answer(&Protocol::Http, 503, "shutting_down", "the gateway is stopping")))
                }
            }
        })
    }
}

type UpstreamBody = Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>;

/// The upstream's body with its error boxed (an upstream whose body error
/// is itself a `Box<dyn Error>` trips rustc's higher-ranked `Send` check in
/// its callers: docs/embedding.md).
fn upstream_body<B>(body: B) -> UpstreamBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Box::pin(body.map_err(Into::into))
}

/// The body of a guarded answer: arbiter's own (a refusal), or the
/// upstream's as the exchange lets it through.
pub struct GuardedBody(Inner);

enum Inner {
    /// Answered by arbiter.
    Local(Option<Bytes>),
    /// The upstream's answer, read as it streams.
    Upstream { body: UpstreamBody, exchange: Reading },
}

impl std::fmt::Debug for GuardedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Local(_) => "GuardedBody(arbiter's answer)",
            Inner::Upstream { .. } => "GuardedBody(the upstream's answer)",
        })
    }
}

/// Where the exchange reading an answer is: waiting for the next chunk,
/// or deciding what to forward of the last (an MCP answer is held and
/// decided whole).
enum Reading {
    Idle(Option<Box<Exchange>>),
    Busy(BoxFuture<(Box<Exchange>, Option<Bytes>, bool)>),
    Done,
}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (body, reading) = match &mut self.0 {
            Inner::Local(bytes) => return Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream { body, exchange } => (body, exchange),
        };
        loop {
            match reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Busy(step) => {
                    let (exchange, forward, end) = ready!(step.as_mut().poll(cx));
                    *reading = if end { Reading::Done } else { Reading::Idle(Some(exchange)) };
                    match forward {
                        Some(bytes) if !bytes.is_empty() => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                        _ if end => return Poll::Ready(None),
                        _ => {}
                    }
                }
                Reading::Idle(exchange) => {
                    let frame = ready!(body.as_mut().poll_frame(cx));
                    let Some(mut exchange) = exchange.take() else { return Poll::Ready(None) };
                    match frame {
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(chunk) => {
                                // A body of known length ends with its last
                                // byte: the server writing it need not poll
                                // again for the end.
                                let end = body.is_end_stream();
                                *reading = Reading::Busy(Box::pin(async move {
                                    let forward = exchange.response_body(&chunk, end).await;
                                    (exchange, Some(forward.map_or(chunk, Bytes::from)), end)
                                }));
                            }
                            Err(trailers) => {
                                *reading = Reading::Idle(Some(exchange));
                                return Poll::Ready(Some(Ok(trailers)));
                            }
                        },
                        Some(Err(e)) => {
                            *reading = Reading::Done;
                            spawn((*exchange).finish());
                            return Poll::Ready(Some(Err(e)));
                        }
                        None => {
                            *reading = Reading::Busy(Box::pin(async move {
                                let forward = exchange.response_body(&[], true).await;
                                (exchange, forward.map(Bytes::from), true)
                            }));
                        }
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Local(bytes) => bytes.is_none(),
            Inner::Upstream { exchange, .. } => matches!(exchange, Reading::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Local(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Inner::Local(None) => SizeHint::with_exact(0),
            // The exchange may rewrite or hold the answer.
            Inner::Upstream { .. } => SizeHint::default(),
        }
    }
}

impl Drop for GuardedBody {
    /// The client left before the answer ended: the exchange settles as
    /// cut (its reservation is not left to expire).
    fn drop(&mut self) {
        let Inner::Upstream { exchange, .. } = &mut self.0 else { return };
        match std::mem::replace(exchange, Reading::Done) {
            Reading::Idle(Some(exchange)) => spawn((*exchange).finish()),
            Reading::Busy(step) => spawn(async move {
                let (exchange, _, _) = step.await;
                (*exchange).finish().await;
            }),
            Reading::Idle(None) | Reading::Done => {}
        }
    }
}

fn spawn(settling: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(settling);
    }
}

/// The request's headers as the classifiers read them: lowercase names,
/// values that are UTF-8, and the `:method`, `:path` and `:authority`
/// pseudo-headers.
fn header_map(parts: &axum::http::request::Parts) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str().to_owned(), v.to_owned())))
        .collect();
    map.insert(":method".into(), parts.method.as_str().to_owned());
    map.insert(":path".into(), parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned());
    if let Some(authority) = parts.uri.authority().map(|a| a.as_str()).or_else(|| map.get("host").map(String::as_str)) {
        map.insert(":authority".into(), authority.to_owned());
    }
    map
}

/// Sets (overwriting) and removes headers; a name or value that is not a
/// valid header is never one of ours, so it is skipped.
fn mutate(headers: &mut HeaderMap, set: Vec<(String, String)>, remove: &[String]) {
    for name in remove {
        headers.remove(name.as_str());
    }
    for (name, value) in set {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            headers.insert(name, value);
        }
    }
}

/// A refusal as the client reads it; MCP errors keep status 200, in band.
fn local_reply(refusal: Refusal) -> Response<GuardedBody> {
    let Refusal { status, in_band, headers, body } = refusal;
    let status = if in_band { StatusCode::OK } else { StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN) };
    let mut response = Response::new(GuardedBody(Inner::Local(Some(Bytes::from(body)))));
    *response.status_mut() = status;
    mutate(response.headers_mut(), headers, &[]);
    response
}
