//! `circuit-breaker`: stop calling a tool (or a model) that keeps failing.
//!
//! Each tool call passes a breaker keyed by (pipeline, tool), or by tool or
//! pipeline alone; with `models`, LLM requests to those models pass one
//! keyed the same way by `llm:<model>` (an upstream answering 5xx, 429 or
//! timing out, as the gateway reports it, opens it). The host feeds it the outcomes of allowed calls; while it
//! is open, or half-open with no probe left, calls are denied with
//! `circuit_open`. On allow, the host admits the call through the breaker
//! atomically, so concurrent calls cannot overrun the half-open probes.

use arbiter_sdk::host::breakers;
use arbiter_sdk::{BreakerConfig, BreakerState, BreakerWindow, Policy, Request, Verdict, export_policy, glob};
use serde::Deserialize;

const CIRCUIT_OPEN: &str = "circuit_open";

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyBy {
    #[default]
    PipelineTool,
    Tool,
    Pipeline,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Tools (globs) guarded; all when absent.
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// Models (globs) whose LLM requests are guarded; none when absent.
    #[serde(default)]
    pub models: Vec<String>,
    #[serde(default)]
    pub key_by: KeyBy,
    /// Count-based window: the last N outcomes.
    pub window_calls: Option<u32>,
    /// Time-based window: the outcomes of the last N seconds.
    pub window_seconds: Option<u32>,
    pub minimum_calls: u32,
    pub failure_rate_percent: u8,
    pub slow_call_ms: Option<u32>,
    pub slow_call_rate_percent: Option<u8>,
    pub open_seconds: u32,
    pub half_open_calls: u32,
    pub max_half_open_seconds: Option<u32>,
}

pub struct CircuitBreaker {
    tools: Option<Vec<String>>,
    models: Vec<String>,
    key_by: KeyBy,
    config: BreakerConfig,
}

impl Policy for CircuitBreaker {
    type Settings = Settings;

    fn new(s: Settings) -> Result<Self, String> {
        let window = match (s.window_calls, s.window_seconds) {
            (Some(n), None) if n > 0 => BreakerWindow::Count(n),
            (None, Some(secs)) if secs > 0 => BreakerWindow::Seconds(secs),
            _ => return Err("settings: give exactly one positive `window_calls` or `window_seconds`".into()),
        };
        if s.slow_call_ms.is_some() != s.slow_call_rate_percent.is_some() {
            return Err("settings: `slow_call_ms` and `slow_call_rate_percent` go together".into());
        }
        if s.half_open_calls == 0 || s.open_seconds == 0 {
            return Err("settings: `half_open_calls` and `open_seconds` must be positive".into());
        }
        let config = BreakerConfig {
            window,
            minimum_calls: s.minimum_calls,
            failure_rate_percent: s.failure_rate_percent,
            slow_call_ms: s.slow_call_ms,
            slow_call_rate_percent: s.slow_call_rate_percent,
            open_seconds: s.open_seconds,
            half_open_calls: s.half_open_calls,
            max_half_open_seconds: s.max_half_open_seconds,
        };
        config.validate().map_err(|refused| format!("settings: {refused}"))?;
        Ok(CircuitBreaker { tools: s.tools, models: s.models, key_by: s.key_by, config })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let target = match (request.tool(), request.llm_request()) {
            (Some(tool), _) if self.tools.as_ref().is_none_or(|globs| glob::any_matches(globs, tool)) => {
                tool.to_owned()
            }
            (_, Some(llm)) if glob::any_matches(&self.models, &llm.model) => format!("llm:{}", llm.model),
            _ => return Verdict::allow(),
        };
        let pipeline = &request.principal.pipeline;
        let key = match self.key_by {
            KeyBy::PipelineTool => format!("{pipeline}/{target}"),
            KeyBy::Tool => format!("tool/{target}"),
            KeyBy::Pipeline => format!("{pipeline}/*"),
        };
        match breakers::state(&key, self.config) {
            BreakerState::Open(until_ms) => Verdict::deny(
                CIRCUIT_OPEN,
                format!(
                    "`{key}` failed too often; its circuit is open for {} s more",
                    ((until_ms - request.timestamp_ms).max(0) + 999) / 1000
                ),
            ),
            BreakerState::HalfOpen(0) => {
                Verdict::deny(CIRCUIT_OPEN, format!("`{key}` is half-open and its probe calls are taken"))
            }
            BreakerState::Closed | BreakerState::HalfOpen(_) => Verdict::allow().with_breaker(key, self.config),
        }
    }
}

