//! The one glob dialect of arbiter, shared by the host (a manifest's
//! `scope`: `tools`, `pipelines`, `agents`) and by policies (their
//! settings' tool, model, pipeline and agent patterns, through
//! `arbiter_sdk::glob`).
//!
//! | pattern | matches |
//! |---|---|
//! | `*` | any run of characters, empty included, dots and slashes too |
//! | `**` | the same as `*` (no path semantics) |
//! | `?` | exactly one character (a Unicode scalar value, not a byte) |
//! | `\*`, `\?`, `\\` | a literal `*`, `?`, `\` (a `\` before any character means that character; a trailing `\` means itself) |
//! | anything else | itself, case-sensitively (`[`, `{`, `.` are plain characters) |
//!
//! A pattern matches the whole text, never a part of it; the empty pattern
//! matches only the empty text.
//!
//! Every string is a valid pattern, so there is no error to handle and no
//! pattern that silently matches nothing: a deny-list entry cannot be
//! turned off by a typo in its syntax.
//!
//! ```
//! use arbiter_glob::matches;
//! assert!(matches("warehouse.*", "warehouse.query"));
//! assert!(!matches("warehouse.*", "Warehouse.query"));
//! assert!(matches("caf?", "café"));
//! assert!(matches(r"what\?", "what?") && !matches(r"what\?", "whatz"));
//! ```

/// One element of a pattern.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    /// `*`: any run of characters.
    Star,
    /// `?`: one character.
    One,
    /// A character matching itself (escaped or plain).
    Literal(char),
}

/// The first token of `pattern` and what follows it.
fn next_token(pattern: &str) -> Option<(Token, &str)> {
    let mut chars = pattern.chars();
    let token = match chars.next()? {
        '*' => Token::Star,
        '?' => Token::One,
        '\\' => Token::Literal(chars.next().unwrap_or('\\')),
        plain => Token::Literal(plain),
    };
    Some((token, chars.as_str()))
}

/// True when `pattern` matches the whole of `text`.
///
/// Allocation-free and never exponential: on a mismatch it retries only
/// from the last `*`, one character further along the text (a later `*`
/// subsumes every choice an earlier one could make).
pub fn matches(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?', '\\']) {
        return pattern == text;
    }
    let (mut pattern_at, mut text_at) = (pattern, text);
    // The pattern after the last `*` and the text it was last tried at.
    let mut last_star: Option<(&str, &str)> = None;
    loop {
        let mut text_chars = text_at.chars();
        match (next_token(pattern_at), text_chars.next()) {
            (Some((Token::Star, rest)), _) => {
                last_star = Some((rest, text_at));
                pattern_at = rest;
                continue;
            }
            (Some((Token::One, rest)), Some(_)) => {
                (pattern_at, text_at) = (rest, text_chars.as_str());
                continue;
            }
            (Some((Token::Literal(expected), rest)), Some(found)) if expected == found => {
                (pattern_at, text_at) = (rest, text_chars.as_str());
                continue;
            }
            (None, None) => return true,
            _ => {}
        }
        let Some((after_star, tried)) = last_star else { return false };
        let mut retry = tried.chars();
        if retry.next().is_none() {
            return false;
        }
        (pattern_at, text_at) = (after_star, retry.as_str());
        last_star = Some((after_star, text_at));
    }
}

/// True when any of `patterns` matches `text`.
pub fn any_matches<S: AsRef<str>>(patterns: &[S], text: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), text))
}

/// A pattern that matches exactly `text`: its `*`, `?` and `\` escaped.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            // Literals: whole text, case and trailing space count.
            ("warehouse.query", "warehouse.query", true),
            ("warehouse.query", "warehouse.query ", false),
            ("warehouse.query", "Warehouse.query", false),
            // Empty pattern and empty text.
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("?", "", false),
            // `*` crosses dots and slashes; `**` is the same.
            ("warehouse.*", "warehouse.query", true),
            ("warehouse.*", "warehouse.", true),
            ("warehouse.*", "warehouse", false),
            ("*.delete_*", "s3.delete_object", true),
            ("*", "a.b/c", true),
            ("**", "a.b/c", true),
            ("a/*", "a/b/c", true),
            ("a**c", "abc", true),
            // Dots are plain characters, not "any character".
            ("a.c", "abc", false),
            // `?` is one character, however many bytes it takes.
            ("a?c", "abc", true),
            ("caf?", "café", true),
            ("?", "é", true),
            ("??", "é", false),
            ("?", "😀", true),
            ("*é", "ééé", true),
            ("a*é?", "aébé€", true),
            // Backtracking over several stars.
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            // Escapes.
            (r"\*", "*", true),
            (r"\*", "x", false),
            (r"what\?", "what?", true),
            (r"what\?", "whatz", false),
            (r"a\\b", r"a\b", true),
            (r"a\b", "ab", true),
            ("a\\", "a\\", true),
            (r"\**", "*tail", true),
            (r"\**", "tail", false),
            // Brackets and braces are plain characters.
            ("[ab]", "[ab]", true),
            ("[ab]", "a", false),
            ("{a,b}", "a", false),
            // Case: no folding, not even for ASCII or Unicode.
            ("É*", "é", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} vs {text:?}");
        }
    }

    #[test]
    fn any_of_several() {
        assert!(any_matches(&["x", "ware*"], "warehouse"));
        assert!(!any_matches::<&str>(&[], "warehouse"));
    }

    #[test]
    fn escaped_text_matches_only_itself() {
        for text in ["a*b", "what?", r"back\slash", "", "plain"] {
            assert!(matches(&escape(text), text), "{text:?}");
        }
        assert!(!matches(&escape("a*b"), "aXb"));
    }
}
