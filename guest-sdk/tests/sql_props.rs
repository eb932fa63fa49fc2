//! Properties of the SQL reader (docs/fuzzing.md), seeded with
//! human-review's bypass corpus: no text makes it panic; its errors are
//! bounded; changing what a lexer ignores (whitespace, comments, keyword
//! case) never changes whether a statement is read-only; a write stacked
//! next to a read is never read-only; text that is not only whitespace,
//! comments and separators is statements or an error, never nothing.
#![cfg(feature = "sql")]

use std::sync::LazyLock;

use arbiter_sdk::sql::{self, DEFAULT_MAX_BYTES, Dialect, Kind, ReadOnly};
use proptest::prelude::*;
use serde_json::Value;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer, Whitespace};

/// Every dialect the SDK reads, by the name settings give.
const DIALECTS: &[&str] = &["generic", "ansi", "postgres", "mysql", "snowflake", "bigquery"];

/// Parser messages are cut to 200 characters, behind a short prefix.
const MAX_SQL_ERROR_CHARS: usize = 240;

fn dialect(name: &str) -> Dialect {
    serde_json::from_value(Value::from(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A corpus statement, the dialect it is read in, and whether it is
/// read-only there.
#[derive(Debug, Clone)]
struct Seed {
    sql: String,
    dialect: &'static str,
    read_only: bool,
}

/// The corpus statements that parse (in their case's dialect), read-only
/// or not.
static SEEDS: LazyLock<Vec<Seed>> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/human-review/tests/sql_corpus");
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let corpus: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let rule_dialect = corpus["rule"]["dialect"].as_str().unwrap_or("generic");
        for case in corpus["cases"].as_array().unwrap() {
            let name = case["dialect"].as_str().unwrap_or(rule_dialect);
            let dialect_name =
                DIALECTS.iter().copied().find(|d| *d == name || (name == "postgresql" && *d == "postgres"));
            let (Some(dialect_name), Some(sql)) = (dialect_name, case["sql"].as_str()) else { continue };
            if let Ok(statements) = sql::parse(dialect(dialect_name), sql, DEFAULT_MAX_BYTES)
                && !statements.is_empty()
            {
                let read_only = ReadOnly::default().violation(&statements).is_none();
                seeds.push(Seed { sql: sql.to_owned(), dialect: dialect_name, read_only });
            }
        }
    }
    assert!(seeds.iter().filter(|s| s.read_only).count() > 50, "the corpus has reads");
    assert!(seeds.iter().filter(|s| !s.read_only).count() > 100, "the corpus has writes");
    seeds
});

fn seed(read_only: Option<bool>) -> impl Strategy<Value = Seed> {
    let pool: Vec<Seed> = SEEDS.iter().filter(|s| read_only.is_none_or(|r| s.read_only == r)).cloned().collect();
    prop::sample::select(pool)
}

fn lex(dialect: &str, sql: &str) -> Option<Vec<TokenWithSpan>> {
    let rules = sqlparser::dialect::dialect_from_str(dialect)?;
    Tokenizer::new(rules.as_ref(), sql).tokenize_with_location().ok()
}

/// The tokens of `sql` as slices of it (spans turned into byte offsets),
/// when they cover it exactly: MySQL's `/*! … */` (text MySQL runs) is
/// read as the tokens inside, whose spans do not.
fn tokens<'s>(dialect: &str, sql: &'s str) -> Option<Vec<(Token, &'s str)>> {
    let spans = lex(dialect, sql)?;
    let line_starts: Vec<usize> = std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let offset = |line: u64, column: u64| {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(column).ok()?.checked_sub(1)?;
        Some(sql[start..].char_indices().nth(column).map_or(sql.len(), |(i, _)| start + i))
    };
    let slices: Vec<(Token, &str)> = spans
        .into_iter()
        .map(|t| {
            let (from, to) =
                (offset(t.span.start.line, t.span.start.column)?, offset(t.span.end.line, t.span.end.column)?);
            Some((t.token, sql.get(from..to)?))
        })
        .collect::<Option<_>>()?;
    (slices.iter().map(|(_, text)| *text).collect::<String>() == sql).then_some(slices)
}

