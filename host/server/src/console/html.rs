//! HTML for the console: escaping, and the page around each view. Every
//! value that reaches a page goes through [`esc`]; pages carry a strict
//! Content-Security-Policy (no inline script or style, nothing from
//! elsewhere), so even a missed escape cannot run script.

use std::fmt::Write;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::session::Session;

/// Escapes text for element content and quoted attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const NAV: [(&str, &str); 6] = [
    ("/ui/escalations", "Escalations"),
    ("/ui/budgets", "Budgets & breakers"),
    ("/ui/spend", "Spend"),
    ("/ui/decisions", "Decisions"),
    ("/ui/halts", "Kill switch"),
    ("/ui/bundles", "Bundles"),
];

/// A whole page: navigation, who is logged in, and `body`.
pub(crate) fn page(title: &str, session: Option<&Session>, body: &str) -> Response {
    page_with_status(StatusCode::OK, title, session, body)
}

pub(crate) fn page_with_status(status: StatusCode, title: &str, session: Option<&Session>, body: &str) -> Response {
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · arbiter</title>\
         <link rel=\"stylesheet\" href=\"/ui/static/console.css\"><script src=\"/ui/static/console.js\" defer></script>\
         </head><body><header><strong>arbiter</strong>",
        esc(title)
    );
    if let Some(session) = session {
        html.push_str("<nav>");
        for (href, label) in NAV {
            let _ = write!(html, "<a href=\"{href}\">{label}</a>");
        }
        let roles = session.credential.role_names().join(", ");
        let _ = write!(
            html,
            "</nav><form method=\"post\" action=\"/ui/logout\" class=\"who\">{} <span id=\"who\">{}</span> ({}) \
             <button>Log out</button></form>",
            csrf_field(session),
            esc(&session.credential.name),
            esc(&roles)
        );
    }
    let _ = write!(html, "</header><main><h1>{}</h1>{body}</main></body></html>", esc(title));
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

/// The hidden field every form carries.
pub(crate) fn csrf_field(session: &Session) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&session.csrf))
}

/// A form that POSTs `fields` (name, value) to `action` with one button.
pub(crate) fn button_form(
    session: &Session,
    action: &str,
    fields: &[(&str, &str)],
    label: &str,
    class: &str,
) -> String {
    let mut html = format!("<form method=\"post\" action=\"{}\" class=\"inline\">{}", esc(action), csrf_field(session));
    for (name, value) in fields {
        let _ = write!(html, "<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(name), esc(value));
    }
    let _ = write!(html, "<button class=\"{}\">{}</button></form>", esc(class), esc(label));
    html
}

/// A button shown disabled, saying why the action is refused.
pub(crate) fn refused_button(label: &str, why: &str) -> String {
    format!(
        "<button disabled class=\"refused\" title=\"{0}\">{1}</button> <span class=\"why\">refused: {0}</span>",
        esc(why),
        esc(label)
    )
}

/// Time as RFC 3339, with a `<time>` the script turns into a countdown
/// or an age.
pub(crate) fn time(ms: i64, countdown: bool) -> String {
    let text = arbiter_types::format_rfc3339_ms(ms);
    let class = if countdown { " class=\"countdown\"" } else { "" };
    format!("<time datetime=\"{0}\" data-ms=\"{ms}\"{class}>{0}</time>", esc(&text))
}

pub(crate) fn static_file(path: &str) -> Response {
    let (kind, body) = match path {
        "console.css" => ("text/css; charset=utf-8", include_str!("static/console.css")),
        "console.js" => ("text/javascript; charset=utf-8", include_str!("static/console.js")),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn markup_in_values_is_text() {
        assert_eq!(esc("<script>\"x\" & 'y'</script>"), "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;");
    }
}
