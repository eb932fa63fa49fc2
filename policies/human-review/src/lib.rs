//! `human-review`: irreversible actions wait for a human.
//!
//! Escalates (code `needs_approval`) a tool call when the tool is listed as
//! irreversible, when the caller declares it irreversible, or when one of its
//! SQL arguments, parsed as the rule's dialect, is not a single read-only
//! query (`read_only = true`) or contains a statement of a listed kind
//! (`keywords`). SQL that does not parse, and an SQL argument that is not
//! text, escalate with code `sql_unparseable`: what cannot be read is never
//! allowed.

use arbiter_sdk::settings::{FieldPath, check_approval};
use arbiter_sdk::sql::{self, Dialect, Kind, ReadOnly};
use arbiter_sdk::{ArgValue, Policy, Request, Verdict, export_policy, glob};
use serde::Deserialize;

const NEEDS_APPROVAL: &str = "needs_approval";
const SQL_UNPARSEABLE: &str = "sql_unparseable";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Who may approve.
    pub approvers: Vec<String>,
    /// How long an approval stays valid.
    pub valid_for_seconds: u32,
    /// Tools (globs) that always need approval.
    #[serde(default)]
    pub irreversible_tools: Vec<String>,
    /// Whether a caller's `declared.irreversible = true` needs approval.
    #[serde(default = "yes")]
    pub honour_declared_irreversible: bool,
    /// SQL arguments to read.
    #[serde(default)]
    pub sql_rules: Vec<SqlRule>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SqlRule {
    /// Tools (globs) the rule applies to.
    pub tools: Vec<String>,
    /// The argument holding SQL text.
    pub argument: String,
    /// The database's dialect.
    #[serde(default)]
    pub dialect: Dialect,
    /// Longer SQL is not read (it escalates as unparseable): parsing costs
    /// fuel, and the default fits the default sandbox limits.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Allow-list mode: anything but one read-only query needs approval.
    #[serde(default)]
    pub read_only: bool,
    /// Read-only mode: functions (globs, any case) that need approval
    /// besides the SDK's `SIDE_EFFECT_FUNCTIONS`.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Keyword mode: statement kinds (`drop`, `delete`, ...) that need
    /// approval, at the top or nested.
    #[serde(default)]
    pub keywords: Vec<Kind>,
}

fn yes() -> bool {
    true
}

fn default_max_bytes() -> usize {
    sql::DEFAULT_MAX_BYTES
}

/// What a rule checks, prepared once.
enum Check {
    ReadOnly(ReadOnly),
    Keywords(Vec<Kind>),
}

pub struct HumanReview {
    settings: Settings,
    /// One per SQL rule.
    checks: Vec<Check>,
}

impl Policy for HumanReview {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        check_approval(&FieldPath::root(), &settings.approvers, settings.valid_for_seconds)?;
        let checks =
            settings.sql_rules.iter().enumerate().map(|(i, rule)| Check::new(rule, i)).collect::<Result<_, _>>()?;
        Ok(HumanReview { settings, checks })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let Some(call) = request.tool_call() else { return Verdict::allow() };
        let tool = call.tool.as_str();
        let why = if glob::any_matches(&self.settings.irreversible_tools, tool) {
            Some((NEEDS_APPROVAL, format!("`{tool}` is irreversible")))
        } else if self.settings.honour_declared_irreversible && call.facts.irreversible == Some(true) {
            Some((NEEDS_APPROVAL, format!("the caller declares `{tool}` irreversible")))
        } else {
            self.sql_finding(request, tool)
        };
        match why {
            None => Verdict::allow(),
            Some((code, why)) => Verdict::escalate(
                self.settings.approvers.clone(),
                self.settings.valid_for_seconds,
                code,
                format!("{why}: needs approval by {}", self.settings.approvers.join(", ")),
            ),
        }
    }
}

impl Check {
    fn new(rule: &SqlRule, i: usize) -> Result<Check, String> {
        let at = FieldPath::root().field("sql_rules").index(i);
        if rule.max_bytes == 0 {
            return Err(at.field("max_bytes").error("must be positive"));
        }
        match (rule.read_only, rule.keywords.is_empty()) {
            (true, true) => {
                // Calls are matched on the function's own name, whatever schema qualifies it.
                if let Some(bad) = rule.functions.iter().find(|f| f.is_empty() || f.contains('.')) {
                    return Err(at
                        .field("functions")
                        .error(format!("`{bad}` is not a function name without its schema")));
                }
                Ok(Check::ReadOnly(ReadOnly::with_functions(&rule.functions)))
            }
            (false, false) if rule.functions.is_empty() => Ok(Check::Keywords(rule.keywords.clone())),
            (false, false) => Err(at.field("functions").error("only a read_only rule checks functions")),
            (true, false) => Err(at.error("`read_only` and `keywords` exclude each other")),
            (false, true) => Err(at.error("set `read_only = true` or list `keywords`")),
        }
    }

