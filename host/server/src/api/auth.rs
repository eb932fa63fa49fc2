//! Authentication (`Authorization: Bearer <key>`) and roles.

use std::sync::Arc;

use arbiter_types::Principal;
use axum::http::{HeaderMap, StatusCode};

use super::ApiError;
use crate::credentials::{ANONYMOUS, Credential, Credentials, Role};
use crate::state::AppState;

/// Who asked, once authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Credential(Arc<Credential>),
    /// No key, and the operator allows anonymous decisions (local demo).
    Anonymous,
}

impl Caller {
    /// Whose decisions these are: reports are taken only from their owner.
    pub(crate) fn owner(&self) -> &str {
        match self {
            Caller::Credential(c) => &c.name,
            Caller::Anonymous => ANONYMOUS,
        }
    }

    /// Refuses a principal outside the caller's grant (anonymous callers
    /// have none: the operator chose to trust them).
    pub(crate) fn check_principal(&self, principal: &Principal) -> Result<(), ApiError> {
        let Caller::Credential(credential) = self else { return Ok(()) };
        let Some(grant) = credential.grant() else {
            return Err(lacks(credential, Role::Decide));
        };
        grant.check(principal).map_err(|outside| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "principal_not_granted",
                format!("credential `{}` may not act as {outside}", credential.name),
            )
        })
    }
}

/// The bearer key of a request, if it sent one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// The credential a key names; an unknown key is refused even where
/// anonymous callers are allowed.
pub(crate) fn identify(credentials: &Credentials, key: Option<&str>) -> Result<Caller, ApiError> {
    match key {
        Some(key) => credentials.authenticate(key).map(Caller::Credential).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the key is not one of this server's credentials",
            )
        }),
        None if credentials.anonymous => Ok(Caller::Anonymous),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing `Authorization: Bearer <key>` (anonymous calls are off)",
        )),
    }
}

pub(crate) fn lacks(credential: &Credential, role: Role) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("credential `{}` lacks the `{}` role", credential.name, role.as_str()),
    )
}

/// A caller with one of `roles`, or an anonymous one where the operator
/// allows them (deciding and reporting only).
pub(crate) fn require_any(state: &AppState, headers: &HeaderMap, roles: &[Role]) -> Result<Caller, ApiError> {
    let caller = identify(&state.credentials, bearer(headers))?;
    match &caller {
        Caller::Credential(c) if !roles.iter().any(|r| c.has(*r)) => {
            Err(lacks(c, roles.first().copied().unwrap_or(Role::Decide)))
        }
        _ => Ok(caller),
    }
}

/// A credential with `role`; never anonymous.
pub(crate) fn require(state: &AppState, headers: &HeaderMap, role: Role) -> Result<Arc<Credential>, ApiError> {
    match identify(&state.credentials, bearer(headers))? {
        Caller::Credential(c) if c.has(role) => Ok(c),
        Caller::Credential(c) => Err(lacks(&c, role)),
        Caller::Anonymous => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            format!("the `{}` role needs `Authorization: Bearer <key>`", role.as_str()),
        )),
    }
}

/// Admin endpoints.
pub(crate) fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<Arc<Credential>, ApiError> {
    require(state, headers, Role::Admin)
}
