//! Reading what the upstream answers, as it streams past: the usage an LLM
//! provider reports (a JSON body, or OpenAI / Anthropic server-sent events),
//! the text it generated (to estimate what a cut stream cost), and whether
//! an MCP call failed. When arbiter asked for the usage chunk the client did
//! not ([`LlmCall::usage_injected`]), that chunk is removed before the
//! client sees it.

use serde_json::Value;

use super::llm::{Api, LlmCall};
use super::tokens::{collect_text_except, output_tokens};

/// Usage a provider reported; a field is `None` until it is seen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReportedUsage {
    pub(crate) prompt_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
}

#[derive(Debug)]
enum Upstream {
    Llm { api: Api, model: String, strip_usage: bool },
    Mcp { id: Value },
}

/// Reads one response body, chunk by chunk.
#[derive(Debug)]
pub(crate) struct ResponseReader {
    upstream: Upstream,
    sse: bool,
    /// A JSON body so far, or the incomplete server-sent event.
    pending: Vec<u8>,
    /// The most bytes held in `pending`, and of generated text.
    max_bytes: usize,
    /// A body or event was larger than `max_bytes`: it was forwarded
    /// unread, so the usage read may be incomplete.
    overflowed: bool,
    usage: ReportedUsage,
    generated: String,
    /// Generated text beyond `max_bytes`, counted as one token a byte.
    generated_beyond: u64,
    mcp_failed: Option<bool>,
    /// The answer's last event (or, for JSON, its whole body) was read.
    complete: bool,
}

/// Events that end an LLM stream: OpenAI chat's `[DONE]`, the Responses
/// API's final states, Anthropic's `message_stop`.
const FINAL_EVENTS: [&str; 4] = ["response.completed", "response.incomplete", "response.failed", "message_stop"];

impl ResponseReader {
    /// For the answer to an LLM call, of `content_type`.
    pub(crate) fn llm(call: &LlmCall, content_type: &str, max_bytes: usize) -> Self {
        let upstream = Upstream::Llm { api: call.api, model: call.model.clone(), strip_usage: call.usage_injected() };
        Self::new(upstream, content_type, max_bytes)
    }

    /// For the answer to the MCP request `id`.
    pub(crate) fn mcp(id: Value, content_type: &str, max_bytes: usize) -> Self {
        Self::new(Upstream::Mcp { id }, content_type, max_bytes)
    }

    fn new(upstream: Upstream, content_type: &str, max_bytes: usize) -> Self {
        let sse = content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream");
        ResponseReader {
            upstream,
            sse,
            pending: Vec::new(),
            max_bytes,
            overflowed: false,
            usage: ReportedUsage::default(),
            generated: String::new(),
            generated_beyond: 0,
            mcp_failed: None,
            complete: false,
        }
    }

    /// Whether [`Self::read`] may forward other bytes than it was given.
    pub(crate) fn rewrites(&self) -> bool {
        self.sse && matches!(self.upstream, Upstream::Llm { strip_usage: true, .. })
    }

    /// Reads the next chunk (`end`: the last). Returns what to forward
    /// instead of the chunk, when that differs.
    pub(crate) fn read(&mut self, chunk: &[u8], end: bool) -> Option<Vec<u8>> {
        if !self.sse {
            self.read_json(chunk, end);
            return None;
        }
        let strip = self.rewrites();
        let mut forward = Vec::with_capacity(chunk.len());
        self.pending.extend_from_slice(chunk);
        while let Some(len) = event_length(&self.pending) {
            let event: Vec<u8> = self.pending.drain(..len).collect();
            if !self.read_event(&event) || !strip {
                forward.extend_from_slice(&event);
            }
        }
        if end && !self.pending.is_empty() {
            let event = std::mem::take(&mut self.pending);
            if !self.read_event(&event) || !strip {
                forward.extend_from_slice(&event);
            }
        } else if self.pending.len() > self.max_bytes {
            // An event too large to hold: forwarded as it is, unread.
            self.overflowed = true;
            forward.append(&mut self.pending);
        }
        strip.then_some(forward)
    }

    fn read_json(&mut self, chunk: &[u8], end: bool) {
        if self.overflowed {
            return;
        }
        if self.pending.len() + chunk.len() > self.max_bytes {
            self.overflowed = true;
            self.pending = Vec::new();
            return;
        }
        self.pending.extend_from_slice(chunk);
        if end {
            let body = std::mem::take(&mut self.pending);
            if let Ok(message) = serde_json::from_slice::<Value>(&body) {
                self.read_message(&message);
                self.complete = true;
            }
        }
    }

