//! Glob patterns for tool names: `*` matches any run of characters, `?`
//! exactly one; everything else matches itself, case-sensitively.

/// True when `pattern` matches the whole of `text`.
///
/// Allocation-free: policies call this for every listed tool of every
/// request, and an allocation costs more than the match inside a sandbox.
pub fn matches(pattern: &str, text: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == text;
    }
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    // Position after the last `*` and the text position it was tried at,
    // for backtracking: linear in practice, never exponential.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            // `?` is one character, however many bytes it takes.
            Some(b'?') => {
                p += 1;
                t += char_len(text[t]);
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((after_star, tried)) => {
                    // Retry one character further along the text.
                    let next = tried + char_len(text[tried]);
                    p = after_star;
                    t = next;
                    star = Some((after_star, next));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Length of the UTF-8 sequence a lead byte starts.
fn char_len(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// True when any of `patterns` matches `text`.
pub fn any_matches<S: AsRef<str>>(patterns: &[S], text: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("warehouse.query", "warehouse.query", true),
            ("warehouse.query", "warehouse.query ", false),
            ("warehouse.*", "warehouse.query", true),
            ("warehouse.*", "warehouse.", true),
            ("warehouse.*", "Warehouse.query", false),
            ("*.delete_*", "s3.delete_object", true),
            ("*", "", true),
            ("?", "", false),
            ("a?c", "abc", true),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("**", "anything", true),
            ("caf?", "café", true),
            ("?", "é", true),
            ("??", "é", false),
            ("*é", "ééé", true),
            ("a*é?", "aébé€", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern} vs {text:?}");
        }
    }
}
