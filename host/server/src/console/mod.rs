//! The on-call console, `/ui`: server-rendered pages over the same state,
//! credentials and roles as the API (docs/decisions/0014-console-kill-switch-alerts.md).
//!
//! Log in with a credential's key; a session cookie stands for it after
//! that. Viewing needs the approve or admin role; each action is checked
//! exactly as its API endpoint checks it (approving by the API's own
//! function), and every POST carries the session's CSRF token.

mod budgets;
mod bundles;
mod decisions;
mod escalations;
mod halts;
mod html;
pub(crate) mod session;
mod spend;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::api::ApiError;
use crate::credentials::Role;
use crate::state::AppState;
use html::{esc, page, page_with_status};
use session::{COOKIE, Session};

pub(crate) use session::Sessions;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/escalations") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/escalations") }))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/static/{file}", get(|Path(file): Path<String>| async move { html::static_file(&file) }))
        .route("/ui/escalations", get(escalations::view))
        .route("/ui/escalations/{id}/{action}", post(escalations::resolve))
        .route("/ui/budgets", get(budgets::view))
        .route("/ui/spend", get(spend::view))
        .route("/ui/decisions", get(decisions::view))
        .route("/ui/decisions/{seq}", get(decisions::record))
        .route("/ui/halts", get(halts::view).post(halts::halt))
        .route("/ui/halts/resume", post(halts::resume))
        .route("/ui/bundles", get(bundles::view))
        .route("/ui/bundles/rollback", post(bundles::rollback))
}

/// What a console handler refuses with: a login redirect, or a page
/// saying why.
pub(crate) enum Refusal {
    Login,
    Page(StatusCode, String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Login => Redirect::to("/ui/login").into_response(),
            Refusal::Page(status, message) => page_with_status(
                status,
                "Refused",
                None,
                &format!("<p class=\"error\" id=\"refusal\">{}</p><p><a href=\"/ui\">Back</a></p>", esc(&message)),
            ),
        }
    }
}

impl From<arbiter_state::StateError> for Refusal {
    fn from(e: arbiter_state::StateError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::Page(e.status, format!("{}: {}", e.code, e.message))
    }
}

/// The session of a page view (login admits only the approve and admin
/// roles); without one, the login page.
fn viewer(state: &AppState, headers: &HeaderMap) -> Result<Session, Refusal> {
    state.sessions.of(headers).ok_or(Refusal::Login)
}

impl axum::extract::FromRequestParts<AppState> for Session {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Refusal> {
        viewer(state, &parts.headers)
    }
}

/// The session of a form POST, whose CSRF token must be the session's.
fn actor(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<Session, Refusal> {
    let session = viewer(state, headers)?;
    if !session.csrf_matches(csrf) {
        return Err(Refusal::Page(
            StatusCode::FORBIDDEN,
            "csrf: the form's token is not this session's; reload the page and try again".into(),
        ));
    }
    Ok(session)
}

/// Back to a page after an action, with a notice in the query.
fn done(to: &str, notice: &str) -> Response {
    let mut url = to.to_owned();
    url.push_str(if to.contains('?') { "&" } else { "?" });
    url.push_str("notice=");
    url.push_str(&percent(notice));
    Redirect::to(&url).into_response()
}

fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `notice` a redirect after an action carries, as a banner.
fn notice(query: &std::collections::HashMap<String, String>) -> String {
    query.get("notice").map(|n| format!("<p class=\"notice\" id=\"notice\">{}</p>", esc(n))).unwrap_or_default()
}

async fn login_page() -> Response {
    page(
        "Log in",
        None,
        "<form method=\"post\" action=\"/ui/login\" class=\"login\"><label for=\"token\">Credential key</label>\
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\" autofocus>\
         <button id=\"login\">Log in</button><p>The key of a credential with the approve or admin role. \
         It is exchanged for a session here and never kept.</p></form>",
    )
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

async fn login(State(state): State<AppState>, Form(form): Form<Login>) -> Result<Response, Refusal> {
    let Some(credential) = state.credentials.authenticate(form.token.trim()) else {
        return Err(Refusal::Page(
            StatusCode::UNAUTHORIZED,
            "unauthenticated: that key is not a credential of this server".into(),
        ));
    };
    if !(credential.has(Role::Approve) || credential.has(Role::Admin)) {
        return Err(Refusal::Page(
            StatusCode::FORBIDDEN,
            format!("forbidden: credential `{}` has neither the approve nor the admin role", credential.name),
        ));
    }
    let id = state.sessions.start(credential);
    let cookie = format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=28800");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/ui/escalations")).into_response())
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, Refusal> {
    actor(&state, &headers, &form.csrf)?;
    state.sessions.end(&headers);
    let cookie = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response())
}

/// An escalation's summary with its tool arguments masked as the audit
/// log masks them; arguments cut short in the summary are not shown.
fn masked_summary(state: &AppState, summary: &str) -> String {
    let Some(at) = summary.find(": tool ") else { return summary.to_owned() };
    let Some(start) = summary[at..].find('{').map(|i| at + i) else { return summary.to_owned() };
    match serde_json::from_str::<serde_json::Value>(&summary[start..]) {
        Ok(mut arguments) => {
            if let Some(audit) = &state.audit {
                audit.mask(&mut arguments);
            }
            format!("{}{arguments}", &summary[..start])
        }
        Err(_) => format!("{}(arguments cut short; see the audit log)", &summary[..start]),
    }
}
