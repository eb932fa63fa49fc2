//! What kind of statement a parsed statement is.

use std::fmt;

use serde::Deserialize;

use super::ast::Statement;

/// A statement's kind, named by its leading keyword: every `CREATE …` is
/// [`Kind::Create`], every `SHOW …` is [`Kind::Show`]. Statements this
/// module does not name (maintenance, cursors, procedural statements,
/// `KILL`, `PRAGMA`, `ATTACH`, …) are [`Kind::Other`].
///
/// Settings name kinds in any case (`"drop"`, `"DROP"`); an unknown name
/// is refused with the list of known ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema), schemars(with = "String"))]
#[serde(try_from = "String")]
pub enum Kind {
    /// A query: `SELECT`, `WITH … SELECT`, `VALUES`, `TABLE t`.
    Select,
    /// `INSERT`, also `INSERT OVERWRITE DIRECTORY`.
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// `TRUNCATE`.
    Truncate,
    /// `CREATE …` (tables, views, functions, …).
    Create,
    /// `ALTER …`, also `RENAME TABLE`.
    Alter,
    /// `DROP …`.
    Drop,
    /// `GRANT`, also SQL Server's `DENY`.
    Grant,
    /// `REVOKE`.
    Revoke,
    /// Data in or out of files and stages: `COPY`, `UNLOAD`, `EXPORT DATA`,
    /// `LOAD DATA`, Snowflake's `PUT`.
    Copy,
    /// `CALL` of a procedure.
    Call,
    /// `EXECUTE`, `PREPARE`, `DEALLOCATE`.
    Execute,
    /// `SET`, `RESET`.
    Set,
    /// `SHOW …`.
    Show,
    /// `EXPLAIN <statement>`.
    Explain,
    /// `DESCRIBE <table>` (also `DESC`, `EXPLAIN <table>`).
    Describe,
    /// `USE <database>`.
    Use,
    /// `BEGIN`/`START TRANSACTION`, `COMMIT`, `ROLLBACK`, savepoints.
    Transaction,
    /// `LOCK`, `LOCK TABLES`, `UNLOCK TABLES`.
    Lock,
    /// Everything else: maintenance, cursors, procedural statements, `KILL`, `PRAGMA`, ….
    Other,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 22] = [
        Kind::Select,
        Kind::Insert,
        Kind::Update,
        Kind::Delete,
        Kind::Merge,
        Kind::Truncate,
        Kind::Create,
        Kind::Alter,
        Kind::Drop,
        Kind::Grant,
        Kind::Revoke,
        Kind::Copy,
        Kind::Call,
        Kind::Execute,
        Kind::Set,
        Kind::Show,
        Kind::Explain,
        Kind::Describe,
        Kind::Use,
        Kind::Transaction,
        Kind::Lock,
        Kind::Other,
    ];

    /// The lowercase name settings use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Select => "select",
            Kind::Insert => "insert",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Merge => "merge",
            Kind::Truncate => "truncate",
            Kind::Create => "create",
            Kind::Alter => "alter",
            Kind::Drop => "drop",
            Kind::Grant => "grant",
            Kind::Revoke => "revoke",
            Kind::Copy => "copy",
            Kind::Call => "call",
            Kind::Execute => "execute",
            Kind::Set => "set",
            Kind::Show => "show",
            Kind::Explain => "explain",
            Kind::Describe => "describe",
            Kind::Use => "use",
            Kind::Transaction => "transaction",
            Kind::Lock => "lock",
            Kind::Other => "other",
        }
    }

    /// The kind of `statement` itself (not of statements nested in it).
    pub fn of(statement: &Statement) -> Kind {
        use Statement as S;
        // Variants with fields are matched with `{ .. }` whatever their shape,
        // so that fields changed upstream do not break the classification.
        // New variants fall to `Other`, which the read-only check refuses.
        match statement {
            S::Query { .. } => Kind::Select,
            S::Insert { .. } | S::Directory { .. } => Kind::Insert,
            S::Update { .. } => Kind::Update,
            S::Delete { .. } => Kind::Delete,
            S::Merge { .. } => Kind::Merge,
            S::Truncate { .. } => Kind::Truncate,
            S::CreateView { .. }
            | S::CreateTable { .. }
            | S::CreateVirtualTable { .. }
            | S::CreateIndex { .. }
            | S::CreateRole { .. }
            | S::CreateSecret { .. }
            | S::CreateServer { .. }
            | S::CreateForeignTable { .. }
            | S::CreateForeignDataWrapper { .. }
            | S::CreateUserMapping { .. }
            | S::CreatePolicy { .. }
            | S::CreateRule { .. }
            | S::CreateConnector { .. }
            | S::CreateOperator { .. }
            | S::CreateOperatorFamily { .. }
            | S::CreateOperatorClass { .. }
            | S::CreateTextSearch { .. }
            | S::CreateAggregate { .. }
            | S::CreateExtension { .. }
            | S::CreateCollation { .. }
            | S::CreateSchema { .. }
            | S::CreateDatabase { .. }
            | S::CreateFunction { .. }
            | S::CreateTrigger { .. }
            | S::CreateProcedure { .. }
            | S::CreateMacro { .. }
            | S::CreateStage { .. }
            | S::CreateFileFormat { .. }
            | S::CreateWarehouse { .. }
            | S::CreateSequence { .. }
            | S::CreateDomain { .. }
            | S::CreateType { .. }
            | S::CreateUser { .. } => Kind::Create,
            S::AlterTable { .. }
            | S::AlterSchema { .. }
            | S::AlterIndex { .. }
            | S::AlterView { .. }
            | S::AlterFunction { .. }
            | S::AlterType { .. }
            | S::AlterCollation { .. }
            | S::AlterOperator { .. }
            | S::AlterOperatorFamily { .. }
            | S::AlterOperatorClass { .. }
            | S::AlterTextSearch { .. }
            | S::AlterRole { .. }
            | S::AlterPolicy { .. }
            | S::AlterTrigger { .. }
            | S::AlterConnector { .. }
            | S::AlterSession { .. }
            | S::AlterUser { .. }
            | S::AlterDefaultPrivileges { .. }
            | S::RenameTable { .. } => Kind::Alter,
            S::Drop { .. }
            | S::DropFunction { .. }
            | S::DropDomain { .. }
            | S::DropProcedure { .. }
            | S::DropSecret { .. }
            | S::DropPolicy { .. }
            | S::DropRule { .. }
            | S::DropConnector { .. }
            | S::DropExtension { .. }
            | S::DropOperator { .. }
            | S::DropOperatorFamily { .. }
            | S::DropOperatorClass { .. }
            | S::DropTrigger { .. } => Kind::Drop,
            S::Grant { .. } | S::GrantRole { .. } | S::Deny { .. } => Kind::Grant,
            S::Revoke { .. } | S::RevokeRole { .. } => Kind::Revoke,
            S::Copy { .. }
            | S::CopyIntoSnowflake { .. }
            | S::Unload { .. }
            | S::ExportData { .. }
            | S::LoadData { .. }
            | S::Put { .. } => Kind::Copy,
            S::Call { .. } => Kind::Call,
            S::Execute { .. } | S::Prepare { .. } | S::Deallocate { .. } => Kind::Execute,
            S::Set { .. } | S::Reset { .. } => Kind::Set,
            S::ShowFunctions { .. }
            | S::ShowVariable { .. }
            | S::ShowStatus { .. }
            | S::ShowVariables { .. }
            | S::ShowCreate { .. }
            | S::ShowColumns { .. }
            | S::ShowCatalogs { .. }
            | S::ShowDatabases { .. }
            | S::ShowProcessList { .. }
            | S::ShowSchemas { .. }
            | S::ShowCharset { .. }
            | S::ShowObjects { .. }
            | S::ShowTables { .. }
            | S::ShowViews { .. }
            | S::ShowCollation { .. } => Kind::Show,
            S::Explain { .. } => Kind::Explain,
            S::ExplainTable { .. } => Kind::Describe,
            S::Use { .. } => Kind::Use,
            S::StartTransaction { .. }
            | S::Commit { .. }
            | S::Rollback { .. }
            | S::Savepoint { .. }
            | S::ReleaseSavepoint { .. } => Kind::Transaction,
            S::Lock { .. } | S::LockTables { .. } | S::UnlockTables => Kind::Lock,
            _ => Kind::Other,
        }
    }
}

