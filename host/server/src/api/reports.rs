//! `POST /v1/usage`, `POST /v1/outcomes`, `GET /v1/report`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use super::auth::require_admin;
use super::decide::{accepted, parse_body};
use crate::state::{AppState, now_ms};
use arbiter_engine::ReportError;
use arbiter_state::{OutcomeStatus, SpendDimension, aggregate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Usage {
    id: String,
    prompt_tokens: u64,
    output_tokens: u64,
    /// When it happened (RFC 3339); now if absent. Lets a gateway report
    /// late, and traces replay on their own clock.
    #[serde(default)]
    at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Outcome {
    id: String,
    status: OutcomeStatus,
    #[serde(default)]
    latency_ms: Option<u64>,
    #[serde(default)]
    at: Option<String>,
}

fn event_time(at: Option<&str>) -> Result<i64, ApiError> {
    match at {
        None => Ok(now_ms()),
        Some(text) => arbiter_types::parse_rfc3339_ms(text).map_err(|e| ApiError::bad_request(format!("at: {e}"))),
    }
}

fn report_error(e: ReportError) -> ApiError {
    match e {
        ReportError::State(e) => e.into(),
        other => ApiError::new(StatusCode::NOT_FOUND, "no_such_request", other.to_string()),
    }
}

/// Runs a state operation off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", e.to_string()))
}

pub(crate) async fn usage(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let usage: Usage = parse_body(&body?)?;
    let at = event_time(usage.at.as_deref())?;
    let decider = state.decider.clone();
    let tokens = usage.prompt_tokens.saturating_add(usage.output_tokens);
    let result =
        state.bounded(move || decider.report_usage(&usage.id, usage.prompt_tokens, usage.output_tokens, at)).await?;
    state.metrics.usage(result.is_ok(), tokens);
    result.map(|()| accepted()).map_err(report_error)
}

pub(crate) async fn outcome(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let outcome: Outcome = parse_body(&body?)?;
    let at = event_time(outcome.at.as_deref())?;
    let decider = state.decider.clone();
    let result =
        state.bounded(move || decider.report_outcome(&outcome.id, outcome.status, outcome.latency_ms, at)).await?;
    result.map(|()| accepted()).map_err(report_error)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    since: String,
    #[serde(default)]
    until: Option<String>,
    #[serde(default = "by_pipeline")]
    by: SpendDimension,
}

fn by_pipeline() -> SpendDimension {
    SpendDimension::Pipeline
}

fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    arbiter_types::parse_day_or_rfc3339_ms(text).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

/// Spend per pipeline, agent, team or model (admin: it spans tenants).
pub(crate) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = parse_time("since", &query.since)?;
    let until = match &query.until {
        Some(text) => parse_time("until", text)?,
        None => now_ms(),
    };
    let decider = state.decider.clone();
    let entries = blocking(move || decider.state().spend(since, until)).await??;
    let rows = aggregate(&entries, query.by, &Default::default());
    Ok(Json(serde_json::to_value(rows).unwrap_or(Value::Null)))
}
