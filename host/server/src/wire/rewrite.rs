//! The body of an allowed LLM call as it must reach the provider: the
//! output limit that was reserved written into the provider's own field, so
//! the model cannot generate more than the budget holds, and for a streamed
//! OpenAI chat call the final usage chunk asked for, so the answer says what
//! it cost.

use serde_json::{Map, Value};

use super::llm::{Api, LlmCall};

impl LlmCall {
    /// Whether arbiter asks for the usage chunk the client did not: the
    /// reader then removes it before the client sees it.
    pub(crate) fn usage_injected(&self) -> bool {
        self.api == Api::OpenAiChat && self.stream && !self.usage_requested
    }

    /// `body` (the request's JSON) with at most `allowed_output` tokens in
    /// all: each choice's limit set to its share, in every limit field the
    /// body used, or in the API's own field when it used none.
    pub(crate) fn provider_body(&self, body: &[u8], allowed_output: u64) -> Result<Vec<u8>, String> {
        let per_choice = allowed_output / self.choices.max(1);
        if per_choice == 0 {
            return Err(format!(
                "{allowed_output} output tokens are allowed, too few for {} choices of at least one token",
                self.choices
            ));
        }
        let mut body: Map<String, Value> =
            serde_json::from_slice(body).map_err(|e| format!("body is not a JSON object: {e}"))?;
        let fields = if self.limit_fields.is_empty() { &self.api.limit_fields()[..1] } else { &self.limit_fields[..] };
        for field in fields {
            body.insert((*field).to_owned(), per_choice.into());
        }
        if self.usage_injected() {
            let options = body.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
            if !options.is_object() {
                *options = Value::Object(Map::new());
            }
            options["include_usage"] = Value::Bool(true);
        }
        serde_json::to_vec(&body).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(api: Api, limit_fields: Vec<&'static str>, choices: u64, stream: bool) -> LlmCall {
        LlmCall { api, model: "m".into(), stream, choices, limit_fields, usage_requested: false, prompt_tokens: 10 }
    }

    fn rewritten(call: &LlmCall, body: Value, allowed: u64) -> Value {
        serde_json::from_slice(&call.provider_body(body.to_string().as_bytes(), allowed).unwrap()).unwrap()
    }

    #[test]
    fn writes_the_reserved_limit_into_the_field_the_body_used() {
        let chat = call(Api::OpenAiChat, vec!["max_tokens"], 1, false);
        let body = rewritten(&chat, json!({"model": "m", "messages": [], "max_tokens": 4000}), 300);
        assert_eq!((body["max_tokens"].clone(), body.get("max_completion_tokens")), (json!(300), None));
        let both = call(Api::OpenAiChat, vec!["max_completion_tokens", "max_tokens"], 1, false);
        let body = rewritten(&both, json!({"max_completion_tokens": 900, "max_tokens": 800}), 300);
        assert_eq!((body["max_completion_tokens"].clone(), body["max_tokens"].clone()), (json!(300), json!(300)));
        let anthropic = call(Api::AnthropicMessages, vec!["max_tokens"], 1, false);
        assert_eq!(rewritten(&anthropic, json!({"max_tokens": 4096}), 512)["max_tokens"], 512);
    }

    #[test]
    fn a_missing_limit_is_set_to_what_was_reserved() {
        for (api, field) in [
            (Api::OpenAiChat, "max_completion_tokens"),
            (Api::OpenAiResponses, "max_output_tokens"),
            (Api::AnthropicMessages, "max_tokens"),
        ] {
            let body = rewritten(&call(api, vec![], 1, false), json!({"model": "m"}), 4096);
            assert_eq!(body[field], 4096, "{api:?}");
        }
    }

    #[test]
    fn choices_share_the_allowed_tokens() {
        let chat = call(Api::OpenAiChat, vec!["max_tokens"], 3, false);
        assert_eq!(rewritten(&chat, json!({"n": 3, "max_tokens": 1000}), 1000)["max_tokens"], 333);
        let error = chat.provider_body(br#"{"n": 3}"#, 2).unwrap_err();
        assert!(error.contains("too few for 3 choices"), "{error}");
    }

    #[test]
    fn a_streamed_chat_call_asks_for_its_usage() {
        let streamed = call(Api::OpenAiChat, vec![], 1, true);
        assert!(streamed.usage_injected());
        let body = rewritten(&streamed, json!({"stream": true, "stream_options": {"include_obfuscation": false}}), 10);
        assert_eq!(body["stream_options"], json!({"include_obfuscation": false, "include_usage": true}));
        let asked = LlmCall { usage_requested: true, ..streamed.clone() };
        assert!(!asked.usage_injected());
        for api in [Api::OpenAiResponses, Api::AnthropicMessages] {
            let streamed = call(api, vec![], 1, true);
            assert!(!streamed.usage_injected(), "{api:?} streams its usage anyway");
            assert_eq!(rewritten(&streamed, json!({"stream": true}), 10).get("stream_options"), None);
        }
    }
}
