//! `data-residency`: keep data where it belongs.
//!
//! - A tool call whose region (the `region` argument, or the caller's
//!   declared region) is not allowed is denied with `region_not_allowed`;
//!   so is an LLM request to a model served from a region not allowed.
//! - Cross-environment rules deny (`cross_environment`) a call in one
//!   environment whose arguments mention another environment's data, e.g. a
//!   dev agent reading `prod.` tables.
//! - Egress rules (stateful, capability `history`) deny (`sensitive_egress`)
//!   a call to a sink tool (e.g. `slack.*`) once the run has read sensitive
//!   data: an earlier allowed source call (e.g. `warehouse.*`) whose
//!   arguments mention a marker (e.g. `pii.`).

use arbiter_sdk::host::history;
use arbiter_sdk::settings::FieldPath;
use arbiter_sdk::{Decision, Environment, Policy, Reason, Request, Verdict, export_policy, glob, text};
use serde::Deserialize;

const REGION_NOT_ALLOWED: &str = "region_not_allowed";
const CROSS_ENVIRONMENT: &str = "cross_environment";
const SENSITIVE_EGRESS: &str = "sensitive_egress";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub allowed_regions: Vec<String>,
    /// The tool-call argument that names a region.
    #[serde(default = "region")]
    pub region_argument: String,
    /// Where each model is served, for models whose region is known.
    #[serde(default)]
    pub model_regions: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub cross_environment: Vec<CrossEnvironmentRule>,
    #[serde(default)]
    pub egress: Vec<EgressRule>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// Tools (globs) that read data.
    pub sources: Vec<String>,
    /// Their arguments to look in.
    pub arguments: Vec<String>,
    /// Prefixes that mark sensitive data (at a word start, any case).
    pub markers: Vec<String>,
    /// Tools (globs) that send data out of the boundary.
    pub sinks: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CrossEnvironmentRule {
    /// The environment the rule guards (`dev`, `staging` or `prod`).
    pub environment: Environment,
    /// Tools (globs) it applies to.
    pub tools: Vec<String>,
    /// Arguments to look in.
    pub arguments: Vec<String>,
    /// Prefixes that must not appear at a word start (any case), e.g. `prod.`.
    pub forbidden_prefixes: Vec<String>,
}

fn region() -> String {
    "region".to_owned()
}

pub struct DataResidency {
    settings: Settings,
}

impl Policy for DataResidency {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.allowed_regions.is_empty() {
            return Err("settings.allowed_regions: at least one region is needed".into());
        }
        for (i, rule) in settings.cross_environment.iter().enumerate() {
            if rule.forbidden_prefixes.iter().any(String::is_empty) {
                let at = FieldPath::root().field("cross_environment").index(i).field("forbidden_prefixes");
                return Err(at.error("empty prefix"));
            }
        }
        if settings
            .egress
            .iter()
            .any(|r| r.sources.is_empty() || r.sinks.is_empty() || r.markers.iter().any(String::is_empty))
        {
            return Err("settings.egress: each rule needs sources, sinks and non-empty markers".into());
        }
        for (i, rule) in settings.egress.iter().enumerate() {
            // The host answers the rule's question only within its bounds.
            text::check_question_lists(&[&rule.sources[..], &rule.arguments[..], &rule.markers[..]])
                .map_err(|e| FieldPath::root().field("egress").index(i).error(e))?;
        }
        Ok(DataResidency { settings })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let mut reasons = Vec::new();
        if let Some(region) = self.disallowed_region(request) {
            reasons.push(Reason {
                code: REGION_NOT_ALLOWED.to_owned(),
                message: format!("region `{region}` is outside {}", self.settings.allowed_regions.join(", ")),
            });
        }
        if let Some((argument, prefix)) = self.cross_environment(request) {
            reasons.push(Reason {
                code: CROSS_ENVIRONMENT.to_owned(),
                message: format!(
                    "a {} agent must not touch `{prefix}` data (argument `{argument}`)",
                    request.principal.environment.as_str()
                ),
            });
        }
        if let Some((source, marker)) = self.sensitive_read(request) {
            reasons.push(Reason {
                code: SENSITIVE_EGRESS.to_owned(),
                message: format!(
                    "this run read `{marker}` data (request {source}); `{}` would send it out",
                    request.tool().unwrap_or_default()
                ),
            });
        }
        if reasons.is_empty() {
            Verdict::allow()
        } else {
            Verdict { decision: Decision::Deny, reasons, ..Verdict::allow() }
        }
    }
}

impl DataResidency {
    fn allowed(&self, region: &str) -> bool {
        self.settings.allowed_regions.iter().any(|r| r == region)
    }

    fn disallowed_region<'r>(&'r self, request: &'r Request) -> Option<&'r str> {
        if let Some(llm) = request.llm_request() {
            return self.settings.model_regions.get(&llm.model).map(String::as_str).filter(|r| !self.allowed(r));
        }
        let call = request.tool_call()?;
        let argument = call.argument(&self.settings.region_argument).map(|v| v.as_str().unwrap_or("(not a string)"));
        [argument, call.facts.region.as_deref()].into_iter().flatten().find(|r| !self.allowed(r))
    }

    fn cross_environment<'r>(&'r self, request: &'r Request) -> Option<(&'r str, &'r str)> {
        let tool = request.tool()?;
        let environment: Environment = request.principal.environment;
        self.settings
            .cross_environment
            .iter()
            .filter(|rule| rule.environment == environment && glob::any_matches(&rule.tools, tool))
            .find_map(|rule| {
                rule.arguments.iter().find_map(|argument| {
                    let value = request.str_argument(argument)?;
                    let prefix = rule.forbidden_prefixes.iter().find(|p| text::mentions_at_word_start(value, p))?;
                    Some((argument.as_str(), prefix.as_str()))
                })
            })
    }
}

