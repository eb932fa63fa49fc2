//! Redaction: masking spans of the strings in a JSON document (a tool
//! call's arguments, a tool result) before it goes on.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Bytes `start..end` of the string at `pointer` (RFC 6901) become
/// `[redacted:<code>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Redaction {
    /// JSON Pointer of the string within the arguments or result.
    pub pointer: String,
    /// Start of the span, in bytes.
    pub start: u32,
    /// End of the span (exclusive), in bytes.
    pub end: u32,
    /// Why it is masked (`aws_access_key`); shown as `[redacted:<code>]`.
    pub code: String,
}

/// Why a redaction cannot apply to a document: the policy that asked for it
/// misread the document, which counts as its fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedactionError {
    /// The pointer names no string of the document.
    #[error("redaction `{pointer}`: no string there")]
    NoString {
        /// The redaction's pointer.
        pointer: String,
    },
    /// The span does not lie within the string, on character boundaries.
    #[error("redaction `{pointer}` {start}..{end}: outside the string's {len} bytes or not on character boundaries")]
    BadRange {
        /// The redaction's pointer.
        pointer: String,
        /// The span's start.
        start: u32,
        /// The span's end.
        end: u32,
        /// The string's length in bytes.
        len: usize,
    },
}

/// Splits `/first/rest…` into the first member's (unescaped) name and the
/// pointer into it.
fn split(pointer: &str) -> Option<(String, &str)> {
    let rest = pointer.strip_prefix('/')?;
    let (first, rest) = rest.find('/').map_or((rest, ""), |at| (&rest[..at], &rest[at..]));
    Some((first.replace("~1", "/").replace("~0", "~"), rest))
}

fn string_at<'a>(document: &'a Map<String, Value>, pointer: &str) -> Option<&'a str> {
    let (first, rest) = split(pointer)?;
    document.get(&first)?.pointer(rest)?.as_str()
}

fn no_string(pointer: &str) -> RedactionError {
    RedactionError::NoString { pointer: crate::excerpt(pointer, 200) }
}

/// Checks that every redaction names a span of a string of `document`.
pub fn check_redactions(document: &Map<String, Value>, redactions: &[Redaction]) -> Result<(), RedactionError> {
    for r in redactions {
        let text = string_at(document, &r.pointer).ok_or_else(|| no_string(&r.pointer))?;
        check_range(r, text)?;
    }
    Ok(())
}

fn check_range(r: &Redaction, text: &str) -> Result<(), RedactionError> {
    let (start, end) = (r.start as usize, r.end as usize);
    if start < end && end <= text.len() && text.is_char_boundary(start) && text.is_char_boundary(end) {
        Ok(())
    } else {
        Err(RedactionError::BadRange {
            pointer: crate::excerpt(&r.pointer, 200),
            start: r.start,
            end: r.end,
            len: text.len(),
        })
    }
}

/// Masks every span in `document`. Overlapping or touching spans of one
/// string are masked as one, named by each code once, so no byte of
/// either survives between two masks.
pub fn apply_redactions(document: &mut Map<String, Value>, redactions: &[Redaction]) -> Result<(), RedactionError> {
    check_redactions(document, redactions)?;
    let mut by_pointer: std::collections::BTreeMap<&str, Vec<&Redaction>> = Default::default();
    for r in redactions {
        by_pointer.entry(&r.pointer).or_default().push(r);
    }
    for (pointer, mut spans) in by_pointer {
        let (first, rest) = split(pointer).ok_or_else(|| no_string(pointer))?;
        let Some(Value::String(text)) = document.get_mut(&first).and_then(|v| v.pointer_mut(rest)) else {
            return Err(no_string(pointer));
        };
        spans.sort_by_key(|r| (r.start, r.end));
        let mut masked = String::with_capacity(text.len());
        let mut copied = 0usize;
        let mut i = 0;
        while i < spans.len() {
            let start = spans[i].start as usize;
            let mut end = spans[i].end as usize;
            let mut codes = vec![spans[i].code.as_str()];
            i += 1;
            while i < spans.len() && spans[i].start as usize <= end {
                end = end.max(spans[i].end as usize);
                if !codes.contains(&spans[i].code.as_str()) {
                    codes.push(&spans[i].code);
                }
                i += 1;
            }
            masked.push_str(&text[copied..start]);
            masked.push_str(&format!("[redacted:{}]", codes.join(",")));
            copied = end;
        }
        masked.push_str(&text[copied..]);
        *text = masked;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn span(pointer: &str, start: u32, end: u32, code: &str) -> Redaction {
        Redaction { pointer: pointer.into(), start, end, code: code.into() }
    }

    #[test]
    fn masks_spans_and_merges_overlaps() {
        let mut doc = json!({"text": "key AKIAABCDEFGHIJKLMNOP and ghp_x", "n": 1}).as_object().unwrap().clone();
        apply_redactions(
            &mut doc,
            &[
                span("/text", 4, 24, "aws_access_key"),
                span("/text", 29, 34, "github_token"),
                span("/text", 10, 26, "x"),
            ],
        )
        .unwrap();
        assert_eq!(doc["text"], "key [redacted:aws_access_key,x]nd [redacted:github_token]");
    }

    #[test]
    fn refuses_spans_that_are_not_in_a_string() {
        let doc = json!({"text": "héllo", "n": 1, "list": ["a"], "a/b": {"~": "x"}}).as_object().unwrap().clone();
        for (r, needle) in [
            (span("/n", 0, 1, "c"), "no string"),
            (span("/missing", 0, 1, "c"), "no string"),
            (span("/text", 0, 9, "c"), "outside"),
            (span("/text", 2, 3, "c"), "boundaries"),
            (span("/text", 3, 3, "c"), "outside"),
            (span("", 0, 1, "c"), "no string"),
        ] {
            let err = check_redactions(&doc, &[r]).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        check_redactions(&doc, &[span("/list/0", 0, 1, "c"), span("/a~1b/~0", 0, 1, "c")]).unwrap();
    }
}
