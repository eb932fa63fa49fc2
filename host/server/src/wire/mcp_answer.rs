//! An MCP answer (a JSON body, or the server-sent events of streamable
//! HTTP) held whole so that the JSON-RPC response in it can be decided and
//! rewritten before the client reads any of it.
//!
//! What is forwarded is rebuilt from what was read, never the bytes as
//! they came: an answer any client could read differently from arbiter is
//! refused whole. Events are split on CR, LF or CRLF as the SSE standard
//! says; every event must be UTF-8, of type `message`, with JSON data, and
//! exactly one of them the response to the request (its id equal, not
//! merely alike: `1` is not `"1"`); other events may be notifications, but
//! not requests of the server's (they would carry its text to the client's
//! model unread) nor other responses.

use serde_json::Value;

/// The bytes of one answer, up to a bound.
#[derive(Debug)]
pub(crate) struct HeldAnswer {
    sse: bool,
    body: Vec<u8>,
    max_bytes: usize,
    overflowed: bool,
}

/// One event as read: its `id` and `retry` fields, and its message
/// (`None` for an event with empty data, which clients do not dispatch:
/// a server's priming event carrying only an `id` to resume from).
#[derive(Debug)]
struct Event {
    id: Option<String>,
    retry: Option<String>,
    message: Option<Value>,
}

/// Where the response to the watched request is in the answer.
#[derive(Debug)]
pub(crate) struct Located {
    sse: bool,
    /// For SSE: every event, and which one carries the response.
    events: Vec<Event>,
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
    #[error("the answer holds more than one JSON-RPC response")]
    ManyResponses,
    #[error("the answer is not UTF-8 text")]
    NotText,
    #[error("an event of the answer is not a JSON-RPC message: {0}")]
    BadEvent(String),
    #[error("the answer carries a request of the server's (`{0}`), which arbiter does not pass inside an answer")]
    ServerRequest(String),
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
        let text = std::str::from_utf8(&self.body).map_err(|_| Unreadable::NotText)?;
        let events = if self.sse {
            read_events(text)?
        } else {
            let message = serde_json::from_str(text).map_err(|_| Unreadable::NoResponse)?;
            vec![Event { id: None, retry: None, message: Some(message) }]
        };
        let mut response = None;
        for (at, event) in events.iter().enumerate() {
            let Some(message) = &event.message else { continue };
            let Some(object) = message.as_object() else {
                return Err(Unreadable::BadEvent("not a JSON object".to_owned()));
            };
            match (object.get("method").and_then(Value::as_str), object.contains_key("id")) {
                // A notification: not the response, not a question.
                (Some(_), false) => {}
                (Some(method), true) => return Err(Unreadable::ServerRequest(arbiter_types::excerpt(method, 100))),
                (None, _) if response.is_some() => return Err(Unreadable::ManyResponses),
                (None, _) if object.get("id") == Some(id) => response = Some(at),
                (None, _) => return Err(Unreadable::NoResponse),
            }
        }
        let at = response.ok_or(Unreadable::NoResponse)?;
        let message = events[at].message.clone().unwrap_or_default();
        Ok(Located { sse: self.sse, events, at, message })
    }
}

/// Every event of a server-sent event stream, as the standard splits it.
fn read_events(text: &str) -> Result<Vec<Event>, Unreadable> {
    let mut events = Vec::new();
    let (mut data, mut id, mut retry, mut kind): (Option<String>, Option<String>, Option<String>, Option<String>) =
        (None, None, None, None);
    // A stream may start with a byte order mark, which readers skip.
    let mut rest = text.strip_prefix('\u{feff}').unwrap_or(text);
    while !rest.is_empty() {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        let line = &rest[..end];
        let break_len = match rest.as_bytes().get(end) {
            Some(b'\r') if rest.as_bytes().get(end + 1) == Some(&b'\n') => 2,
            Some(_) => 1,
            None => 0,
        };
        rest = &rest[end + break_len..];
        if line.is_empty() {
            if let Some(text) = data.take() {
                if let Some(kind) = kind.as_deref().filter(|k| *k != "message") {
                    return Err(Unreadable::BadEvent(format!("event type `{}`", arbiter_types::excerpt(kind, 40))));
                }
                let message = if text.is_empty() {
                    None
                } else {
                    Some(serde_json::from_str(&text).map_err(|e| Unreadable::BadEvent(e.to_string()))?)
                };
                events.push(Event { id: id.take(), retry: retry.take(), message });
            }
            kind = None;
            continue;
        }
        if line.starts_with(':') {
            continue; // a comment
        }
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "data" => {
                let joined = data.get_or_insert_with(String::new);
                if !joined.is_empty() {
                    joined.push('\n');
                }
                joined.push_str(value);
            }
            "event" => kind = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "retry" => retry = Some(value.to_owned()),
            other => {
                return Err(Unreadable::BadEvent(format!("field `{}`", arbiter_types::excerpt(other, 40))));
            }
        }
    }
    if data.is_some() {
        return Err(Unreadable::BadEvent("the last event is not terminated".to_owned()));
    }
    Ok(events)
}

