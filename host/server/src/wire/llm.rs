//! OpenAI (chat completions, responses) and Anthropic (messages) calls.

use arbiter_types::{Action, LlmRequest, Request};
use serde_json::Value;

use super::principal::{principal, request_id};
use super::tokens::prompt_tokens;
use super::{Classified, GatewayRequest, Protocol};
use crate::config::WireConfig;

/// The provider API an LLM call speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    OpenAiChat,
    OpenAiResponses,
    AnthropicMessages,
}

impl Api {
    /// The body fields that limit output tokens (per choice), the first
    /// being the one arbiter sets when the body has none.
    pub(crate) fn limit_fields(self) -> &'static [&'static str] {
        match self {
            Api::OpenAiChat => &["max_completion_tokens", "max_tokens"],
            Api::OpenAiResponses => &["max_output_tokens"],
            Api::AnthropicMessages => &["max_tokens"],
        }
    }
}

/// What the gateway must know of an allowed LLM call to hold the provider
/// to its reservation (ext_proc rewrites the body) and to read its answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LlmCall {
    pub(crate) api: Api,
    pub(crate) model: String,
    /// Streamed (SSE) answer asked for.
    pub(crate) stream: bool,
    /// Completions generated (OpenAI chat `n`), each up to the per-choice limit.
    pub(crate) choices: u64,
    /// The output-limit fields the body set.
    pub(crate) limit_fields: Vec<&'static str>,
    /// OpenAI chat streaming: the client asked for the final usage chunk.
    pub(crate) usage_requested: bool,
    /// What the reservation counted for the prompt.
    pub(crate) prompt_tokens: u64,
}

/// Completions one OpenAI chat request may ask for (the API's own bound).
const MAX_CHOICES: u64 = 128;

fn api_of(path: &str) -> Option<Api> {
    let path = path.split('?').next().unwrap_or(path).trim_end_matches('/');
    if path.ends_with("/chat/completions") {
        Some(Api::OpenAiChat)
    } else if path.ends_with("/responses") {
        Some(Api::OpenAiResponses)
    } else if path.ends_with("/messages") {
        Some(Api::AnthropicMessages)
    } else {
        None
    }
}

/// `None` when the path is no LLM API arbiter knows.
pub(super) fn classify(req: &GatewayRequest<'_>, body: &Value, config: &WireConfig) -> Option<Classified> {
    let api = api_of(req.path)?;
    Some(match llm_request(api, body, config) {
        Err(message) => Classified::refuse(400, "bad_request", message, Protocol::Http),
        Ok((llm, call)) => match principal(req, config) {
            Err(message) => Classified::refuse(400, "missing_principal", message, Protocol::Http),
            Ok(principal) => {
                let request = Request {
                    id: request_id(req),
                    principal,
                    action: Action::LlmRequest(llm),
                    timestamp_ms: Some(req.now_ms),
                    labels: vec![("api".to_owned(), format!("{api:?}"))],
                    escalation_id: escalation_header(req, config),
                };
                Classified::Guard { request: Box::new(request), protocol: Protocol::Llm(Box::new(call)) }
            }
        },
    })
}

pub(super) fn escalation_header(req: &GatewayRequest<'_>, config: &WireConfig) -> Option<String> {
    req.headers.get(&format!("{}escalation-id", config.header_prefix)).filter(|v| !v.is_empty()).cloned()
}

/// The request as decided, and the call's shape. The reservation covers
/// every choice, the prompt's messages, system prompt and instructions, and
/// the tool definitions and output schema sent with them (images at a fixed
/// worst case, see the tokens module).
fn llm_request(api: Api, body: &Value, config: &WireConfig) -> Result<(LlmRequest, LlmCall), String> {
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => return Err("body.model: must be a non-empty string".into()),
        None => return Err("body.model: missing".into()),
    };
    let mut parts = match api {
        Api::OpenAiChat => array("messages", body)?,
        Api::OpenAiResponses => match body.get("input") {
            Some(Value::String(text)) => vec![Value::String(text.clone())],
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err("body.input: must be a string or an array".into()),
            None => return Err("body.input: missing".into()),
        },
        Api::AnthropicMessages => array("messages", body)?,
    };
    let sent_along: &[&str] = match api {
        Api::OpenAiChat => &["tools", "functions", "response_format"],
        Api::OpenAiResponses => &["instructions", "tools", "text"],
        Api::AnthropicMessages => &["system", "tools"],
    };
    parts.extend(sent_along.iter().filter_map(|field| body.get(*field)).filter(|v| !v.is_null()).cloned());
    // The most output the call may produce: the largest limit it gives (a
    // provider may honour either of two), once per choice it asks for.
    let mut limit = None;
    let mut limit_fields = Vec::new();
    for field in api.limit_fields() {
        match body.get(*field) {
            None | Some(Value::Null) => {}
            Some(value) => {
                let tokens = value.as_u64().ok_or_else(|| format!("body.{field}: must be a non-negative integer"))?;
                limit = limit.max(Some(tokens));
                limit_fields.push(*field);
            }
        }
    }
    let per_choice = limit.unwrap_or(config.default_max_output_tokens);
    let choices = match (api, body.get("n")) {
        (_, None | Some(Value::Null)) => 1,
        (Api::OpenAiChat, Some(n)) => n
            .as_u64()
            .filter(|n| (1..=MAX_CHOICES).contains(n))
            .ok_or_else(|| format!("body.n: must be an integer from 1 to {MAX_CHOICES}"))?,
        (_, Some(_)) => return Err("body.n: this API generates one answer per request".into()),
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(_) => return Err("body.stream: must be a boolean".into()),
    };
    let usage_requested = body.pointer("/stream_options/include_usage") == Some(&Value::Bool(true));
    // The digest covers the images; counting takes them out.
    let content_digest = Some(LlmRequest::digest_content(&parts));
    let (prompt_tokens, _exact) = prompt_tokens(&model, &mut parts);
    let call = LlmCall { api, model: model.clone(), stream, choices, limit_fields, usage_requested, prompt_tokens };
    let llm = LlmRequest {
        model,
        prompt_tokens,
        prompt_tokens_estimated: true,
        max_output_tokens: per_choice.saturating_mul(choices),
        content_digest,
    };
    Ok((llm, call))
}

