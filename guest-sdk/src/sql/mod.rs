//! Reading SQL with a real tokenizer and parser ([`sqlparser`]).
//!
//! Comments, quoted identifiers, dollar quoting, escape strings and every
//! other lexical rule are the library's, per [`Dialect`]; a policy decides
//! from the parsed statements, never from the text:
//!
//! ```
//! use arbiter_sdk::sql::{self, Dialect, Kind, ReadOnly};
//!
//! let statements = sql::parse(Dialect::Generic, "select 1 -- '\n; drop table t", sql::DEFAULT_MAX_BYTES).unwrap();
//! assert_eq!(sql::find_kind(&statements, &[Kind::Drop]), Some(Kind::Drop));
//! assert!(ReadOnly::default().violation(&statements).is_some());
//! assert!(sql::parse(Dialect::Generic, "select 'unterminated", sql::DEFAULT_MAX_BYTES).is_err());
//! ```
//!
//! Text that does not tokenize or parse is an [`SqlError`]: a policy must
//! treat it as unknown, never as harmless.

mod kind;
mod read_only;

use std::fmt;
use std::ops::ControlFlow;

use serde::Deserialize;
use sqlparser::dialect;
use sqlparser::parser::{Parser, ParserError};

pub use kind::{Kind, UnknownKind};
pub use read_only::{ReadOnly, SIDE_EFFECT_FUNCTIONS, Violation};
/// The syntax tree, for policies that look further than this module does.
pub use sqlparser::ast;

/// How deeply expressions and queries may nest (the parser's recursion
/// limit; its default is 50). The parser's frames live on the guest's shadow
/// stack, which overflows with a trap: a policy that parses SQL asks for a
/// 1 MiB stack (docs/authoring.md), of which 24 levels of the heaviest shape
/// measured (nested LATERAL joins, ~24 KB per level) use a quarter. Deeper
/// input is an [`SqlError`].
pub const MAX_NESTING: usize = 24;

/// The most SQL text a policy should read ([`parse`]'s `max_bytes`): within
/// the default sandbox fuel (50 M) with room to spare. The costliest shapes
/// measured (a select list of nested calls, `f(g(1)), ...`) run out of fuel
/// between 5 and 6 KiB; 4 KiB of the 1 KB benchmark query's shape take a
/// fifth of it. Longer text is an [`SqlError`], so that it escalates rather
/// than faulting the sandbox.
pub const DEFAULT_MAX_BYTES: usize = 4096;

/// The longest parser message an [`SqlError`] shows: it quotes the
/// offending token, which may be a megabyte of string literal, and a
/// verdict's message must stay under 4 KiB.
const MAX_ERROR_CHARS: usize = 200;

/// The SQL dialect to read with: set it to the database's, because the
/// lexical rules differ (`#` starts a comment in MySQL, `\'` escapes a
/// quote in MySQL but not in standard SQL, `$$` quotes in PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
pub enum Dialect {
    /// sqlparser's permissive dialect: accepts most dialects' syntax.
    #[default]
    #[serde(rename = "generic")]
    Generic,
    /// ANSI SQL.
    #[serde(rename = "ansi")]
    Ansi,
    /// PostgreSQL (also named `postgresql`).
    #[serde(rename = "postgres", alias = "postgresql")]
    Postgres,
    /// MySQL.
    #[serde(rename = "mysql")]
    MySql,
    /// Snowflake.
    #[serde(rename = "snowflake")]
    Snowflake,
    /// Google BigQuery.
    #[serde(rename = "bigquery")]
    BigQuery,
}

impl Dialect {
    fn rules(self) -> &'static dyn dialect::Dialect {
        match self {
            Dialect::Generic => &dialect::GenericDialect,
            Dialect::Ansi => &dialect::AnsiDialect {},
            Dialect::Postgres => &dialect::PostgreSqlDialect {},
            Dialect::MySql => &dialect::MySqlDialect {},
            Dialect::Snowflake => &dialect::SnowflakeDialect,
            Dialect::BigQuery => &dialect::BigQueryDialect,
        }
    }
}

/// SQL text that is longer than asked, does not tokenize, does not parse,
/// or nests deeper than [`MAX_NESTING`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError(Unread);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Unread {
    TooLong { bytes: usize, max_bytes: usize },
    Parser(ParserError),
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, message) = match &self.0 {
            Unread::TooLong { bytes, max_bytes } => {
                return write!(f, "is {bytes} bytes long, more than the {max_bytes} read");
            }
            Unread::Parser(ParserError::TokenizerError(message)) => ("does not tokenize", message),
            Unread::Parser(ParserError::ParserError(message)) => ("does not parse", message),
            Unread::Parser(ParserError::RecursionLimitExceeded) => {
                return write!(f, "nests deeper than {MAX_NESTING} levels");
            }
        };
        write!(f, "{what}: {}", shortened(message, MAX_ERROR_CHARS))
    }
}

/// `text` cut to `max` characters, with an ellipsis when it was longer.
fn shortened(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}

impl std::error::Error for SqlError {}

/// The statements of `sql` (none for empty text or only `;`), read only if
/// it is at most `max_bytes` long (see [`DEFAULT_MAX_BYTES`]).
pub fn parse(dialect: Dialect, sql: &str, max_bytes: usize) -> Result<Vec<ast::Statement>, SqlError> {
    if sql.len() > max_bytes {
        return Err(SqlError(Unread::TooLong { bytes: sql.len(), max_bytes }));
    }
    Parser::new(dialect.rules())
        .with_recursion_limit(MAX_NESTING)
        .try_with_sql(sql)
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|error| SqlError(Unread::Parser(error)))
}

