//! Envoy external authorization: a gateway request becomes a decision, and
//! the decision an answer Envoy enforces.

pub(crate) mod grpc;
pub(crate) mod http;

use std::collections::HashMap;
use std::sync::Arc;

use arbiter_types::{Action, Decision, Principal, Redaction, ToolCall, VerdictKind, excerpt};
use serde_json::{Value, json};

use crate::api::auth::{identify, lacks};
use crate::api::{ApiError, Caller};
use crate::credentials::{Credential, Role};
use crate::state::{AppState, public_decision};
use crate::wire::{Classified, GatewayRequest, Protocol, classify, principal_field};

/// HTTP status of an escalated (approval needed) LLM request.
pub(crate) const ESCALATED_STATUS: u16 = 428;
/// JSON-RPC error codes of MCP denials (server-defined range).
const MCP_DENIED: i64 = -32001;
const MCP_ESCALATED: i64 = -32002;
const MCP_INVALID: i64 = -32600;

/// What Envoy must do with the request.
#[derive(Debug, PartialEq)]
pub(crate) enum Answer {
    /// Forward upstream, adding `headers` and removing `remove` (the
    /// caller's arbiter key never reaches the upstream).
    Allow { headers: Vec<(String, String)>, remove: Vec<String> },
    /// Answer the client directly; nothing goes upstream.
    Deny(Refusal),
}

/// The answer to a refused request. `status` is never 2xx (Envoy's HTTP
/// ext_authz lets any 2xx through); `in_band` marks an MCP JSON-RPC error,
/// which the gRPC paths deliver with status 200 so that the MCP client's
/// session survives.
#[derive(Debug, PartialEq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) in_band: bool,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

/// Who sent a gateway request. A `gateway_key` is Envoy's own credential
/// (gRPC metadata or a header Envoy sets): the principal headers are then
/// what Envoy verified, trusted within the gateway's grant. Otherwise the
/// agent's key, in `<prefix>key`, names the caller.
fn gateway_caller(
    state: &AppState,
    headers: &HashMap<String, String>,
    gateway_key: Option<&str>,
) -> Result<Caller, ApiError> {
    let (key, role) = match gateway_key {
        Some(key) => (Some(key), Role::Gateway),
        None => (headers.get(&format!("{}key", state.wire.header_prefix)).map(String::as_str), Role::Decide),
    };
    match identify(&state.credentials, key)? {
        Caller::Credential(c) if !c.has(role) => Err(lacks(&c, role)),
        caller => Ok(caller),
    }
}

/// Whose share of the bodies ext_proc holds a request draws on, from its
/// headers alone (the body has not come): a gateway credential's, per
/// pipeline and agent it vouches for (read as the principal reads them)
/// and its grant allows, else one share for the rest of its traffic; an
/// agent credential's, its own. Every key that does not authenticate (or
/// lacks the role) shares one holder, so a new forged key per request
/// gains no new share.
pub(crate) fn holder(state: &AppState, headers: &HashMap<String, String>, gateway_key: Option<&str>) -> String {
    match gateway_caller(state, headers, gateway_key) {
        Ok(Caller::Credential(credential)) if gateway_key.is_some() => {
            let prefix = &state.wire.header_prefix;
            let grant = credential.grant();
            let field = |name: &str| {
                principal_field(headers, prefix, grant, name).filter(|v| grant.is_some_and(|g| g.allows(name, v)))
            };
            match (field("pipeline"), field("agent")) {
                // Bounded: the name is held while the body is, uncounted.
                (Some(pipeline), Some(agent)) => {
                    let (pipeline, agent) = (excerpt(pipeline, HOLDER_FIELD_CHARS), excerpt(agent, HOLDER_FIELD_CHARS));
                    format!("gateway {:?} {pipeline:?} {agent:?}", credential.name)
                }
                _ => format!("gateway {:?}", credential.name),
            }
        }
        Ok(Caller::Credential(credential)) => format!("agent {:?}", credential.name),
        Ok(Caller::Anonymous) => "anonymous".to_owned(),
        Err(_) => "unidentified".to_owned(),
    }
}

