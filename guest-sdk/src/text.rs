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
        ];
        for (haystack, needle, expected) in cases {
            assert_eq!(mentions_at_word_start(haystack, needle), expected, "{haystack}");
        }
    }
}
