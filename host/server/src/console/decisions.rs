//! This replica's latest decisions, filtered by pipeline, agent, decision
//! and reason code, each linked to its audit record.

use std::collections::HashMap;
use std::fmt::Write;
use std::io::{Read, Seek, SeekFrom};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::Refusal;
use super::html::{esc, page, time};
use crate::api::blocking;
use crate::state::AppState;

/// Rows shown at most.
const SHOWN: usize = 200;
/// How much of the audit log's end is searched for a record.
const TAIL_BYTES: u64 = 16 << 20;

const FILTERS: [&str; 4] = ["pipeline", "agent", "decision", "code"];

pub(crate) async fn view(
    State(state): State<AppState>,
    session: super::Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let wanted = |name: &str| query.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let mut body = String::from("<form method=\"get\" action=\"/ui/decisions\" class=\"filters\">");
    for name in FILTERS {
        let _ = write!(
            body,
            "<input name=\"{name}\" id=\"filter-{name}\" placeholder=\"{name}\" value=\"{}\">",
            esc(wanted(name).unwrap_or(""))
        );
    }
    body.push_str("<button id=\"filter\">Filter</button></form><table id=\"decisions\"><tr><th>When</th><th>Request</th>\
                   <th>Pipeline / agent</th><th>Team</th><th>Action</th><th>Decision</th><th>Codes</th><th>Source</th><th>Audit</th></tr>");
    let rows = state.recent.newest_first().into_iter().filter(|d| {
        wanted("pipeline").is_none_or(|p| d.pipeline == p)
            && wanted("agent").is_none_or(|a| d.agent == a)
            && wanted("decision").is_none_or(|k| d.decision.as_str() == k)
            && wanted("code").is_none_or(|c| d.codes.iter().any(|code| code == c))
    });
    for d in rows.take(SHOWN) {
        let audit = d.seq.map_or("—".to_owned(), |seq| format!("<a href=\"/ui/decisions/{seq}\">#{seq}</a>"));
        let _ = write!(
            body,
            "<tr class=\"decision {0}\"><td>{1}</td><td>{2}</td><td>{3} / {4}</td><td>{5}</td><td>{6}</td><td>{0}</td>\
             <td>{7}</td><td>{8}</td><td>{audit}</td></tr>",
            d.decision.as_str(),
            time(d.at_ms, false),
            esc(&d.request_id),
            esc(&d.pipeline),
            esc(&d.agent),
            esc(&d.team),
            esc(&d.action),
            esc(&d.codes.join(", ")),
            d.source,
        );
    }
    body.push_str("</table>");
    Ok(page("Recent decisions", Some(&session), &body))
}

/// One audit record, read back from the end of the log (arguments masked
/// as written).
pub(crate) async fn record(
    State(state): State<AppState>,
    session: super::Session,
    Path(seq): Path<u64>,
) -> Result<Response, Refusal> {
    let Some(audit) = &state.audit else {
        return Err(Refusal::Page(StatusCode::NOT_FOUND, "this server keeps no audit log".into()));
    };
    let path = audit.path().to_owned();
    let found = blocking(move || find(&path, seq)).await?;
    let Some(record) = found else {
        return Err(Refusal::Page(
            StatusCode::NOT_FOUND,
            format!("audit record #{seq} is not among the log's latest; read it with `arbiter audit`"),
        ));
    };
    let pretty = serde_json::to_string_pretty(&record).unwrap_or_default();
    let body = format!("<pre id=\"record\">{}</pre><p><a href=\"/ui/decisions\">Back</a></p>", esc(&pretty));
    Ok(page(&format!("Audit record #{seq}"), Some(&session), &body))
}

fn find(path: &std::path::Path, seq: u64) -> Option<Value> {
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    String::from_utf8_lossy(&tail)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|record| record.get("seq").and_then(Value::as_u64) == Some(seq))
}
