//! MCP (JSON-RPC over streamable HTTP): `tools/call` is guarded, and so is
//! every method that makes a server act or return data (decided as a tool
//! call named by the method); a `tools/list` is watched (its answer is
//! decided where the gateway shows arbiter answers: ext_proc); session
//! plumbing, other listings and notifications pass; anything else is
//! refused (fail closed), as is an action sent as a notification (without
//! an `id`), which would otherwise go unanswered and unguarded.

use arbiter_types::{Action, Request, ToolCall, ToolFacts};
use serde_json::Value;

use super::llm::escalation_header;
use super::principal::{principal, request_id};
use super::{Classified, GatewayRequest, Protocol};
use crate::config::{UnrecognizedTraffic, WireConfig};

pub(super) fn classify(req: &GatewayRequest<'_>, body: &Value, config: &WireConfig) -> Classified {
    // Batches are answered per element by the server; arbiter refuses them
    // rather than guess which element a denial answers.
    let Some(message) = body.as_object() else {
        return Classified::refuse(400, "bad_request", "JSON-RPC batches are not supported", Protocol::Http);
    };
    // Servers that read JSON-RPC with Go's encoding/json match member
    // names regardless of case (and fold `ſ`, `K`): `"Method"` beside
    // `"method"` would be a second method to them. Refused, not guessed.
    let params = message.get("params").and_then(Value::as_object);
    if let Some(name) = [Some(message), params].into_iter().flatten().find_map(case_collision) {
        let protocol =
            Protocol::Mcp { id: message.get("id").filter(|id| !id.is_null()).cloned().unwrap_or(Value::Null) };
        let problem = format!("members named `{}` more than once, in letters of another case", shown(&name));
        return Classified::refuse(400, "bad_request", problem, protocol);
    }
    // `"id": null` answers nothing: it is no id.
    let id = message.get("id").filter(|id| !id.is_null()).cloned();
    let protocol = Protocol::Mcp { id: id.clone().unwrap_or(Value::Null) };
    if body.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Classified::refuse(400, "bad_request", "jsonrpc: must be \"2.0\"", protocol);
    }
    let method = match message.get("method") {
        Some(Value::String(m)) => m.as_str(),
        // A response the client sends back (e.g. to a sampling request).
        None if message.contains_key("result") || message.contains_key("error") => return Classified::Pass,
        _ => return Classified::refuse(400, "bad_request", "method: missing or not a string", protocol),
    };
    let guarded = method == "tools/call" || config.mcp_guarded.iter().any(|m| m == method);
    if guarded && id.is_none() {
        return Classified::refuse(
            400,
            "notification_not_allowed",
            format!("MCP `{}` sent as a notification (no `id`): an action needs an id to be answered", shown(method)),
            protocol,
        );
    }
    let watched = (method == "tools/list" && id.is_some()) || method == "tools/call";
    if watched && req.reads_answers && req.mcp_server.is_none() {
        // Listings, pins and results are kept per server: a route that
        // does not name its server cannot be guarded.
        let message = "MCP through arbiter's ext_proc needs the route to name its server \
                       (per-route grpc_initial_metadata x-arbiter-mcp-server; docs/ext-proc.md)";
        return Classified::refuse(500, "mcp_server_unnamed", message, protocol);
    }
    if method == "tools/list" && id.is_some() {
        return match principal(req, config) {
            Ok(principal) => {
                let page = message.get("params").and_then(|p| p.get("cursor")).is_some_and(|c| !c.is_null());
                Classified::Listing { principal, protocol, server: server(req), page }
            }
            Err(message) => Classified::refuse(400, "missing_principal", message, protocol),
        };
    }
    if method.starts_with("notifications/") || config.mcp_passthrough.iter().any(|m| m == method) {
        return Classified::Pass;
    }
    if !guarded {
        return match config.unrecognized {
            UnrecognizedTraffic::Allow => Classified::Pass,
            UnrecognizedTraffic::Deny => {
                let message = format!("MCP method `{}` is not allowed", shown(method));
                Classified::refuse(400, "method_not_allowed", message, protocol)
            }
        };
    }
    let params = message.get("params");
    let (name, arguments) = match action(method, params) {
        Ok(action) => action,
        Err(message) => return Classified::refuse(400, "bad_request", message, protocol),
    };
    let principal = match principal(req, config) {
        Ok(p) => p,
        Err(message) => return Classified::refuse(400, "missing_principal", message, protocol),
    };
    let request = Request {
        id: request_id(req),
        principal,
        action: Action::ToolCall(ToolCall {
            tool: name,
            arguments,
            facts: ToolFacts::default(),
            // Listings name tools only: a method decided like a tool
            // (`resources/read`) has no listed definition to be held to.
            server: if method == "tools/call" { server(req) } else { None },
        }),
        timestamp_ms: Some(req.now_ms),
        labels: vec![("api".to_owned(), "mcp".to_owned())],
        escalation_id: escalation_header(req, config),
    };
    Classified::Guard { request: Box::new(request), protocol }
}

