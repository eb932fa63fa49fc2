//! A conservative prompt-token estimate for requests that carry `messages`
//! instead of a token count.
//!
//! Budgets reserve the worst case, so the estimate must not undercount:
//! BPE tokenisers used by current models average about 4 bytes of English
//! per token and rarely fall below 3 except for unusual scripts, so we count
//! one token per 3 bytes of text, plus a per-message overhead for role and
//! framing. A gateway that knows the exact tokenizer should send
//! `prompt_tokens` instead.

use serde_json::Value;

const BYTES_PER_TOKEN: u64 = 3;
const TOKENS_PER_MESSAGE: u64 = 4;
const TOKENS_PER_REQUEST: u64 = 3;

/// Estimates the prompt tokens of a chat `messages` array: the text of every
/// string in each message (content, role, name, tool arguments) counts.
pub fn estimate_prompt_tokens(messages: &[Value]) -> u64 {
    let messages_bytes: u64 = messages.iter().map(text_bytes).sum();
    let messages = u64::try_from(messages.len()).unwrap_or(u64::MAX);
    estimate_text_tokens(messages_bytes) + messages.saturating_mul(TOKENS_PER_MESSAGE) + TOKENS_PER_REQUEST
}

/// Tokens of `bytes` of plain text, without message framing: at most
/// `BYTES_PER_TOKEN` (3) bytes a token, rounded up.
pub fn estimate_text_tokens(bytes: u64) -> u64 {
    bytes.div_ceil(BYTES_PER_TOKEN)
}

fn text_bytes(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().map(text_bytes).sum(),
        Value::Object(members) => members.values().map(text_bytes).sum(),
        Value::Number(n) => n.to_string().len() as u64,
        Value::Bool(_) | Value::Null => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_text_and_framing() {
        let messages = [json!({"role": "user", "content": "abcdefghi"})];
        // "user" (4) + content (9) = 13 bytes -> 5 tokens, + 4 + 3 framing.
        assert_eq!(estimate_prompt_tokens(&messages), 12);
    }

    #[test]
    fn counts_structured_content_parts() {
        let messages = [json!({"role": "user", "content": [{"type": "text", "text": "hello world"}]})];
        assert!(estimate_prompt_tokens(&messages) >= 11 / 3 + 7);
    }

    #[test]
    fn never_undercounts_english_against_four_bytes_per_token() {
        let text = "The orders_daily table has a new column currency_code. ".repeat(50);
        let messages = [json!({"role": "user", "content": text})];
        assert!(estimate_prompt_tokens(&messages) >= (text.len() as u64) / 4);
    }
}
