//! `POST /v1/decide`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::ApiError;
use super::auth::require_any;
use crate::credentials::Role;
use crate::state::{AppState, public_decision};

pub(crate) async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = require_any(&state, &headers, &[Role::Decide])?;
    let body = body?;
    let request = arbiter_types::Request::from_json_slice(&body).map_err(|e| {
        let mut error = ApiError::bad_request(e.to_string());
        if e.path().is_some() {
            error.code = "invalid_field";
        }
        error
    })?;
    caller.check_principal(&request.principal)?;
    let at = state.event_time(request.timestamp_ms, "timestamp")?;
    let decision = state.try_decide(request, &caller, at, "api").await?;
    Ok(Json(public_decision(&decision)))
}

/// Reads a JSON body into `T`, naming the field at fault.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("body is not valid UTF-8 JSON: {inner}"))
        } else {
            let message = inner.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message);
            ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_field", format!("{path}: {message}"))
        }
    })
}

pub(crate) fn accepted() -> Json<Value> {
    Json(json!({"accepted": true}))
}