impl DataResidency {
    /// For a call to a sink: the earlier allowed source call of the run that
    /// read sensitive data, and the marker it mentioned (the host answers,
    /// rule by rule, from the run's history).
    fn sensitive_read(&self, request: &Request) -> Option<(String, String)> {
        let tool = request.tool()?;
        self.settings.egress.iter().filter(|rule| glob::any_matches(&rule.sinks, tool)).find_map(|rule| {
            let found = history::first_mention(&rule.sources, &rule.arguments, &rule.markers, i64::MIN)?;
            Some((found.request_id, found.marker))
        })
    }
}

export_policy!(DataResidency, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json};

    fn policy() -> DataResidency {
        policy_from_json(
            r#"{"allowed_regions": ["eu-west-1", "eu-central-1"],
                "model_regions": {"gpt-4o-2024-08-06": "us-east-1"},
                "cross_environment": [{"environment": "dev", "tools": ["warehouse.*"],
                                       "arguments": ["sql", "table"], "forbidden_prefixes": ["prod."]}]}"#,
        )
        .unwrap()
    }

    fn dev(tool: &str) -> RequestBuilder {
        RequestBuilder::tool_call(tool).environment(Environment::Dev)
    }

    #[test]
    fn table() {
        let policy = policy();
        let cases: Vec<(Request, Vec<&str>)> = vec![
            (
                dev("warehouse.query").arg("sql", "select * from prod.orders_daily limit 5").build(),
                vec![CROSS_ENVIRONMENT],
            ),
            (dev("warehouse.query").arg("sql", "select * from dev.orders_daily limit 5").build(), vec![]),
            (dev("warehouse.describe_table").arg("table", "PROD.orders_daily").build(), vec![CROSS_ENVIRONMENT]),
            (dev("docs.search").arg("query", "prod.orders_daily").build(), vec![]),
            (
                dev("warehouse.query").arg("region", "us-east-1").arg("sql", "select 1").build(),
                vec![REGION_NOT_ALLOWED],
            ),
            (dev("warehouse.query").arg("region", "eu-west-1").arg("sql", "select 1").build(), vec![]),
            (
                dev("warehouse.query").arg("region", "us-east-1").arg("sql", "select * from prod.x").build(),
                vec![CROSS_ENVIRONMENT, REGION_NOT_ALLOWED],
            ),
            (RequestBuilder::tool_call("warehouse.query").arg("sql", "select * from prod.x").build(), vec![]),
            (RequestBuilder::llm_request("gpt-4o-2024-08-06", 1, 1).build(), vec![REGION_NOT_ALLOWED]),
            (RequestBuilder::llm_request("claude-sonnet-4-5-20250929", 1, 1).build(), vec![]),
        ];
        for (request, codes) in cases {
            let verdict = policy.evaluate(&request);
            assert_eq!(verdict.codes(), codes, "{request:?}");
            assert_eq!(verdict.is_deny(), !codes.is_empty());
        }
    }

    #[test]
    fn sensitive_reads_may_not_leave_the_run() {
        use arbiter_sdk::testing::{record_tool_call, reset_host};
        use arbiter_sdk::{ArgValue, Argument};
        let policy: DataResidency = policy_from_json(
            r#"{"allowed_regions": ["eu-west-1"],
                "egress": [{"sources": ["warehouse.*"], "arguments": ["sql"], "markers": ["pii."],
                            "sinks": ["slack.*"]}]}"#,
        )
        .unwrap();
        let post = RequestBuilder::tool_call("slack.post_message").arg("text", "done").build();
        reset_host();
        let sql = |s: &str| vec![Argument { name: "sql".into(), value: ArgValue::Text(s.into()) }];
        record_tool_call("q1", 0, "warehouse.query", sql("select count(*) from analytics.orders"));
        assert!(policy.evaluate(&post).is_allow());
        record_tool_call("q2", 1, "warehouse.query", sql("select email from PII.customers"));
        let verdict = policy.evaluate(&post);
        assert_eq!(verdict.codes(), [SENSITIVE_EGRESS]);
        assert!(verdict.reasons[0].message.contains("q2"), "{}", verdict.reasons[0].message);
        // Sources themselves are not sinks.
        assert!(
            policy.evaluate(&RequestBuilder::tool_call("warehouse.query").arg("sql", "select 1").build()).is_allow()
        );
        reset_host();
    }

    #[test]
    fn an_egress_rule_the_host_could_not_answer_is_refused_at_load() {
        let markers: Vec<String> = (0..65).map(|i| format!("\"m{i}.\"")).collect();
        let settings = format!(
            r#"{{"allowed_regions": ["eu-west-1"],
                "egress": [{{"sources": ["warehouse.*"], "arguments": ["sql"], "markers": [{}], "sinks": ["slack.*"]}}]}}"#,
            markers.join(", ")
        );
        let error = policy_from_json::<DataResidency>(&settings).err().unwrap_or_default();
        assert_eq!(error, "settings.egress[0]: question list 2 holds 65 (at most 64 items of 256 bytes)");
    }

    #[test]
    fn a_non_string_region_is_not_allowed() {
        let request = RequestBuilder::tool_call("x").arg_value("region", arbiter_sdk::ArgValue::Integer(1)).build();
        assert!(policy().evaluate(&request).is_deny());
    }
}
