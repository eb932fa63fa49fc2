//! `retrieval-thrash`: an agent searching the same thing again and again.
//!
//! For retrieval tools, the query's token set is compared with the earlier
//! allowed queries of the same tool in the run; with `max_near_duplicates`
//! or more of them at Jaccard similarity ≥ `similarity`, the call is refused
//! (code `retrieval_thrash`). The host answers the comparison
//! (`history::count_similar`), so a run's thousandth search costs what its
//! first did.

use arbiter_sdk::host::history;
use arbiter_sdk::{Policy, Refusal, Request, Verdict, export_policy, glob};
use serde::Deserialize;

const RETRIEVAL_THRASH: &str = "retrieval_thrash";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Retrieval tools (globs).
    pub tools: Vec<String>,
    /// The argument holding the query text.
    #[serde(default = "query")]
    pub argument: String,
    /// Jaccard similarity (0..=1) from which two queries are near-duplicates.
    pub similarity: f64,
    /// Refuse when this many earlier queries are near-duplicates.
    pub max_near_duplicates: u32,
    #[serde(default)]
    pub respond: Refusal,
}

fn query() -> String {
    "query".to_owned()
}

pub struct RetrievalThrash {
    settings: Settings,
}

impl Policy for RetrievalThrash {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if !(settings.similarity > 0.0 && settings.similarity <= 1.0) {
            return Err("settings.similarity: must be in (0, 1]".into());
        }
        if settings.max_near_duplicates == 0 {
            return Err("settings.max_near_duplicates: must be positive".into());
        }
        if settings.tools.is_empty() {
            return Err("settings.tools: name at least one retrieval tool".into());
        }
        settings.respond.validate("respond")?;
        Ok(RetrievalThrash { settings })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let Some(tool) = request.tool().filter(|t| glob::any_matches(&self.settings.tools, t)) else {
            return Verdict::allow();
        };
        let Some(query) = request.str_argument(&self.settings.argument) else { return Verdict::allow() };
        let near = history::count_similar(tool, &self.settings.argument, query, self.settings.similarity, i64::MIN);
        if near >= self.settings.max_near_duplicates {
            self.settings.respond.verdict(
                RETRIEVAL_THRASH,
                format!("`{query}` nearly repeats {near} earlier {tool} queries of this run"),
            )
        } else {
            Verdict::allow()
        }
    }
}

export_policy!(RetrievalThrash, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::ArgValue;
    use arbiter_sdk::Argument;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json, record_tool_call, reset_host};

    fn policy() -> RetrievalThrash {
        policy_from_json(r#"{"tools": ["docs.search"], "similarity": 0.6, "max_near_duplicates": 2}"#).unwrap()
    }

    fn searched(id: &str, query: &str) {
        let args = vec![Argument { name: "query".into(), value: ArgValue::Text(query.into()) }];
        record_tool_call(id, 0, "docs.search", args);
    }

    fn search(query: &str) -> Request {
        RequestBuilder::tool_call("docs.search").arg("query", query).build()
    }

    #[test]
    fn refuses_the_second_near_duplicate() {
        reset_host();
        let policy = policy();
        searched("1", "orders_daily schema change column missing");
        assert!(policy.evaluate(&search("orders_daily schema changed column missing")).is_allow());
        searched("2", "orders_daily schema changed column missing");
        assert_eq!(policy.evaluate(&search("orders daily schema change missing column")).codes(), [RETRIEVAL_THRASH]);
        assert!(policy.evaluate(&search("how to page the data platform oncall")).is_allow());
    }

    #[test]
    fn only_the_same_tool_counts() {
        reset_host();
        record_tool_call(
            "1",
            0,
            "web.search",
            vec![Argument { name: "query".into(), value: ArgValue::Text("a b".into()) }],
        );
        record_tool_call(
            "2",
            0,
            "web.search",
            vec![Argument { name: "query".into(), value: ArgValue::Text("a b".into()) }],
        );
        assert!(policy().evaluate(&search("a b")).is_allow());
    }

    #[test]
    fn checks_settings() {
        assert!(
            policy_from_json::<RetrievalThrash>(r#"{"tools": ["x"], "similarity": 1.5, "max_near_duplicates": 2}"#)
                .is_err()
        );
        assert!(
            policy_from_json::<RetrievalThrash>(r#"{"tools": [], "similarity": 0.5, "max_near_duplicates": 2}"#)
                .is_err()
        );
    }
}