impl fmt::Display for Kind {
    /// Uppercase, as in SQL text: `DROP`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name().to_ascii_uppercase())
    }
}

/// A name that is not one of [`Kind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKind(pub String);

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` is not a statement kind; the kinds are", self.0)?;
        Kind::ALL.iter().enumerate().try_for_each(|(i, k)| write!(f, "{}{}", if i == 0 { " " } else { ", " }, k.name()))
    }
}

impl std::error::Error for UnknownKind {}

impl std::str::FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(name: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(name)).ok_or_else(|| UnknownKind(name.to_owned()))
    }
}

impl TryFrom<String> for Kind {
    type Error = UnknownKind;

    fn try_from(name: String) -> Result<Kind, UnknownKind> {
        name.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{DEFAULT_MAX_BYTES, Dialect, parse};

    #[test]
    fn statements_have_their_leading_keywords_kind() {
        let cases = [
            ("select 1", Kind::Select),
            ("with x as (select 1) select * from x", Kind::Select),
            ("values (1)", Kind::Select),
            ("insert into t values (1)", Kind::Insert),
            ("update t set a = 1", Kind::Update),
            ("delete from t", Kind::Delete),
            ("merge into t using s on t.id = s.id when matched then delete", Kind::Merge),
            ("truncate table t", Kind::Truncate),
            ("create table t (a int)", Kind::Create),
            ("create index i on t (a)", Kind::Create),
            ("alter table t add column b int", Kind::Alter),
            ("drop table t", Kind::Drop),
            ("drop function f", Kind::Drop),
            ("grant select on t to r", Kind::Grant),
            ("revoke select on t from r", Kind::Revoke),
            ("copy t to '/tmp/x'", Kind::Copy),
            ("call p()", Kind::Call),
            ("execute p", Kind::Execute),
            ("prepare p as select 1", Kind::Execute),
            ("set search_path = x", Kind::Set),
            ("show tables", Kind::Show),
            ("explain select 1", Kind::Explain),
            ("describe t", Kind::Describe),
            ("use db", Kind::Use),
            ("begin", Kind::Transaction),
            ("commit", Kind::Transaction),
            ("lock table t", Kind::Lock),
            ("vacuum t", Kind::Other),
        ];
        for (sql, kind) in cases {
            let statements = parse(Dialect::Postgres, sql, DEFAULT_MAX_BYTES).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(Kind::of(&statements[0]), kind, "{sql}");
        }
    }

    #[test]
    fn names_round_trip_in_any_case() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>(), Ok(kind));
            assert_eq!(kind.to_string().parse::<Kind>(), Ok(kind));
        }
        let error = "dropp".parse::<Kind>().unwrap_err().to_string();
        assert!(error.starts_with("`dropp` is not a statement kind; the kinds are select, insert,"), "{error}");
        assert!(serde_json::from_str::<Kind>(r#""DELETE""#).is_ok());
        assert!(serde_json::from_str::<Kind>(r#""drop table""#).is_err());
    }
}
