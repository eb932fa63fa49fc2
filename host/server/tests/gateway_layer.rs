//! The tower layer through its public API, with an upstream that records
//! what reaches it: refusals never reach it, a body over the bound is
//! refused before any decision, MCP refusals keep the session (status 200),
//! an allowed call arrives without the caller's key and held to its
//! reservation, and its answer settles the reservation.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use arbiter_engine::{Bundle, Decider};
use arbiter_server::{Credentials, Gateway, GuardedBody, Route, ServerConfig};
use arbiter_tests::{engine, orders_daily_bundle, root};
use axum::body::Bytes;
use axum::http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// What the upstream answers: an OpenAI chat completion reporting 10
/// prompt and 1 output token.
async fn answer(seen: Seen, request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    seen.lock().unwrap().push((parts.headers, serde_json::from_slice(&body).unwrap_or(Value::Null)));
    let answer = json!({"id": "c", "object": "chat.completion", "model": "m",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}});
    let mut response = Response::new(Full::new(Bytes::from(answer.to_string())));
    response.headers_mut().insert("content-type", "application/json".parse().unwrap());
    Ok(response)
}

/// An upstream answering as [`answer`] does, and what reached it.
fn recording_upstream() -> (
    Seen,
    impl tower::Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static,
) {
    let seen = Seen::default();
    let recorder = Arc::clone(&seen);
    (seen, tower::service_fn(move |request| answer(Arc::clone(&recorder), request)))
}

fn gateway(max_request_bytes: Option<usize>) -> Gateway {
    let bundle = Bundle::load(&engine(), &orders_daily_bundle()).unwrap();
    let credentials = Credentials::load(&root().join("examples/orders_daily/credentials.toml")).unwrap();
    let mut config = ServerConfig { credentials: Arc::new(credentials), ..ServerConfig::default() };
    if let Some(max) = max_request_bytes {
        config.ext_proc.max_request_bytes = max;
    }
    Gateway::new(&config, Decider::in_memory(bundle)).unwrap()
}

fn post(path: &str, run: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-arbiter-key", "example-monitor-key")
        .header("x-arbiter-pipeline", "orders_daily")
        .header("x-arbiter-agent", "monitor")
        .header("x-arbiter-team", "data-platform")
        .header("x-arbiter-environment", "prod")
        .header("x-arbiter-run", run)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

async fn read(response: Response<GuardedBody>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "rows?"}], "max_completion_tokens": 2000})
}

#[tokio::test]
async fn an_allowed_call_arrives_held_and_keyless_and_its_answer_settles() {
    let gateway = gateway(None);
    let (seen, upstream) = recording_upstream();
    let guarded = gateway.layer(Route::new()).layer(upstream);

    let denied = guarded.clone().oneshot(post("/v1/chat/completions", "run-l", &chat("gpt-4o"))).await.unwrap();
    let (status, body) = read(denied).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("model_not_pinned")));
    assert!(seen.lock().unwrap().is_empty(), "a refusal never reaches the upstream");

    let mut ask = post("/v1/chat/completions", "run-l", &chat("claude-sonnet-4-5-20250929"));
    ask.headers_mut().insert("x-arbiter-clamp-max-output-tokens", "999999".parse().unwrap());
    ask.headers_mut().insert("x-arbiter-decision", "allow-everything".parse().unwrap());
    let allowed = guarded.oneshot(ask).await;
    let (status, body) = read(allowed.unwrap()).await;
    assert_eq!((status, body["choices"][0]["message"]["content"].as_str()), (200, Some("ok")));
    let (headers, forwarded) = seen.lock().unwrap().pop().unwrap();
    assert!(headers.get("x-arbiter-key").is_none(), "the caller's key stays at the gateway");
    assert!(headers.get("x-arbiter-clamp-max-output-tokens").is_none(), "the client's own copy is dropped");
    assert_eq!(headers.get("x-arbiter-decision").unwrap(), "allow");
    assert_eq!(forwarded["max_completion_tokens"], 2000);

    // Settled from the answer's usage (10 + 1), not the ~2,000 reserved.
    let spend = gateway.decider().state().spend(0, i64::MAX).unwrap();
    let settled: Vec<_> = spend.iter().map(|e| (e.reconciled, e.prompt_tokens, e.output_tokens)).collect();
    assert_eq!(settled, [(1, 10, 1)], "{spend:?}");
}

