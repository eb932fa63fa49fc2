//! The answer side of MCP: a `tools/list` answer is decided as a tool
//! listing (tools the bundle hides are taken out), a `tools/call` answer
//! as a tool result (spans masked, or the result withheld), before the
//! client reads a byte of it.

use arbiter_types::{Action, Request, ToolListing, ToolResult, VerdictKind};
use serde_json::{Value, json};

use crate::ext_authz::{Answer, Watch, Watched, answer, error_answer};
use crate::state::{AppState, now_ms};
use crate::wire::{HeldAnswer, Protocol};

/// The bytes the client gets instead of `held`.
pub(super) async fn decide_answer(state: &AppState, watch: Watch, held: HeldAnswer, source: &'static str) -> Vec<u8> {
    let sse = held.is_sse();
    let protocol = Protocol::Mcp { id: watch.id.clone() };
    let refuse = |code: &str, message: &str| {
        frame(sse, &refusal_message(&protocol, error_answer(&protocol, 502, code, message).body))
    };
    let located = match held.locate(&watch.id) {
        Ok(located) => located,
        Err(unreadable) => return refuse("answer_unreadable", &unreadable.to_string()),
    };
    // A JSON-RPC error is read too: its message and data reach the model
    // as surely as a result does. A tool's error is decided as its result
    // (`{"isError": true, "error": …}`); a listing's is replaced by a
    // generic one.
    let (result, error) = match (located.message.get("result"), located.message.get("error")) {
        (Some(Value::Object(result)), None) => (result.clone(), false),
        (None, Some(Value::Object(error))) => match &watch.watched {
            Watched::Result { .. } => {
                let mut result = serde_json::Map::new();
                result.insert("isError".into(), true.into());
                result.insert("error".into(), Value::Object(error.clone()));
                (result, true)
            }
            Watched::Listing { .. } => {
                let code = error.get("code").and_then(Value::as_i64).unwrap_or(-32603);
                let generic = json!({"jsonrpc": "2.0", "id": watch.id,
                                     "error": {"code": code, "message": "the server refused to list its tools"}});
                return located.with_message(&generic);
            }
        },
        _ => return refuse("answer_unreadable", "the response has neither a result object nor an error object"),
    };
    let action = match &watch.watched {
        Watched::Listing { server, page } => {
            let tools = result.get("tools").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            let page = *page || result.get("nextCursor").is_some_and(|c| !c.is_null());
            match ToolListing::from_mcp(server.clone(), tools, page) {
                Ok(listing) => Action::ToolListing(listing),
                Err((i, problem)) => return refuse("bad_listing", &format!("tools[{i}]: {problem}")),
            }
        }
        Watched::Result { call } => {
            if arbiter_types::strings_with_pointers(&result).is_none() {
                return refuse("result_too_complex", "the result holds too many strings to be scanned");
            }
            Action::ToolResult(ToolResult { call: call.clone(), result })
        }
    };
    let request = Request {
        id: watch.request_id.clone(),
        principal: watch.principal.clone(),
        action,
        timestamp_ms: Some(now_ms()),
        labels: vec![("api".to_owned(), "mcp".to_owned())],
        escalation_id: None,
    };
    let decision = state.decide(request.clone(), &watch.caller, now_ms(), source).await;
    if decision.decision != VerdictKind::Allow {
        return match answer(&decision, &protocol, vec![]) {
            Answer::Deny(refusal) => frame(sse, &refusal_message(&protocol, refusal.body)),
            Answer::Allow { .. } => refuse("internal_error", "a refusal was not refused"),
        };
    }
    let mut message = located.message.clone();
    let applied = match request.action {
        Action::ToolListing(_) => {
            if let Some(result) = message.get_mut("result").and_then(Value::as_object_mut) {
                hide(result, &decision.hidden_tools());
            }
            Ok(())
        }
        Action::ToolResult(ToolResult { mut result, .. }) => {
            arbiter_types::apply_redactions(&mut result, &decision.redactions()).map(|()| {
                if error {
                    message["error"] = result.remove("error").unwrap_or(Value::Null);
                } else {
                    message["result"] = Value::Object(result);
                }
            })
        }
        _ => Ok(()),
    };
    match applied {
        Ok(()) => located.with_message(&message),
        // Checked when the verdict came back; never forward it unmasked.
        Err(problem) => refuse("redaction_failed", &problem.to_string()),
    }
}

/// Takes the hidden tools out of a `tools/list` result.
fn hide(result: &mut serde_json::Map<String, Value>, hidden: &[&str]) {
    if let Some(Value::Array(tools)) = result.get_mut("tools") {
        tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_none_or(|name| !hidden.contains(&name)));
    }
}

/// The JSON-RPC error of a refusal body (always JSON of ours).
fn refusal_message(protocol: &Protocol, body: String) -> Value {
    serde_json::from_str(&body).unwrap_or_else(|_| {
        let id = match protocol {
            Protocol::Mcp { id } => id.clone(),
            _ => Value::Null,
        };
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": "refused"}})
    })
}

/// A message as the answer's framing carries it.
fn frame(sse: bool, message: &Value) -> Vec<u8> {
    if sse { format!("event: message\ndata: {message}\n\n").into_bytes() } else { message.to_string().into_bytes() }
}