    /// Reads one server-sent event; `true` when it is the usage chunk
    /// arbiter asked for (to be removed).
    fn read_event(&mut self, event: &[u8]) -> bool {
        let text = String::from_utf8_lossy(event);
        let data: Vec<&str> = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .map(|data| data.strip_prefix(' ').unwrap_or(data))
            .collect();
        if data.is_empty() {
            return false;
        }
        let data = data.join("\n");
        if data == "[DONE]" {
            self.complete = true;
            return false;
        }
        let Ok(message) = serde_json::from_str::<Value>(&data) else { return false };
        self.read_message(&message);
        if message.get("type").and_then(Value::as_str).is_some_and(|t| FINAL_EVENTS.contains(&t)) {
            self.complete = true;
        }
        // OpenAI's usage chunk: no choices, a usage object.
        message.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty)
            && message.get("usage").is_some_and(Value::is_object)
    }

    fn read_message(&mut self, message: &Value) {
        match &self.upstream {
            Upstream::Llm { api, .. } => {
                let api = *api;
                for usage in ["/usage", "/response/usage", "/message/usage"].iter().filter_map(|p| message.pointer(p)) {
                    self.take_usage(usage);
                }
                let mut text = String::new();
                generated_text(api, message, &mut text);
                self.add_generated(&text);
            }
            Upstream::Mcp { id } => {
                if message.get("id") == Some(id) {
                    let failed = message.get("error").is_some()
                        || message.pointer("/result/isError") == Some(&Value::Bool(true));
                    if failed || message.get("result").is_some() {
                        self.mcp_failed = Some(failed);
                        self.complete = true;
                    }
                }
            }
        }
    }

    /// OpenAI's `prompt_tokens`/`completion_tokens` (chat) or
    /// `input_tokens`/`output_tokens` (Responses, Anthropic, where cache
    /// reads and writes are counted apart from the input). Anthropic's
    /// counts are cumulative over a stream: the largest seen stands.
    fn take_usage(&mut self, usage: &Value) {
        let field = |name: &str| usage.get(name).and_then(Value::as_u64);
        let cached = field("cache_creation_input_tokens").unwrap_or(0) + field("cache_read_input_tokens").unwrap_or(0);
        if let Some(prompt) = field("prompt_tokens").or_else(|| field("input_tokens")) {
            let prompt = prompt.saturating_add(cached);
            self.usage.prompt_tokens = Some(self.usage.prompt_tokens.map_or(prompt, |p| p.max(prompt)));
        }
        if let Some(output) = field("completion_tokens").or_else(|| field("output_tokens")) {
            self.usage.output_tokens = Some(self.usage.output_tokens.map_or(output, |o| o.max(output)));
        }
    }

    fn add_generated(&mut self, text: &str) {
        let room = self.max_bytes.saturating_sub(self.generated.len());
        if text.len() <= room {
            self.generated.push_str(text);
        } else {
            self.generated_beyond = self.generated_beyond.saturating_add(text.len() as u64);
        }
    }

    /// What the provider reported.
    pub(crate) fn usage(&self) -> ReportedUsage {
        self.usage
    }

    /// Tokens of the text the client was sent, by the model's tokenizer or
    /// the conservative estimate.
    pub(crate) fn generated_tokens(&self) -> u64 {
        let model = match &self.upstream {
            Upstream::Llm { model, .. } => model.as_str(),
            Upstream::Mcp { .. } => return 0,
        };
        let counted = if self.generated.is_empty() { 0 } else { output_tokens(model, &self.generated) };
        counted.saturating_add(self.generated_beyond)
    }

    /// Whether the whole answer was read: a client that stops reading at
    /// the last event may close the exchange before Envoy says it ended.
    pub(crate) fn complete(&self) -> bool {
        self.complete
    }

    /// Whether a body or event was too large to read.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Whether the MCP call failed (a JSON-RPC error or an `isError`
    /// result); `None` until its answer is read.
    pub(crate) fn mcp_failed(&self) -> Option<bool> {
        self.mcp_failed
    }
}

