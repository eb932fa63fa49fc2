//! An MCP answer (a JSON body, or the server-sent events of streamable
//! HTTP) held whole so that the JSON-RPC response in it can be decided and
//! rewritten before the client reads any of it.

use serde_json::Value;

use super::response::event_length;

/// The bytes of one answer, up to a bound.
#[derive(Debug)]
pub(crate) struct HeldAnswer {
    sse: bool,
    body: Vec<u8>,
    max_bytes: usize,
    overflowed: bool,
}

/// Where the response to the watched request is in the answer.
#[derive(Debug)]
pub(crate) struct Located {
    sse: bool,
    /// For SSE: the events, and which one carries the response.
    events: Vec<Vec<u8>>,
    at: usize,
    /// The JSON-RPC response.
    pub(crate) message: Value,
}

/// Why an answer cannot be decided (and so is not forwarded).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Unreadable {
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the answer holds no JSON-RPC response to the request")]
    NoResponse,
}

impl HeldAnswer {
    pub(crate) fn new(content_type: &str, max_bytes: usize) -> Self {
        let sse = content_type.trim_start().to_ascii_lowercase().starts_with("text/event-stream");
        HeldAnswer { sse, body: Vec::new(), max_bytes, overflowed: false }
    }

    /// Whether the answer is server-sent events.
    pub(crate) fn is_sse(&self) -> bool {
        self.sse
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.overflowed || self.body.len() + chunk.len() > self.max_bytes {
            self.overflowed = true;
            self.body = Vec::new();
            return;
        }
        self.body.extend_from_slice(chunk);
    }

    /// The response answering `id`, once the answer is whole.
    pub(crate) fn locate(self, id: &Value) -> Result<Located, Unreadable> {
        if self.overflowed {
            return Err(Unreadable::TooLarge(self.max_bytes));
        }
        let answers = |message: &Value| message.get("id") == Some(id) && message.get("method").is_none();
        if !self.sse {
            let message: Value = serde_json::from_slice(&self.body).map_err(|_| Unreadable::NoResponse)?;
            return if answers(&message) {
                Ok(Located { sse: false, events: vec![], at: 0, message })
            } else {
                Err(Unreadable::NoResponse)
            };
        }
        let mut events = Vec::new();
        let mut rest = self.body.as_slice();
        while !rest.is_empty() {
            let len = event_length(rest).unwrap_or(rest.len());
            events.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        events
            .iter()
            .enumerate()
            .find_map(|(at, event)| {
                let message: Value = serde_json::from_str(&event_data(event)?).ok()?;
                answers(&message).then_some((at, message))
            })
            .map(|(at, message)| Located { sse: true, events: events.clone(), at, message })
            .ok_or(Unreadable::NoResponse)
    }
}

impl Located {
    /// The answer with the response replaced by `message`; everything else
    /// (other events, their fields) as it came.
    pub(crate) fn with_message(mut self, message: &Value) -> Vec<u8> {
        let json = message.to_string();
        if !self.sse {
            return json.into_bytes();
        }
        let event = String::from_utf8_lossy(&self.events[self.at]).into_owned();
        let mut rebuilt = String::with_capacity(json.len() + 32);
        let mut wrote = false;
        for line in event.lines().filter(|l| !l.is_empty()) {
            if line.starts_with("data:") {
                if !wrote {
                    rebuilt.push_str("data: ");
                    rebuilt.push_str(&json);
                    rebuilt.push('\n');
                    wrote = true;
                }
            } else {
                rebuilt.push_str(line);
                rebuilt.push('\n');
            }
        }
        rebuilt.push('\n');
        self.events[self.at] = rebuilt.into_bytes();
        self.events.concat()
    }
}

/// The JSON-RPC response to `id` in an MCP answer of `content_type` (a
/// JSON body or server-sent events), for clients of MCP servers such as
/// `arbiter tool-pins`.
pub fn mcp_response(content_type: &str, body: &[u8], id: &Value) -> Option<Value> {
    let mut held = HeldAnswer::new(content_type, body.len());
    held.push(body);
    held.locate(id).ok().map(|located| located.message)
}

/// The data of one server-sent event (its `data:` lines joined), if any.
fn event_data(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(|data| data.strip_prefix(' ').unwrap_or(data))
        .collect();
    (!data.is_empty()).then(|| data.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn held(content_type: &str, chunks: &[&str]) -> HeldAnswer {
        let mut answer = HeldAnswer::new(content_type, 1024);
        chunks.iter().for_each(|c| answer.push(c.as_bytes()));
        answer
    }

    #[test]
    fn finds_and_replaces_the_response_among_events_split_across_chunks() {
        let answer = held(
            "text/event-stream",
            &[
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n",
                "event: message\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,",
                "\"result\":{\"tools\":[]}}\n\n",
            ],
        );
        let located = answer.locate(&json!(3)).unwrap();
        assert_eq!(located.message["result"], json!({"tools": []}));
        let replaced = json!({"jsonrpc": "2.0", "id": 3, "result": {"x": 1}});
        let out = String::from_utf8(located.with_message(&replaced)).unwrap();
        // The other event as it came; the response's own fields kept.
        assert!(out.starts_with("event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\""), "{out}");
        let (_, last) = out.trim_end().rsplit_once("\n\n").unwrap();
        let data = last.strip_prefix("event: message\nid: 7\ndata: ").unwrap_or_else(|| panic!("{out}"));
        assert_eq!(serde_json::from_str::<Value>(data).unwrap(), replaced);
        assert!(out.ends_with("}\n\n"), "{out}");
    }

    #[test]
    fn an_answer_that_cannot_be_read_is_not_forwarded_unread() {
        let id = json!(1);
        assert_eq!(
            held("application/json", &["{\"id\":2,\"result\":{}}"]).locate(&id).unwrap_err(),
            Unreadable::NoResponse
        );
        assert_eq!(held("application/json", &["not json"]).locate(&id).unwrap_err(), Unreadable::NoResponse);
        // A request from the server with the same id answers nothing.
        let request = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sampling/createMessage\"}\n\n";
        assert_eq!(held("text/event-stream", &[request]).locate(&id).unwrap_err(), Unreadable::NoResponse);
        let mut big = HeldAnswer::new("application/json", 8);
        big.push(b"{\"id\":1,");
        big.push(b"\"result\":{}}");
        assert_eq!(big.locate(&id).unwrap_err(), Unreadable::TooLarge(8));
    }
}
