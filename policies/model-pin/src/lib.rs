//! `model-pin`: LLM requests may use only pinned model ids.
//!
//! Pinned ids are exact, dated model versions; floating aliases (`gpt-4o`,
//! `*-latest`) drift under the agent and are denied with `model_not_pinned`.

use arbiter_sdk::{Policy, Request, Verdict, export_policy, glob};
use serde::Deserialize;

const MODEL_NOT_PINNED: &str = "model_not_pinned";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Model ids allowed everywhere.
    #[serde(default)]
    pub pinned: Vec<String>,
    /// Extra model ids per pipeline (glob on the pipeline name).
    #[serde(default)]
    pub per_pipeline: Vec<PipelinePins>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PipelinePins {
    pub pipeline: String,
    pub pinned: Vec<String>,
}

pub struct ModelPin {
    settings: Settings,
}

/// Whether a model id is certainly a moving target: `*-latest` or a pattern.
/// Such ids can never be pinned.
pub fn is_floating_alias(model: &str) -> bool {
    model.ends_with("-latest") || model.contains('*')
}

/// Whether a model id carries a release date (`20250929` or `2024-08-06`),
/// as dated, immutable model versions do.
pub fn has_date_stamp(model: &str) -> bool {
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let b = model.as_bytes();
    b.windows(8).any(digits)
        || b.windows(10).any(|w| digits(&w[..4]) && w[4] == b'-' && digits(&w[5..7]) && w[7] == b'-' && digits(&w[8..]))
}

impl Policy for ModelPin {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        let all = settings.pinned.iter().chain(settings.per_pipeline.iter().flat_map(|p| &p.pinned));
        if let Some(alias) = all.clone().find(|m| is_floating_alias(m)) {
            return Err(format!("settings: `{alias}` is a floating alias; pin a dated model version"));
        }
        if all.count() == 0 {
            return Err("settings.pinned: no model is pinned, so every LLM request would be denied".into());
        }
        Ok(ModelPin { settings })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let Some(llm) = request.llm_request() else { return Verdict::allow() };
        let model = llm.model.as_str();
        let pipeline = request.principal.pipeline.as_str();
        let pinned = self.settings.pinned.iter().any(|m| m == model)
            || self
                .settings
                .per_pipeline
                .iter()
                .any(|p| glob::matches(&p.pipeline, pipeline) && p.pinned.iter().any(|m| m == model));
        if pinned {
            Verdict::allow()
        } else if is_floating_alias(model) || !has_date_stamp(model) {
            Verdict::deny(MODEL_NOT_PINNED, format!("`{model}` is a floating alias; use a pinned, dated model id"))
        } else {
            Verdict::deny(MODEL_NOT_PINNED, format!("`{model}` is not pinned for pipeline {pipeline}"))
        }
    }
}

export_policy!(ModelPin, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json};

    fn policy() -> ModelPin {
        policy_from_json(
            r#"{"pinned": ["claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06"],
                "per_pipeline": [{"pipeline": "experiments_*", "pinned": ["gpt-4.1-2025-04-14"]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn table() {
        let cases = [
            ("orders_daily", "claude-sonnet-4-5-20250929", true),
            ("orders_daily", "gpt-4o-2024-08-06", true),
            ("orders_daily", "claude-sonnet-4-5", false),
            ("orders_daily", "gpt-4o", false),
            ("orders_daily", "claude-3-5-sonnet-latest", false),
            ("orders_daily", "gpt-4.1-2025-04-14", false),
            ("experiments_a", "gpt-4.1-2025-04-14", true),
        ];
        let policy = policy();
        for (pipeline, model, allowed) in cases {
            let verdict = policy.evaluate(&RequestBuilder::llm_request(model, 10, 10).pipeline(pipeline).build());
            assert_eq!(verdict.is_allow(), allowed, "{pipeline} {model}");
            if !allowed {
                assert_eq!(verdict.codes(), [MODEL_NOT_PINNED]);
            }
        }
    }

    #[test]
    fn refuses_to_pin_aliases() {
        let err = policy_from_json::<ModelPin>(r#"{"pinned": ["gpt-4o-latest"]}"#).err().unwrap();
        assert!(err.contains("floating alias"), "{err}");
        assert!(policy_from_json::<ModelPin>(r#"{"pinned": []}"#).is_err());
    }

    #[test]
    fn recognises_date_stamps() {
        assert!(has_date_stamp("claude-sonnet-4-5-20250929"));
        assert!(has_date_stamp("gpt-4o-2024-08-06"));
        assert!(!has_date_stamp("gpt-4o"));
        assert!(!has_date_stamp("claude-sonnet-4-5"));
        let verdict = policy().evaluate(&RequestBuilder::llm_request("gpt-4o", 1, 1).build());
        assert!(verdict.reasons[0].message.contains("floating alias"), "{verdict:?}");
    }

    #[test]
    fn tool_calls_pass() {
        assert!(policy().evaluate(&RequestBuilder::tool_call("x").build()).is_allow());
    }
}