/// The length of the first complete event in `buffer` (its blank line
/// included), if there is one.
fn event_length(buffer: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(newline) = buffer[at..].iter().position(|&b| b == b'\n') {
        let line_end = at + newline + 1;
        let line = &buffer[at..line_end];
        if line == b"\n" || line == b"\r\n" {
            return Some(line_end);
        }
        at = line_end;
    }
    None
}

/// The text a message carries that the model generated: OpenAI chat
/// choices (streamed deltas or whole messages), Responses output and
/// `*.delta` events, Anthropic content and `content_block_delta` events.
/// Every string in them counts, tool-call arguments included, but not the
/// protocol's own fields (roles, types, ids, stop reasons).
fn generated_text(api: Api, message: &Value, out: &mut String) {
    let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
    let parts: Vec<&Value> = match api {
        Api::OpenAiChat => message
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|choice| choice.get("delta").or_else(|| choice.get("message")))
            .collect(),
        Api::OpenAiResponses if kind.ends_with(".delta") => message.get("delta").into_iter().collect(),
        Api::OpenAiResponses => message.get("output").into_iter().collect(),
        Api::AnthropicMessages if kind == "content_block_delta" => message.get("delta").into_iter().collect(),
        Api::AnthropicMessages if kind == "message" => message.get("content").into_iter().collect(),
        Api::AnthropicMessages => Vec::new(),
    };
    for part in parts {
        collect_text_except(part, &PROTOCOL_FIELDS, out);
    }
}