export_policy!(CircuitBreaker, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json, reset_host, set_breaker};

    fn policy() -> CircuitBreaker {
        policy_from_json(
            r#"{"window_calls": 10, "minimum_calls": 5, "failure_rate_percent": 50,
                "open_seconds": 60, "half_open_calls": 2}"#,
        )
        .unwrap()
    }

    #[test]
    fn follows_the_breaker_state() {
        reset_host();
        let policy = policy();
        let call = RequestBuilder::tool_call("warehouse.query").timestamp_ms(10_000).build();
        let allowed = policy.evaluate(&call);
        assert!(allowed.is_allow());
        assert_eq!(allowed.breakers[0].key, "orders_daily/warehouse.query");
        set_breaker("orders_daily/warehouse.query", BreakerState::Open(70_000));
        let denied = policy.evaluate(&call);
        assert_eq!(denied.codes(), [CIRCUIT_OPEN]);
        assert!(denied.reasons[0].message.contains("60 s"), "{}", denied.reasons[0].message);
        set_breaker("orders_daily/warehouse.query", BreakerState::HalfOpen(1));
        assert!(policy.evaluate(&call).is_allow());
        set_breaker("orders_daily/warehouse.query", BreakerState::HalfOpen(0));
        assert!(policy.evaluate(&call).is_deny());
        // Another tool has its own breaker.
        assert!(policy.evaluate(&RequestBuilder::tool_call("docs.search").build()).is_allow());
    }

    #[test]
    fn guards_the_models_it_names() {
        reset_host();
        let policy: CircuitBreaker = policy_from_json(
            r#"{"models": ["gpt-4o-*"], "window_calls": 10, "minimum_calls": 5, "failure_rate_percent": 50,
                "open_seconds": 60, "half_open_calls": 2}"#,
        )
        .unwrap();
        let call = RequestBuilder::llm_request("gpt-4o-2024-08-06", 10, 10).timestamp_ms(10_000).build();
        let allowed = policy.evaluate(&call);
        assert_eq!(allowed.breakers[0].key, "orders_daily/llm:gpt-4o-2024-08-06");
        set_breaker("orders_daily/llm:gpt-4o-2024-08-06", BreakerState::Open(70_000));
        assert_eq!(policy.evaluate(&call).codes(), [CIRCUIT_OPEN]);
        let other = RequestBuilder::llm_request("claude-sonnet-4-5-20250929", 10, 10).build();
        assert!(policy.evaluate(&other).breakers.is_empty(), "a model not named passes no breaker");
        // Without `models`, LLM requests pass none (the 0.1 behaviour).
        assert!(self::policy().evaluate(&call).breakers.is_empty());
    }

    #[test]
    fn checks_settings() {
        let both = r#"{"window_calls": 10, "window_seconds": 10, "minimum_calls": 5, "failure_rate_percent": 50, "open_seconds": 60, "half_open_calls": 2}"#;
        assert!(policy_from_json::<CircuitBreaker>(both).is_err());
        let rate = r#"{"window_calls": 10, "minimum_calls": 5, "failure_rate_percent": 0, "open_seconds": 60, "half_open_calls": 2}"#;
        assert!(policy_from_json::<CircuitBreaker>(rate).is_err());
    }
}