/// What of a pipeline or agent name names a held-body share: longer names
/// that agree this far share one.
const HOLDER_FIELD_CHARS: usize = 128;

/// A request the gateway lets through, and what it must do after: hold the
/// upstream to the decision (ext_proc) and report how the call ended.
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Whose decision it is (reports are bound to it).
    pub(crate) owner: String,
    pub(crate) request_id: String,
    pub(crate) protocol: Protocol,
    /// LLM calls: the output tokens the decision reserved (clamp applied).
    pub(crate) allowed_output_tokens: u64,
    /// Spans of the tool call's arguments to mask before it goes upstream:
    /// a gateway that cannot rewrite the body must refuse the request.
    pub(crate) redactions: Vec<Redaction>,
}

/// An MCP answer to be decided before the client sees it.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) caller: Caller,
    pub(crate) principal: Principal,
    /// The JSON-RPC id the answer carries.
    pub(crate) id: Value,
    /// The id the answer's decision is filed under.
    pub(crate) request_id: String,
    pub(crate) watched: Watched,
}

#[derive(Debug)]
pub(crate) enum Watched {
    /// A `tools/list` answer of this server; `page` when the request asked
    /// for a page past the first.
    Listing { server: String, page: bool },
    /// The result of this call (arguments as forwarded: masked).
    Result { call: ToolCall },
}

/// The answer to a gateway request, the admitted request when it was
/// decided and allowed, and the MCP answer to watch for.
#[derive(Debug)]
pub(crate) struct Checked {
    pub(crate) answer: Answer,
    pub(crate) admitted: Option<Admitted>,
    pub(crate) watch: Option<Watch>,
}

/// Classifies, authenticates and decides a gateway request; `source` names
/// the gateway path in metrics and the audit log.
pub(crate) async fn check(
    state: &AppState,
    mut request: GatewayRequest<'_>,
    gateway_key: Option<&str>,
    source: &'static str,
) -> Checked {
    let caller = gateway_caller(state, request.headers, gateway_key);
    let credential: Option<Arc<Credential>> = match &caller {
        Ok(Caller::Credential(c)) => Some(Arc::clone(c)),
        _ => None,
    };
    request.grant = credential.as_deref().and_then(Credential::grant);
    let prefix = &state.wire.header_prefix;
    let remove = vec![format!("{prefix}key"), format!("{prefix}gateway-key")];
    let refused = |answer| Checked { answer, admitted: None, watch: None };
    let pass = |remove| Answer::Allow { headers: vec![("x-arbiter-decision".into(), "pass".into())], remove };
    match classify(&request, &state.wire) {
        Classified::Pass => refused(pass(remove)),
        Classified::Listing { principal, protocol, server, page } => {
            let checked = caller.and_then(|caller| caller.check_principal(&principal).map(|()| caller));
            match (checked, &protocol, server) {
                (Err(e), _, _) => refused(Answer::Deny(error_answer(&protocol, e.status.as_u16(), e.code, &e.message))),
                (Ok(caller), Protocol::Mcp { id }, Some(server)) => {
                    let request_id = format!("{}:listing", crate::wire::request_id(&request));
                    let watched = Watched::Listing { server, page };
                    let watch = Watch { caller, principal, id: id.clone(), request_id, watched };
                    Checked { answer: pass(remove), admitted: None, watch: Some(watch) }
                }
                // No server named: not a gateway that reads answers.
                (Ok(_), _, _) => refused(pass(remove)),
            }
        }
        Classified::Refuse { status, code, message, protocol } => {
            refused(Answer::Deny(error_answer(&protocol, status, code, &message)))
        }
        Classified::Guard { request: guarded, protocol } => {
            let checked = caller.and_then(|caller| caller.check_principal(&guarded.principal).map(|()| caller));
            match checked {
                Err(e) => refused(Answer::Deny(error_answer(&protocol, e.status.as_u16(), e.code, &e.message))),
                Ok(caller) => {
                    let allowed_output_tokens = match &guarded.action {
                        Action::LlmRequest(llm) => llm.max_output_tokens,
                        _ => 0,
                    };
                    let principal = guarded.principal.clone();
                    let call = match (&guarded.action, &protocol) {
                        (Action::ToolCall(call), Protocol::Mcp { .. }) => Some(call.clone()),
                        _ => None,
                    };
                    let decision = state.decide(*guarded, &caller, request.now_ms, source).await;
                    let answer = answer(&decision, &protocol, remove);
                    if !matches!(answer, Answer::Allow { .. }) {
                        return refused(answer);
                    }
                    let redactions = decision.redactions();
                    let watch = match (call, &protocol) {
                        (Some(mut call), Protocol::Mcp { id }) => {
                            // The result answers the call as forwarded.
                            let _ = arbiter_types::apply_redactions(&mut call.arguments, &redactions);
                            Some(Watch {
                                caller: caller.clone(),
                                principal,
                                id: id.clone(),
                                request_id: format!("{}:result", decision.id),
                                watched: Watched::Result { call },
                            })
                        }
                        _ => None,
                    };
                    let admitted = Admitted {
                        owner: caller.owner().to_owned(),
                        request_id: decision.id.clone(),
                        allowed_output_tokens: decision
                            .clamp_max_output_tokens()
                            .map_or(allowed_output_tokens, |clamp| clamp.min(allowed_output_tokens)),
                        redactions,
                        protocol,
                    };
                    Checked { answer, admitted: Some(admitted), watch }
                }
            }
        }
    }
}