impl Located {
    /// The answer rebuilt from what was read, with the response replaced by
    /// `message`.
    pub(crate) fn with_message(mut self, message: &Value) -> Vec<u8> {
        if !self.sse {
            return message.to_string().into_bytes();
        }
        self.events[self.at].message = Some(message.clone());
        let mut out = String::new();
        for event in &self.events {
            push_event(&mut out, event);
        }
        out.into_bytes()
    }
}

/// An event as arbiter forwards it: rebuilt from what was read.
fn push_event(out: &mut String, event: &Event) {
    out.push_str("event: message\n");
    if let Some(id) = &event.id {
        out.push_str(&format!("id: {id}\n"));
    }
    if let Some(retry) = &event.retry {
        out.push_str(&format!("retry: {retry}\n"));
    }
    match &event.message {
        Some(message) => out.push_str(&format!("data: {message}\n\n")),
        None => out.push_str("data:\n\n"),
    }
}

/// The server's own event stream of an MCP session (a `GET` with the
/// session's id): requests and notifications of the server's pass as they
/// stream, but a response may come only on the stream of the request it
/// answers, where arbiter decides it (the standard forbids one here except
/// to resume a stream). A response here, or an event arbiter cannot read,
/// is dropped: it could be the undecided answer to a watched call.
#[derive(Debug)]
pub(crate) struct SessionStream {
    pending: String,
    /// Bytes that are not yet text (a character split across chunks).
    partial: Vec<u8>,
    max_bytes: usize,
}

impl SessionStream {
    pub(crate) fn new(max_bytes: usize) -> Self {
        SessionStream { pending: String::new(), partial: Vec::new(), max_bytes }
    }

    /// What to forward of the next chunk: the events it completes, rebuilt,
    /// less any response.
    pub(crate) fn read(&mut self, chunk: &[u8], end: bool) -> Vec<u8> {
        self.partial.extend_from_slice(chunk);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(text) => text.len(),
            Err(e) if e.error_len().is_none() && !end => e.valid_up_to(),
            // Not text: nothing of it can be read, so nothing of it goes on.
            Err(_) => {
                self.partial.clear();
                self.pending.clear();
                return Vec::new();
            }
        };
        let text: Vec<u8> = self.partial.drain(..valid).collect();
        self.pending.push_str(std::str::from_utf8(&text).unwrap_or_default());
        let complete = if end { self.pending.len() } else { complete_events(&self.pending) };
        let events: String = self.pending.drain(..complete).collect();
        if self.pending.len() > self.max_bytes {
            self.pending.clear();
        }
        let mut out = String::new();
        for event in split_events(&events) {
            let Ok(read) = read_events(event) else { continue };
            for event in read {
                // Requests and notifications of the server's (and priming
                // events) pass; responses and anything else do not.
                let passes = match &event.message {
                    None => true,
                    Some(Value::Object(message)) => message.contains_key("method"),
                    Some(_) => false,
                };
                if passes {
                    push_event(&mut out, &event);
                }
            }
        }
        out.into_bytes()
    }
}

/// The length of the first event of `text`, to the end of its blank line,
/// if it has one (a CR at the very end may be half a CRLF: not a break yet).
fn first_event_len(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let (mut at, mut line_start) = (0, 0);
    while at < bytes.len() {
        let b = bytes[at];
        if b != b'\r' && b != b'\n' {
            at += 1;
            continue;
        }
        if b == b'\r' && at + 1 == bytes.len() {
            return None;
        }
        let next = if b == b'\r' && bytes[at + 1] == b'\n' { at + 2 } else { at + 1 };
        if at == line_start {
            return Some(next);
        }
        (at, line_start) = (next, next);
    }
    None
}

/// The length of the complete events at the start of `text`.
fn complete_events(text: &str) -> usize {
    let mut complete = 0;
    while let Some(len) = first_event_len(&text[complete..]) {
        complete += len;
    }
    complete
}

/// `text` cut into its events (the last one whole, terminated or not).
fn split_events(text: &str) -> Vec<&str> {
    let mut events = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let len = first_event_len(rest).unwrap_or(rest.len());
        events.push(&rest[..len]);
        rest = &rest[len..];
    }
    events
}

