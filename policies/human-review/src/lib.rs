//! `human-review`: irreversible actions wait for a human.
//!
//! Escalates (code `needs_approval`) a tool call when the tool is listed as
//! irreversible, when the caller declares it irreversible, or when one of its
//! SQL arguments contains a write or DDL keyword outside string literals.

use arbiter_sdk::{Policy, Request, Verdict, export_policy, glob, sql};
use serde::Deserialize;

const NEEDS_APPROVAL: &str = "needs_approval";

#[derive(Debug, Deserialize)]
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
    /// SQL arguments to scan for keywords.
    #[serde(default)]
    pub sql_rules: Vec<SqlRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRule {
    /// Tools (globs) the rule applies to.
    pub tools: Vec<String>,
    /// The argument holding SQL text.
    pub argument: String,
    /// Keywords (whole words, any case, outside '...' literals).
    pub keywords: Vec<String>,
}

fn yes() -> bool {
    true
}

pub struct HumanReview {
    settings: Settings,
    /// The keywords of each SQL rule, prepared once.
    sql_keywords: Vec<sql::Keywords>,
}

impl Policy for HumanReview {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.approvers.is_empty() {
            return Err("settings.approvers: at least one approver is needed".into());
        }
        if settings.valid_for_seconds == 0 {
            return Err("settings.valid_for_seconds: must be positive".into());
        }
        for (i, rule) in settings.sql_rules.iter().enumerate() {
            if let Some(bad) =
                rule.keywords.iter().find(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_'))
            {
                return Err(format!("settings.sql_rules[{i}].keywords: `{bad}` is not a word (letters and `_`)"));
            }
        }
        let sql_keywords = settings.sql_rules.iter().map(|r| sql::Keywords::new(&r.keywords)).collect();
        Ok(HumanReview { settings, sql_keywords })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let Some(call) = request.tool_call() else { return Verdict::allow() };
        let tool = call.tool.as_str();
        let why = if glob::any_matches(&self.settings.irreversible_tools, tool) {
            Some(format!("`{tool}` is irreversible"))
        } else if self.settings.honour_declared_irreversible && call.facts.irreversible == Some(true) {
            Some(format!("the caller declares `{tool}` irreversible"))
        } else {
            self.sql_keyword(request, tool)
        };
        match why {
            None => Verdict::allow(),
            Some(why) => Verdict::escalate(
                self.settings.approvers.clone(),
                self.settings.valid_for_seconds,
                NEEDS_APPROVAL,
                format!("{why}: needs approval by {}", self.settings.approvers.join(", ")),
            ),
        }
    }
}

impl HumanReview {
    fn sql_keyword(&self, request: &Request, tool: &str) -> Option<String> {
        let rules = self.settings.sql_rules.iter().zip(&self.sql_keywords);
        rules.filter(|(rule, _)| glob::any_matches(&rule.tools, tool)).find_map(|(rule, keywords)| {
            let text = request.str_argument(&rule.argument)?;
            let keyword = keywords.find_in(text)?;
            Some(format!("`{tool}` runs `{}` ({})", keyword.to_ascii_uppercase(), rule.argument))
        })
    }
}

export_policy!(HumanReview);

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::Decision;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json};

    fn policy() -> HumanReview {
        policy_from_json(
            r#"{"approvers": ["data-platform-oncall"], "valid_for_seconds": 3600,
                "irreversible_tools": ["warehouse.alter_table", "warehouse.drop_table", "pagerduty.create_incident"],
                "sql_rules": [{"tools": ["warehouse.query"], "argument": "sql",
                               "keywords": ["drop", "delete", "truncate", "update", "insert", "alter", "merge", "create", "grant"]}]}"#,
        )
        .unwrap()
    }

    fn query(sql: &str) -> Request {
        RequestBuilder::tool_call("warehouse.query").arg("sql", sql).build()
    }

    #[test]
    fn escalates_irreversible_tools_with_approvers() {
        let verdict = policy().evaluate(&RequestBuilder::tool_call("warehouse.drop_table").build());
        assert_eq!(verdict.codes(), [NEEDS_APPROVAL]);
        let Decision::Escalate(escalation) = verdict.decision else { panic!("not escalated") };
        assert_eq!(escalation.approvers, ["data-platform-oncall"]);
        assert_eq!(escalation.valid_for_seconds, 3600);
    }

    #[test]
    fn scans_sql_outside_literals() {
        let policy = policy();
        let cases = [
            ("delete from analytics.orders_daily where order_date < '2020-01-01'", true),
            ("select * from analytics.orders_daily where note = 'please drop it'", false),
            ("select 1; DROP TABLE analytics.orders_daily", true),
            ("select count(*) from analytics.orders_daily", false),
            ("select updated_at from t", false),
            ("Merge into t using s on 1=1", true),
        ];
        for (sql, escalates) in cases {
            assert_eq!(policy.evaluate(&query(sql)).is_escalate(), escalates, "{sql}");
        }
    }

    #[test]
    fn honours_declared_irreversibility() {
        let mut request = RequestBuilder::tool_call("slack.post_message").build();
        if let arbiter_sdk::Action::ToolCall(call) = &mut request.action {
            call.facts.irreversible = Some(true);
        }
        assert!(policy().evaluate(&request).is_escalate());
    }

    #[test]
    fn other_tools_and_llm_requests_pass() {
        assert!(policy().evaluate(&RequestBuilder::tool_call("docs.search").arg("sql", "drop").build()).is_allow());
        assert!(policy().evaluate(&RequestBuilder::llm_request("m", 1, 1).build()).is_allow());
    }

    #[test]
    fn refuses_bad_settings() {
        assert!(policy_from_json::<HumanReview>(r#"{"approvers": [], "valid_for_seconds": 1}"#).is_err());
        let err = policy_from_json::<HumanReview>(
            r#"{"approvers": ["a"], "valid_for_seconds": 1, "sql_rules": [{"tools": ["*"], "argument": "sql", "keywords": ["drop table"]}]}"#,
        )
        .err()
        .unwrap();
        assert!(err.contains("sql_rules[0].keywords"), "{err}");
    }
}