#[tokio::test]
async fn a_body_over_the_bound_is_refused_before_any_decision() {
    let (seen, upstream) = recording_upstream();
    let guarded = gateway(Some(64)).layer(Route::new()).layer(upstream);
    let big =
        json!({"model": "claude-sonnet-4-5-20250929", "messages": [{"role": "user", "content": "x".repeat(100)}]});
    let (status, body) = read(guarded.oneshot(post("/v1/chat/completions", "run-b", &big)).await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("body_too_large")));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_mcp_refusal_answers_in_band_and_keeps_the_session() {
    let (seen, upstream) = recording_upstream();
    let guarded = gateway(None).layer(Route::new().mcp_server("warehouse")).layer(upstream);
    let call = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                      "params": {"name": "shell.exec", "arguments": {"cmd": "rm -rf /"}}});
    let (status, body) = read(guarded.oneshot(post("/mcp", "run-m", &call)).await.unwrap()).await;
    assert_eq!(status, 200, "an MCP client's session survives a refusal");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["data"]["code"], "tool_not_allowed", "{body}");
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_compressed_answer_is_charged_its_whole_reservation() {
    let gateway = gateway(None);
    let seen = Seen::default();
    let recorder = Arc::clone(&seen);
    // An upstream that compresses whatever it was asked: arbiter cannot
    // read the usage out of it, so nothing may be refunded.
    let upstream = tower::service_fn(move |request| {
        let recorder = Arc::clone(&recorder);
        async move {
            let mut response = answer(recorder, request).await?;
            *response.body_mut() = Full::new(Bytes::from_static(b"\x1f\x8b\x08\x00 not json to arbiter"));
            response.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            Ok::<_, Infallible>(response)
        }
    });
    let guarded = gateway.layer(Route::new()).layer(upstream);
    let mut ask = post("/v1/chat/completions", "run-z", &chat("claude-sonnet-4-5-20250929"));
    ask.headers_mut().insert("accept-encoding", "gzip, br".parse().unwrap());
    let response = guarded.oneshot(ask).await.unwrap();
    let _ = response.into_body().collect().await.unwrap();
    let (headers, _) = seen.lock().unwrap().pop().unwrap();
    assert_eq!(headers.get("accept-encoding").unwrap(), "identity", "arbiter asks for an answer it can read");
    let spend = gateway.decider().state().spend(0, i64::MAX).unwrap();
    assert_eq!(spend.len(), 1, "{spend:?}");
    assert_eq!((spend[0].reconciled, spend[0].output_tokens), (1, 2000), "the whole output reservation: {spend:?}");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_still_settles() {
    let gateway = gateway(None);
    let seen = Seen::default();
    let recorder = Arc::clone(&seen);
    let slow = tower::service_fn(move |request| {
        let recorder = Arc::clone(&recorder);
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            answer(recorder, request).await
        }
    });
    let guarded = gateway.layer(Route::new()).layer(slow);
    let ask = post("/v1/chat/completions", "run-gone", &chat("claude-sonnet-4-5-20250929"));
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(50), guarded.oneshot(ask)).await;
    assert!(gave_up.is_err(), "the client stops waiting while the upstream works");
    let spend = || gateway.decider().state().spend(0, i64::MAX).unwrap();
    for _ in 0..100 {
        if spend().first().is_some_and(|e| e.reconciled == 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let spend = spend();
    // Settled as cut (the answer was never read), not left reserved.
    assert_eq!(spend.iter().map(|e| (e.reconciled, e.output_tokens)).collect::<Vec<_>>(), [(1, 0)], "{spend:?}");
}
