//! Envoy external authorization: a gateway request becomes a decision, and
//! the decision an answer Envoy enforces.

pub(crate) mod grpc;
pub(crate) mod http;

use arbiter_types::{Decision, VerdictKind};
use serde_json::{Value, json};

use crate::state::{AppState, public_decision};
use crate::wire::{Classified, GatewayRequest, Protocol, classify};

/// HTTP status of an escalated (approval needed) LLM request.
pub(crate) const ESCALATED_STATUS: u16 = 428;
/// JSON-RPC error codes of MCP denials (server-defined range).
const MCP_DENIED: i64 = -32001;
const MCP_ESCALATED: i64 = -32002;
const MCP_INVALID: i64 = -32600;

/// What Envoy must do with the request.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    /// Forward upstream, adding these headers.
    Allow { headers: Vec<(String, String)> },
    /// Answer the client directly.
    Deny { status: u16, headers: Vec<(String, String)>, body: String },
}

pub(crate) async fn check(state: &AppState, request: &GatewayRequest<'_>) -> Answer {
    match classify(request, &state.wire) {
        Classified::Pass => Answer::Allow { headers: vec![("x-arbiter-decision".into(), "pass".into())] },
        Classified::Refuse { status, code, message, protocol } => {
            let error = json!({"error": {"type": "arbiter_error", "code": code, "message": message}});
            refusal(&protocol, status, MCP_INVALID, code, &message, error, vec![])
        }
        Classified::Guard { request, protocol } => {
            let decision = state.decide(*request, "ext_authz").await;
            answer(&decision, &protocol)
        }
    }
}

fn answer(decision: &Decision, protocol: &Protocol) -> Answer {
    let mut headers = vec![
        ("x-arbiter-decision".to_owned(), decision.decision.as_str().to_owned()),
        ("x-arbiter-request-id".to_owned(), decision.id.clone()),
    ];
    if decision.decision == VerdictKind::Allow {
        if let Some(clamp) = decision.clamp_max_output_tokens() {
            headers.push(("x-arbiter-clamp-max-output-tokens".into(), clamp.to_string()));
        }
        return Answer::Allow { headers };
    }
    let escalated = decision.decision == VerdictKind::Escalate;
    if let Some(id) = decision.escalation.as_ref().and_then(|e| e.id.clone()) {
        headers.push(("x-arbiter-escalation-id".into(), id));
    }
    let code = decision.reasons.first().map_or("denied", |r| r.code.as_str());
    let message = decision.reasons.iter().map(|r| format!("{} ({})", r.message, r.code)).collect::<Vec<_>>().join("; ");
    let (status, mcp_code) = if escalated { (ESCALATED_STATUS, MCP_ESCALATED) } else { (403, MCP_DENIED) };
    let body = json!({"error": {
        "type": if escalated { "arbiter_escalated" } else { "arbiter_denied" },
        "code": code,
        "message": message,
        "decision": public_decision(decision),
    }});
    refusal(protocol, status, mcp_code, code, &message, body, headers)
}

/// A denial in the caller's protocol: a JSON error with `status`, or for
/// MCP a JSON-RPC error answering the request's id, with status 200 (the
/// MCP client ends its session on non-2xx answers).
fn refusal(
    protocol: &Protocol,
    status: u16,
    mcp_code: i64,
    code: &str,
    message: &str,
    error: Value,
    mut headers: Vec<(String, String)>,
) -> Answer {
    headers.push(("content-type".into(), "application/json".into()));
    let (status, body) = match protocol {
        Protocol::Llm => (status, error),
        Protocol::Mcp { id } => {
            let data = error.get("error").cloned().unwrap_or(Value::Null);
            (
                200,
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": mcp_code, "message": format!("{code}: {message}"), "data": data}}),
            )
        }
    };
    Answer::Deny { status, headers, body: body.to_string() }
}