/// The JSON-RPC response to `id` in an MCP answer of `content_type` (a
/// JSON body or server-sent events), for clients of MCP servers such as
/// `arbiter tool-pins`.
pub fn mcp_response(content_type: &str, body: &[u8], id: &Value) -> Option<Value> {
    let mut held = HeldAnswer::new(content_type, body.len());
    held.push(body);
    held.locate(id).ok().map(|located| located.message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn held(content_type: &str, chunks: &[&str]) -> HeldAnswer {
        let mut answer = HeldAnswer::new(content_type, 4096);
        chunks.iter().for_each(|c| answer.push(c.as_bytes()));
        answer
    }

    fn sse(body: &str) -> Result<Located, Unreadable> {
        held("text/event-stream", &[body]).locate(&json!(1))
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
        let events: Vec<&str> = out.trim_end().split("\n\n").collect();
        assert_eq!(events.len(), 2, "{out}");
        assert!(
            events[0].starts_with("event: message\ndata: ") && events[0].contains("notifications/progress"),
            "{out}"
        );
        let data = events[1].strip_prefix("event: message\nid: 7\ndata: ").unwrap_or_else(|| panic!("{out}"));
        assert_eq!(serde_json::from_str::<Value>(data).unwrap(), replaced);
    }

    #[test]
    fn events_split_as_the_standard_says_are_read_as_clients_read_them() {
        // CR and CRLF end lines too, a BOM may open the stream, `data`
        // lines join, comments are skipped.
        for body in [
            "data: {\"id\":1,\"result\":{}}\r\r",
            "\u{feff}data: {\"id\":1,\r\ndata: \"result\":{}}\r\n\r\n",
            ": keep-alive\nevent: message\ndata: {\"id\":1,\"result\":{}}\n\n",
            // A priming event: an id to resume from, no data.
            "id: p-0\ndata: \n\nevent: message\ndata: {\"id\":1,\"result\":{}}\n\n",
        ] {
            assert_eq!(sse(body).unwrap().message, json!({"id": 1, "result": {}}), "{body:?}");
        }
    }

    #[test]
    fn the_session_stream_passes_what_the_server_asks_and_drops_what_it_answers() {
        let mut stream = SessionStream::new(1024);
        let mut out = Vec::new();
        for chunk in [
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n",
            "\n: ping\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"content\":[{\"text\":\"AKIA\"}]}}\r\r",
            "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"roots/list\"}\r",
            "\n\r\nevent: decoy\ndata: {\"method\":\"x\"}\n\ndata: not json\n\n",
        ] {
            out.extend(stream.read(chunk.as_bytes(), false));
        }
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("notifications/tools/list_changed") && out.contains("roots/list"), "{out}");
        assert!(!out.contains("AKIA") && !out.contains("decoy") && !out.contains("not json"), "{out}");
        assert_eq!(out.matches("\n\n").count(), 2, "{out}");
        // A character split across chunks is whole once read.
        let mut split = SessionStream::new(1024);
        let event = "data: {\"method\":\"notifications/message\",\"params\":{\"data\":\"é\"}}\n\n".as_bytes();
        let at = event.iter().position(|b| *b == 0xc3).unwrap() + 1;
        let first = split.read(&event[..at], false);
        let second = split.read(&event[at..], false);
        assert!(first.is_empty() && String::from_utf8(second).unwrap().contains('é'));
    }

    #[test]
    fn an_answer_a_client_could_read_otherwise_is_refused_whole() {
        let response = "data: {\"id\":1,\"result\":{}}\n\n";
        let cases = [
            // A decoy of another event type, before the real one.
            (format!("event: decoy\ndata: {{\"id\":1,\"result\":{{\"safe\":1}}}}\n\n{response}"), "event type"),
            // The same id in another type: clients that coerce ids resolve it.
            (format!("data: {{\"id\":\"1\",\"result\":{{\"secret\":1}}}}\n\n{response}"), "no JSON-RPC response"),
            (format!("{response}{response}"), "more than one"),
            ("data: not json\n\n".to_owned(), "not a JSON-RPC message"),
            ("bogus: x\ndata: {}\n\n".to_owned(), "field `bogus`"),
            (
                format!("data: {{\"id\":9,\"method\":\"sampling/createMessage\"}}\n\n{response}"),
                "request of the server",
            ),
            ("data: {\"id\":1,\"result\":{}}".to_owned(), "not terminated"),
        ];
        for (body, needle) in cases {
            let err = sse(&body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body:?}: {err}");
        }
        let mut bytes = HeldAnswer::new("text/event-stream", 64);
        bytes.push(b"data: {\"id\":1,\"result\":\"\xff\"}\n\n");
        assert_eq!(bytes.locate(&json!(1)).unwrap_err(), Unreadable::NotText);
        let id = json!(1);
        assert_eq!(
            held("application/json", &["{\"id\":2,\"result\":{}}"]).locate(&id).unwrap_err(),
            Unreadable::NoResponse
        );
        assert_eq!(held("application/json", &["not json"]).locate(&id).unwrap_err(), Unreadable::NoResponse);
        let mut big = HeldAnswer::new("application/json", 8);
        big.push(b"{\"id\":1,");
        big.push(b"\"result\":{}}");
        assert_eq!(big.locate(&id).unwrap_err(), Unreadable::TooLarge(8));
    }
}
