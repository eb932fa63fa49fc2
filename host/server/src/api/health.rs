//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::reports::blocking;
use crate::config::Clock;
use crate::state::{AppState, now_ms};
use arbiter_state::StateError;

pub(crate) async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the bundle is loaded and the state store answers.
pub(crate) async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let bundle = state.decider.bundle();
    let decider = state.decider.clone();
    let store = blocking(move || {
        let probe = ("arbiter:readiness", arbiter_types::Window::Run, arbiter_types::ChargeUnit::Tokens);
        decider.state().used(probe.0, probe.1, probe.2, now_ms()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.message)
    .and_then(|checked| checked);
    state.metrics.state_up(store.is_ok());
    let mut body = json!({
        "bundle": {"name": bundle.name(), "version": bundle.version(), "policies": bundle.policies().count()},
        "state": if store.is_ok() { "ok" } else { "unavailable" },
        // How far callers are trusted, for operators and `arbiter readiness`.
        "clock": match state.clock { Clock::Server => "server", Clock::Request { .. } => "request" },
        "anonymous": state.credentials.anonymous,
        "audit": state.audit.as_ref().map(|audit| json!({
            "signed": audit.signed(),
            "required": audit.required(),
            "last_write": if audit.failing() { "failed" } else { "ok" },
        })),
    });
    if let Err(e) = &store {
        body["state_error"] = e.clone().into();
    }
    let status = if store.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = now_ms();
    let decider = state.decider.clone();
    let day = now - now.rem_euclid(86_400_000);
    let read =
        blocking(move || Ok::<_, StateError>((decider.state().gauges(now)?, decider.state().spend(day, now + 1)?)));
    match read.await {
        Ok(Ok((gauges, spend))) => {
            state.metrics.state_up(true);
            state.metrics.refresh(&gauges, &spend);
        }
        Ok(Err(e)) => {
            state.metrics.state_up(false);
            tracing::warn!("metrics without state gauges: {e}");
        }
        Err(e) => tracing::warn!("metrics without state gauges: {}", e.message),
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
