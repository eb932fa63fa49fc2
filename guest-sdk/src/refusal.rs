//! How a policy that detects trouble answers: deny, or escalate to a human.
//! A settings field, so each bundle chooses.

use serde::Deserialize;

use crate::Verdict;
use crate::settings::{FieldPath, check_approval};

/// `{"verdict": "deny"}` or `{"verdict": "escalate", "approvers": [...],
/// "valid_for_seconds": N}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(tag = "verdict", rename_all = "snake_case", deny_unknown_fields)]
pub enum Refusal {
    /// Refuse outright.
    #[default]
    Deny,
    /// Hold the request for a human.
    Escalate {
        /// Who may approve.
        approvers: Vec<String>,
        /// How long an approval stays valid.
        valid_for_seconds: u32,
    },
}

impl Refusal {
    /// Checks an escalation names approvers and a validity
    /// ([`check_approval`]); `field` is the settings member holding it.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        match self {
            Refusal::Deny => Ok(()),
            Refusal::Escalate { approvers, valid_for_seconds } => {
                check_approval(&FieldPath::root().field(field), approvers, *valid_for_seconds)
            }
        }
    }

    /// The verdict this refusal gives, with `code` and `message` as its reason.
    pub fn verdict(&self, code: &str, message: impl Into<String>) -> Verdict {
        match self {
            Refusal::Deny => Verdict::deny(code, message),
            Refusal::Escalate { approvers, valid_for_seconds } => {
                Verdict::escalate(approvers.clone(), *valid_for_seconds, code, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_answers() {
        let deny: Refusal = crate::parse_settings(r#"{"verdict": "deny"}"#).unwrap();
        assert!(deny.verdict("x", "m").is_deny());
        let escalate: Refusal =
            crate::parse_settings(r#"{"verdict": "escalate", "approvers": ["oncall"], "valid_for_seconds": 60}"#)
                .unwrap();
        assert!(escalate.verdict("x", "m").is_escalate());
        let bad: Refusal =
            crate::parse_settings(r#"{"verdict": "escalate", "approvers": [], "valid_for_seconds": 60}"#).unwrap();
        assert!(bad.validate("respond").unwrap_err().contains("settings.respond.approvers"));
    }
}
