//! Checks that a verdict's obligations fit the request they answer: a
//! policy may hide only tools of the listing it was shown, and redact only
//! strings of the arguments or result it was shown. Anything else is a
//! policy fault, never an obligation the gateway would apply in part.

use std::collections::HashSet;

use arbiter_types::{Action, Obligation, Redaction, Request, Verdict, check_redactions};

pub(crate) fn check(verdict: &Verdict, request: &Request) -> Result<(), String> {
    let mut redactions: Vec<Redaction> = Vec::new();
    let listed: HashSet<&str> = match &request.action {
        Action::ToolListing(listing) => listing.tools.iter().map(|t| t.name.as_str()).collect(),
        _ => HashSet::new(),
    };
    for obligation in &verdict.obligations {
        match obligation {
            Obligation::ClampMaxOutputTokens(_) | Obligation::SummarizeContext(_) => {}
            Obligation::HideTool(name) if listed.contains(name.as_str()) => {}
            Obligation::HideTool(name) => {
                return Err(format!(
                    "hides tool `{}`, which the {} it answers does not list",
                    arbiter_types::excerpt(name, 100),
                    request.action.kind().as_str()
                ));
            }
            Obligation::Redact(r) => redactions.push(r.clone()),
        }
    }
    if redactions.is_empty() {
        return Ok(());
    }
    let document = match &request.action {
        Action::ToolCall(call) => &call.arguments,
        Action::ToolResult(result) => &result.result,
        other => return Err(format!("redacts a {}, which has nothing to redact", other.kind().as_str())),
    };
    check_redactions(document, &redactions).map_err(|e| e.to_string())
}
