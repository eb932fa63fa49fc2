//! Properties of the gateway classifiers (docs/fuzzing.md): no body,
//! path or header set makes them panic; a refusal is a clear error; an LLM
//! call never reserves fewer output tokens than its body asks for; an MCP
//! action never passes unguarded.

use std::collections::HashMap;

use arbiter_testgen::{check_clear, config, damaged_bytes, hostile_number, hostile_string, json_value, mutated};
use arbiter_types::Action;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::{Classified, GatewayRequest, classify};
use crate::config::{UnrecognizedTraffic, WireConfig};

const PATHS: &[&str] =
    &["/v1/chat/completions", "/v1/responses", "/v1/messages", "/mcp", "/v1/chat/completions/?x=1", "/", "/v1/models"];

fn headers() -> impl Strategy<Value = HashMap<String, String>> {
    let fields = ["pipeline", "agent", "team", "environment", "run"];
    (prop::collection::vec(any::<bool>(), 5), prop::option::of(hostile_string())).prop_map(move |(keep, session)| {
        let mut headers: HashMap<String, String> = fields
            .iter()
            .zip(keep)
            .filter(|(_, keep)| *keep)
            .map(|(field, _)| (format!("x-arbiter-{field}"), if *field == "environment" { "dev" } else { "v" }.into()))
            .collect();
        headers.extend(session.map(|s| ("mcp-session-id".to_owned(), s)));
        headers
    })
}

fn configs() -> impl Strategy<Value = WireConfig> {
    prop_oneof![Just(UnrecognizedTraffic::Deny), Just(UnrecognizedTraffic::Allow)]
        .prop_map(|unrecognized| WireConfig { unrecognized, ..WireConfig::default() })
}

fn run(method: &str, path: &str, headers: &HashMap<String, String>, body: &[u8], config: &WireConfig) -> Classified {
    let request =
        GatewayRequest { method, path, headers, body, now_ms: 0, grant: None, mcp_server: None, reads_answers: false };
    classify(&request, config)
}

/// A refusal says what is wrong, within bounds, with a client error status.
fn check_refusal(classified: &Classified) -> Result<(), TestCaseError> {
    if let Classified::Refuse { status, code, message, .. } = classified {
        prop_assert!((400..500).contains(status), "status {status} for {code}");
        check_clear(code, &[])?;
        check_clear(message, &[])?;
    }
    Ok(())
}

/// The most output tokens a body asks for: each limit field it gives,
/// times the choices it asks for (`n`).
fn asked(path: &str, body: &Value) -> u64 {
    let fields: &[&str] = match path {
        "/v1/chat/completions" => &["max_completion_tokens", "max_tokens"],
        "/v1/responses" => &["max_output_tokens"],
        _ => &["max_tokens"],
    };
    let most = fields.iter().filter_map(|f| body.get(*f).and_then(Value::as_u64)).max().unwrap_or(0);
    let choices = if path == "/v1/chat/completions" { body.get("n").and_then(Value::as_u64).unwrap_or(1) } else { 1 };
    most.saturating_mul(choices)
}

fn token_limit() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (0u64..100_000).prop_map(Some), any::<u64>().prop_map(Some)]
}

/// A well-formed OpenAI or Anthropic call, and its path.
fn llm_call() -> impl Strategy<Value = (&'static str, Value)> {
    let model = prop::sample::select(vec!["gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929", "m-1"]);
    let messages = prop::collection::vec(json_value(), 1..3);
    (0..3usize, model, messages, token_limit(), token_limit(), prop::option::of(1u64..=128)).prop_map(
        |(api, model, messages, a, b, n)| {
            let (path, prompt, limits): (_, _, [(&str, Option<u64>); 3]) = match api {
                0 => ("/v1/chat/completions", "messages", [("max_tokens", a), ("max_completion_tokens", b), ("n", n)]),
                1 => ("/v1/responses", "input", [("max_output_tokens", a), ("", None), ("", None)]),
                _ => ("/v1/messages", "messages", [("max_tokens", a), ("", None), ("", None)]),
            };
            let mut body = json!({"model": model, prompt: messages});
            if path == "/v1/messages" {
                body["system"] = "be brief".into();
            }
            for (field, value) in limits {
                if let Some(value) = value {
                    body[field] = value.into();
                }
            }
            (path, body)
        },
    )
}

fn guarded_llm_tokens(classified: &Classified) -> Option<u64> {
    match classified {
        Classified::Guard { request, .. } => match &request.action {
            Action::LlmRequest(llm) => Some(llm.max_output_tokens),
            _ => None,
        },
        _ => None,
    }
}

/// Every MCP method that acts or returns data, and some that look like
/// one.
fn mcp_method() -> impl Strategy<Value = String> {
    let config = WireConfig::default();
    let known: Vec<String> = ["tools/call".to_owned()]
        .into_iter()
        .chain(config.mcp_guarded.iter().cloned())
        .chain(config.mcp_passthrough.iter().cloned())
        .chain(
            ["notifications/initialized", "Tools/call", "tools/call ", "tools/call\u{0}", "sampling/createMessage"]
                .map(str::to_owned),
        )
        .collect();
    prop_oneof![4 => prop::sample::select(known), 1 => hostile_string()]
}

