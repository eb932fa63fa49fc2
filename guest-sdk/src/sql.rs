//! Scanning SQL text for keywords without a parser.

/// The words of `sql` that stand outside single-quoted string literals
/// (`''` inside a literal is an escaped quote). A word is a maximal run of
/// ASCII letters and `_`.
pub fn words_outside_literals(sql: &str) -> impl Iterator<Item = &str> {
    WordsOutsideLiterals { sql, at: 0 }
}

/// The first word of `sql` outside literals that equals one of `keywords`,
/// ignoring ASCII case.
pub fn find_keyword<'k, S: AsRef<str>>(sql: &str, keywords: &'k [S]) -> Option<&'k str> {
    words_outside_literals(sql)
        .find_map(|word| keywords.iter().map(AsRef::as_ref).find(|k| k.eq_ignore_ascii_case(word)))
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
            assert_eq!(find_keyword(sql, &WRITES), expected, "{sql}");
        }
    }

    #[test]
    fn words_split_on_non_letters() {
        let words: Vec<_> = words_outside_literals("a.b_c 'x y' d2e").collect();
        assert_eq!(words, ["a", "b_c", "d", "e"]);
    }
}