impl Checked {
    /// The answer of a gateway that forwards the request as it came
    /// (ext_authz): one allowed only with spans masked is refused, since
    /// the mask cannot be applied there.
    pub(crate) fn unrewritten(self) -> Answer {
        match self.admitted {
            Some(admitted) if !admitted.redactions.is_empty() => Answer::Deny(error_answer(
                &admitted.protocol,
                403,
                "redaction_needs_ext_proc",
                "the decision masks parts of this request, which only arbiter's ext_proc can rewrite",
            )),
            _ => self.answer,
        }
    }
}

/// A request refused before any decision (malformed, unauthenticated,
/// outside its grant).
pub(crate) fn error_answer(protocol: &Protocol, status: u16, code: &str, message: &str) -> Refusal {
    let error = json!({"error": {"type": "arbiter_error", "code": code, "message": message}});
    refusal(protocol, status, MCP_INVALID, code, message, error, vec![])
}

pub(crate) fn answer(decision: &Decision, protocol: &Protocol, remove: Vec<String>) -> Answer {
    let mut headers = vec![
        ("x-arbiter-decision".to_owned(), decision.decision.as_str().to_owned()),
        ("x-arbiter-request-id".to_owned(), decision.id.clone()),
    ];
    if decision.decision == VerdictKind::Allow {
        if let Some(clamp) = decision.clamp_max_output_tokens() {
            headers.push(("x-arbiter-clamp-max-output-tokens".into(), clamp.to_string()));
        }
        return Answer::Allow { headers, remove };
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
    Answer::Deny(refusal(protocol, status, mcp_code, code, &message, body, headers))
}

/// A denial in the caller's protocol: a JSON error with `status`, or for
/// MCP a JSON-RPC error answering the request's id (in band: see
/// [`Refusal`]).
fn refusal(
    protocol: &Protocol,
    status: u16,
    mcp_code: i64,
    code: &str,
    message: &str,
    error: Value,
    mut headers: Vec<(String, String)>,
) -> Refusal {
    headers.push(("content-type".into(), "application/json".into()));
    let (in_band, body) = match protocol {
        Protocol::Http | Protocol::Llm(_) => (false, error),
        Protocol::Mcp { id } => {
            let data = error.get("error").cloned().unwrap_or(Value::Null);
            (
                true,
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": mcp_code, "message": format!("{code}: {message}"), "data": data}}),
            )
        }
    };
    Refusal { status, in_band, headers, body: body.to_string() }
}
