//! Gateway traffic → arbiter requests: OpenAI and Anthropic LLM calls and
//! MCP `tools/call`, with the principal taken from request headers.

mod llm;
mod mcp;
mod mcp_answer;
mod principal;
#[cfg(test)]
mod props;
mod response;
mod rewrite;
mod tokens;

use std::collections::HashMap;

use arbiter_types::Request;
use serde_json::Value;

use crate::config::{UnrecognizedTraffic, WireConfig};
#[cfg(test)]
pub(crate) use llm::Api;
pub(crate) use llm::LlmCall;
pub use mcp_answer::mcp_response;
pub(crate) use mcp_answer::{HeldAnswer, SessionStream};
pub(crate) use principal::{principal_field, request_id};
pub(crate) use response::{ReportedUsage, ResponseReader};

/// An HTTP request as the gateway saw it.
#[derive(Debug)]
pub(crate) struct GatewayRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    /// Lowercase names.
    pub(crate) headers: &'a HashMap<String, String>,
    pub(crate) body: &'a [u8],
    pub(crate) now_ms: i64,
    /// The authenticated caller's grant: fields it pins need no header.
    pub(crate) grant: Option<&'a crate::credentials::Grant>,
    /// The MCP server, as the gateway's own configuration names it.
    pub(crate) mcp_server: Option<&'a str>,
    /// The gateway shows arbiter the answers too (ext_proc): MCP listings
    /// and results are decided, per named server.
    pub(crate) reads_answers: bool,
}

/// How the answer must be shaped for the caller to understand it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Protocol {
    /// An HTTP API: denials are non-2xx JSON errors.
    Http,
    /// An LLM call (an HTTP API too), with what the gateway needs of it.
    Llm(Box<LlmCall>),
    /// MCP over streamable HTTP: denials are JSON-RPC errors to this id, with
    /// status 200, so the client's session survives.
    Mcp { id: Value },
}

#[derive(Debug)]
pub(crate) enum Classified {
    /// To be decided.
    Guard { request: Box<Request>, protocol: Protocol },
    /// Not an action arbiter guards: let it through untouched.
    Pass,
    /// An MCP `tools/list`: the answer is decided, where it can be read
    /// (ext_proc, which also names the server).
    Listing { principal: arbiter_types::Principal, protocol: Protocol, server: Option<String>, page: bool },
    /// Malformed or not allowed without a decision.
    Refuse { status: u16, code: &'static str, message: String, protocol: Protocol },
}

impl Classified {
    fn refuse(status: u16, code: &'static str, message: impl Into<String>, protocol: Protocol) -> Self {
        Classified::Refuse { status, code, message: message.into(), protocol }
    }
}

pub(crate) fn classify(req: &GatewayRequest<'_>, config: &WireConfig) -> Classified {
    if req.body.is_empty() && matches!(req.method, "GET" | "DELETE" | "HEAD" | "OPTIONS") {
        return Classified::Pass;
    }
    let body: Value = match serde_json::from_slice(req.body) {
        Ok(body) => body,
        Err(e) => {
            return Classified::refuse(400, "bad_request", format!("body is not JSON: {e}"), Protocol::Http);
        }
    };
    if is_json_rpc(&body) {
        return mcp::classify(req, &body, config);
    }
    match llm::classify(req, &body, config) {
        Some(classified) => classified,
        None => match config.unrecognized {
            UnrecognizedTraffic::Allow => Classified::Pass,
            UnrecognizedTraffic::Deny => Classified::refuse(
                400,
                "unrecognized_request",
                format!(
                    "{} {} is neither an OpenAI or Anthropic LLM call nor MCP JSON-RPC",
                    arbiter_types::excerpt(req.method, 16),
                    arbiter_types::excerpt(req.path, 200)
                ),
                Protocol::Http,
            ),
        },
    }
}

/// A JSON-RPC message, or a batch holding one: a batch is MCP too (and
/// refused there), never unrecognized traffic, which may be let through.
fn is_json_rpc(body: &Value) -> bool {
    let message = |value: &Value| value.get("jsonrpc").is_some();
    match body {
        Value::Array(items) => items.iter().any(message),
        other => message(other),
    }
}
