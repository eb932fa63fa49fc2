//! The decide request (shared/DESIGN.md §8) and its validation.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::excerpt::excerpt;
use crate::timestamp::parse_rfc3339_ms;
use crate::token_estimate::estimate_prompt_tokens;
use crate::tool::{ToolListing, ToolResult};

/// Longest accepted id, principal field, tool or model name, in bytes.
const MAX_NAME_BYTES: usize = 256;
/// How much of a field's path and of the problem an error shows.
const MAX_ERROR_PATH_CHARS: usize = 160;
const MAX_ERROR_MESSAGE_CHARS: usize = 400;

/// A validated request: every field a policy may rely on is present and
/// well-formed.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The caller's id for the request, echoed in the decision.
    pub id: String,
    /// Who acts: the principal the caller's credential grants.
    pub principal: Principal,
    /// What it wants to do.
    pub action: Action,
    /// Event time in ms since the Unix epoch; `None` when the caller gave
    /// none (the host then uses its clock).
    pub timestamp_ms: Option<i64>,
    /// Free-form labels, in document order.
    pub labels: Vec<(String, String)>,
    /// A retry of an escalated request names its escalation, to claim the
    /// approval.
    pub escalation_id: Option<String>,
}

/// Who an action is for: the pipeline, agent and team, where and in which run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    /// The pipeline (a scheduled job, a service) the agent works for.
    pub pipeline: String,
    /// The agent within the pipeline.
    pub agent: String,
    /// The team that owns the pipeline (budgets and reports by team).
    pub team: String,
    /// The environment it runs in.
    pub environment: Environment,
    /// The run: one execution of the pipeline (history and run budgets).
    pub run: String,
}

/// The deployment environment of a principal; a bundle may serve only some.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Development.
    Dev,
    /// Staging.
    Staging,
    /// Production.
    Prod,
}

impl Environment {
    /// The environment as JSON spells it (`prod`).
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
        }
    }
}

/// What an agent wants to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A call of a tool (an MCP `tools/call`, a function call).
    ToolCall(ToolCall),
    /// A request to an LLM provider.
    LlmRequest(LlmRequest),
    /// A server's `tools/list` answer, before the agent sees it.
    ToolListing(ToolListing),
    /// A server's answer to a tool call, before the agent sees it.
    ToolResult(ToolResult),
}

/// The kind of an action, as policies are scoped by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// A tool call.
    ToolCall,
    /// An LLM request.
    LlmRequest,
    /// An MCP tool listing.
    ToolListing,
    /// An MCP tool result.
    ToolResult,
}

impl ActionKind {
    /// The kinds of contract 0.1.0, and of a scope that names none: a policy
    /// sees listings and results only when its scope asks for them.
    pub const ORIGINAL: [ActionKind; 2] = [ActionKind::ToolCall, ActionKind::LlmRequest];

    /// The kind as JSON and manifests spell it (`tool_call`).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::ToolCall => "tool_call",
            ActionKind::LlmRequest => "llm_request",
            ActionKind::ToolListing => "tool_listing",
            ActionKind::ToolResult => "tool_result",
        }
    }
}

impl Action {
    /// Which kind of action this is.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::ToolCall(_) => ActionKind::ToolCall,
            Action::LlmRequest(_) => ActionKind::LlmRequest,
            Action::ToolListing(_) => ActionKind::ToolListing,
            Action::ToolResult(_) => ActionKind::ToolResult,
        }
    }

    /// The tool call, of a call or of the call a result answers.
    pub fn tool_call(&self) -> Option<&ToolCall> {
        match self {
            Action::ToolCall(call) => Some(call),
            Action::ToolResult(result) => Some(&result.call),
            Action::LlmRequest(_) | Action::ToolListing(_) => None,
        }
    }
}

/// A call of a tool by name with its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The tool's name (`warehouse.query`).
    pub tool: String,
    /// The arguments object, members in document order.
    pub arguments: Map<String, Value>,
    /// What the caller declares about the call.
    pub facts: ToolFacts,
    /// The MCP server the call goes to, as the gateway names it.
    pub server: Option<String>,
}

