//! The HTTP JSON API.

mod admin;
pub(crate) mod auth;
mod decide;
mod error;
mod escalations;
mod health;
mod reports;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};

use crate::state::AppState;

pub(crate) use auth::Caller;
pub(crate) use error::ApiError;
pub(crate) use reports::blocking;

pub(crate) fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/decide", post(decide::decide))
        .route("/v1/usage", post(reports::usage))
        .route("/v1/outcomes", post(reports::outcome))
        .route("/v1/report", get(reports::report))
        .route("/v1/escalations", get(escalations::list))
        .route("/v1/escalations/{id}/{action}", post(escalations::resolve))
        .route("/v1/admin/bundles", get(admin::list).post(admin::load))
        .route("/v1/admin/rollback", post(admin::rollback))
        .route("/v1/admin/settings", get(admin::settings))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/ext_authz", any(crate::ext_authz::http::check))
        .route("/ext_authz/{*path}", any(crate::ext_authz::http::check))
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
