//! `POST /v1/usage`, `POST /v1/outcomes`, `GET /v1/report`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::ApiError;
use super::Caller;
use super::auth::{require_admin, require_any};
use super::decide::{accepted, parse_body};
use crate::credentials::Role;
use crate::state::{AppState, now_ms};
use arbiter_engine::ReportError;
use arbiter_state::{OutcomeRejected, OutcomeStatus, SpendDimension, UsageRejected, aggregate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Usage {
    id: String,
    prompt_tokens: u64,
    output_tokens: u64,
    /// When it happened (RFC 3339): recorded, and used only under the
    /// request clock (replays); the server's clock otherwise.
    #[serde(default)]
    at: Option<String>,
    /// Whose decision it is, for a `report` credential reporting another
    /// credential's decisions; the caller's own otherwise.
    #[serde(default)]
    owner: Option<String>,
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
    #[serde(default)]
    owner: Option<String>,
}

/// The report's time (see [`AppState::event_time`]).
fn report_time(state: &AppState, at: Option<&str>) -> Result<i64, ApiError> {
    let given =
        at.map(arbiter_types::parse_rfc3339_ms).transpose().map_err(|e| ApiError::bad_request(format!("at: {e}")))?;
    state.event_time(given, "at")
}

/// Whose decision a report is about: the caller's own, or with the
/// `report` role any named owner's.
fn report_owner(state: &AppState, headers: &HeaderMap, owner: Option<String>) -> Result<String, ApiError> {
    let caller = require_any(state, headers, &[Role::Decide, Role::Report])?;
    match (owner, &caller) {
        (None, _) => Ok(caller.owner().to_owned()),
        (Some(owner), Caller::Credential(c)) if c.has(Role::Report) => Ok(owner),
        (Some(owner), _) if owner == caller.owner() => Ok(owner),
        (Some(_), _) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("`{}` may report only its own decisions: `owner` needs the `report` role", caller.owner()),
        )),
    }
}

fn report_error(e: ReportError) -> ApiError {
    match e {
        ReportError::State(e) => e.into(),
        ReportError::Usage(UsageRejected::AlreadyReported(_))
        | ReportError::Outcome(OutcomeRejected::AlreadyReported(_)) => {
            ApiError::new(StatusCode::CONFLICT, "already_reported", e.to_string())
        }
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
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let usage: Usage = parse_body(&body?)?;
    let owner = report_owner(&state, &headers, usage.owner)?;
    let at = report_time(&state, usage.at.as_deref())?;
    let decider = state.decider.clone();
    let tokens = usage.prompt_tokens.saturating_add(usage.output_tokens);
    let result = state
        .bounded(move || decider.report_usage_as(&owner, &usage.id, usage.prompt_tokens, usage.output_tokens, at))
        .await?;
    state.metrics.usage(result.is_ok(), tokens);
    result.map(|()| accepted()).map_err(report_error)
}

pub(crate) async fn outcome(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let outcome: Outcome = parse_body(&body?)?;
    let owner = report_owner(&state, &headers, outcome.owner)?;
    let at = report_time(&state, outcome.at.as_deref())?;
    let decider = state.decider.clone();
    let result = state
        .bounded(move || decider.report_outcome_as(&owner, &outcome.id, outcome.status, outcome.latency_ms, at))
        .await?;
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