/// What the caller declares about a tool call beyond its arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolFacts {
    /// The call cannot be undone (a drop, a payment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<bool>,
    /// What it acts on (a table, a bucket), as the caller names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Where that resource lives (data residency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A request to an LLM: the model and how many tokens it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmRequest {
    /// The model asked for, as the provider names it.
    pub model: String,
    /// Tokens of the prompt (given, or estimated from the messages).
    pub prompt_tokens: u64,
    /// True when `prompt_tokens` was estimated from `messages`.
    pub prompt_tokens_estimated: bool,
    /// The most the answer may generate.
    pub max_output_tokens: u64,
    /// `sha256:` of the prompt's canonical JSON, when the host saw the
    /// prompt (messages, system, tools): it makes an approval hold for
    /// this prompt only, not for any prompt of the same size.
    pub content_digest: Option<String>,
}

impl LlmRequest {
    /// The [`LlmRequest::content_digest`] of prompt parts.
    pub fn digest_content(parts: &[Value]) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update(canonical_json(part).as_bytes());
            hasher.update(b"\n");
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// The most output the request may produce: its max output tokens, or
    /// less when a clamp obligation applies.
    pub fn allowed_output_tokens(&self, clamp: Option<u64>) -> u64 {
        clamp.map_or(self.max_output_tokens, |c| c.min(self.max_output_tokens))
    }
}

/// Why a request was refused. The message names the field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The body is not JSON (or not UTF-8).
    #[error("request body is not valid UTF-8 JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    /// A field is missing, unknown or malformed.
    #[error("{path}: {message}")]
    Field {
        /// The field, as a path (`action.arguments`).
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

impl RequestError {
    /// Both parts may quote the input (a label's key, an unknown field's
    /// name, a bad value), so both are bounded and control characters
    /// escaped: the error goes into a 400 body and the server's log.
    fn field(path: &str, message: impl AsRef<str>) -> Self {
        RequestError::Field {
            path: excerpt(path, MAX_ERROR_PATH_CHARS),
            message: excerpt(message.as_ref(), MAX_ERROR_MESSAGE_CHARS),
        }
    }

    /// A body that is JSON but not shaped like a request, as a value or as
    /// text: the same error either way.
    fn schema(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        let path = field_path(e.path().to_string());
        RequestError::field(&path, strip_position(&e.into_inner().to_string()))
    }

    /// The JSON path of the offending field, when one is known.
    pub fn path(&self) -> Option<&str> {
        match self {
            RequestError::Syntax(_) => None,
            RequestError::Field { path, .. } => Some(path),
        }
    }
}

impl Request {
    /// Parses and validates a decide request body.
    pub fn from_json_slice(body: &[u8]) -> Result<Self, RequestError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let wire: WireRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            // serde_json reports a number where an enum is expected
            // (`"environment": 0`) as a syntax error ("expected value"):
            // only text that does not read as JSON at all is one.
            let syntax = e.inner().is_syntax() || e.inner().is_eof();
            if syntax && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                RequestError::Syntax(e.into_inner())
            } else {
                RequestError::schema(e)
            }
        })?;
        de.end().map_err(RequestError::Syntax)?;
        wire.validate()
    }

    /// Parses a request that is already a JSON value (e.g. a trace line).
    pub fn from_json_value(value: &Value) -> Result<Self, RequestError> {
        let wire: WireRequest = serde_path_to_error::deserialize(value).map_err(RequestError::schema)?;
        wire.validate()
    }

    /// The request as the JSON body of `POST /v1/decide`.
    pub fn to_json(&self) -> Value {
        let mut action = Map::new();
        action.insert("kind".into(), self.action.kind().as_str().into());
        if let Some(call) = self.action.tool_call() {
            action.insert("tool".into(), call.tool.clone().into());
            action.insert("arguments".into(), Value::Object(call.arguments.clone()));
            if call.facts != ToolFacts::default() {
                action.insert("declared".into(), serde_json::to_value(&call.facts).unwrap_or(Value::Null));
            }
            if let Some(server) = &call.server {
                action.insert("server".into(), server.clone().into());
            }
        }
        match &self.action {
            Action::ToolCall(_) => {}
            Action::ToolResult(result) => {
                action.insert("result".into(), Value::Object(result.result.clone()));
            }
            Action::ToolListing(listing) => {
                action.insert("server".into(), listing.server.clone().into());
                action.insert("tools".into(), listing.tools.iter().map(|t| t.to_mcp()).collect());
                if listing.page {
                    action.insert("page".into(), true.into());
                }
            }
            Action::LlmRequest(llm) => {
                action.insert("model".into(), llm.model.clone().into());
                action.insert("prompt_tokens".into(), llm.prompt_tokens.into());
                action.insert("max_output_tokens".into(), llm.max_output_tokens.into());
                if let Some(digest) = &llm.content_digest {
                    action.insert("content_digest".into(), digest.clone().into());
                }
            }
        }
        let mut body = Map::new();
        body.insert("id".into(), self.id.clone().into());
        body.insert("principal".into(), serde_json::to_value(&self.principal).unwrap_or(Value::Null));
        body.insert("action".into(), Value::Object(action));
        if let Some(ms) = self.timestamp_ms {
            body.insert("timestamp".into(), crate::format_rfc3339_ms(ms).into());
        }
        if !self.labels.is_empty() {
            let labels = self.labels.iter().map(|(k, v)| (k.clone(), Value::from(v.clone()))).collect();
            body.insert("labels".into(), Value::Object(labels));
        }
        if let Some(id) = &self.escalation_id {
            body.insert("escalation_id".into(), id.clone().into());
        }
        Value::Object(body)
    }

    /// What makes two requests "the same" for an approval: principal and
    /// action, not id, time or labels. `sha256:` of their canonical JSON.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let body = self.to_json();
        let canonical = canonical_json(&serde_json::json!({"principal": body["principal"], "action": body["action"]}));
        format!("sha256:{}", hex::encode(Sha256::digest(canonical.as_bytes())))
    }
}

