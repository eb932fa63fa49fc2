//! Prompt tokens of chat messages: counted with the model family's real
//! tokenizer where it is known (OpenAI models, via tiktoken), estimated
//! conservatively otherwise (see arbiter-types' estimator).

use serde_json::Value;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// OpenAI's chat framing: tokens per message, and to prime the reply.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_REPLY: u64 = 3;

/// Prompt tokens of `parts` (messages, system prompts, instructions) sent to
/// `model`, and whether they were counted exactly by the model's tokenizer.
pub(super) fn prompt_tokens(model: &str, parts: &[Value]) -> (u64, bool) {
    let bpe = match get_tokenizer(model) {
        Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => Some(tiktoken_rs::o200k_base_singleton()),
        Some(Tokenizer::Cl100kBase) => Some(tiktoken_rs::cl100k_base_singleton()),
        _ => None,
    };
    match bpe {
        Some(bpe) => {
            let mut tokens = TOKENS_PER_REPLY;
            for part in parts {
                let mut text = String::new();
                collect_text(part, &mut text);
                tokens += TOKENS_PER_MESSAGE + bpe.count_ordinary(&text) as u64;
            }
            (tokens, true)
        }
        None => (arbiter_types::estimate_prompt_tokens(parts), false),
    }
}

fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_text(v, out)),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_openai_messages_with_tiktoken() {
        let messages = [json!({"role": "user", "content": "hello world"})];
        let (tokens, exact) = prompt_tokens("gpt-4o-2024-08-06", &messages);
        assert!(exact);
        // "user hello world " is 4 tokens in o200k; + 3 framing + 3 reply.
        assert!((8..=12).contains(&tokens), "{tokens}");
    }

    #[test]
    fn estimates_other_families_conservatively() {
        let messages = [json!({"role": "user", "content": "hello world"})];
        let (tokens, exact) = prompt_tokens("claude-sonnet-4-5-20250929", &messages);
        assert!(!exact);
        assert!(tokens >= 4);
    }
}