/// What a lexer ignores, to put between tokens.
fn glue() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", "", " ", "  ", "\n", "\t", "\r\n", "/**/", "/* ; drop table t */", " -- x\n"])
}

/// `sql` with glue between its tokens and its keywords' case changed: the
/// same statements to any lexer.
fn respelled(seed: Seed) -> impl Strategy<Value = (Seed, String)> {
    let count = tokens(seed.dialect, &seed.sql).map_or(0, |t| t.len());
    (prop::collection::vec((glue(), any::<u64>()), count + 1), Just(seed)).prop_map(|(edits, seed)| {
        let sql = respell(&seed, &edits);
        (seed, sql)
    })
}

/// `seed` with `edits[i]` (glue, and the case bits of a keyword) applied
/// before its `i`-th token.
fn respell(seed: &Seed, edits: &[(&str, u64)]) -> String {
    let Some(all) = tokens(seed.dialect, &seed.sql) else { return seed.sql.clone() };
    let mut out = String::new();
    for ((token, text), (glue, case)) in all.iter().zip(edits) {
        // Glue is added only where it cannot start or extend a comment:
        // not onto a comment, and not after `--`, which MySQL reads as two
        // minus signs unless whitespace follows (`--1` is not `-- 1`).
        if !matches!(token, Token::Whitespace(Whitespace::SingleLineComment { .. })) && !out.ends_with("--") {
            out.push_str(glue);
        }
        match token {
            Token::Word(word) if word.quote_style.is_none() && word.keyword != Keyword::NoKeyword => {
                out.extend(text.chars().enumerate().map(|(i, c)| {
                    if case >> (i % 64) & 1 == 1 { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }
                }));
            }
            _ => out.push_str(text),
        }
    }
    out
}

/// Found by `respelling_keeps_the_verdict`: a space glued after MySQL's
/// `--1` (two minus signs) turned the stacked `drop` into a comment, a
/// different statement, not a respelling of it.
#[test]
fn respelling_never_turns_mysql_double_minus_into_a_comment() {
    let seed = Seed { sql: "select 1 --1; drop table t".into(), dialect: "mysql", read_only: false };
    assert_eq!(read_only(seed.dialect, &seed.sql), Some(false));
    // Each glue before each token in turn.
    for glue in [" ", "\n", "\t", "/**/", " -- x\n"] {
        for at in 0..16 {
            let mut edits = [("", 0); 16];
            edits[at].0 = glue;
            let sql = respell(&seed, &edits);
            assert_eq!(read_only(seed.dialect, &sql), Some(false), "{sql:?}");
        }
    }
}

fn read_only(dialect: &str, sql: &str) -> Option<bool> {
    let statements = sql::parse(self::dialect(dialect), sql, DEFAULT_MAX_BYTES).ok()?;
    Some(ReadOnly::default().violation(&statements).is_none())
}

/// Text that is close to SQL: keywords, names, literals, comments,
/// separators and stray quotes in any order.
fn sql_soup() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "select",
        "SELECT",
        "from",
        "where",
        "drop",
        "table",
        "delete",
        "with",
        "as",
        "(",
        ")",
        ";",
        ",",
        "*",
        "1",
        "t",
        "\"t\"",
        "'s'",
        "'",
        "\"",
        "`",
        "$$",
        "$$ x $$",
        "--",
        "/*",
        "*/",
        "#",
        "\n",
        " ",
        "e'\\''",
        "into",
        "for update",
        "explain",
        "union",
        "values",
        "$1",
        "::",
        "[",
        "]",
        "{",
        "}",
        "@",
        "\\",
        "é",
        "\u{0}",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.join(" "))
}

fn any_dialect() -> impl Strategy<Value = &'static str> {
    prop::sample::select(DIALECTS)
}

