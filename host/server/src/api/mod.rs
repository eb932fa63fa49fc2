//! The HTTP JSON API.

pub(crate) mod admin;
pub(crate) mod auth;
mod decide;
mod error;
pub(crate) mod escalations;
mod halts;
mod health;
mod reports;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get, post};

use crate::state::AppState;

pub(crate) use auth::{Caller, lacks};
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
        .route("/v1/halts", get(halts::list).post(halts::halt))
        .route("/v1/halts/resume", post(halts::resume))
        .route("/v1/admin/bundles", get(admin::list).post(admin::load))
        .route("/v1/admin/rollback", post(admin::rollback))
        .route("/v1/admin/settings", get(admin::settings))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/ext_authz", any(crate::ext_authz::http::check))
        .route("/ext_authz/{*path}", any(crate::ext_authz::http::check))
        .merge(crate::console::router())
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}