/// The first statement among `statements`, or nested anywhere in them
/// (a `DELETE` in a CTE, the statement an `EXPLAIN` explains), whose kind is
/// one of `kinds`.
pub fn find_kind(statements: &[ast::Statement], kinds: &[Kind]) -> Option<Kind> {
    let found = statements.iter().try_for_each(|top| {
        ast::visit_statements(top, |statement| match Kind::of(statement) {
            kind if kinds.contains(&kind) => ControlFlow::Break(kind),
            _ => ControlFlow::Continue(()),
        })
    });
    match found {
        ControlFlow::Break(kind) => Some(kind),
        ControlFlow::Continue(()) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_quotes_are_the_lexers() {
        let hidden = [
            "select 1 -- '\n; drop table t",
            "select 1 /* ' */; drop table t",
            "select \"a'b\" from t; drop table t",
            "select 1; /* nested /* comment */ still */ drop table t",
        ];
        for sql in hidden {
            let statements = parse(Dialect::Postgres, sql, DEFAULT_MAX_BYTES).unwrap();
            assert_eq!(find_kind(&statements, &[Kind::Drop]), Some(Kind::Drop), "{sql}");
        }
        let statements =
            parse(Dialect::Generic, "select 'drop table t', \"delete\" from t -- drop", DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(find_kind(&statements, &[Kind::Drop, Kind::Delete]), None);
    }

    #[test]
    fn nested_statements_are_found() {
        let statements =
            parse(Dialect::Postgres, "with d as (delete from t returning *) select * from d", DEFAULT_MAX_BYTES)
                .unwrap();
        assert_eq!(find_kind(&statements, &[Kind::Delete]), Some(Kind::Delete));
        let statements = parse(Dialect::Postgres, "explain analyze update t set a = 1", DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(find_kind(&statements, &[Kind::Update]), Some(Kind::Update));
        assert_eq!(find_kind(&statements, &[Kind::Explain]), Some(Kind::Explain));
    }

    #[test]
    fn what_does_not_parse_is_an_error() {
        for sql in ["select 'unterminated", "select \"unterminated", "select 1 /* unterminated", "selec 1", "select ("]
        {
            let error = parse(Dialect::Generic, sql, DEFAULT_MAX_BYTES).unwrap_err();
            assert!(error.to_string().starts_with("does not"), "{sql}: {error}");
        }
        assert_eq!(parse(Dialect::Generic, "", DEFAULT_MAX_BYTES).unwrap(), []);
        assert_eq!(parse(Dialect::Generic, " ; ;", DEFAULT_MAX_BYTES).unwrap(), []);
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("select {}1{}", "(".repeat(MAX_NESTING * 4), ")".repeat(MAX_NESTING * 4));
        assert_eq!(
            parse(Dialect::Generic, &deep, DEFAULT_MAX_BYTES).unwrap_err().to_string(),
            format!("nests deeper than {MAX_NESTING} levels")
        );
        let shallow = format!("select {}1{}", "(".repeat(4), ")".repeat(4));
        assert!(parse(Dialect::Generic, &shallow, DEFAULT_MAX_BYTES).is_ok());
    }

    #[test]
    fn text_longer_than_asked_is_not_read() {
        let sql = format!("select '{}'", "x".repeat(100));
        assert!(parse(Dialect::Generic, &sql, sql.len()).is_ok());
        let error = parse(Dialect::Generic, &sql, sql.len() - 1).unwrap_err();
        assert_eq!(error.to_string(), format!("is {} bytes long, more than the {} read", sql.len(), sql.len() - 1));
    }

    #[test]
    fn error_messages_are_bounded() {
        let long = SqlError(Unread::Parser(ParserError::ParserError("é".repeat(10_000))));
        assert_eq!(long.to_string(), format!("does not parse: {}…", "é".repeat(MAX_ERROR_CHARS)));
        let short = SqlError(Unread::Parser(ParserError::TokenizerError("Unterminated string literal".into())));
        assert_eq!(short.to_string(), "does not tokenize: Unterminated string literal");
    }

    #[test]
    fn dialects_read_differently() {
        // `#` starts a comment in MySQL; elsewhere it is an operator.
        let sql = "select 1 # '\n; drop table t";
        assert_eq!(find_kind(&parse(Dialect::MySql, sql, DEFAULT_MAX_BYTES).unwrap(), &[Kind::Drop]), Some(Kind::Drop));
        assert!(parse(Dialect::Postgres, sql, DEFAULT_MAX_BYTES).is_err());
        // Dollar quoting is PostgreSQL's.
        let sql = "select $$ ; drop table t $$";
        assert_eq!(find_kind(&parse(Dialect::Postgres, sql, DEFAULT_MAX_BYTES).unwrap(), &[Kind::Drop]), None);
    }

    #[test]
    fn dialects_deserialise_by_name() {
        let names: Vec<Dialect> =
            serde_json::from_str(r#"["generic", "ansi", "postgres", "postgresql", "mysql", "snowflake", "bigquery"]"#)
                .unwrap();
        assert_eq!(names[2], names[3]);
        assert!(serde_json::from_str::<Dialect>(r#""oracle""#).is_err());
    }
}
