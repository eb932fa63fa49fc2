//! The active bundle, the ones kept before it, and rollback (admin).

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::html::{button_form, esc, page, refused_button};
use super::{Refusal, actor, done, notice};
use crate::api::admin::{bundles, rollback_to};
use crate::api::lacks;
use crate::credentials::Role;
use crate::state::AppState;

pub(crate) async fn view(
    State(state): State<AppState>,
    session: super::Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let active = state.decider.bundle();
    let mut body = notice(&query);
    let _ = write!(
        body,
        "<p id=\"active\">Active: <strong>{} {}</strong> ({} policies)</p>",
        esc(active.name()),
        esc(active.version()),
        active.policies().count()
    );
    let Ok(registry) = bundles(&state) else {
        body.push_str("<p>Bundle reload is not enabled on this server.</p>");
        return Ok(page("Bundles", Some(&session), &body));
    };
    let admin = session.credential.has(Role::Admin);
    body.push_str(
        "<h2>History (newest first)</h2><table id=\"history\"><tr><th>Bundle</th><th>Manifest</th><th></th></tr>",
    );
    let history = registry.list();
    for (i, kept) in history.iter().enumerate().rev() {
        let action = if i + 1 == history.len() {
            "active".to_owned()
        } else if admin {
            button_form(&session, "/ui/bundles/rollback", &[("to", &kept.version)], "Roll back to this", "danger")
        } else {
            refused_button("Roll back", &format!("credential `{}` lacks the `admin` role", session.credential.name))
        };
        let _ = write!(
            body,
            "<tr class=\"kept\" data-version=\"{1}\"><td>{0} {1}</td><td><code>{2}</code></td><td>{action}</td></tr>",
            esc(&kept.name),
            esc(&kept.version),
            esc(&kept.manifest.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()),
        );
    }
    body.push_str("</table>");
    Ok(page("Bundles", Some(&session), &body))
}

#[derive(Deserialize)]
pub(crate) struct RollbackForm {
    csrf: String,
    #[serde(default)]
    to: Option<String>,
}

pub(crate) async fn rollback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<RollbackForm>,
) -> Result<Response, Refusal> {
    let session = actor(&state, &headers, &form.csrf)?;
    if !session.credential.has(Role::Admin) {
        return Err(lacks(&session.credential, Role::Admin).into());
    }
    let swapped = rollback_to(&state, form.to.as_deref().filter(|v| !v.is_empty()))?;
    Ok(done("/ui/bundles", &format!("rolled back to {} {}", swapped.active.name, swapped.active.version)))
}