/// serde_path_to_error calls the top level "." (and an unknown member
/// named "" at the top level ""); name it.
fn field_path(path: String) -> String {
    if path == "." || path.is_empty() { "request".to_owned() } else { path }
}

/// JSON with object keys sorted at every level.
pub(crate) fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::from(k.as_str()), canonical_json(&map[k.as_str()])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// serde_json appends "at line L column C"; with a path in front it is noise.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    id: String,
    principal: Principal,
    action: WireAction,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    labels: Option<Map<String, Value>>,
    #[serde(default)]
    escalation_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum WireAction {
    ToolCall {
        tool: String,
        #[serde(default)]
        arguments: Option<Value>,
        #[serde(default)]
        declared: Option<ToolFacts>,
        #[serde(default)]
        server: Option<String>,
    },
    /// As `tools/list` answers: `tools` holds the server's definitions.
    ToolListing {
        server: String,
        tools: Vec<Value>,
        #[serde(default)]
        page: bool,
    },
    /// The call it answers, and the JSON-RPC `result` object.
    ToolResult {
        tool: String,
        #[serde(default)]
        arguments: Option<Value>,
        #[serde(default)]
        declared: Option<ToolFacts>,
        #[serde(default)]
        server: Option<String>,
        result: Value,
    },
    LlmRequest {
        model: String,
        #[serde(default)]
        prompt_tokens: Option<u64>,
        #[serde(default)]
        messages: Option<Vec<Value>>,
        max_output_tokens: u64,
        /// As recorded in audit logs (which keep no messages); computed
        /// from `messages` when they are given.
        #[serde(default)]
        content_digest: Option<String>,
    },
}

impl WireRequest {
    fn validate(self) -> Result<Request, RequestError> {
        check_name("id", &self.id)?;
        let p = &self.principal;
        check_name("principal.pipeline", &p.pipeline)?;
        check_name("principal.agent", &p.agent)?;
        check_name("principal.team", &p.team)?;
        check_name("principal.run", &p.run)?;
        let timestamp_ms = match &self.timestamp {
            Some(text) => Some(parse_rfc3339_ms(text).map_err(|e| RequestError::field("timestamp", e.to_string()))?),
            None => None,
        };
        let labels = match self.labels {
            None => Vec::new(),
            Some(map) => map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k, s)),
                    other => Err(RequestError::field(
                        &format!("labels.{k}"),
                        format!("must be a string, got {}", json_kind(&other)),
                    )),
                })
                .collect::<Result<_, _>>()?,
        };
        if let Some(id) = &self.escalation_id {
            check_name("escalation_id", id)?;
        }
        let action = self.action.validate()?;
        Ok(Request {
            id: self.id,
            principal: self.principal,
            action,
            timestamp_ms,
            labels,
            escalation_id: self.escalation_id,
        })
    }
}

