//! `context-bloat`: stop prompts whose context has grown too large.
//!
//! Above `deny_above` prompt tokens the request is denied (`context_bloat`);
//! optionally, above `summarize_above` it is allowed with an obligation to
//! summarise the context down to `summarize_to` tokens.

use arbiter_sdk::{Obligation, Policy, Request, Verdict, export_policy};
use serde::Deserialize;

const CONTEXT_BLOAT: &str = "context_bloat";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub deny_above: u64,
    #[serde(default)]
    pub summarize: Option<Summarize>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Summarize {
    pub above: u64,
    pub to: u64,
}

pub struct ContextBloat {
    settings: Settings,
}

impl Policy for ContextBloat {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.deny_above == 0 {
            return Err("settings.deny_above: must be positive".into());
        }
        if let Some(s) = &settings.summarize
            && (s.above >= settings.deny_above || s.to >= s.above)
        {
            return Err("settings.summarize: need to < above < deny_above".into());
        }
        Ok(ContextBloat { settings })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let Some(llm) = request.llm_request() else { return Verdict::allow() };
        let tokens = llm.prompt_tokens;
        if tokens > self.settings.deny_above {
            let estimated = if llm.prompt_tokens_estimated { " (estimated)" } else { "" };
            return Verdict::deny(
                CONTEXT_BLOAT,
                format!("prompt of {tokens} tokens{estimated} exceeds the limit of {}", self.settings.deny_above),
            );
        }
        match &self.settings.summarize {
            Some(s) if tokens > s.above => Verdict::allow().with_obligation(Obligation::SummarizeContext(s.to)),
            _ => Verdict::allow(),
        }
    }
}

export_policy!(ContextBloat, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json};

    #[test]
    fn denies_above_the_limit_only() {
        let policy: ContextBloat = policy_from_json(r#"{"deny_above": 80000}"#).unwrap();
        let at = |tokens| policy.evaluate(&RequestBuilder::llm_request("m-1", tokens, 10).build());
        assert!(at(80_000).is_allow());
        assert_eq!(at(90_000).codes(), [CONTEXT_BLOAT]);
    }

    #[test]
    fn asks_to_summarise_between_thresholds() {
        let policy: ContextBloat =
            policy_from_json(r#"{"deny_above": 100, "summarize": {"above": 50, "to": 20}}"#).unwrap();
        let verdict = policy.evaluate(&RequestBuilder::llm_request("m-1", 60, 10).build());
        assert!(verdict.is_allow());
        assert_eq!(verdict.obligations, [Obligation::SummarizeContext(20)]);
        assert!(policy.evaluate(&RequestBuilder::llm_request("m-1", 40, 10).build()).obligations.is_empty());
    }

    #[test]
    fn refuses_inconsistent_thresholds() {
        assert!(
            policy_from_json::<ContextBloat>(r#"{"deny_above": 10, "summarize": {"above": 50, "to": 20}}"#).is_err()
        );
    }
}
