//! Quoting input in an error: an error is shown in HTTP bodies, log lines
//! and terminals, so what it quotes of the input is bounded and cannot
//! break a line or send a terminal escape.

/// `text` with control characters escaped (`\n`, `\u{1b}`), cut to at most
/// `max_chars` characters, with an ellipsis when it was longer.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for c in text.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        chars += out[before..].chars().count();
        if chars > max_chars {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_characters() {
        assert_eq!(excerpt("a\nb\u{1b}[2J", 100), "a\\nb\\u{1b}[2J");
        assert_eq!(excerpt("plain", 100), "plain");
    }

    #[test]
    fn cuts_at_the_limit_counting_escapes() {
        assert_eq!(excerpt("abcdef", 3), "abc…");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(excerpt("ab\ncd", 3), "ab…", "an escape is not cut in half");
        assert_eq!(excerpt(&"é".repeat(10), 4), "éééé…");
    }
}
