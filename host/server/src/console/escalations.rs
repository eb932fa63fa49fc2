//! Pending escalations, newest first, with approve and reject; then the
//! decided ones, with who decided and when.

use std::collections::HashMap;
use std::fmt::Write;

use arbiter_state::{Escalation, EscalationStatus};
use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::html::{button_form, esc, page, refused_button, time};
use super::{Refusal, actor, done, notice};
use crate::api::escalations::{approving, resolve_as, visible};
use crate::credentials::{Credential, Role};
use crate::state::{AppState, now_ms};

pub(crate) async fn view(
    State(state): State<AppState>,
    session: super::Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let mut all = visible(&state, &session.credential).await?;
    all.reverse();
    let now = now_ms();
    let (pending, decided): (Vec<&Escalation>, Vec<&Escalation>) =
        all.iter().partition(|e| e.status == EscalationStatus::Pending && now < e.expires_ms);
    let mut body = notice(&query);
    body.push_str("<h2>Pending</h2>");
    if pending.is_empty() {
        body.push_str("<p id=\"no-pending\">Nothing waits for a decision.</p>");
    } else {
        body.push_str(
            "<table id=\"pending\"><tr><th>Asked</th><th>Principal</th><th>Request</th><th>Reasons</th>\
             <th>Approvers</th><th>Expires</th><th></th></tr>",
        );
        for e in pending {
            let actions = actions(&session, &e.id, &e.approvers);
            let _ = write!(
                body,
                "<tr class=\"escalation\" data-id=\"{}\"><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{actions}</td></tr>",
                esc(&e.id),
                time(e.created_ms, false),
                esc(&e.principal),
                esc(&super::masked_summary(&state, &e.summary)),
                e.reasons.iter().map(|r| esc(r)).collect::<Vec<_>>().join("<br>"),
                esc(&e.approvers.join(", ")),
                time(e.expires_ms, true),
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Decided</h2><table id=\"decided\"><tr><th>Principal</th><th>Request</th><th>Outcome</th><th>By</th><th>When</th></tr>");
    for e in decided {
        let (outcome, by, at) = match &e.status {
            EscalationStatus::Approved { by, at_ms } => ("approved", by.as_str(), Some(*at_ms)),
            EscalationStatus::Used { by, at_ms, .. } => ("approved, used", by.as_str(), Some(*at_ms)),
            EscalationStatus::Rejected { by, at_ms } => ("rejected", by.as_str(), Some(*at_ms)),
            EscalationStatus::Pending => ("expired", "", None),
        };
        let _ = write!(
            body,
            "<tr data-id=\"{}\"><td>{}</td><td><code>{}</code></td><td class=\"outcome\">{outcome}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.id),
            esc(&e.principal),
            esc(&super::masked_summary(&state, &e.summary)),
            esc(by),
            at.map(|at| time(at, false)).unwrap_or_else(|| time(e.expires_ms, false)),
        );
    }
    body.push_str("</table>");
    Ok(page("Escalations", Some(&session), &body))
}

/// Approve and reject as the API would allow them, or why not.
fn actions(session: &super::Session, id: &str, approvers: &[String]) -> String {
    match refusal(&session.credential, approvers) {
        Some(why) => format!("{} {}", refused_button("Approve", &why), refused_button("Reject", &why)),
        None => {
            let base = format!("/ui/escalations/{}", super::percent(id));
            format!(
                "{} {}",
                button_form(session, &format!("{base}/approve"), &[], "Approve", "approve"),
                button_form(session, &format!("{base}/reject"), &[], "Reject", "reject")
            )
        }
    }
}

fn refusal(credential: &Credential, approvers: &[String]) -> Option<String> {
    if !credential.has(Role::Approve) {
        Some(format!("credential `{}` lacks the `approve` role", credential.name))
    } else if !credential.is_among(approvers) {
        Some(format!("credential `{}` is not among the approvers ({})", credential.name, approvers.join(", ")))
    } else {
        None
    }
}

#[derive(Deserialize)]
pub(crate) struct ResolveForm {
    csrf: String,
    #[serde(default)]
    comment: Option<String>,
}

pub(crate) async fn resolve(
    State(state): State<AppState>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<ResolveForm>,
) -> Result<Response, Refusal> {
    let session = actor(&state, &headers, &form.csrf)?;
    let approve = approving(&action)?;
    let comment = form.comment.filter(|c| !c.trim().is_empty()).or(Some("from the console".into()));
    resolve_as(&state, &session.credential, &id, approve, comment).await?;
    let what = if approve { "approved" } else { "rejected" };
    Ok(done("/ui/escalations", &format!("{id} {what} by {}", session.credential.name)))
}
