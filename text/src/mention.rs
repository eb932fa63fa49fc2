//! Markers mentioned at a word start (`history.first-mention`).

use std::fmt;

/// True when `needle` occurs in `haystack` (ASCII case-insensitive) at a
/// word start: at the beginning, or after a character that is not an ASCII
/// letter, digit or `_`. The empty needle is mentioned everywhere.
pub fn mentions_at_word_start(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return n.is_empty();
    }
    (0..=h.len() - n.len()).any(|i| (i == 0 || !is_word_byte(h[i - 1])) && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// The index of the first of `markers` that the first text mentioning any
/// of them mentions (texts in order, then markers in order), if any.
pub fn first_marker<'a, S: AsRef<str>>(texts: impl IntoIterator<Item = &'a str>, markers: &[S]) -> Option<usize> {
    texts.into_iter().find_map(|text| markers.iter().position(|m| mentions_at_word_start(text, m.as_ref())))
}

/// Most items in one list of a `first-mention` question.
pub const MAX_QUESTION_ITEMS: usize = 64;
/// Most bytes in one item of a `first-mention` question.
pub const MAX_QUESTION_ITEM_BYTES: usize = 256;

/// A `first-mention` question past its bounds: the host's work answering
/// it is not metered as the policy's own is, so its size is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionTooLarge {
    /// The list's position in the question (0: tools, 1: arguments, 2: markers).
    pub list: usize,
    /// Its length, or the length of its first item past the bound.
    pub size: usize,
}

impl fmt::Display for QuestionTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "question list {} holds {} (at most {MAX_QUESTION_ITEMS} items of {MAX_QUESTION_ITEM_BYTES} bytes)",
            self.list, self.size
        )
    }
}

impl std::error::Error for QuestionTooLarge {}

/// Whether each of `lists` is within the bounds of a question.
pub fn check_question_lists<S: AsRef<str>>(lists: &[&[S]]) -> Result<(), QuestionTooLarge> {
    for (list, items) in lists.iter().enumerate() {
        if items.len() > MAX_QUESTION_ITEMS {
            return Err(QuestionTooLarge { list, size: items.len() });
        }
        if let Some(item) = items.iter().find(|i| i.as_ref().len() > MAX_QUESTION_ITEM_BYTES) {
            return Err(QuestionTooLarge { list, size: item.as_ref().len() });
        }
    }
    Ok(())
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("select * from prod.orders_daily", "prod.", true),
            ("select * from PROD.orders", "prod.", true),
            ("prod.orders", "prod.", true),
            ("select * from preprod.orders", "prod.", false),
            ("select * from dev.orders", "prod.", false),
            ("select * from x_prod.orders", "prod.", false),
            ("\"prod.orders\"", "prod.", true),
            ("prod", "prod.", false),
            ("é prod.x", "prod.", true),
            ("", "", true),
        ];
        for (haystack, needle, expected) in cases {
            assert_eq!(mentions_at_word_start(haystack, needle), expected, "{haystack}");
        }
    }

    #[test]
    fn the_first_text_then_the_first_marker_wins() {
        let markers = ["pii.", "restricted."];
        assert_eq!(first_marker(["select 1", "from restricted.a join pii.b"], &markers), Some(0));
        assert_eq!(first_marker(["from restricted.a", "from pii.b"], &markers), Some(1));
        assert_eq!(first_marker(["from nopii.a"], &markers), None);
        assert_eq!(first_marker([], &markers), None);
        assert_eq!(first_marker(["anything"], &[] as &[&str]), None);
    }

    #[test]
    fn questions_are_bounded() {
        let ok = vec!["x".repeat(MAX_QUESTION_ITEM_BYTES); MAX_QUESTION_ITEMS];
        assert_eq!(check_question_lists(&[&ok[..], &ok[..], &[]]), Ok(()));
        let long = vec!["x".to_owned(); MAX_QUESTION_ITEMS + 1];
        assert_eq!(check_question_lists(&[&ok[..], &long[..]]), Err(QuestionTooLarge { list: 1, size: 65 }));
        let wide = ["x".repeat(MAX_QUESTION_ITEM_BYTES + 1)];
        let refused = check_question_lists(&[&[] as &[String], &[], &wide[..]]).unwrap_err();
        assert_eq!(refused.to_string(), "question list 2 holds 257 (at most 64 items of 256 bytes)");
    }
}
