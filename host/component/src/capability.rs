//! Capabilities: the host interfaces a policy may import, each granted per
//! policy by the bundle.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::contract::{CONTRACT_PACKAGE, CONTRACT_VERSIONS};

/// A host interface a policy may import, if its bundle grants it.
/// Exhaustive: it mirrors the contract's interfaces, each linked by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// `arbiter:policy/log`: log lines attributed to the policy.
    Log,
    /// `arbiter:policy/clock`: the host's (possibly trace-driven) clock.
    Clock,
    /// `arbiter:policy/budgets`: how much of a budget is spent.
    Budgets,
    /// `arbiter:policy/history`: the allowed actions of the request's run.
    History,
    /// `arbiter:policy/breakers`: circuit-breaker states.
    Breakers,
}

impl Capability {
    /// Every capability, in the order `arbiter inspect` lists them.
    pub const ALL: [Capability; 5] =
        [Capability::Log, Capability::Clock, Capability::Budgets, Capability::History, Capability::Breakers];

    /// The interface's name inside the contract package (`budgets`), as
    /// manifests spell it.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Clock => "clock",
            Capability::Budgets => "budgets",
            Capability::History => "history",
            Capability::Breakers => "breakers",
        }
    }

    /// The fully qualified interface name a component of contract
    /// `version` imports it by.
    pub fn interface(self, version: &str) -> String {
        format!("{CONTRACT_PACKAGE}/{}@{version}", self.name())
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability `{name}`; known: {}", Capability::ALL.map(Capability::name).join(", "))]
pub struct UnknownCapability {
    /// The name as given.
    pub name: String,
}

impl FromStr for Capability {
    type Err = UnknownCapability;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL.into_iter().find(|c| c.name() == s).ok_or_else(|| UnknownCapability { name: s.to_owned() })
    }
}

/// What an import of a component is, as far as the host is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportKind {
    /// The contract's type-only interface, at a served version: always
    /// satisfied.
    ContractTypes {
        /// The served version it names.
        version: String,
    },
    /// A capability interface at a served version.
    Capability {
        /// Which capability.
        capability: Capability,
        /// The served version it names.
        version: String,
    },
    /// An interface of the contract package at a version not served.
    OtherContractVersion(String),
    /// Anything else (WASI, other packages): never provided.
    Foreign,
}

/// What the import named `name` (`arbiter:policy/budgets@0.2.0`) is.
pub fn classify_import(name: &str) -> ImportKind {
    let Some(rest) = name.strip_prefix(CONTRACT_PACKAGE).and_then(|r| r.strip_prefix('/')) else {
        return ImportKind::Foreign;
    };
    let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
    if !CONTRACT_VERSIONS.contains(&version) {
        return ImportKind::OtherContractVersion(version.to_owned());
    }
    let version = version.to_owned();
    if interface == "types" {
        return ImportKind::ContractTypes { version };
    }
    match interface.parse() {
        Ok(capability) => ImportKind::Capability { capability, version },
        Err(_) => ImportKind::Foreign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_imports() {
        let v = |s: &str| s.to_owned();
        assert_eq!(classify_import("arbiter:policy/types@0.1.0"), ImportKind::ContractTypes { version: v("0.1.0") });
        assert_eq!(classify_import("arbiter:policy/types@0.2.0"), ImportKind::ContractTypes { version: v("0.2.0") });
        assert_eq!(
            classify_import("arbiter:policy/log@0.1.0"),
            ImportKind::Capability { capability: Capability::Log, version: v("0.1.0") }
        );
        assert_eq!(
            classify_import("arbiter:policy/clock@0.2.0"),
            ImportKind::Capability { capability: Capability::Clock, version: v("0.2.0") }
        );
        assert_eq!(classify_import("arbiter:policy/log@9.0.0"), ImportKind::OtherContractVersion("9.0.0".into()));
        assert_eq!(classify_import("arbiter:policy/sockets@0.1.0"), ImportKind::Foreign);
        assert_eq!(classify_import("wasi:filesystem/types@0.2.0"), ImportKind::Foreign);
    }

    #[test]
    fn parses_capability_names() {
        assert_eq!("clock".parse::<Capability>(), Ok(Capability::Clock));
        assert_eq!(
            "network".parse::<Capability>().unwrap_err().to_string(),
            "unknown capability `network`; known: log, clock, budgets, history, breakers"
        );
    }
}