fn is_guarded(method: &str) -> bool {
    method == "tools/call" || WireConfig::default().mcp_guarded.iter().any(|m| m == method)
}

/// A JSON-RPC message: an id or none (`null`, absent), a method, params
/// well-formed or not.
fn mcp_message() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<i64>().prop_map(|n| Some(n.into())),
        hostile_string().prop_map(|s| Some(s.into())),
        json_value().prop_map(Some),
    ];
    let params = prop_oneof![
        (hostile_string(), prop::option::of(json_value()))
            .prop_map(|(name, arguments)| Some(json!({"name": name, "arguments": arguments}))),
        json_value().prop_map(Some),
        Just(None),
    ];
    (id, mcp_method(), params).prop_map(|(id, method, params)| {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(id) = id {
            message["id"] = id;
        }
        if let Some(params) = params {
            message["params"] = params;
        }
        message
    })
}

/// One message, or a batch of them.
fn mcp_body() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => mcp_message(),
        1 => prop::collection::vec(mcp_message(), 1..4).prop_map(Value::Array),
    ]
}

fn guarded_in(body: &Value) -> bool {
    let method = |m: &Value| m.get("method").and_then(Value::as_str).is_some_and(is_guarded);
    match body {
        Value::Array(items) => items.iter().any(method),
        message => method(message),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bodies_are_classified_or_refused_clearly(
        method in prop::sample::select(vec!["POST", "GET", "PUT", "DELETE"]),
        path in prop::sample::select(PATHS),
        headers in headers(),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            json_value().prop_map(|v| v.to_string().into_bytes()),
        ],
        config in configs(),
    ) {
        check_refusal(&run(method, path, &headers, &body, &config))?;
    }

    /// A well-formed LLM call is guarded with at least the output tokens
    /// it may produce.
    #[test]
    fn llm_calls_reserve_what_they_ask_for((path, body) in llm_call(), config in configs()) {
        let classified = run("POST", path, &HashMap::from(principal()), body.to_string().as_bytes(), &config);
        let reserved = guarded_llm_tokens(&classified);
        prop_assert!(reserved.is_some(), "{body} on {path}: {classified:?}");
        prop_assert!(reserved >= Some(asked(path, &body)), "{body} on {path}: reserves {reserved:?}");
    }

    /// The same call with one field changed: guarded with at least what
    /// it still asks for, or refused naming a field of the body.
    #[test]
    fn mutated_llm_calls_reserve_or_refuse(
        ((path, _), (body, _, _)) in llm_call().prop_flat_map(|(path, body)| (Just((path, body.clone())), mutated(body))),
        limit in prop_oneof![hostile_number(), json_value()],
        field in prop::sample::select(vec!["max_tokens", "max_completion_tokens", "max_output_tokens", "n"]),
    ) {
        let mut body = body;
        if let Value::Object(map) = &mut body {
            map.insert(field.to_owned(), limit);
        }
        let classified = run("POST", path, &HashMap::from(principal()), body.to_string().as_bytes(), &WireConfig::default());
        check_refusal(&classified)?;
        match &classified {
            Classified::Refuse { message, .. } => check_clear(message, &["body"])?,
            other => {
                let reserved = guarded_llm_tokens(other);
                prop_assert!(reserved >= Some(asked(path, &body)), "{body} on {path}: {other:?}");
            }
        }
    }

    /// A body damaged at the byte level: classified or refused clearly.
    #[test]
    fn damaged_llm_calls_are_refused_clearly(
        (path, bytes) in llm_call().prop_flat_map(|(path, body)| (Just(path), damaged_bytes(body.to_string().into_bytes()))),
    ) {
        check_refusal(&run("POST", path, &HashMap::from(principal()), &bytes, &WireConfig::default()))?;
    }

    /// Whatever else a message says, a guarded method (alone or in a batch)
    /// is decided or refused, never passed; a decided `tools/call` is
    /// decided as the tool it names.
    #[test]
    fn mcp_actions_never_pass_unguarded(body in mcp_body(), headers in headers(), config in configs(), path in prop::sample::select(PATHS)) {
        let classified = run("POST", path, &headers, body.to_string().as_bytes(), &config);
        check_refusal(&classified)?;
        if guarded_in(&body) {
            prop_assert!(!matches!(classified, Classified::Pass), "passed: {body}");
        }
        if let Classified::Guard { request, .. } = &classified
            && body.get("method") == Some(&json!("tools/call"))
            && let Action::ToolCall(call) = &request.action
        {
            prop_assert_eq!(Some(&json!(call.tool)), body["params"].get("name"));
        }
    }
}

fn principal() -> [(String, String); 5] {
    ["pipeline", "agent", "team", "environment", "run"]
        .map(|f| (format!("x-arbiter-{f}"), if f == "environment" { "prod" } else { "p" }.to_owned()))
}
