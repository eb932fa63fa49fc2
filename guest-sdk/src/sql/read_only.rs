//! The allow-list: only one read-only query passes.

use std::fmt;
use std::ops::ControlFlow;

use super::ast::{Expr, ObjectName, Query, Select, Statement, TableFactor, Visit, Visitor};
use super::{Kind, shortened};
use crate::glob;

/// Functions a read-only query must not call (globs, lowercase), matched
/// against the last part of the called name in any case: they change
/// state (sequences, settings, locks, sessions, large objects, the server),
/// reach outside the database's tables (server files, other databases) or
/// run SQL text that the parser sees only as a string.
pub const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    // PostgreSQL: server files and large objects.
    "pg_read_file",
    "pg_read_binary_file",
    "pg_stat_file",
    "pg_ls_*",
    "pg_file_*",
    "lo_*",
    "lowrite",
    // PostgreSQL: other databases, SQL in strings.
    "dblink*",
    "query_to_xml*",
    // PostgreSQL: sequences, settings, locks, sessions, the server.
    "nextval",
    "setval",
    "set_config",
    "pg_advisory_*",
    "pg_try_advisory_*",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_promote",
    "pg_create_restore_point",
    "pg_backup_*",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay_*",
    "pg_*_replication_slot",
    "pg_replication_slot_advance",
    "pg_replication_origin_*",
    "pg_logical_emit_message",
    "pg_notify",
    "pg_stat_reset*",
    "pg_sleep*",
    // MySQL: server files, locks, time.
    "load_file",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "sleep",
    "benchmark",
    "sys_exec",
    "sys_eval",
    // Snowflake system functions (cancel queries, abort sessions, ...).
    "system$*",
    // SQL run elsewhere: BigQuery federated queries, SQL Server.
    "external_query",
    "openquery",
    "openrowset",
    "opendatasource",
];

/// How much of a function's name a [`Violation`] shows: names are input.
const MAX_NAME_CHARS: usize = 100;

/// Why SQL is not one read-only query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// Not exactly one statement.
    Statements(usize),
    /// A statement (at the top or nested) of a kind that is not read-only.
    Statement(Kind),
    /// `SELECT … INTO` creates a table or writes variables or files.
    SelectInto,
    /// `FOR UPDATE` / `FOR SHARE`: takes row locks.
    LockingRead,
    /// A call of one of the side-effect functions, or of a function whose
    /// name is computed (the name as written).
    Function(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Statements(0) => f.write_str("no statement"),
            Violation::Statements(n) => write!(f, "{n} statements"),
            Violation::Statement(kind) => write!(f, "a {kind} statement"),
            Violation::SelectInto => f.write_str("SELECT … INTO"),
            Violation::LockingRead => f.write_str("a locking read (FOR UPDATE / FOR SHARE)"),
            Violation::Function(name) => write!(f, "a call of `{}`", shortened(name, MAX_NAME_CHARS)),
        }
    }
}

/// The allow-list: exactly one statement, which is a query (`SELECT`,
/// `WITH … SELECT`, `VALUES`, set operations), `EXPLAIN` of such a
/// statement, `SHOW …` or `DESCRIBE`, with nothing nested in it that is
/// not (a data-modifying CTE, `SELECT … INTO`, `FOR UPDATE`, a
/// side-effect function).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnly {
    /// The lowercase names without wildcards, sorted: most of the list, and
    /// every function call of a query is looked up.
    names: Vec<String>,
    /// The lowercase globs.
    globs: Vec<String>,
}

impl Default for ReadOnly {
    /// With [`SIDE_EFFECT_FUNCTIONS`].
    fn default() -> Self {
        ReadOnly::with_functions::<&str>(&[])
    }
}

impl ReadOnly {
    /// With [`SIDE_EFFECT_FUNCTIONS`] and `more` (globs, any case), e.g.
    /// the database's own functions that write.
    pub fn with_functions<S: AsRef<str>>(more: &[S]) -> Self {
        let all = SIDE_EFFECT_FUNCTIONS.iter().copied().chain(more.iter().map(AsRef::as_ref));
        let (mut names, globs): (Vec<String>, Vec<String>) =
            all.map(str::to_ascii_lowercase).partition(|f| !f.contains(['*', '?']));
        names.sort_unstable();
        names.dedup();
        ReadOnly { names, globs }
    }

    /// Why `statements` are not one read-only query; `None` when they are.
    pub fn violation(&self, statements: &[Statement]) -> Option<Violation> {
        let [statement] = statements else { return Some(Violation::Statements(statements.len())) };
        match statement.visit(&mut Walk { read_only: self }) {
            ControlFlow::Break(violation) => Some(violation),
            ControlFlow::Continue(()) => None,
        }
    }

    /// Whether a call of `function` (its own name, lowercase) has side effects.
    fn has_side_effects(&self, function: &str) -> bool {
        self.names.binary_search_by(|name| name.as_str().cmp(function)).is_ok()
            || glob::any_matches(&self.globs, function)
    }
}

