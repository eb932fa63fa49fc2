//! Checks that a verdict's obligations fit the request they answer: a
//! policy may hide only tools of the listing it was shown, and redact only
//! strings of the arguments or result it was shown. Anything else is a
//! policy fault, never an obligation the gateway would apply in part.

use std::collections::HashSet;

use arbiter_types::{Action, ActionKind, Obligation, Redaction, RedactionError, Request, Verdict, check_redactions};

/// An obligation that does not fit the request it answers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ObligationRefused {
    #[error("hides tool `{}`, which the {} it answers does not list", arbiter_types::excerpt(.tool, 100), .answers.as_str())]
    HidesUnlisted { tool: String, answers: ActionKind },
    #[error("redacts a {}, which has nothing to redact", .kind.as_str())]
    NothingToRedact { kind: ActionKind },
    #[error(transparent)]
    Redaction(#[from] RedactionError),
}

pub(crate) fn check(verdict: &Verdict, request: &Request) -> Result<(), ObligationRefused> {
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
                return Err(ObligationRefused::HidesUnlisted { tool: name.clone(), answers: request.action.kind() });
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
        other => return Err(ObligationRefused::NothingToRedact { kind: other.kind() }),
    };
    Ok(check_redactions(document, &redactions)?)
}