    /// Why `statements` need approval.
    fn finding(&self, statements: &[sql::ast::Statement]) -> Option<String> {
        match self {
            Check::ReadOnly(read_only) => {
                read_only.violation(statements).map(|v| format!("is not one read-only query: {v}"))
            }
            Check::Keywords(kinds) => sql::find_kind(statements, kinds).map(|kind| format!("runs a {kind} statement")),
        }
    }
}

impl HumanReview {
    /// The code and reason of the first SQL rule that finds something.
    fn sql_finding(&self, request: &Request, tool: &str) -> Option<(&'static str, String)> {
        let rules = self.settings.sql_rules.iter().zip(&self.checks);
        rules.filter(|(rule, _)| glob::any_matches(&rule.tools, tool)).find_map(|(rule, check)| {
            let argument = &rule.argument;
            let text = match request.argument(argument)? {
                ArgValue::Text(text) => text,
                _ => return Some((SQL_UNPARSEABLE, format!("`{tool}` has a `{argument}` that is not SQL text"))),
            };
            match sql::parse(rule.dialect, text, rule.max_bytes) {
                Ok(statements) => {
                    check.finding(&statements).map(|why| (NEEDS_APPROVAL, format!("`{tool}` {argument} {why}")))
                }
                Err(error) => Some((SQL_UNPARSEABLE, format!("`{tool}` {argument} {error}"))),
            }
        })
    }
}

