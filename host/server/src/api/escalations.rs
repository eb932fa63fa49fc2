//! `GET /v1/escalations`, `POST /v1/escalations/{id}/approve|reject`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::auth::{Caller, bearer, identify, lacks, require};
use super::decide::parse_body;
use super::reports::blocking;
use crate::credentials::{Credential, Role};
use crate::state::{AppState, now_ms};
use arbiter_engine::ReportError;
use arbiter_state::{Escalation, EscalationRefused, EscalationStatus};

/// Every escalation for an admin; for an approver, those it may decide.
pub(crate) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let credential = match identify(&state.credentials, bearer(&headers))? {
        Caller::Credential(c) if c.has(Role::Admin) || c.has(Role::Approve) => c,
        _ => require(&state, &headers, Role::Approve)?,
    };
    let now = now_ms();
    let escalations: Vec<Value> = visible(&state, &credential)
        .await?
        .into_iter()
        .map(|e| {
            let expired = e.status == EscalationStatus::Pending && now >= e.expires_ms;
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            v["expires_at"] = arbiter_types::format_rfc3339_ms(e.expires_ms).into();
            if expired {
                v["status"] = json!({"status": "expired"});
            }
            v
        })
        .collect();
    Ok(Json(json!({"escalations": escalations})))
}

/// Every escalation for an admin; for an approver, those naming it.
pub(crate) async fn visible(state: &AppState, credential: &Credential) -> Result<Vec<Escalation>, ApiError> {
    let decider = state.decider.clone();
    let all = blocking(move || decider.state().escalations()).await??;
    Ok(all.into_iter().filter(|e| credential.has(Role::Admin) || credential.is_among(&e.approvers)).collect())
}

/// The approver is the credential, never a field of the body.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    /// Why, for the audit log.
    #[serde(default)]
    comment: Option<String>,
}

pub(crate) async fn resolve(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let approver = require(&state, &headers, Role::Approve)?;
    let approve = approving(&action)?;
    let body = body?;
    let resolve: ResolveBody = if body.is_empty() { ResolveBody::default() } else { parse_body(&body)? };
    let escalation = resolve_as(&state, &approver, &id, approve, resolve.comment).await?;
    Ok(Json(serde_json::to_value(escalation).unwrap_or(Value::Null)))
}

/// Whether the path's action approves (`approve`) or rejects (`reject`).
pub(crate) fn approving(action: &str) -> Result<bool, ApiError> {
    match action {
        "approve" => Ok(true),
        "reject" => Ok(false),
        other => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no action `{other}`: approve or reject")))
        }
    }
}

/// Approves or rejects `id` as `approver`, who must hold the approve role
/// and be among the escalation's approvers; audited.
pub(crate) async fn resolve_as(
    state: &AppState,
    approver: &Credential,
    id: &str,
    approve: bool,
    comment: Option<String>,
) -> Result<Escalation, ApiError> {
    if !approver.has(Role::Approve) {
        return Err(lacks(approver, Role::Approve));
    }
    let id = id.to_owned();
    let by = approver.name.clone();
    let decider = state.decider.clone();
    let (lookup, id_for_lookup) = (decider.clone(), id.clone());
    match blocking(move || lookup.state().escalation(&id_for_lookup)).await?? {
        None => return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no escalation `{id}`"))),
        Some(escalation) if !approver.is_among(&escalation.approvers) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not_an_approver",
                format!(
                    "credential `{by}` is not among the approvers of `{id}` ({}); approvers are credential names or groups",
                    escalation.approvers.join(", ")
                ),
            ));
        }
        Some(_) => {}
    }
    let (id_for_task, by_for_task) = (id.clone(), by.clone());
    let result = blocking(move || decider.resolve_escalation(&id_for_task, approve, &by_for_task, now_ms())).await?;
    match result {
        Ok(escalation) => {
            state.metrics.escalation_event(if approve { "approved" } else { "rejected" });
            state.audit_event(
                "escalation_resolved",
                json!({"escalation_id": id, "approved": approve, "by": by, "request_id": escalation.request_id,
                       "comment": comment}),
            );
            Ok(escalation)
        }
        Err(ReportError::State(e)) => Err(e.into()),
        Err(ReportError::Escalation(EscalationRefused::Unknown(id))) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no escalation `{id}`")))
        }
        Err(other) => Err(ApiError::new(StatusCode::CONFLICT, "conflict", other.to_string())),
    }
}
