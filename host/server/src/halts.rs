//! Halting and resuming (the kill switch), shared by the API and the
//! console: who may, and the audit record of each change.
//!
//! Any on-call credential (approve or admin) may halt: stopping an agent is
//! the safe direction and must not wait for an admin. Only an admin may
//! resume, since resuming lets a stopped agent act again.

use arbiter_state::{Halt, HaltScope};
use axum::http::StatusCode;
use serde_json::json;

use crate::api::{ApiError, blocking};
use crate::credentials::{Credential, Role};
use crate::state::{AppState, now_ms};

/// Longest reason kept with a halt.
const MAX_REASON_BYTES: usize = 1024;

fn scope_of(text: &str) -> Result<HaltScope, ApiError> {
    HaltScope::parse(text).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_scope", e.to_string()))
}

pub(crate) fn may_halt(credential: &Credential) -> bool {
    credential.has(Role::Admin) || credential.has(Role::Approve)
}

pub(crate) fn may_resume(credential: &Credential) -> bool {
    credential.has(Role::Admin)
}

fn refused(credential: &Credential, what: &str, roles: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("credential `{}` may not {what}: it needs the {roles} role", credential.name),
    )
}

/// Every halt in force.
pub(crate) async fn list(state: &AppState) -> Result<Vec<Halt>, ApiError> {
    let decider = state.decider.clone();
    Ok(blocking(move || decider.state().halts()).await??)
}

pub(crate) async fn halt(state: &AppState, by: &Credential, scope: &str, reason: &str) -> Result<Halt, ApiError> {
    if !may_halt(by) {
        return Err(refused(by, "halt", "approve or admin"));
    }
    let scope = scope_of(scope)?;
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            format!("reason: say why, in 1 to {MAX_REASON_BYTES} bytes"),
        ));
    }
    let halt = Halt { scope, reason: reason.to_owned(), by: by.name.clone(), at_ms: now_ms() };
    let (decider, set) = (state.decider.clone(), halt.clone());
    blocking(move || decider.state().halt(set)).await??;
    state.metrics.halt_event("halted");
    state.audit_event("halted", json!({"scope": halt.scope, "reason": halt.reason, "by": halt.by}));
    Ok(halt)
}

pub(crate) async fn resume(state: &AppState, by: &Credential, scope: &str) -> Result<(), ApiError> {
    if !may_resume(by) {
        return Err(refused(by, "resume", "admin"));
    }
    let scope = scope_of(scope)?;
    let (decider, lift) = (state.decider.clone(), scope.clone());
    if !blocking(move || decider.state().resume(&lift)).await?? {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_halted", format!("`{scope}` is not halted")));
    }
    state.metrics.halt_event("resumed");
    state.audit_event("resumed", json!({"scope": scope, "by": by.name}));
    Ok(())
}
