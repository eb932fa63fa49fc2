//! The kill switch: a person halts a pipeline, an agent, a team, a run or
//! everything, and every matching decision is denied (`halted`) before any
//! policy runs, until someone resumes it. Halts live in the state store, so
//! they hold on every replica sharing it and survive restarts of the
//! journal backend.
//!
//! A scope is written `all`, `pipeline:<name>`, `agent:<name>`,
//! `team:<name>` or `run:<name>`. The kind is one of those five words
//! exactly, and the name is compared byte for byte with the principal's, as
//! credential grants compare it: nothing is case-folded, trimmed or
//! percent-decoded, so a halt or a resume means exactly the scope it names
//! (a resume of `pipeline:Orders` never lifts `pipeline:orders`).

use std::fmt;

use arbiter_types::Principal;
use serde::{Deserialize, Serialize};

/// Longest name in a scope: a principal field's limit.
const MAX_NAME_BYTES: usize = 256;

/// What a halt stops.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HaltScope {
    All,
    Pipeline(String),
    Agent(String),
    Team(String),
    Run(String),
}

/// Why a scope cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadHaltScope {
    #[error("halt scope `{0}`: expected `all`, `pipeline:<name>`, `agent:<name>`, `team:<name>` or `run:<name>`")]
    Form(String),
    #[error("halt scope `{0}`: the name must be 1 to {MAX_NAME_BYTES} bytes without control characters")]
    Name(String),
}

impl HaltScope {
    pub fn parse(text: &str) -> Result<Self, BadHaltScope> {
        if text == "all" {
            return Ok(HaltScope::All);
        }
        let (kind, name) = text.split_once(':').ok_or_else(|| BadHaltScope::Form(text.to_owned()))?;
        let make: fn(String) -> HaltScope = match kind {
            "pipeline" => HaltScope::Pipeline,
            "agent" => HaltScope::Agent,
            "team" => HaltScope::Team,
            "run" => HaltScope::Run,
            _ => return Err(BadHaltScope::Form(text.to_owned())),
        };
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
            return Err(BadHaltScope::Name(text.to_owned()));
        }
        Ok(make(name.to_owned()))
    }

    /// Whether a request of `principal` is stopped by this scope.
    pub fn covers(&self, principal: &Principal) -> bool {
        match self {
            HaltScope::All => true,
            HaltScope::Pipeline(name) => *name == principal.pipeline,
            HaltScope::Agent(name) => *name == principal.agent,
            HaltScope::Team(name) => *name == principal.team,
            HaltScope::Run(name) => *name == principal.run,
        }
    }
}

impl fmt::Display for HaltScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaltScope::All => f.write_str("all"),
            HaltScope::Pipeline(name) => write!(f, "pipeline:{name}"),
            HaltScope::Agent(name) => write!(f, "agent:{name}"),
            HaltScope::Team(name) => write!(f, "team:{name}"),
            HaltScope::Run(name) => write!(f, "run:{name}"),
        }
    }
}

impl TryFrom<String> for HaltScope {
    type Error = BadHaltScope;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        HaltScope::parse(&text)
    }
}

impl From<HaltScope> for String {
    fn from(scope: HaltScope) -> Self {
        scope.to_string()
    }
}

/// A halt in force: what it stops, why, who set it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Halt {
    pub scope: HaltScope,
    pub reason: String,
    pub by: String,
    pub at_ms: i64,
}

/// The halts of one store, by scope.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Halts(std::collections::BTreeMap<HaltScope, Halt>);

impl Halts {
    /// Sets `halt`, replacing one on the same scope.
    pub(crate) fn set(&mut self, halt: &Halt) {
        self.0.insert(halt.scope.clone(), halt.clone());
    }

    /// Lifts the halt on `scope`; `Err` when there was none.
    pub(crate) fn lift(&mut self, scope: &HaltScope) -> Result<(), NotHalted> {
        self.0.remove(scope).map(|_| ()).ok_or(NotHalted)
    }

    pub(crate) fn all(&self) -> Vec<Halt> {
        self.0.values().cloned().collect()
    }
}

/// A resume of a scope that was not halted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotHalted;

/// The first of `halts` that stops `principal`, if any.
pub fn halting<'a>(halts: &'a [Halt], principal: &Principal) -> Option<&'a Halt> {
    halts.iter().find(|h| h.scope.covers(principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        serde_json::from_value(serde_json::json!({
            "pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
            "environment": "prod", "run": "r1"}))
        .unwrap()
    }

    #[test]
    fn scopes_read_back_as_written_and_cover_exactly_their_principals() {
        for text in ["all", "pipeline:orders_daily", "agent:monitor", "team:data-platform", "run:r1"] {
            let scope = HaltScope::parse(text).unwrap();
            assert_eq!(scope.to_string(), text);
            assert!(scope.covers(&principal()), "{text}");
        }
        for other in ["pipeline:Orders_Daily", "pipeline:orders%5Fdaily", "agent:monitor ", "team:data", "run:r"] {
            assert!(!HaltScope::parse(other).unwrap().covers(&principal()), "{other}");
        }
        // A name may hold a colon: only the first one separates.
        assert_eq!(HaltScope::parse("run:2026-11-26T02:00Z").unwrap(), HaltScope::Run("2026-11-26T02:00Z".into()));
    }

    #[test]
    fn odd_kinds_and_names_are_refused_not_guessed() {
        for bad in [
            "",
            "ALL",
            "All",
            "Pipeline:orders_daily",
            "PIPELINE:x",
            " pipeline:x",
            "pipelines:x",
            "pipeline",
            "pipeline:",
            "model:gpt",
            "pipeline:a\u{0}b",
            "team:line\nbreak",
        ] {
            assert!(HaltScope::parse(bad).is_err(), "{bad:?}");
        }
        assert!(HaltScope::parse(&format!("agent:{}", "a".repeat(MAX_NAME_BYTES + 1))).is_err());
    }
}