fn array(field: &str, body: &Value) -> Result<Vec<Value>, String> {
    match body.get(field) {
        Some(Value::Array(items)) if !items.is_empty() => Ok(items.clone()),
        Some(Value::Array(_)) => Err(format!("body.{field}: must not be empty")),
        Some(_) => Err(format!("body.{field}: must be an array")),
        None => Err(format!("body.{field}: missing")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn headers() -> HashMap<String, String> {
        [
            ("pipeline", "orders_daily"),
            ("agent", "monitor"),
            ("team", "data-platform"),
            ("environment", "prod"),
            ("run", "r1"),
        ]
        .into_iter()
        .map(|(k, v)| (format!("x-arbiter-{k}"), v.to_owned()))
        .collect()
    }

    fn run(path: &str, body: Value, headers: &HashMap<String, String>) -> Classified {
        let body = body.to_string();
        let req = GatewayRequest {
            method: "POST",
            path,
            headers,
            body: body.as_bytes(),
            now_ms: 0,
            grant: None,
            mcp_server: None,
            reads_answers: false,
        };
        super::super::classify(&req, &WireConfig::default())
    }

    fn llm_of(c: Classified) -> LlmRequest {
        match c {
            Classified::Guard { request, .. } => match request.action {
                Action::LlmRequest(llm) => llm,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_openai_and_anthropic_bodies() {
        let h = headers();
        let chat = llm_of(run(
            "/v1/chat/completions",
            json!({"model": "gpt-4o-2024-08-06", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 77}),
            &h,
        ));
        assert_eq!((chat.model.as_str(), chat.max_output_tokens), ("gpt-4o-2024-08-06", 77));
        assert!(chat.prompt_tokens > 0);
        let responses = llm_of(run(
            "/v1/responses",
            json!({"model": "gpt-4o-2024-08-06", "input": "hi", "max_output_tokens": 5}),
            &h,
        ));
        assert_eq!(responses.max_output_tokens, 5);
        let anthropic = llm_of(run(
            "/v1/messages",
            json!({"model": "claude-sonnet-4-5-20250929", "system": "be brief", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 512}),
            &h,
        ));
        assert_eq!(anthropic.max_output_tokens, 512);
        let defaulted = llm_of(run(
            "/v1/chat/completions",
            json!({"model": "m-1", "messages": [{"role": "user", "content": "x"}]}),
            &h,
        ));
        assert_eq!(defaulted.max_output_tokens, 4096);
    }

    /// Found by the property tests (props.rs): `n` was ignored, and a
    /// `max_completion_tokens` hid a larger `max_tokens`.
    #[test]
    fn reserves_every_choice_at_the_largest_limit() {
        let h = headers();
        let chat = |body: Value| run("/v1/chat/completions", body, &h);
        let messages = json!([{"role": "user", "content": "hi"}]);
        let n = llm_of(chat(json!({"model": "m", "messages": messages, "max_tokens": 100, "n": 8})));
        assert_eq!(n.max_output_tokens, 800);
        let both =
            llm_of(chat(json!({"model": "m", "messages": messages, "max_completion_tokens": 1, "max_tokens": 900})));
        assert_eq!(both.max_output_tokens, 900);
        let huge = llm_of(chat(json!({"model": "m", "messages": messages, "max_tokens": u64::MAX, "n": 2})));
        assert_eq!(huge.max_output_tokens, u64::MAX);
        assert_eq!(llm_of(chat(json!({"model": "m", "messages": messages, "n": 3}))).max_output_tokens, 3 * 4096);
        for n in [json!(0), json!(-1), json!(1.5), json!("2"), json!(129)] {
            match chat(json!({"model": "m", "messages": messages, "n": n})) {
                Classified::Refuse { status: 400, message, .. } => {
                    assert_eq!(message, "body.n: must be an integer from 1 to 128")
                }
                other => panic!("{n}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_bad_bodies_and_missing_principals_by_name() {
        let h = headers();
        let cases = [
            (json!({"messages": []}), "body.model: missing"),
            (json!({"model": 3, "messages": [{}]}), "body.model: must be a non-empty string"),
            (json!({"model": "m", "messages": "hi"}), "body.messages: must be an array"),
            (
                json!({"model": "m", "messages": [{}], "max_tokens": -1}),
                "body.max_tokens: must be a non-negative integer",
            ),
        ];
        for (body, needle) in cases {
            match run("/v1/chat/completions", body, &h) {
                Classified::Refuse { status: 400, message, .. } => assert_eq!(message, needle),
                other => panic!("{other:?}"),
            }
        }
        let mut missing = h.clone();
        missing.remove("x-arbiter-team");
        match run("/v1/chat/completions", json!({"model": "m", "messages": [{}]}), &missing) {
            Classified::Refuse { code: "missing_principal", message, .. } => {
                assert_eq!(message, "missing header x-arbiter-team")
            }
            other => panic!("{other:?}"),
        }
    }
}