impl WireAction {
    fn validate(self) -> Result<Action, RequestError> {
        match self {
            WireAction::ToolCall { tool, arguments, declared, server } => {
                Ok(Action::ToolCall(tool_call(tool, arguments, declared, server)?))
            }
            WireAction::ToolResult { tool, arguments, declared, server, result } => {
                let call = tool_call(tool, arguments, declared, server)?;
                match result {
                    Value::Object(result) => Ok(Action::ToolResult(ToolResult { call, result })),
                    other => Err(RequestError::field(
                        "action.result",
                        format!("must be a JSON object, got {}", json_kind(&other)),
                    )),
                }
            }
            WireAction::ToolListing { server, tools, page } => {
                check_name("action.server", &server)?;
                ToolListing::from_mcp(server, &tools, page)
                    .map(Action::ToolListing)
                    .map_err(|(i, message)| RequestError::field(&format!("action.tools[{i}]"), message))
            }
            WireAction::LlmRequest { model, prompt_tokens, messages, max_output_tokens, content_digest } => {
                check_name("action.model", &model)?;
                let content_digest = match (&messages, content_digest) {
                    (Some(messages), _) => Some(LlmRequest::digest_content(messages)),
                    (None, Some(digest)) => {
                        check_name("action.content_digest", &digest)?;
                        Some(digest)
                    }
                    (None, None) => None,
                };
                let (prompt_tokens, estimated) = match (prompt_tokens, messages) {
                    (Some(tokens), _) => (tokens, false),
                    (None, Some(messages)) if !messages.is_empty() => (estimate_prompt_tokens(&messages), true),
                    (None, Some(_)) => {
                        return Err(RequestError::field("action.messages", "must not be empty"));
                    }
                    (None, None) => {
                        return Err(RequestError::field(
                            "action.prompt_tokens",
                            "missing: give `prompt_tokens` or `messages`",
                        ));
                    }
                };
                Ok(Action::LlmRequest(LlmRequest {
                    model,
                    prompt_tokens,
                    prompt_tokens_estimated: estimated,
                    max_output_tokens,
                    content_digest,
                }))
            }
        }
    }
}

fn tool_call(
    tool: String,
    arguments: Option<Value>,
    declared: Option<ToolFacts>,
    server: Option<String>,
) -> Result<ToolCall, RequestError> {
    check_name("action.tool", &tool)?;
    if let Some(server) = &server {
        check_name("action.server", server)?;
    }
    let arguments = match arguments {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map,
        Some(other) => {
            return Err(RequestError::field(
                "action.arguments",
                format!("must be a JSON object, got {}", json_kind(&other)),
            ));
        }
    };
    Ok(ToolCall { tool, arguments, facts: declared.unwrap_or_default(), server })
}

