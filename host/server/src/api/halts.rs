//! `GET /v1/halts`, `POST /v1/halts` (halt a scope), `POST
//! /v1/halts/resume`: the kill switch ([`crate::halts`]).
//!
//! Scopes travel in the JSON body, never in the path, so no layer
//! percent-decodes or normalises them before they are compared.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::auth::{Caller, bearer, identify, require};
use super::decide::parse_body;
use crate::credentials::{Credential, Role};
use crate::halts;
use crate::state::AppState;

/// An authenticated credential (never anonymous): roles are checked by
/// the operation.
fn credential(state: &AppState, headers: &HeaderMap) -> Result<std::sync::Arc<Credential>, ApiError> {
    match identify(&state.credentials, bearer(headers))? {
        Caller::Credential(c) => Ok(c),
        Caller::Anonymous => require(state, headers, Role::Approve),
    }
}

pub(crate) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let by = credential(&state, &headers)?;
    if !halts::may_halt(&by) {
        return Err(super::auth::lacks(&by, Role::Approve));
    }
    let halts: Vec<Value> = halts::list(&state)
        .await?
        .into_iter()
        .map(|h| {
            json!({"scope": h.scope, "reason": h.reason, "by": h.by, "at": arbiter_types::format_rfc3339_ms(h.at_ms)})
        })
        .collect();
    Ok(Json(json!({"halts": halts})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HaltBody {
    scope: String,
    reason: String,
}

pub(crate) async fn halt(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let by = credential(&state, &headers)?;
    let body: HaltBody = parse_body(&body?)?;
    let halt = halts::halt(&state, &by, &body.scope, &body.reason).await?;
    Ok(Json(json!({"halted": halt.scope, "by": halt.by, "reason": halt.reason})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    scope: String,
}

pub(crate) async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let by = credential(&state, &headers)?;
    let body: ResumeBody = parse_body(&body?)?;
    halts::resume(&state, &by, &body.scope).await?;
    Ok(Json(json!({"resumed": body.scope})))
}
