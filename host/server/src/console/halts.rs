//! The kill switch: halts in force, a form to halt a scope, and resume.

use std::collections::HashMap;
use std::fmt::Write;

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::html::{button_form, csrf_field, esc, page, refused_button, time};
use super::{Refusal, actor, done, notice};
use crate::halts::{self, may_halt, may_resume};
use crate::state::AppState;

pub(crate) async fn view(
    State(state): State<AppState>,
    session: super::Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let mut body = notice(&query);
    let halts = halts::list(&state).await?;
    body.push_str("<table id=\"halts\"><tr><th>Scope</th><th>Reason</th><th>By</th><th>Since</th><th></th></tr>");
    for halt in &halts {
        let scope = halt.scope.to_string();
        let resume = if may_resume(&session.credential) {
            button_form(&session, "/ui/halts/resume", &[("scope", &scope)], "Resume", "resume")
        } else {
            refused_button("Resume", &format!("credential `{}` lacks the `admin` role", session.credential.name))
        };
        let _ = write!(
            body,
            "<tr class=\"halt\" data-scope=\"{0}\"><td>{0}</td><td>{1}</td><td>{2}</td><td>{3}</td><td>{resume}</td></tr>",
            esc(&scope),
            esc(&halt.reason),
            esc(&halt.by),
            time(halt.at_ms, false)
        );
    }
    body.push_str("</table>");
    if halts.is_empty() {
        body.push_str("<p id=\"no-halts\">Nothing is halted.</p>");
    }
    if may_halt(&session.credential) {
        let _ = write!(
            body,
            "<h2>Halt</h2><form method=\"post\" action=\"/ui/halts\" id=\"halt-form\">{}\
             <select name=\"kind\" id=\"halt-kind\"><option>pipeline</option><option>agent</option><option>team</option>\
             <option>run</option><option>all</option></select> \
             <input name=\"name\" id=\"halt-name\" placeholder=\"name (empty for all)\"> \
             <input name=\"reason\" id=\"halt-reason\" placeholder=\"why\" size=\"40\"> \
             <button class=\"danger\" id=\"halt\">Halt</button></form>\
             <p>While halted, every matching decision is denied with code <code>halted</code> before any policy runs, \
             on every replica sharing this state.</p>",
            csrf_field(&session)
        );
    }
    Ok(page("Kill switch", Some(&session), &body))
}

#[derive(Deserialize)]
pub(crate) struct HaltForm {
    csrf: String,
    kind: String,
    #[serde(default)]
    name: String,
    reason: String,
}

pub(crate) async fn halt(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HaltForm>,
) -> Result<Response, Refusal> {
    let session = actor(&state, &headers, &form.csrf)?;
    // The form's two fields make the API's one scope; `all` has no name.
    let scope = if form.kind == "all" { "all".to_owned() } else { format!("{}:{}", form.kind, form.name) };
    let halt = halts::halt(&state, &session.credential, &scope, &form.reason).await?;
    Ok(done("/ui/halts", &format!("{} halted", halt.scope)))
}

#[derive(Deserialize)]
pub(crate) struct ResumeForm {
    csrf: String,
    scope: String,
}

pub(crate) async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<ResumeForm>,
) -> Result<Response, Refusal> {
    let session = actor(&state, &headers, &form.csrf)?;
    halts::resume(&state, &session.credential, &form.scope).await?;
    Ok(done("/ui/halts", &format!("{} resumed", form.scope)))
}
