//! Every string of a tool call's arguments or of a tool result, with its
//! RFC 6901 JSON Pointer, so one scanner reads both and a redaction names
//! what it found by the pointer it was found at.
//!
//! A result arrives as its strings already ([`crate::TextAt`]); a call's
//! arguments arrive as top-level members whose nested values are JSON
//! text, which [`ToolCall::strings`] reads.

use std::borrow::Cow;

use serde_json::Value;

use crate::{ArgValue, ToolCall, ToolResult};

/// A string of a JSON document (a tool call's arguments object, or a tool
/// result object) and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf<'a> {
    /// RFC 6901 JSON Pointer from the document's root.
    pub pointer: Cow<'a, str>,
    /// The string, decoded (JSON escapes already undone by the host).
    pub text: Cow<'a, str>,
    /// True for a string value, which a redaction at `pointer` can mask.
    /// False for an object key (an argument's name included) and for
    /// nested JSON the SDK could not read: no redaction reaches those, so
    /// a policy that finds something there must refuse instead.
    pub redactable: bool,
}

impl ToolCall {
    /// Every string of the arguments, top-level members in document order
    /// (nested objects in key order), keys included as unredactable leaves.
    pub fn strings(&self) -> Vec<Leaf<'_>> {
        let mut out = Vec::new();
        let mut pointer = String::new();
        for argument in &self.arguments {
            push_token(&mut pointer, &argument.name);
            out.push(Leaf { pointer: pointer.clone().into(), text: argument.name.as_str().into(), redactable: false });
            match &argument.value {
                ArgValue::Text(text) => {
                    out.push(Leaf { pointer: pointer.clone().into(), text: text.as_str().into(), redactable: true });
                }
                ArgValue::Json(json) => match serde_json::from_str::<Value>(json) {
                    Ok(value) => collect(value, &mut pointer, &mut out),
                    // Not what the host sends; still read, never redacted.
                    Err(_) => out.push(Leaf {
                        pointer: pointer.clone().into(),
                        text: json.as_str().into(),
                        redactable: false,
                    }),
                },
                ArgValue::Null | ArgValue::Boolean(_) | ArgValue::Integer(_) | ArgValue::Float(_) => {}
            }
            pointer.clear();
        }
        out
    }
}

impl ToolResult {
    /// Every string of the result object, as the host handed them, each
    /// preceded by the member names on its path not already given (as
    /// unredactable leaves; array indices left out).
    pub fn strings(&self) -> Vec<Leaf<'_>> {
        let mut out = Vec::with_capacity(self.texts.len());
        let mut previous = "";
        for t in &self.texts {
            let pointer = t.pointer.as_str();
            let shared = shared_tokens(previous, pointer);
            for end in token_ends(pointer).filter(|&end| end > shared) {
                let path = &pointer[..end];
                let token = last_token(path);
                if !token.bytes().all(|b| b.is_ascii_digit()) {
                    out.push(Leaf { pointer: path.into(), text: token, redactable: false });
                }
            }
            out.push(Leaf { pointer: pointer.into(), text: t.text.as_str().into(), redactable: true });
            previous = pointer;
        }
        out
    }
}

/// Bytes of the longest run of whole reference tokens two pointers share.
fn shared_tokens(a: &str, b: &str) -> usize {
    let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let ends_token = |s: &str| s.len() == common || s.as_bytes()[common] == b'/';
    if ends_token(a) && ends_token(b) { common } else { a[..common].rfind('/').unwrap_or(0) }
}

