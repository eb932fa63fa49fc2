//! The contract versions this host serves and what each can express.

use arbiter_types::ActionKind;

/// The WIT package name of the contract.
pub const CONTRACT_PACKAGE: &str = "arbiter:policy";

/// Contract versions served, oldest first; the last is the current one.
pub const CONTRACT_VERSIONS: [&str; 3] = ["0.1.0", "0.2.0", "0.3.0"];

/// The current contract version (the `arbiter:policy` WIT package in
/// `wit/`); the host serves every version in [`CONTRACT_VERSIONS`].
pub const CONTRACT_VERSION: &str = CONTRACT_VERSIONS[CONTRACT_VERSIONS.len() - 1];

/// A served contract version.
/// Exhaustive on purpose: the engine links and calls each version by its
/// own bindings, so a new one must be handled everywhere it is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ContractVersion {
    /// `arbiter:policy@0.1.0`: tool calls and LLM requests.
    V0_1,
    /// `arbiter:policy@0.2.0`: adds MCP tool listings and results, and the
    /// hide-tool and redact obligations.
    V0_2,
    /// `arbiter:policy@0.3.0`: adds near-duplicate questions the host
    /// answers (`history.count-similar`).
    V0_3,
}

impl ContractVersion {
    /// Every served version, oldest first (the order of [`CONTRACT_VERSIONS`]).
    pub const ALL: [ContractVersion; 3] = [ContractVersion::V0_1, ContractVersion::V0_2, ContractVersion::V0_3];

    /// The served version spelled `version`, or `None` for one not served.
    pub fn of(version: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == version)
    }

    /// The version as the WIT package spells it (`0.2.0`).
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1 => CONTRACT_VERSIONS[0],
            ContractVersion::V0_2 => CONTRACT_VERSIONS[1],
            ContractVersion::V0_3 => CONTRACT_VERSIONS[2],
        }
    }

    /// Whether a policy of this version can be handed actions of `kind`.
    pub fn expresses(self, kind: ActionKind) -> bool {
        self >= ContractVersion::V0_2 || ActionKind::ORIGINAL.contains(&kind)
    }
}

impl std::fmt::Display for ContractVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The action kinds a component of contract `version` can be handed, or
/// `None` for a version this host does not serve.
pub fn action_kinds(version: &str) -> Option<Vec<ActionKind>> {
    let version = ContractVersion::of(version)?;
    let all = [ActionKind::ToolCall, ActionKind::LlmRequest, ActionKind::ToolListing, ActionKind::ToolResult];
    Some(all.into_iter().filter(|k| version.expresses(*k)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_version_is_served_in_order() {
        let spelled: Vec<&str> = ContractVersion::ALL.iter().map(|v| v.as_str()).collect();
        assert_eq!(spelled, CONTRACT_VERSIONS);
        assert_eq!(ContractVersion::of("0.2.0"), Some(ContractVersion::V0_2));
        assert_eq!(ContractVersion::of("0.3.0"), Some(ContractVersion::V0_3));
        assert_eq!(ContractVersion::of("0.4.0"), None);
        assert_eq!(ContractVersion::of(""), None);
    }

    #[test]
    fn from_0_2_on_mcp_answers_are_handed() {
        assert_eq!(action_kinds("0.1.0"), Some(vec![ActionKind::ToolCall, ActionKind::LlmRequest]));
        assert_eq!(action_kinds("0.2.0").map(|k| k.len()), Some(4));
        assert_eq!(action_kinds("0.3.0").map(|k| k.len()), Some(4));
        assert_eq!(action_kinds("9.0.0"), None);
    }
}