/// The MCP server a request goes to, as the gateway's configuration names
/// it (ext_proc's `x-arbiter-mcp-server` metadata, per route); never what
/// the client says (its `:authority` would let it pick a fresh name and
/// reset trust on first use).
fn server(req: &GatewayRequest<'_>) -> Option<String> {
    req.mcp_server.map(|name| arbiter_types::excerpt(name, 200))
}

/// A member name that another member of `object` equals once both are
/// case-folded as Go's encoding/json folds them.
fn case_collision(object: &serde_json::Map<String, Value>) -> Option<String> {
    let fold = |name: &str| -> String {
        name.chars()
            .flat_map(char::to_lowercase)
            .map(|c| match c {
                'ſ' => 's',
                '\u{212a}' => 'k',
                c => c,
            })
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    object.keys().find(|name| !seen.insert(fold(name))).cloned()
}

/// A method name as a refusal quotes it: it is the client's text.
fn shown(method: &str) -> String {
    arbiter_types::excerpt(method, 100)
}

/// The tool call an MCP action is decided as: `tools/call` by its tool and
/// arguments; any other guarded method by its name, with its params.
fn action(method: &str, params: Option<&Value>) -> Result<(String, serde_json::Map<String, Value>), String> {
    let object = match params {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return Err("params: must be an object".into()),
    };
    if method != "tools/call" {
        return Ok((method.to_owned(), object.cloned().unwrap_or_default()));
    }
    let name = match object.and_then(|p| p.get("name")) {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return Err("params.name: must be a non-empty string".into()),
    };
    // What a listing may name, a call may name: nothing longer, no
    // control characters (they would reach policies and logs).
    if name.len() > arbiter_types::MAX_TOOL_NAME_BYTES || name.chars().any(char::is_control) {
        return Err(format!(
            "params.name: `{}` is longer than {} bytes or holds control characters",
            shown(&name),
            arbiter_types::MAX_TOOL_NAME_BYTES
        ));
    }
    let arguments = match object.and_then(|p| p.get("arguments")) {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => return Err("params.arguments: must be an object".into()),
    };
    Ok((name, arguments))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn classify_body(body: Value) -> Classified {
        classify_with(body, &WireConfig::default())
    }

    fn classify_with(body: Value, config: &WireConfig) -> Classified {
        let headers: HashMap<String, String> =
            [("pipeline", "p"), ("agent", "a"), ("team", "t"), ("environment", "dev")]
                .into_iter()
                .map(|(k, v)| (format!("x-arbiter-{k}"), v.to_owned()))
                .chain([("mcp-session-id".to_owned(), "s-1".to_owned())])
                .collect();
        let body = body.to_string();
        let req = GatewayRequest {
            method: "POST",
            path: "/mcp",
            headers: &headers,
            body: body.as_bytes(),
            now_ms: 0,
            grant: None,
            mcp_server: Some("git"),
            reads_answers: true,
        };
        super::super::classify(&req, config)
    }

    #[test]
    fn guards_tool_calls_and_passes_session_plumbing() {
        match classify_body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "warehouse.query", "arguments": {"sql": "select 1"}}}),
        ) {
            Classified::Guard { request, protocol } => {
                assert_eq!(protocol, Protocol::Mcp { id: json!(7) });
                assert_eq!(request.principal.run, "s-1", "the MCP session is the run");
                let Action::ToolCall(call) = request.action else { panic!() };
                assert_eq!(call.server.as_deref(), Some("git"), "the server as the gateway names it");
                assert_eq!((call.tool.as_str(), &call.arguments["sql"]), ("warehouse.query", &json!("select 1")));
            }
            other => panic!("{other:?}"),
        }
        for body in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
            json!({"jsonrpc": "2.0", "id": 3, "result": {}}),
        ] {
            assert!(matches!(classify_body(body.clone()), Classified::Pass), "{body}");
        }
    }

    #[test]
    fn a_gateway_reading_answers_must_be_told_the_server_by_its_route() {
        let headers: HashMap<String, String> = [
            ("x-arbiter-pipeline", "p"),
            ("x-arbiter-agent", "a"),
            ("x-arbiter-team", "t"),
            ("x-arbiter-environment", "dev"),
            // What the client says of the server counts for nothing.
            (":authority", "reports"),
            ("x-arbiter-mcp-server", "reports"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (body, reads_answers, unnamed) in [
            (json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}), true, true),
            (json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}}), true, true),
            (json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}), true, false),
            (json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t"}}), false, false),
        ] {
            let text = body.to_string();
            let req = GatewayRequest {
                method: "POST",
                path: "/mcp",
                headers: &headers,
                body: text.as_bytes(),
                now_ms: 0,
                grant: None,
                mcp_server: None,
                reads_answers,
            };
            let classified = super::super::classify(&req, &WireConfig::default());
            let refused = matches!(classified, Classified::Refuse { code: "mcp_server_unnamed", .. });
            assert_eq!(refused, unnamed, "{body} ({reads_answers}): {classified:?}");
            if let Classified::Guard { request, .. } = classified {
                let Action::ToolCall(call) = request.action else { panic!() };
                assert_eq!(call.server, None, "never the client's name");
            }
        }
    }

    #[test]
    fn members_a_go_server_would_read_twice_are_refused() {
        for body in [
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "Method": "tools/call",
                   "params": {"name": "drop_all"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "warehouse.query", "Name": "warehouse.drop_table"}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "t", "arguments": {}, "argumentſ": {"x": 1}}}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "t", "arguments": {}, "ARGUMENTS": {"x": 1}}}),
        ] {
            match classify_body(body.clone()) {
                Classified::Refuse { code, message, .. } => {
                    assert_eq!(code, "bad_request", "{body}");
                    assert!(message.contains("more than once"), "{message}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn tool_listings_are_watched_for_their_answer() {
        match classify_body(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})) {
            Classified::Listing { principal, protocol, server, page: false } => {
                assert_eq!((principal.pipeline.as_str(), server.as_deref()), ("p", Some("git")));
                assert_eq!(protocol, Protocol::Mcp { id: json!(2) });
            }
            other => panic!("{other:?}"),
        }
        // Without an id no answer comes back to decide: plumbing, passed.
        assert!(matches!(classify_body(json!({"jsonrpc": "2.0", "method": "tools/list"})), Classified::Pass));
    }

    #[test]
    fn methods_that_act_are_decided_like_tools() {
        for (method, params) in [
            ("resources/read", json!({"uri": "file:///etc/passwd"})),
            ("prompts/get", json!({"name": "p", "arguments": {"x": "y"}})),
            ("completion/complete", json!({"ref": {"type": "ref/prompt", "name": "p"}})),
        ] {
            match classify_body(json!({"jsonrpc": "2.0", "id": 8, "method": method, "params": params})) {
                Classified::Guard { request, .. } => {
                    let Action::ToolCall(call) = request.action else { panic!() };
                    assert_eq!(call.tool, method);
                    assert_eq!(Value::Object(call.arguments), params);
                }
                other => panic!("{method}: {other:?}"),
            }
        }
    }

    #[test]
    fn actions_sent_as_notifications_are_refused() {
        for method in ["tools/call", "resources/read", "prompts/get"] {
            let body = json!({"jsonrpc": "2.0", "method": method,
                              "params": {"name": "warehouse.drop_table", "arguments": {"table": "t"}}});
            match classify_body(body) {
                Classified::Refuse { code, .. } => assert_eq!(code, "notification_not_allowed", "{method}"),
                other => panic!("{method}: {other:?}"),
            }
        }
        // An unknown method is refused whether or not it has an id.
        for body in [
            json!({"jsonrpc": "2.0", "method": "sampling/createMessage"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "x/y"}),
        ] {
            assert!(
                matches!(classify_body(body.clone()), Classified::Refuse { code: "method_not_allowed", .. }),
                "{body}"
            );
        }
    }

    /// Found by the property tests (props.rs): a batch was not seen as
    /// JSON-RPC, so with `--unrecognized allow` its calls passed unguarded.
    #[test]
    fn batches_are_refused_whatever_unrecognized_traffic_gets() {
        let body = json!([{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "drop"}}]);
        for unrecognized in [UnrecognizedTraffic::Allow, UnrecognizedTraffic::Deny] {
            let config = WireConfig { unrecognized, ..WireConfig::default() };
            match classify_with(body.clone(), &config) {
                Classified::Refuse { message, .. } => assert_eq!(message, "JSON-RPC batches are not supported"),
                other => panic!("{unrecognized:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_malformed_or_foreign_json_rpc_with_its_id() {
        let cases = [
            (json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": ""}}), "params.name"),
            (
                json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "x", "arguments": [1]}}),
                "params.arguments",
            ),
            (json!({"jsonrpc": "2.0", "id": 6, "method": "eth_call", "params": []}), "`eth_call` is not allowed"),
            (
                json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "t".repeat(257)}}),
                "longer than 256 bytes",
            ),
            (
                json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "drop\ntable"}}),
                "control characters",
            ),
        ];
        for (body, needle) in cases {
            match classify_body(body.clone()) {
                Classified::Refuse { message, protocol: Protocol::Mcp { id }, .. } => {
                    assert!(message.contains(needle), "{message}");
                    assert_eq!(id, body["id"]);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