/// Moves every string of `value` (at `pointer`) into `out`. The host's
/// parser stops at 128 levels, so recursion is bounded.
fn collect(value: Value, pointer: &mut String, out: &mut Vec<Leaf<'_>>) {
    match value {
        Value::String(text) => out.push(Leaf { pointer: pointer.clone().into(), text: text.into(), redactable: true }),
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                push_token(pointer, &i.to_string());
                collect(item, pointer, out);
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = pointer.len();
                push_token(pointer, &key);
                out.push(Leaf { pointer: pointer.clone().into(), text: key.into(), redactable: false });
                collect(item, pointer, out);
                pointer.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Appends `/token`, escaped as RFC 6901 says (`~` → `~0`, `/` → `~1`).
fn push_token(pointer: &mut String, token: &str) {
    pointer.push('/');
    for c in token.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// Where each reference token of a pointer ends: `/a/b` gives 2 and 4,
/// so `&pointer[..end]` is the path to each member on the way.
pub fn token_ends(pointer: &str) -> impl Iterator<Item = usize> + '_ {
    pointer.match_indices('/').map(|(i, _)| i).skip(1).chain((!pointer.is_empty()).then_some(pointer.len()))
}

/// The last reference token of a pointer, unescaped: the member name (or
/// array index) a string sits at, e.g. `aws_secret_access_key`.
pub fn last_token(pointer: &str) -> Cow<'_, str> {
    let token = pointer.rsplit('/').next().unwrap_or_default();
    if token.contains('~') { token.replace("~1", "/").replace("~0", "~").into() } else { token.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RequestBuilder;

    /// Sorted: objects come in key order or document order, as serde_json
    /// is built (`preserve_order`, which another crate of a build may turn on).
    fn sorted(leaves: Vec<Leaf<'_>>) -> Vec<(String, String, bool)> {
        let mut leaves: Vec<_> =
            leaves.into_iter().map(|l| (l.pointer.into_owned(), l.text.into_owned(), l.redactable)).collect();
        leaves.sort();
        leaves
    }

    fn leaves(request: &crate::Request) -> Vec<(String, String, bool)> {
        sorted(request.tool_call().unwrap().strings())
    }

    fn expected<const N: usize>(leaves: [(String, String, bool); N]) -> Vec<(String, String, bool)> {
        let mut leaves = leaves.to_vec();
        leaves.sort();
        leaves
    }

    #[test]
    fn arguments_yield_every_string_with_its_pointer() {
        let request = RequestBuilder::tool_call("slack.post_message")
            .args(serde_json::json!({"text": "hi", "n": 3, "blocks": [{"a/b": "x", "t~": ["y", null]}]}))
            .build();
        let owned = |p: &str, t: &str, r| (p.to_owned(), t.to_owned(), r);
        assert_eq!(
            leaves(&request),
            expected([
                owned("/blocks", "blocks", false),
                owned("/blocks/0/a~1b", "a/b", false),
                owned("/blocks/0/a~1b", "x", true),
                owned("/blocks/0/t~0", "t~", false),
                owned("/blocks/0/t~0/0", "y", true),
                owned("/n", "n", false),
                owned("/text", "text", false),
                owned("/text", "hi", true),
            ])
        );
        assert_eq!(last_token("/blocks/0/a~1b"), "a/b");
        assert_eq!(token_ends("/a/bc/d").collect::<Vec<_>>(), [2, 5, 7]);
        assert_eq!(token_ends("").count(), 0);
        assert_eq!(last_token("/x~0y"), "x~y");
    }

    #[test]
    fn results_yield_their_strings_and_the_names_on_the_way() {
        let request = RequestBuilder::tool_call("t")
            .result(serde_json::json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                "structuredContent": {"k~": {"AKIA": "c"}}}))
            .build();
        let leaves = sorted(request.result().unwrap().strings());
        let owned = |p: &str, t: &str, r| (p.to_owned(), t.to_owned(), r);
        assert_eq!(
            leaves,
            expected([
                owned("/content", "content", false),
                owned("/content/0/text", "text", false),
                owned("/content/0/text", "a", true),
                owned("/content/0/type", "type", false),
                owned("/content/0/type", "text", true),
                owned("/content/1/text", "text", false),
                owned("/content/1/text", "b", true),
                owned("/content/1/type", "type", false),
                owned("/content/1/type", "text", true),
                owned("/structuredContent", "structuredContent", false),
                owned("/structuredContent/k~0", "k~", false),
                owned("/structuredContent/k~0/AKIA", "AKIA", false),
                owned("/structuredContent/k~0/AKIA", "c", true),
            ])
        );
    }

    #[test]
    fn unreadable_json_is_read_but_never_redactable() {
        let request = RequestBuilder::tool_call("t").arg_value("raw", ArgValue::Json("{not json".into())).build();
        assert_eq!(leaves(&request)[1], ("/raw".to_owned(), "{not json".to_owned(), false));
    }
}
