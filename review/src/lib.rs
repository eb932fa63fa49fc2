//! The review description a policy declares with its code, and the SDK
//! embeds in the component's `arbiter-review` custom section (the TOML text
//! of the policy crate's `review.toml`).
//!
//! It says what each setting means to a reviewer, so `arbiter lint` can
//! tell a tightening from a loosening without a host table that drifts from
//! the policies, and what the policy guards, so `arbiter readiness` scores
//! what policies declare they do instead of what they are called:
//!
//! ```toml
//! [guards]
//! # Counts only while one of these settings holds something.
//! "guardrail bypass" = ["/rules/*/tools"]
//!
//! [settings]
//! "/rules" = "allow-list"
//! "/rules/*/tools" = "allow-list"
//! "/rules/*/agent" = "redesign"
//! "/max_bytes" = { kind = "lower-is-stricter", default = 65536 }
//! ```
//!
//! Paths are JSON-pointer-like (`/a/b`), `*` standing for any map key or
//! list index. The host and the SDK's test kit both read the format through
//! this crate, so neither keeps its own copy.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};

/// The custom section that carries a policy's review description.
pub const SECTION: &str = "arbiter-review";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("the review description is not valid TOML of the expected shape: {0}")]
    Syntax(String),
    #[error("`{path}`: {problem}")]
    Path { path: String, problem: String },
    #[error("{section} names `{path}`, which [settings] does not describe")]
    Undescribed { section: &'static str, path: String },
}

/// A settings path: `/` then segments separated by `/`; a `*` segment is
/// any map key or list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern(Vec<String>);

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, ReviewError> {
        let problem = |problem: &str| ReviewError::Path { path: text.to_owned(), problem: problem.to_owned() };
        let rest = text.strip_prefix('/').ok_or_else(|| problem("a path starts with `/`"))?;
        let segments: Vec<String> = rest.split('/').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(problem("empty segment"));
        }
        Ok(Pattern(segments))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// Whether a concrete path (map keys and list indices) is this pattern.
    pub fn matches(&self, path: &[String]) -> bool {
        self.0.len() == path.len() && self.0.iter().zip(path).all(|(p, s)| p == "*" || p == s)
    }

    /// Whether `prefix` is this pattern or one of its ancestors.
    pub fn starts_with(&self, prefix: &Pattern) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// The values at this pattern in a settings document.
    pub fn select<'v>(&self, root: &'v toml::Value) -> Vec<&'v toml::Value> {
        let mut found = vec![root];
        for segment in &self.0 {
            found = found
                .into_iter()
                .flat_map(|value| -> Vec<&'v toml::Value> {
                    match (value, segment.as_str()) {
                        (toml::Value::Table(t), "*") => t.values().collect(),
                        (toml::Value::Array(items), "*") => items.iter().collect(),
                        (toml::Value::Table(t), key) => t.get(key).into_iter().collect(),
                        (toml::Value::Array(items), index) => {
                            index.parse::<usize>().ok().and_then(|i| items.get(i)).into_iter().collect()
                        }
                        _ => Vec::new(),
                    }
                })
                .collect();
        }
        found
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&pointer(&self.0))
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A concrete path as a JSON pointer (`~` and `/` in keys escaped).
pub fn pointer(path: &[String]) -> String {
    path.iter().map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect()
}

/// What a setting is, and so what changing it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Entries grant (allowed tools, pinned models, approvers): an added
    /// entry loosens, a removed one tightens. Absent is empty.
    AllowList,
    /// Entries restrict (gated tools, statement kinds, markers): a removed
    /// entry loosens, an added one tightens. Absent is empty.
    DenyList,
    /// A limit where a lower number is stricter. Absent (without a
    /// default) is no limit.
    LowerIsStricter,
    /// A limit where a higher number is stricter.
    HigherIsStricter,
    /// A detector: `true`, or present, is on; turning it off loosens.
    Switch,
    /// Fail mode, combination or scope (which requests, which principals,
    /// deny or escalate, how keys are formed): any change is MAJOR.
    Redesign,
    /// Wording only (messages): a change is a PATCH.
    Text,
}

impl Kind {
    pub fn describe(self) -> &'static str {
        match self {
            Kind::AllowList => "allow-list",
            Kind::DenyList => "deny-list",
            Kind::LowerIsStricter => "limit, lower is stricter",
            Kind::HigherIsStricter => "limit, higher is stricter",
            Kind::Switch => "detector switch",
            Kind::Redesign => "redesign (fail mode, combination or scope)",
            Kind::Text => "free text",
        }
    }

    /// Kinds that judge a whole subtree: what lies below needs no
    /// description of its own.
    pub fn covers_subtree(self) -> bool {
        matches!(self, Kind::Redesign | Kind::Text)
    }
}

/// One described setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub kind: Kind,
    /// What the policy uses when the setting is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<toml::Value>,
}