proptest! {
    #![proptest_config(arbiter_testgen::config(256))]

    /// Any text, any dialect: statements or a bounded error; a verdict on
    /// them that reads within bounds.
    #[test]
    fn any_text_reads_or_errs_within_bounds(dialect in any_dialect(), sql in prop_oneof![sql_soup(), "\\PC{0,64}", any::<String>()]) {
        match sql::parse(self::dialect(dialect), &sql, DEFAULT_MAX_BYTES) {
            Ok(statements) => {
                if let Some(violation) = ReadOnly::default().violation(&statements) {
                    arbiter_testgen::check_clear(&violation.to_string(), &[])?;
                }
                let _ = sql::find_kind(&statements, &Kind::ALL);
            }
            Err(error) => {
                let text = error.to_string();
                prop_assert!(!text.is_empty() && text.chars().count() <= MAX_SQL_ERROR_CHARS, "{text}");
            }
        }
    }

    /// Text that parses to no statement holds only whitespace, comments
    /// and separators; text that does not tokenize does not parse.
    #[test]
    fn nothing_is_only_nothing(dialect in any_dialect(), sql in prop_oneof![sql_soup(), "[ ;\n\t]{0,8}(--[^\n]*\n|/\\*[^*]*\\*/)?[ ;]{0,4}"]) {
        let parsed = sql::parse(self::dialect(dialect), &sql, DEFAULT_MAX_BYTES);
        match lex(dialect, &sql) {
            None => prop_assert!(parsed.is_err(), "{sql:?} does not tokenize but parses"),
            Some(all) => {
                let empty = all.iter().all(|t| matches!(t.token, Token::Whitespace(_) | Token::SemiColon | Token::EOF));
                if let Ok(statements) = &parsed {
                    prop_assert_eq!(statements.is_empty(), empty, "{:?}: {:?}", sql, statements);
                }
            }
        }
    }

    /// Whitespace, comments and keyword case never change whether a
    /// statement is read-only (when the respelled text still parses).
    #[test]
    fn respelling_keeps_the_verdict((seed, sql) in seed(None).prop_flat_map(respelled)) {
        if let Some(now) = read_only(seed.dialect, &sql) {
            prop_assert_eq!(now, seed.read_only, "{:?} respelled {:?}", seed.sql, sql);
        }
        let kinds = |sql: &str| sql::parse(dialect(seed.dialect), sql, DEFAULT_MAX_BYTES).ok().map(|s| sql::find_kind(&s, &[Kind::Drop, Kind::Delete, Kind::Update, Kind::Insert]));
        if let Some(now) = kinds(&sql) {
            prop_assert_eq!(now, kinds(&seed.sql).flatten(), "{:?} respelled {:?}", seed.sql, sql);
        }
    }

    /// Parentheses around a statement that is not read-only never make it
    /// read-only.
    #[test]
    fn parentheses_hide_no_write(seed in seed(Some(false)), depth in 1usize..4) {
        let sql = format!("{}{}{}", "(".repeat(depth), seed.sql.trim_end_matches([';', ' ', '\n']), ")".repeat(depth));
        prop_assert_ne!(read_only(seed.dialect, &sql), Some(true), "{:?}", sql);
    }

    /// A write stacked after (or before) a read-only query is never
    /// read-only.
    #[test]
    fn a_stacked_write_is_never_read_only(
        read in seed(Some(true)),
        write in seed(Some(false)),
        separator in prop::sample::select(vec![";", " ;\n", ";/* c */", "; -- c\n", ";;", "\n;\n"]),
        first in any::<bool>(),
    ) {
        let (a, b) = if first { (&write.sql, &read.sql) } else { (&read.sql, &write.sql) };
        // A line break first: a seed may end in a line comment.
        let sql = format!("{a}\n{separator}{b}");
        for dialect in [read.dialect, write.dialect] {
            prop_assert_ne!(read_only(dialect, &sql), Some(true), "{:?} in {}", sql, dialect);
        }
    }
}

/// The respelling rests on token slices covering the text: so they do for
/// all but MySQL's executable comments.
#[test]
fn token_slices_cover_nearly_every_seed() {
    let uncovered: Vec<&str> =
        SEEDS.iter().filter(|s| tokens(s.dialect, &s.sql).is_none()).map(|s| s.sql.as_str()).collect();
    assert!(uncovered.iter().all(|sql| sql.contains("/*!")), "{uncovered:?}");
    assert!(uncovered.len() * 20 <= SEEDS.len(), "{uncovered:?}");
}