/// Fields of the answers' framing, not generated text.
const PROTOCOL_FIELDS: [&str; 8] =
    ["role", "type", "id", "status", "finish_reason", "stop_reason", "annotations", "logprobs"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(api: Api, stream: bool) -> LlmCall {
        LlmCall {
            api,
            model: "gpt-4o-2024-08-06".into(),
            stream,
            choices: 1,
            limit_fields: vec![],
            usage_requested: false,
            prompt_tokens: 10,
        }
    }

    fn sse(events: &[Value]) -> String {
        let mut text: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
        text.push_str("data: [DONE]\n\n");
        text
    }

    /// Reads `body` cut into `size`-byte chunks; returns what was forwarded.
    fn read_in_chunks(reader: &mut ResponseReader, body: &[u8], size: usize) -> Vec<u8> {
        let chunks: Vec<&[u8]> = body.chunks(size).collect();
        let mut forwarded = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let out = reader.read(chunk, i + 1 == chunks.len());
            forwarded.extend_from_slice(out.as_deref().unwrap_or(chunk));
        }
        forwarded
    }

    #[test]
    fn reads_json_usage_of_each_api() {
        let cases = [
            (Api::OpenAiChat, json!({"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 7}})),
            (Api::OpenAiResponses, json!({"output": [], "usage": {"input_tokens": 11, "output_tokens": 7}})),
            (
                Api::AnthropicMessages,
                json!({"type": "message", "content": [], "usage": {"input_tokens": 5, "cache_read_input_tokens": 4,
                       "cache_creation_input_tokens": 2, "output_tokens": 7}}),
            ),
        ];
        for (api, body) in cases {
            let mut reader = ResponseReader::llm(&call(api, false), "application/json", 1 << 20);
            let body = body.to_string();
            assert_eq!(read_in_chunks(&mut reader, body.as_bytes(), 5), body.as_bytes());
            assert_eq!(reader.usage(), ReportedUsage { prompt_tokens: Some(11), output_tokens: Some(7) }, "{api:?}");
        }
    }

    #[test]
    fn reads_openai_stream_usage_and_removes_the_chunk_arbiter_asked_for() {
        let events = [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}], "usage": null}),
            json!({"choices": [{"index": 0, "delta": {"content": "lo"}}], "usage": null}),
            json!({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
        ];
        let body = sse(&events);
        for size in [1, 7, 64, body.len()] {
            let mut reader = ResponseReader::llm(&call(Api::OpenAiChat, true), "text/event-stream", 1 << 20);
            let forwarded = String::from_utf8(read_in_chunks(&mut reader, body.as_bytes(), size)).unwrap();
            assert_eq!(reader.usage(), ReportedUsage { prompt_tokens: Some(9), output_tokens: Some(2) });
            assert!(!forwarded.contains("prompt_tokens"), "chunks of {size}: {forwarded}");
            assert!(forwarded.contains("\"Hel\"") && forwarded.ends_with("data: [DONE]\n\n"), "{forwarded}");
            assert!(reader.complete());
            assert!(reader.generated_tokens() >= 2);
        }
        // The client asked for it: it stays.
        let asked = LlmCall { usage_requested: true, ..call(Api::OpenAiChat, true) };
        let mut reader = ResponseReader::llm(&asked, "text/event-stream", 1 << 20);
        assert_eq!(reader.read(body.as_bytes(), true), None);
    }

    #[test]
    fn reads_anthropic_and_responses_streams() {
        let anthropic = [
            (
                "message_start",
                json!({"type": "message_start", "message": {"usage": {"input_tokens": 20, "output_tokens": 1}}}),
            ),
            (
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi there"}}),
            ),
            (
                "message_delta",
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 15}}),
            ),
        ];
        let body: String =
            anthropic.iter().map(|(name, data)| format!("event: {name}\r\ndata: {data}\r\n\r\n")).collect();
        let mut reader =
            ResponseReader::llm(&call(Api::AnthropicMessages, true), "text/event-stream; charset=utf-8", 1 << 20);
        assert_eq!(read_in_chunks(&mut reader, body.as_bytes(), 3), body.as_bytes());
        assert_eq!(reader.usage(), ReportedUsage { prompt_tokens: Some(20), output_tokens: Some(15) });
        let responses = sse(&[
            json!({"type": "response.output_text.delta", "delta": "hello"}),
            json!({"type": "response.completed", "response": {"usage": {"input_tokens": 8, "output_tokens": 3}}}),
        ]);
        let mut reader = ResponseReader::llm(&call(Api::OpenAiResponses, true), "text/event-stream", 1 << 20);
        reader.read(responses.as_bytes(), true);
        assert_eq!(reader.usage(), ReportedUsage { prompt_tokens: Some(8), output_tokens: Some(3) });
    }

    #[test]
    fn a_cut_stream_counts_the_text_it_delivered() {
        let text = "lorem ipsum dolor sit amet ".repeat(40);
        let body = format!(
            "data: {}\n\ndata: {{\"choices\": [{{\"delta\": {{\"content\": \"trunc",
            json!({"choices": [{"delta": {"content": text}}]})
        );
        let mut reader = ResponseReader::llm(&call(Api::OpenAiChat, true), "text/event-stream", 1 << 20);
        reader.read(body.as_bytes(), false);
        assert_eq!(reader.usage(), ReportedUsage::default());
        assert!(!reader.complete());
        assert!(reader.generated_tokens() >= 40 * 5, "{}", reader.generated_tokens());
    }

    #[test]
    fn oversized_bodies_and_events_are_forwarded_unread() {
        let mut reader = ResponseReader::llm(&call(Api::OpenAiChat, false), "application/json", 64);
        reader.read(&[b' '; 100], true);
        assert!(reader.overflowed());
        let mut reader = ResponseReader::llm(&call(Api::OpenAiChat, true), "text/event-stream", 64);
        let huge = format!("data: {}", "x".repeat(100));
        assert_eq!(reader.read(huge.as_bytes(), false).unwrap(), huge.as_bytes());
        assert!(reader.overflowed());
    }

    #[test]
    fn reads_whether_an_mcp_call_failed() {
        let cases = [
            (
                "application/json",
                json!({"jsonrpc": "2.0", "id": 3, "result": {"content": [], "isError": true}}).to_string(),
                Some(true),
            ),
            (
                "application/json",
                json!({"jsonrpc": "2.0", "id": 3, "error": {"code": -32000, "message": "x"}}).to_string(),
                Some(true),
            ),
            (
                "application/json",
                json!({"jsonrpc": "2.0", "id": 3, "result": {"content": []}}).to_string(),
                Some(false),
            ),
            ("application/json", json!({"jsonrpc": "2.0", "id": 4, "error": {}}).to_string(), None),
            (
                "text/event-stream",
                format!(
                    "event: message\ndata: {}\n\nevent: message\ndata: {}\n\n",
                    json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}),
                    json!({"jsonrpc": "2.0", "id": 3, "result": {"isError": true}})
                ),
                Some(true),
            ),
        ];
        for (content_type, body, failed) in cases {
            let mut reader = ResponseReader::mcp(json!(3), content_type, 1 << 20);
            read_in_chunks(&mut reader, body.as_bytes(), 10);
            assert_eq!(reader.mcp_failed(), failed, "{body}");
        }
    }
}
