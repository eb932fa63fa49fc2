//! Small text helpers shared by policies.

/// Token sets and their Jaccard similarity, and markers mentioned at a
/// word start, exactly as the host defines them for
/// `history::count_similar` and `history::first_mention`.
pub use arbiter_text::{
    MAX_QUESTION_ITEM_BYTES, MAX_QUESTION_ITEMS, MAX_QUESTION_TEXT_BYTES, QuestionTooLarge, TokenSet,
    check_question_lists, first_marker, jaccard, mentions_at_word_start,
};

/// `text` fit to quote in a reason message: control characters and quotes
/// escaped, cut after `max_chars` characters with `…`. For names a peer
/// chose (a listed tool's, a server's), which may be long or hold newlines.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().take(max_chars).flat_map(char::escape_debug).collect();
    if text.chars().nth(max_chars).is_some() {
        out.push('…');
    }
    out
}

/// The first `shown` of `items` joined with `separator`, then `, and N
/// more` for the rest: a list in a reason that stays short however many
/// there are.
/// Items past `shown` are counted, never formatted.
pub fn bounded_list<S: AsRef<str>>(items: impl ExactSizeIterator<Item = S>, shown: usize, separator: &str) -> String {
    let total = items.len();
    let shown: Vec<S> = items.take(shown).collect();
    let mut out = shown.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(separator);
    if total > shown.len() {
        out.push_str(&format!(", and {} more", total - shown.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lists_count_the_rest() {
        assert_eq!(bounded_list(["a", "b"].into_iter(), 2, "; "), "a; b");
        assert_eq!(bounded_list(["a", "b", "c"].into_iter(), 1, ", "), "a, and 2 more");
        assert_eq!(bounded_list(std::iter::empty::<&str>(), 3, ", "), "");
    }

    #[test]
    fn excerpts_are_short_and_escaped() {
        assert_eq!(excerpt("echo", 10), "echo");
        assert_eq!(excerpt("a\nb`c", 10), "a\\nb`c");
        assert_eq!(excerpt("ééééé", 3), "ééé…");
    }
}
