//! Scanning SQL text for keywords without a parser.

/// The words of `sql` that stand outside single-quoted string literals
/// (`''` inside a literal is an escaped quote). A word is a maximal run of
/// ASCII letters and `_`.
pub fn words_outside_literals(sql: &str) -> impl Iterator<Item = &str> {
    WordsOutsideLiterals { sql, at: 0 }
}

/// Keywords to look for, prepared once (when the policy is created):
/// lowercased, with the set of their lengths, so that most words of a
/// statement are passed over on their length alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keywords {
    lowercase: Vec<String>,
    /// Bit n is set when a keyword is n bytes long (bit 63: 63 or more).
    lengths: u64,
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl Keywords {
    pub fn new<S: AsRef<str>>(keywords: &[S]) -> Self {
        let lowercase: Vec<String> = keywords.iter().map(|k| k.as_ref().to_ascii_lowercase()).collect();
        let lengths = lowercase.iter().fold(0, |bits, k| bits | length_bit(k.len()));
        Keywords { lowercase, lengths }
    }

    /// The first word of `sql` outside literals that equals one of the
    /// keywords, ignoring ASCII case; the keyword is returned lowercased.
    pub fn find_in(&self, sql: &str) -> Option<&str> {
        words_outside_literals(sql).find_map(|word| {
            if self.lengths & length_bit(word.len()) == 0 {
                return None;
            }
            self.lowercase.iter().find(|k| k.eq_ignore_ascii_case(word)).map(String::as_str)
        })
    }
}

struct WordsOutsideLiterals<'a> {
    sql: &'a str,
    at: usize,
}

impl<'a> Iterator for WordsOutsideLiterals<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.sql.as_bytes();
        while self.at < bytes.len() {
            let b = bytes[self.at];
            if b == b'\'' {
                self.at = end_of_literal(bytes, self.at + 1);
            } else if is_word_byte(b) {
                let start = self.at;
                while self.at < bytes.len() && is_word_byte(bytes[self.at]) {
                    self.at += 1;
                }
                return Some(&self.sql[start..self.at]);
            } else {
                self.at += 1;
            }
        }
        None
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// Index just past the literal whose body starts at `at`; an unterminated
/// literal runs to the end.
fn end_of_literal(bytes: &[u8], mut at: usize) -> usize {
    while at < bytes.len() {
        if bytes[at] == b'\'' {
            if bytes.get(at + 1) == Some(&b'\'') {
                at += 2;
                continue;
            }
            return at + 1;
        }
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRITES: [&str; 3] = ["drop", "delete", "update"];

    #[test]
    fn table() {
        let cases = [
            ("select 1; DROP TABLE t", Some("drop")),
            ("select * from t where note = 'please drop it'", None),
            ("select 'it''s drop' from t", None),
            ("select 'a' || 'b'; delete from t", Some("delete")),
            ("select dropped_at from t", None),
            ("select drop1 from t", Some("drop")),
            ("select updated from t", None),
            ("select 'unterminated drop", None),
            ("", None),
        ];
        for (sql, expected) in cases {
            assert_eq!(Keywords::new(&WRITES).find_in(sql), expected, "{sql}");
        }
    }

    #[test]
    fn keywords_match_in_any_case_and_any_length() {
        let long = "x".repeat(70);
        let keywords = Keywords::new(&["DROP", "merge_into", long.as_str()]);
        assert_eq!(keywords.find_in("select 1; Drop table t"), Some("drop"));
        assert_eq!(keywords.find_in("MERGE_INTO t"), Some("merge_into"));
        assert_eq!(keywords.find_in(&format!("select {}", long.to_uppercase())), Some(long.as_str()));
        assert_eq!(keywords.find_in(&format!("select {long}x")), None, "a longer word is not the keyword");
        assert_eq!(keywords.find_in("dropped merge"), None);
    }

    #[test]
    fn words_split_on_non_letters() {
        let words: Vec<_> = words_outside_literals("a.b_c 'x y' d2e").collect();
        assert_eq!(words, ["a", "b_c", "d", "e"]);
    }
}