/// What a policy can declare it guards: the failure modes of the readiness
/// guide (its "Failure modes to inventory") and the checklist's controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Guard {
    #[serde(rename = "error propagation")]
    ErrorPropagation,
    #[serde(rename = "retrieval thrash")]
    RetrievalThrash,
    #[serde(rename = "tool storm")]
    ToolStorm,
    #[serde(rename = "context bloat")]
    ContextBloat,
    #[serde(rename = "guardrail bypass")]
    GuardrailBypass,
    /// Halting on failure rates (the checklist's circuit breakers).
    #[serde(rename = "failure-rate halt")]
    FailureRateHalt,
    /// Approval before irreversible actions (human review gates).
    #[serde(rename = "irreversible actions")]
    IrreversibleActions,
    #[serde(rename = "data residency")]
    DataResidency,
    /// Dev, staging and prod kept apart (environment strategy).
    #[serde(rename = "environment isolation")]
    EnvironmentIsolation,
    /// Dated model snapshots, no floating aliases (version control).
    #[serde(rename = "model pinning")]
    ModelPinning,
}

impl Guard {
    /// The guide's five failure modes, in its order.
    pub const FAILURE_MODES: [Guard; 5] = [
        Guard::ErrorPropagation,
        Guard::RetrievalThrash,
        Guard::ToolStorm,
        Guard::ContextBloat,
        Guard::GuardrailBypass,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Guard::ErrorPropagation => "error propagation",
            Guard::RetrievalThrash => "retrieval thrash",
            Guard::ToolStorm => "tool storm",
            Guard::ContextBloat => "context bloat",
            Guard::GuardrailBypass => "guardrail bypass",
            Guard::FailureRateHalt => "failure-rate halt",
            Guard::IrreversibleActions => "irreversible actions",
            Guard::DataResidency => "data residency",
            Guard::EnvironmentIsolation => "environment isolation",
            Guard::ModelPinning => "model pinning",
        }
    }
}

/// Where a budget policy's settings say whose budget and over which
/// period. Scope values are `run`, `pipeline`, `agent` or `team`; a window
/// of `run` is not a time period, any other is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Budgets {
    pub scopes: Pattern,
    pub windows: Pattern,
}

/// A policy's review description.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    /// Each guard with the settings that must hold something (a non-empty
    /// list or table, `true`, a number, a string) for it to count; an empty
    /// list: it always counts.
    pub guards: BTreeMap<Guard, Vec<Pattern>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budgets: Option<Budgets>,
    /// Settings that name who approves the policy's escalations.
    pub approvers: Vec<Pattern>,
    pub settings: BTreeMap<Pattern, Setting>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReview {
    #[serde(default)]
    guards: BTreeMap<Guard, Vec<String>>,
    #[serde(default)]
    budgets: Option<RawBudgets>,
    #[serde(default)]
    approvers: Vec<String>,
    settings: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    scopes: String,
    windows: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullSetting {
    kind: Kind,
    #[serde(default)]
    default: Option<toml::Value>,
}

/// `"<kind>"` or `{ kind = "<kind>", default = <value> }`.
fn parse_setting(path: &str, value: toml::Value) -> Result<Setting, ReviewError> {
    let problem = |e: toml::de::Error| ReviewError::Path {
        path: path.to_owned(),
        problem: format!(
            "{} (kinds: allow-list, deny-list, lower-is-stricter, higher-is-stricter, switch, redesign, text)",
            e.message()
        ),
    };
    match value {
        toml::Value::String(kind) => {
            let kind = Kind::deserialize(toml::Value::String(kind).into_deserializer()).map_err(problem)?;
            Ok(Setting { kind, default: None })
        }
        other => {
            let full = FullSetting::deserialize(other.into_deserializer()).map_err(problem)?;
            Ok(Setting { kind: full.kind, default: full.default })
        }
    }
}

impl Review {
    /// Parses and checks a description: every path well-formed, and every
    /// path that `guards`, `budgets` and `approvers` name described in
    /// `[settings]`.
    pub fn parse(text: &str) -> Result<Self, ReviewError> {
        let raw: RawReview = toml::from_str(text).map_err(|e| ReviewError::Syntax(e.message().to_owned()))?;
        let mut settings = BTreeMap::new();
        for (path, setting) in raw.settings {
            let pattern = Pattern::parse(&path)?;
            settings.insert(pattern, parse_setting(&path, setting)?);
        }
        let described = |section: &'static str, path: &str| -> Result<Pattern, ReviewError> {
            let pattern = Pattern::parse(path)?;
            if settings.contains_key(&pattern) {
                Ok(pattern)
            } else {
                Err(ReviewError::Undescribed { section, path: path.to_owned() })
            }
        };
        let guards = raw
            .guards
            .into_iter()
            .map(|(guard, paths)| {
                let paths = paths.iter().map(|p| described("guards", p)).collect::<Result<_, _>>()?;
                Ok((guard, paths))
            })
            .collect::<Result<_, ReviewError>>()?;
        let budgets = match raw.budgets {
            Some(b) => {
                Some(Budgets { scopes: described("budgets", &b.scopes)?, windows: described("budgets", &b.windows)? })
            }
            None => None,
        };
        let approvers = raw.approvers.iter().map(|p| described("approvers", p)).collect::<Result<_, _>>()?;
        Ok(Review { guards, budgets, approvers, settings })
    }

    /// The description of a concrete path: the matching pattern with the
    /// most literal segments.
    pub fn setting(&self, path: &[String]) -> Option<(&Pattern, &Setting)> {
        self.settings
            .iter()
            .filter(|(pattern, _)| pattern.matches(path))
            .max_by_key(|(pattern, _)| pattern.segments().iter().filter(|s| *s != "*").count())
    }
}

