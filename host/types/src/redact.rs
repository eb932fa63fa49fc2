//! Redaction: masking spans of the strings in a JSON document (a tool
//! call's arguments, a tool result) before it goes on.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Bytes `start..end` of the string at `pointer` (RFC 6901) become
/// `[redacted:<code>]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Redaction {
    pub pointer: String,
    pub start: u32,
    pub end: u32,
    pub code: String,
}

/// Why a redaction cannot apply to a document: the policy that asked for it
/// misread the document, which counts as its fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedactionError {
    #[error("redaction `{pointer}`: no string there")]
    NoString { pointer: String },
    #[error("redaction `{pointer}` {start}..{end}: outside the string's {len} bytes or not on character boundaries")]
    BadRange { pointer: String, start: u32, end: u32, len: usize },
}

/// Checks that every redaction names a span of a string of `document`.
pub fn check_redactions(document: &Value, redactions: &[Redaction]) -> Result<(), RedactionError> {
    for r in redactions {
        match document.pointer(&r.pointer) {
            Some(Value::String(text)) => check_range(r, text)?,
            _ => return Err(RedactionError::NoString { pointer: crate::excerpt(&r.pointer, 200) }),
        }
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
pub fn apply_redactions(document: &mut Value, redactions: &[Redaction]) -> Result<(), RedactionError> {
    check_redactions(document, redactions)?;
    let mut by_pointer: std::collections::BTreeMap<&str, Vec<&Redaction>> = Default::default();
    for r in redactions {
        by_pointer.entry(&r.pointer).or_default().push(r);
    }
    for (pointer, mut spans) in by_pointer {
        let Some(Value::String(text)) = document.pointer_mut(pointer) else {
            return Err(RedactionError::NoString { pointer: crate::excerpt(pointer, 200) });
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
        let mut doc = json!({"text": "key AKIAABCDEFGHIJKLMNOP and ghp_x", "n": 1});
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
        let doc = json!({"text": "héllo", "n": 1, "list": ["a"]});
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
        check_redactions(&doc, &[span("/list/0", 0, 1, "c")]).unwrap();
    }
}