/// Visits every node of the statement: the visitor, not this code, knows
/// where statements, queries and expressions nest.
struct Walk<'a> {
    read_only: &'a ReadOnly,
}

impl Walk<'_> {
    /// A call of `name`: refused when its own name (the last part) is a
    /// side-effect function, or is computed (Snowflake's `IDENTIFIER(...)`),
    /// so that what it calls is not known.
    fn call(&self, name: &ObjectName) -> ControlFlow<Violation> {
        let known = name.0.last().and_then(|part| part.as_ident()).map(|last| last.value.to_ascii_lowercase());
        match known {
            Some(function) if !self.read_only.has_side_effects(&function) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(Violation::Function(name.to_string())),
        }
    }
}

impl Visitor for Walk<'_> {
    type Break = Violation;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Violation> {
        match Kind::of(statement) {
            Kind::Select | Kind::Explain | Kind::Describe | Kind::Show => ControlFlow::Continue(()),
            kind => ControlFlow::Break(Violation::Statement(kind)),
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Violation> {
        if query.locks.is_empty() { ControlFlow::Continue(()) } else { ControlFlow::Break(Violation::LockingRead) }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Violation> {
        if select.into.is_none() { ControlFlow::Continue(()) } else { ControlFlow::Break(Violation::SelectInto) }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Violation> {
        match expr {
            Expr::Function(function) => self.call(&function.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, table: &TableFactor) -> ControlFlow<Violation> {
        match table {
            // `FROM dblink(...)`: a table-valued function call.
            TableFactor::Table { name, args: Some(_), .. } | TableFactor::Function { name, .. } => self.call(name),
            _ => ControlFlow::Continue(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{DEFAULT_MAX_BYTES, Dialect, parse};

    fn violation(sql: &str) -> Option<Violation> {
        let statements = parse(Dialect::Postgres, sql, DEFAULT_MAX_BYTES).unwrap_or_else(|e| panic!("{sql}: {e}"));
        ReadOnly::with_functions(&["Analytics_Purge*", "Purge_Now"]).violation(&statements)
    }

    #[test]
    fn read_only_queries_pass() {
        for sql in [
            "select 1",
            "select count(*) from analytics.orders_daily where note = 'drop it'",
            "with x as (select 1) select * from x union all select 2",
            "values (1), (2)",
            "explain select * from t",
            "explain analyze select * from t",
            "show search_path",
            "select max(updated_at), lower(name) from t",
            "select * from generate_series(1, 3)",
        ] {
            assert_eq!(violation(sql), None, "{sql}");
        }
    }

    #[test]
    fn anything_else_is_named() {
        let cases = [
            ("", Violation::Statements(0)),
            ("select 1; select 2", Violation::Statements(2)),
            ("delete from t", Violation::Statement(Kind::Delete)),
            ("with d as (delete from t returning *) select * from d", Violation::Statement(Kind::Delete)),
            ("with i as (insert into t values (1) returning *) select 1", Violation::Statement(Kind::Insert)),
            ("explain analyze delete from t", Violation::Statement(Kind::Delete)),
            ("select * into new_t from t", Violation::SelectInto),
            ("select * from t for update", Violation::LockingRead),
            ("select * from (select * from t for share) s", Violation::LockingRead),
            ("copy t to '/tmp/t'", Violation::Statement(Kind::Copy)),
            ("call p()", Violation::Statement(Kind::Call)),
            ("execute p", Violation::Statement(Kind::Execute)),
            ("set search_path = evil", Violation::Statement(Kind::Set)),
            ("select pg_read_file('/etc/passwd')", Violation::Function("pg_read_file".into())),
            ("select pg_catalog.PG_READ_FILE('x')", Violation::Function("pg_catalog.PG_READ_FILE".into())),
            ("select lo_import('/etc/passwd')", Violation::Function("lo_import".into())),
            ("select * from dblink('db', 'delete from t') as x(a int)", Violation::Function("dblink".into())),
            ("select 1 where exists (select nextval('s'))", Violation::Function("nextval".into())),
            ("select 1 order by analytics_purge_all()", Violation::Function("analytics_purge_all".into())),
            ("select * from analytics_purge_rows(1)", Violation::Function("analytics_purge_rows".into())),
            ("select purge_now()", Violation::Function("purge_now".into())),
        ];
        for (sql, expected) in cases {
            assert_eq!(violation(sql), Some(expected), "{sql}");
        }
    }

    #[test]
    fn violations_read_well() {
        assert_eq!(Violation::Statement(Kind::Delete).to_string(), "a DELETE statement");
        assert_eq!(Violation::Statements(3).to_string(), "3 statements");
        assert_eq!(Violation::Function("lo_import".into()).to_string(), "a call of `lo_import`");
        let long = Violation::Function(format!("lo_{}", "x".repeat(10_000))).to_string();
        assert_eq!(long.chars().count(), "a call of ``…".chars().count() + MAX_NAME_CHARS, "{long}");
    }
}
