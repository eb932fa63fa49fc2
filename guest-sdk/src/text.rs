//! Small text helpers shared by policies.

/// True when `needle` occurs in `haystack` (ASCII case-insensitive) at a
/// word start: at the beginning, or after a character that is not an ASCII
/// letter, digit or `_`.
pub fn mentions_at_word_start(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return n.is_empty();
    }
    (0..=h.len() - n.len()).any(|i| (i == 0 || !is_word_byte(h[i - 1])) && h[i..i + n.len()].eq_ignore_ascii_case(n))
}

/// The set of lowercase ASCII-alphanumeric tokens of `text` (split on
/// anything else, empties dropped), sorted and deduplicated.
pub fn token_set(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    tokens
}

/// Jaccard similarity |a ∩ b| / |a ∪ b| of two sorted, deduplicated sets
/// (1.0 for two empty sets).
pub fn jaccard<T: Ord>(a: &[T], b: &[T]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 { 1.0 } else { common as f64 / union as f64 }
}

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

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sets_and_similarity() {
        let a = token_set("orders_daily schema change column missing");
        assert_eq!(a, ["change", "column", "daily", "missing", "orders", "schema"]);
        let b = token_set("orders_daily schema changed column missing");
        assert!((jaccard(&a, &b) - 5.0 / 7.0).abs() < 1e-9);
        assert_eq!(jaccard(&a, &token_set("Orders daily, schema CHANGE missing column!")), 1.0);
        assert_eq!(jaccard::<String>(&[], &[]), 1.0);
        assert_eq!(jaccard(&a, &token_set("page the oncall")), 0.0);
    }

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
        ];
        for (haystack, needle, expected) in cases {
            assert_eq!(mentions_at_word_start(haystack, needle), expected, "{haystack}");
        }
    }
}