export_policy!(HumanReview, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::Decision;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json};

    const BASE: &str = r#""approvers": ["data-platform-oncall"], "valid_for_seconds": 3600,
        "irreversible_tools": ["warehouse.alter_table", "warehouse.drop_table", "pagerduty.create_incident"]"#;

    fn policy(rule: &str) -> HumanReview {
        let settings =
            format!(r#"{{{BASE}, "sql_rules": [{{"tools": ["warehouse.query"], "argument": "sql", {rule}}}]}}"#);
        policy_from_json(&settings).unwrap_or_else(|e| panic!("{rule}: {e}"))
    }

    fn read_only() -> HumanReview {
        policy(r#""read_only": true, "dialect": "postgres""#)
    }

    fn keywords() -> HumanReview {
        policy(r#""keywords": ["drop", "delete", "truncate", "update", "insert", "alter", "merge", "create", "grant"]"#)
    }

    fn query(sql: &str) -> Request {
        RequestBuilder::tool_call("warehouse.query").arg("sql", sql).build()
    }

    fn reason(verdict: &Verdict) -> (&str, &str) {
        (verdict.reasons[0].code.as_str(), verdict.reasons[0].message.as_str())
    }

    #[test]
    fn escalates_irreversible_tools_with_approvers() {
        let verdict = read_only().evaluate(&RequestBuilder::tool_call("warehouse.drop_table").build());
        assert_eq!(verdict.codes(), [NEEDS_APPROVAL]);
        let Decision::Escalate(escalation) = verdict.decision else { panic!("not escalated") };
        assert_eq!(escalation.approvers, ["data-platform-oncall"]);
        assert_eq!(escalation.valid_for_seconds, 3600);
    }

    #[test]
    fn read_only_mode_passes_one_read_only_query() {
        let policy = read_only();
        assert!(policy.evaluate(&query("select * from t where note = 'please drop it'")).is_allow());
        let verdict = policy.evaluate(&query("select 1; DROP TABLE analytics.orders_daily"));
        assert_eq!(
            reason(&verdict),
            (
                NEEDS_APPROVAL,
                "`warehouse.query` sql is not one read-only query: 2 statements: needs approval by data-platform-oncall"
            )
        );
        let verdict = policy.evaluate(&query("with d as (delete from t returning *) select * from d"));
        assert!(reason(&verdict).1.contains("a DELETE statement"), "{:?}", verdict.reasons);
        let verdict = policy.evaluate(&query("select lo_import('/etc/passwd')"));
        assert!(reason(&verdict).1.contains("a call of `lo_import`"), "{:?}", verdict.reasons);
    }

    #[test]
    fn keyword_mode_finds_listed_statements_in_the_tree() {
        let policy = keywords();
        let verdict = policy.evaluate(&query("select 1 -- '\n; drop table t"));
        assert_eq!(
            reason(&verdict).1,
            "`warehouse.query` sql runs a DROP statement: needs approval by data-platform-oncall"
        );
        assert!(policy.evaluate(&query("select 1 -- drop table t")).is_allow());
        assert!(policy.evaluate(&query("select 1; select 2")).is_allow(), "keyword mode does not count statements");
    }

    #[test]
    fn what_cannot_be_read_escalates_in_either_mode() {
        for policy in [read_only(), keywords()] {
            let verdict = policy.evaluate(&query("select 'unterminated; drop table t"));
            assert!(verdict.is_escalate());
            let (code, message) = reason(&verdict);
            assert_eq!(code, SQL_UNPARSEABLE);
            assert!(message.starts_with("`warehouse.query` sql does not tokenize: "), "{message}");
            for value in [ArgValue::Json(r#"["drop table t"]"#.into()), ArgValue::Integer(1), ArgValue::Null] {
                let request = RequestBuilder::tool_call("warehouse.query").arg_value("sql", value).build();
                assert_eq!(
                    reason(&policy.evaluate(&request)),
                    (
                        SQL_UNPARSEABLE,
                        "`warehouse.query` has a `sql` that is not SQL text: needs approval by data-platform-oncall"
                    )
                );
            }
        }
    }

    #[test]
    fn the_dialect_decides_how_text_reads() {
        let sql = "select 'a\\'; drop table t; --'";
        assert!(read_only().evaluate(&query(sql)).is_escalate(), "PostgreSQL: the backslash escapes nothing");
        assert!(policy(r#""read_only": true, "dialect": "mysql""#).evaluate(&query(sql)).is_allow());
    }

    #[test]
    fn longer_sql_than_the_rule_reads_escalates() {
        let sql = format!("select count(*) from t where note = '{}'", "x".repeat(5000));
        let verdict = read_only().evaluate(&query(&sql));
        assert_eq!(reason(&verdict).0, SQL_UNPARSEABLE);
        assert!(reason(&verdict).1.contains("more than the 4096 read"), "{:?}", verdict.reasons);
        let roomier = policy(r#""read_only": true, "max_bytes": 8192"#);
        assert!(roomier.evaluate(&query(&sql)).is_allow());
    }

    #[test]
    fn functions_extend_the_sdk_list() {
        let policy = policy(r#""read_only": true, "functions": ["Purge_*"]"#);
        assert!(policy.evaluate(&query("select analytics.purge_all()")).is_escalate());
        assert!(policy.evaluate(&query("select pg_read_file('x')")).is_escalate());
        assert!(policy.evaluate(&query("select count(*) from t")).is_allow());
    }

    #[test]
    fn honours_declared_irreversibility() {
        let mut request = RequestBuilder::tool_call("slack.post_message").build();
        if let arbiter_sdk::Action::ToolCall(call) = &mut request.action {
            call.facts.irreversible = Some(true);
        }
        assert!(read_only().evaluate(&request).is_escalate());
    }

    #[test]
    fn other_tools_absent_arguments_and_llm_requests_pass() {
        let policy = read_only();
        assert!(policy.evaluate(&RequestBuilder::tool_call("docs.search").arg("sql", "drop").build()).is_allow());
        assert!(policy.evaluate(&RequestBuilder::tool_call("warehouse.query").arg("query", "drop").build()).is_allow());
        assert!(policy.evaluate(&RequestBuilder::llm_request("m", 1, 1).build()).is_allow());
    }

    #[test]
    fn refuses_bad_settings() {
        let refused = |rule: &str| {
            let settings = format!(r#"{{{BASE}, "sql_rules": [{{"tools": ["*"], "argument": "sql", {rule}}}]}}"#);
            policy_from_json::<HumanReview>(&settings).err().unwrap_or_else(|| panic!("accepted: {rule}"))
        };
        assert!(refused(r#""keywords": ["drop table"]"#).contains("`drop table` is not a statement kind"));
        assert!(refused(r#""read_only": false"#).contains("set `read_only = true` or list `keywords`"));
        assert!(refused(r#""read_only": true, "keywords": ["drop"]"#).contains("exclude each other"));
        assert!(refused(r#""keywords": ["drop"], "functions": ["f"]"#).contains("only a read_only rule"));
        assert!(refused(r#""read_only": true, "functions": [""]"#).contains("sql_rules[0].functions"));
        assert!(refused(r#""read_only": true, "functions": ["analytics.purge"]"#).contains("without its schema"));
        assert!(refused(r#""read_only": true, "dialect": "oracle""#).contains("oracle"));
        assert!(refused(r#""read_only": true, "max_bytes": 0"#).contains("max_bytes: must be positive"));
        assert!(policy_from_json::<HumanReview>(r#"{"approvers": [], "valid_for_seconds": 1}"#).is_err());
    }
}
