//! Prompt tokens of chat messages: counted with the model family's real
//! tokenizer where it is known (OpenAI models, via tiktoken), estimated
//! conservatively otherwise (see arbiter-types' estimator). Images count a
//! fixed worst case each, not the bytes of their data or URL.

use serde_json::Value;
use tiktoken_rs::tokenizer::{Tokenizer, get_tokenizer};

/// OpenAI's chat framing: tokens per message, and to prime the reply.
const TOKENS_PER_MESSAGE: u64 = 3;
const TOKENS_PER_REPLY: u64 = 3;

/// What one image in a prompt is counted as: above the largest the
/// providers document for one image (Anthropic: ~1,600 for 1.15 megapixels;
/// OpenAI: 765 for a high-detail 4-tile image on GPT-4o, up to 1,536 patches
/// on the patch-based models).
pub(crate) const IMAGE_TOKENS: u64 = 2_000;

/// Content-part types that carry an image (OpenAI chat, Responses,
/// Anthropic).
const IMAGE_PARTS: [&str; 3] = ["image_url", "input_image", "image"];

/// Prompt tokens of `parts` (messages, system prompts, instructions, tool
/// definitions) sent to `model`, and whether the text was counted exactly
/// by the model's tokenizer.
/// Image parts are taken out of `parts` as they are counted.
pub(super) fn prompt_tokens(model: &str, parts: &mut [Value]) -> (u64, bool) {
    let images = parts.iter_mut().map(take_images).sum::<u64>();
    let (text_tokens, exact) = text_tokens(model, parts);
    (text_tokens.saturating_add(images.saturating_mul(IMAGE_TOKENS)), exact)
}

/// Output tokens of text a model generated (no message framing): its
/// tokenizer's count, or the conservative estimate.
pub(crate) fn output_tokens(model: &str, text: &str) -> u64 {
    match tokenizer(model) {
        Some(bpe) => bpe.count_ordinary(text) as u64,
        None => arbiter_types::estimate_text_tokens(text.len() as u64),
    }
}

fn tokenizer(model: &str) -> Option<&'static tiktoken_rs::CoreBPE> {
    match get_tokenizer(model) {
        Some(Tokenizer::O200kBase | Tokenizer::O200kHarmony) => Some(tiktoken_rs::o200k_base_singleton()),
        Some(Tokenizer::Cl100kBase) => Some(tiktoken_rs::cl100k_base_singleton()),
        _ => None,
    }
}

/// Replaces every image content part in `value` by `null`; how many.
fn take_images(value: &mut Value) -> u64 {
    match value {
        Value::Object(map) if map.get("type").and_then(Value::as_str).is_some_and(|t| IMAGE_PARTS.contains(&t)) => {
            *value = Value::Null;
            1
        }
        Value::Object(map) => map.values_mut().map(take_images).sum(),
        Value::Array(items) => items.iter_mut().map(take_images).sum(),
        _ => 0,
    }
}

fn text_tokens(model: &str, parts: &[Value]) -> (u64, bool) {
    match tokenizer(model) {
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
    collect_text_except(value, &[], out);
}

/// The strings and numbers in `value`, space-separated, leaving out the
/// members named in `skip` (at any depth).
pub(super) fn collect_text_except(value: &Value, skip: &[&str], out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text_except(v, skip, out)),
        Value::Object(map) => map
            .iter()
            .filter(|(key, _)| !skip.contains(&key.as_str()))
            .for_each(|(_, v)| collect_text_except(v, skip, out)),
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
        let mut messages = [json!({"role": "user", "content": "hello world"})];
        let (tokens, exact) = prompt_tokens("gpt-4o-2024-08-06", &mut messages);
        assert!(exact);
        // "user hello world " is 4 tokens in o200k; + 3 framing + 3 reply.
        assert!((8..=12).contains(&tokens), "{tokens}");
    }

    #[test]
    fn images_count_a_fixed_worst_case_not_their_bytes() {
        let image = "A".repeat(300_000);
        for model in ["gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929"] {
            let mut text_only = [json!({"role": "user", "content": [{"type": "text", "text": "what is this?"}]})];
            let mut with_images = [json!({"role": "user", "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{image}")}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": image}},
            ]})];
            let (text, _) = prompt_tokens(model, &mut text_only);
            let (both, _) = prompt_tokens(model, &mut with_images);
            assert!(both >= text + 2 * IMAGE_TOKENS, "{model}: {both} < {text} + 2 images");
            assert!(both <= text + 2 * IMAGE_TOKENS + 8, "{model}: the image data was counted as text: {both}");
        }
    }

    #[test]
    fn output_text_is_counted_like_prompt_text() {
        assert!(output_tokens("gpt-4o-2024-08-06", &"word ".repeat(100)) >= 100);
        assert!(output_tokens("claude-sonnet-4-5-20250929", &"word ".repeat(100)) >= 500 / 4);
    }

    #[test]
    fn estimates_other_families_conservatively() {
        let mut messages = [json!({"role": "user", "content": "hello world"})];
        let (tokens, exact) = prompt_tokens("claude-sonnet-4-5-20250929", &mut messages);
        assert!(!exact);
        assert!(tokens >= 4);
    }
}