fn check_name(path: &str, value: &str) -> Result<(), RequestError> {
    if value.is_empty() {
        return Err(RequestError::field(path, "must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(RequestError::field(
            path,
            format!("is {} bytes long; at most {MAX_NAME_BYTES} are accepted", value.len()),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(RequestError::field(path, "must not contain control characters"));
    }
    Ok(())
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "id": "r-17",
            "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                          "environment": "prod", "run": "2026-11-26T02:00Z"},
            "action": {"kind": "tool_call", "tool": "warehouse.query",
                       "arguments": {"sql": "select count(*) from orders_daily"}}
        })
    }

    fn parse(value: &Value) -> Result<Request, RequestError> {
        Request::from_json_slice(value.to_string().as_bytes())
    }

    #[test]
    fn parses_the_design_example() {
        let request = parse(&base()).unwrap();
        assert_eq!(request.principal.environment, Environment::Prod);
        let Action::ToolCall(call) = &request.action else { panic!("not a tool call") };
        assert_eq!(call.tool, "warehouse.query");
        assert_eq!(call.arguments["sql"], "select count(*) from orders_daily");
        assert_eq!(request.timestamp_ms, None);
    }

    #[test]
    fn estimates_prompt_tokens_from_messages() {
        let mut body = base();
        body["action"] = json!({"kind": "llm_request", "model": "gpt-4o-2024-08-06",
                                "messages": [{"role": "user", "content": "hi"}], "max_output_tokens": 10});
        let Action::LlmRequest(llm) = parse(&body).unwrap().action else { panic!("not llm") };
        assert!(llm.prompt_tokens_estimated);
        assert!(llm.prompt_tokens > 0);
    }

    /// Each malformed body must be refused with an error naming the field.
    #[test]
    fn bad_input_names_the_field() {
        let cases: Vec<(Value, &str)> = vec![
            (
                {
                    let mut b = base();
                    b["principal"].as_object_mut().unwrap().remove("team");
                    b
                },
                "principal",
            ),
            (
                {
                    let mut b = base();
                    b["principal"]["environment"] = json!("qa");
                    b
                },
                "principal.environment",
            ),
            (
                {
                    let mut b = base();
                    b["principal"]["run"] = json!("");
                    b
                },
                "principal.run",
            ),
            (
                {
                    let mut b = base();
                    b["action"]["kind"] = json!("sql");
                    b
                },
                "action",
            ),
            (
                {
                    let mut b = base();
                    b["action"]["tool"] = json!("");
                    b
                },
                "action.tool",
            ),
            (
                {
                    let mut b = base();
                    b["action"]["arguments"] = json!([1]);
                    b
                },
                "action.arguments",
            ),
            (
                {
                    let mut b = base();
                    b["id"] = json!(17);
                    b
                },
                "id",
            ),
            (
                {
                    let mut b = base();
                    b["timestamp"] = json!("noon");
                    b
                },
                "timestamp",
            ),
            (
                {
                    let mut b = base();
                    b["labels"] = json!({"k": 1});
                    b
                },
                "labels.k",
            ),
            (
                {
                    let mut b = base();
                    b["surprise"] = json!(1);
                    b
                },
                "surprise",
            ),
            (
                {
                    let mut b = base();
                    b["action"] = json!({"kind": "llm_request", "model": "m", "max_output_tokens": 1});
                    b
                },
                "action.prompt_tokens",
            ),
            (
                {
                    let mut b = base();
                    b["action"] =
                        json!({"kind": "llm_request", "model": "m", "prompt_tokens": -5, "max_output_tokens": 1});
                    b
                },
                "action",
            ),
        ];
        for (body, path) in cases {
            let err = parse(&body).expect_err(&body.to_string());
            let text = err.to_string();
            assert!(text.starts_with(path), "expected an error at `{path}`, got `{text}` for {body}");
        }
    }

    #[test]
    fn a_missing_top_level_field_is_a_field_error() {
        let mut body = base();
        body.as_object_mut().unwrap().remove("principal");
        let err = parse(&body).unwrap_err();
        assert_eq!(err.path(), Some("request"));
        assert_eq!(err.to_string(), "request: missing field `principal`");
    }

    /// Found by the property tests (tests/request_props.rs): serde_json
    /// calls these syntax errors, the body was called not JSON.
    #[test]
    fn a_value_of_the_wrong_type_for_an_enum_names_its_field() {
        for wrong in [json!(0), json!(true), json!(null), json!([]), json!(1.5)] {
            let mut body = base();
            body["principal"]["environment"] = wrong.clone();
            let err = parse(&body).unwrap_err();
            assert_eq!(err.path(), Some("principal.environment"), "{wrong}: {err}");
        }
        let err = parse(&json!({"": 1})).unwrap_err();
        assert_eq!(err.path(), Some("request"), "{err}");
        let err = Request::from_json_value(&json!({})).unwrap_err();
        assert_eq!(err.to_string(), "request: missing field `id`", "as a value as well as text");
    }

    /// Found by the property tests: errors quoted the input whole.
    #[test]
    fn errors_quote_the_input_bounded_and_escaped() {
        let mut body = base();
        body["labels"] = json!({format!("k\n{}", "x".repeat(10_000)): 1});
        body["surprise\u{1b}[2J"] = json!(1);
        let err = parse(&body).unwrap_err();
        let text = err.to_string();
        assert!(text.len() < 1000 && !text.chars().any(char::is_control), "{text}");
        let mut body = base();
        body["timestamp"] = json!("x".repeat(100_000));
        let text = parse(&body).unwrap_err().to_string();
        assert!(text.starts_with("timestamp: `xxx") && text.len() < 1000, "{text}");
    }

    #[test]
    fn syntax_errors_are_reported_as_such() {
        assert!(matches!(Request::from_json_slice(b"{\"id\": "), Err(RequestError::Syntax(_))));
        assert!(matches!(Request::from_json_slice(b"\xff\xfe"), Err(RequestError::Syntax(_))));
        assert!(Request::from_json_slice(b"{} {}").is_err());
    }

    #[test]
    fn fingerprints_ignore_id_time_and_key_order() {
        let a = parse(&base()).unwrap();
        let mut other = base();
        other["id"] = json!("r-18");
        other["timestamp"] = json!("2026-11-26T03:00:00Z");
        other["escalation_id"] = json!("esc-1");
        assert_eq!(parse(&other).unwrap().fingerprint(), a.fingerprint());
        let mut different = base();
        different["action"]["arguments"]["sql"] = json!("drop table orders_daily");
        assert_ne!(parse(&different).unwrap().fingerprint(), a.fingerprint());
        let reordered = r#"{"action": {"arguments": {"sql": "select count(*) from orders_daily"}, "tool": "warehouse.query", "kind": "tool_call"},
            "principal": {"run": "2026-11-26T02:00Z", "environment": "prod", "team": "data-platform", "agent": "monitor", "pipeline": "orders_daily"},
            "id": "x"}"#;
        assert_eq!(Request::from_json_slice(reordered.as_bytes()).unwrap().fingerprint(), a.fingerprint());
    }

    #[test]
    fn llm_fingerprints_cover_the_messages() {
        let llm = |content: &str| {
            let mut body = base();
            body["action"] = json!({"kind": "llm_request", "model": "m", "prompt_tokens": 10,
                                    "messages": [{"role": "user", "content": content}], "max_output_tokens": 10});
            parse(&body).unwrap()
        };
        let approved = llm("summarise the orders table");
        assert_eq!(llm("summarise the orders table").fingerprint(), approved.fingerprint());
        assert_ne!(llm("now drop the orders table").fingerprint(), approved.fingerprint(), "same size, other prompt");
        // The digest survives the audit log, which keeps no messages.
        let recorded = Request::from_json_value(&approved.to_json()).unwrap();
        assert_eq!(recorded.fingerprint(), approved.fingerprint());
    }

    #[test]
    fn to_json_round_trips() {
        let mut body = base();
        body["timestamp"] = json!("2026-11-26T02:00:01.000Z");
        body["labels"] = json!({"ticket": "DQ-1"});
        let request = parse(&body).unwrap();
        assert_eq!(Request::from_json_value(&request.to_json()).unwrap(), request);
    }

    #[test]
    fn listings_and_results_round_trip_and_name_their_faults() {
        let actions = [
            json!({"kind": "tool_call", "tool": "git_status", "server": "git", "arguments": {"repo": "."}}),
            json!({"kind": "tool_listing", "server": "git", "tools": [
                {"name": "git_status", "description": "Shows status", "inputSchema": {"type": "object"},
                 "annotations": {"readOnlyHint": true}}]}),
            json!({"kind": "tool_result", "tool": "git_status", "server": "git", "arguments": {},
                   "result": {"content": [{"type": "text", "text": "clean"}], "isError": false}}),
        ];
        for action in actions {
            let mut body = base();
            body["action"] = action.clone();
            let request = parse(&body).unwrap();
            assert_eq!(Request::from_json_value(&request.to_json()).unwrap(), request, "{action}");
        }
        for (action, path) in [
            (json!({"kind": "tool_listing", "server": "git", "tools": [{"name": "x"}]}), "action.tools[0]"),
            (json!({"kind": "tool_listing", "server": "", "tools": []}), "action.server"),
            (json!({"kind": "tool_result", "tool": "t", "result": []}), "action.result"),
            (json!({"kind": "tool_call", "tool": "t", "server": "a\u{0}b"}), "action.server"),
        ] {
            let mut body = base();
            body["action"] = action;
            assert_eq!(parse(&body).unwrap_err().path(), Some(path));
        }
    }
}