/// Whether a setting's value holds something: a non-empty list or table,
/// `true`, any number or non-empty string.
pub fn holds_something(value: &toml::Value) -> bool {
    match value {
        toml::Value::Array(items) => !items.is_empty(),
        toml::Value::Table(t) => !t.is_empty(),
        toml::Value::Boolean(b) => *b,
        toml::Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOOL_SCOPE: &str = r#"
        [guards]
        "guardrail bypass" = ["/rules/*/tools"]
        [settings]
        "/rules" = "allow-list"
        "/rules/*/tools" = "allow-list"
        "/rules/*/agent" = "redesign"
        "/rules/0/agent" = "text"
        "/max" = { kind = "lower-is-stricter", default = 3 }
    "#;

    fn path(p: &str) -> Vec<String> {
        Pattern::parse(p).unwrap().segments().to_vec()
    }

    #[test]
    fn parses_kinds_defaults_and_guards() {
        let review = Review::parse(TOOL_SCOPE).unwrap();
        assert_eq!(review.guards[&Guard::GuardrailBypass], [Pattern::parse("/rules/*/tools").unwrap()]);
        let (_, max) = review.setting(&path("/max")).unwrap();
        assert_eq!((max.kind, max.default.clone()), (Kind::LowerIsStricter, Some(toml::Value::Integer(3))));
        assert_eq!(review.setting(&path("/rules/7/tools")).unwrap().1.kind, Kind::AllowList);
        assert_eq!(review.setting(&path("/rules/0/agent")).unwrap().1.kind, Kind::Text, "the literal path wins");
        assert!(review.setting(&path("/rules/0/pipeline")).is_none());
    }

    #[test]
    fn refuses_what_it_cannot_mean() {
        let err = Review::parse("[settings]\n\"/a\" = \"allow\"").unwrap_err();
        assert!(err.to_string().starts_with("`/a`: unknown variant `allow`"), "{err}");
        let err = Review::parse("[settings]\n\"/a\" = { kind = \"text\", dflt = 1 }").unwrap_err();
        assert!(err.to_string().contains("unknown field `dflt`"), "{err}");
        let err = Review::parse("settings = 3").unwrap_err();
        assert!(matches!(err, ReviewError::Syntax(_)), "{err}");
        let err = Review::parse("[settings]\n\"a\" = \"text\"").unwrap_err();
        assert_eq!(err.to_string(), "`a`: a path starts with `/`");
        let err = Review::parse("[settings]\n\"/a//b\" = \"text\"").unwrap_err();
        assert_eq!(err.to_string(), "`/a//b`: empty segment");
        let err = Review::parse("[guards]\n\"tool storm\" = [\"/b\"]\n[settings]\n\"/a\" = \"text\"").unwrap_err();
        assert_eq!(err.to_string(), "guards names `/b`, which [settings] does not describe");
        let err = Review::parse("[guards]\n\"storms\" = []\n[settings]\n\"/a\" = \"text\"").unwrap_err();
        assert!(err.to_string().contains("unknown variant `storms`"), "{err}");
        let err = Review::parse("approvers = [\"/who\"]\n[settings]\n\"/a\" = \"text\"").unwrap_err();
        assert_eq!(err, ReviewError::Undescribed { section: "approvers", path: "/who".into() });
    }

    #[test]
    fn selects_values_through_wildcards() {
        let settings: toml::Value = toml::from_str(
            r#"
            [[rules]]
            tools = ["a", "b"]
            [[rules]]
            tools = ["c"]
            [prices.m]
            input = 1
            "#,
        )
        .unwrap();
        let tools: Vec<_> = Pattern::parse("/rules/*/tools").unwrap().select(&settings);
        assert_eq!(tools.len(), 2);
        assert_eq!(Pattern::parse("/rules/1/tools").unwrap().select(&settings)[0].as_array().unwrap().len(), 1);
        assert_eq!(Pattern::parse("/prices/*/input").unwrap().select(&settings), [&toml::Value::Integer(1)]);
        assert!(Pattern::parse("/rules/9/tools").unwrap().select(&settings).is_empty());
        assert_eq!(pointer(&["a/b".into(), "c~".into()]), "/a~1b/c~0");
    }
}
