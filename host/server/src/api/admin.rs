//! `GET /v1/admin/bundles`, `POST /v1/admin/bundles` (load and activate),
//! `POST /v1/admin/rollback`, `GET /v1/admin/settings` (the effective
//! settings `arbiter readiness --server` scores).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::auth::require_admin;
use super::decide::parse_body;
use super::reports::blocking;
use crate::bundles::{Bundles, LoadError, Swapped};
use crate::state::AppState;

pub(crate) fn bundles(state: &AppState) -> Result<&std::sync::Arc<Bundles>, ApiError> {
    state
        .bundles
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "bundle reload is not enabled"))
}

pub(crate) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let mut history = bundles(&state)?.list();
    let active = history.pop();
    history.reverse();
    Ok(Json(json!({"active": active, "previous": history})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Load {
    /// Path of the bundle manifest, relative to the server's bundle
    /// directory.
    manifest: std::path::PathBuf,
}

fn load_error(error: LoadError) -> ApiError {
    let (status, code) = match &error {
        LoadError::OutsideBundleDir => (StatusCode::FORBIDDEN, "manifest_outside_bundle_dir"),
        LoadError::Unreadable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "manifest_not_found"),
        LoadError::NotAManifest => (StatusCode::UNPROCESSABLE_ENTITY, "manifest_not_a_toml_file"),
        LoadError::BundleDir(_) => (StatusCode::INTERNAL_SERVER_ERROR, "bundle_dir_unavailable"),
        LoadError::Rejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bundle_rejected"),
        LoadError::NotNewer { .. } => (StatusCode::CONFLICT, "version_not_newer"),
    };
    ApiError::new(status, code, error.to_string())
}

pub(crate) async fn load(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let load: Load = parse_body(&body?)?;
    let (registry, decider) = (bundles(&state)?.clone(), state.decider.clone());
    let outcome = blocking(move || registry.load(&decider, &load.manifest)).await?;
    state.metrics.bundle_load(outcome.is_ok());
    match outcome {
        Ok(swapped) => {
            state.audit_event("bundle_activated", json!({"active": swapped.active, "previous": swapped.previous}));
            Ok(Json(serde_json::to_value(swapped).unwrap_or(Value::Null)))
        }
        Err(problem) => {
            tracing::warn!("bundle rejected, the active bundle keeps serving: {problem}");
            Err(load_error(problem))
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Rollback {
    /// A kept bundle version; the previous one when absent.
    #[serde(default)]
    to: Option<String>,
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let body = body?;
    let rollback: Rollback = if body.is_empty() { Rollback::default() } else { parse_body(&body)? };
    let swapped = rollback_to(&state, rollback.to.as_deref())?;
    Ok(Json(serde_json::to_value(swapped).unwrap_or(Value::Null)))
}

/// Re-activates a kept bundle (the previous one when `to` is `None`),
/// audited. The caller has checked the admin role.
pub(crate) fn rollback_to(state: &AppState, to: Option<&str>) -> Result<Swapped, ApiError> {
    match bundles(state)?.rollback(&state.decider, to) {
        Ok(swapped) => {
            state.audit_event("bundle_rolled_back", json!({"active": swapped.active, "previous": swapped.previous}));
            Ok(swapped)
        }
        Err(problem) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", problem)),
    }
}

/// The server's effective settings: whether each thing readiness scores is
/// configured, and counts; never a key, token, URL or path.
pub(crate) async fn settings(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    require_admin(&state, &headers)?;
    let bundle = state.decider.bundle();
    let mut facts = (*state.facts).clone();
    facts.bundle = Some((bundle.name().to_owned(), bundle.version().to_owned()));
    Ok(Json(serde_json::to_value(facts).unwrap_or(Value::Null)))
}
