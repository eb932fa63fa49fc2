//! `tool-storm`: an agent calling tools far more than a run should.
//!
//! Refuses a tool call (code `tool_storm`) when its run already has
//! `max_per_run` allowed tool calls, or when `burst.calls` allowed tool calls
//! of the run happened less than `burst.within_seconds` before it.

use arbiter_sdk::host::history;
use arbiter_sdk::{Policy, Refusal, Request, Verdict, export_policy};
use serde::Deserialize;

const TOOL_STORM: &str = "tool_storm";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub max_per_run: Option<u32>,
    pub burst: Option<Burst>,
    #[serde(default)]
    pub respond: Refusal,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Burst {
    pub calls: u32,
    pub within_seconds: u32,
}

pub struct ToolStorm {
    settings: Settings,
}

impl Policy for ToolStorm {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.max_per_run.is_none() && settings.burst.is_none() {
            return Err("settings: give `max_per_run`, `burst`, or both".into());
        }
        if settings.max_per_run == Some(0) {
            return Err("settings.max_per_run: must be positive".into());
        }
        if let Some(burst) = &settings.burst
            && (burst.calls == 0 || burst.within_seconds == 0)
        {
            return Err("settings.burst: calls and within_seconds must be positive".into());
        }
        settings.respond.validate("respond")?;
        Ok(ToolStorm { settings })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        if request.tool_call().is_none() {
            return Verdict::allow();
        }
        let run = &request.principal.run;
        if let Some(max) = self.settings.max_per_run {
            let so_far = history::count_tool_calls(i64::MIN);
            if so_far >= max {
                return self
                    .settings
                    .respond
                    .verdict(TOOL_STORM, format!("run {run} already made {so_far} tool calls; the ceiling is {max}"));
            }
        }
        if let Some(burst) = &self.settings.burst {
            // "Less than N seconds before it": strictly inside the window.
            let since = request.timestamp_ms - i64::from(burst.within_seconds) * 1000 + 1;
            let recent = history::count_tool_calls(since);
            if recent >= burst.calls {
                return self.settings.respond.verdict(
                    TOOL_STORM,
                    format!(
                        "run {run} made {recent} tool calls in the last {} s (limit {})",
                        burst.within_seconds, burst.calls
                    ),
                );
            }
        }
        Verdict::allow()
    }
}

export_policy!(ToolStorm, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json, record_tool_call, reset_host};

    fn policy() -> ToolStorm {
        policy_from_json(r#"{"max_per_run": 25, "burst": {"calls": 8, "within_seconds": 10}}"#).unwrap()
    }

    fn call_at(ms: i64) -> Request {
        RequestBuilder::tool_call("warehouse.query").timestamp_ms(ms).build()
    }

    #[test]
    fn denies_a_burst_and_recovers_after_the_window() {
        reset_host();
        for i in 0..8 {
            record_tool_call(&format!("r{i}"), 400 + i * 400, "warehouse.describe_table", vec![]);
        }
        let policy = policy();
        assert_eq!(policy.evaluate(&call_at(3_600)).codes(), [TOOL_STORM]);
        // 10 s after the first call of the burst, that call has left the window.
        assert!(policy.evaluate(&call_at(10_400)).is_allow());
        assert!(policy.evaluate(&call_at(15_800)).is_allow());
    }

    #[test]
    fn denies_past_the_run_ceiling() {
        reset_host();
        for i in 0..25 {
            record_tool_call(&format!("r{i}"), i * 2_000, "warehouse.query", vec![]);
        }
        assert_eq!(policy().evaluate(&call_at(1_000_000)).codes(), [TOOL_STORM]);
    }

    #[test]
    fn can_escalate_instead() {
        reset_host();
        for i in 0..8 {
            record_tool_call(&format!("r{i}"), i, "x", vec![]);
        }
        let policy: ToolStorm = policy_from_json(
            r#"{"burst": {"calls": 8, "within_seconds": 10},
                "respond": {"verdict": "escalate", "approvers": ["oncall"], "valid_for_seconds": 600}}"#,
        )
        .unwrap();
        assert!(policy.evaluate(&call_at(100)).is_escalate());
    }

    #[test]
    fn llm_requests_pass_and_settings_are_checked() {
        reset_host();
        assert!(policy().evaluate(&RequestBuilder::llm_request("m", 1, 1).build()).is_allow());
        assert!(policy_from_json::<ToolStorm>(r#"{}"#).is_err());
        assert!(policy_from_json::<ToolStorm>(r#"{"burst": {"calls": 0, "within_seconds": 1}}"#).is_err());
    }
}
