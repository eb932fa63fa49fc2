//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::state::{AppState, now_ms};

pub(crate) async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when the bundle is loaded and the state store answers.
pub(crate) async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let bundle = state.decider.bundle();
    let store = state.decider.state().used(
        "arbiter:readiness",
        arbiter_types::Window::Run,
        arbiter_types::ChargeUnit::Tokens,
        now_ms(),
    );
    let body = json!({
        "bundle": {"name": bundle.name(), "version": bundle.version(), "policies": bundle.policies().count()},
        "state": if store.is_ok() { "ok" } else { "unavailable" },
    });
    let status = if store.is_ok() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = now_ms();
    let store = state.decider.state();
    let day = now - now.rem_euclid(86_400_000);
    match (store.gauges(now), store.spend(day, now + 1)) {
        (Ok(gauges), Ok(spend)) => state.metrics.refresh(&gauges, &spend),
        (Err(e), _) | (_, Err(e)) => tracing::warn!("metrics without state gauges: {e}"),
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
