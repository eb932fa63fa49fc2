//! Test cases: a request and the decision expected for it. `arbiter test`
//! reads them, and so do the per-policy component tests
//! (`policies/<name>/cases.json`) and the SDK's native test kit, so one
//! case file is held to the real engine and to the native fake host alike.
//!
//! ```json
//! {"policy": {"settings": {"deny_above": 100}},
//!  "cases": [{"name": "too long", "request": {...}, "expect": {"decision": "deny", "codes": ["context_bloat"]}}]}
//! ```
//!
//! A case's request may omit `id`: it then defaults to the case's name.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{ActionKind, Decision, Request, RequestError, VerdictKind};

/// A file of cases, decided in order on one fresh state: a case sees the
/// history, budgets and breakers the allowed cases before it left.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// How to load a lone component: its settings, capabilities and the
    /// action kinds it is scoped to. Ignored (refused by `arbiter test`)
    /// when the cases run against a bundle.
    #[serde(default)]
    pub policy: Option<LonePolicy>,
    /// The cases, in the order they are decided.
    pub cases: Vec<Case>,
}

impl CaseFile {
    /// Parses a case file's JSON; the error names the field at fault.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }
}

/// A component tested alone: what a bundle would say about it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LonePolicy {
    /// The policy's settings (the JSON a bundle's `settings` table becomes).
    #[serde(default)]
    pub settings: Map<String, Value>,
    /// The capabilities granted (`budgets`, `history`, ...).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The action kinds in scope; absent: tool calls and LLM requests.
    #[serde(default)]
    pub actions: Option<Vec<ActionKind>>,
}

/// One request and what it must be answered.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Names the case in reports; the request's id when it gives none.
    pub name: String,
    /// The decide request, as `POST /v1/decide` takes it.
    pub request: Value,
    /// The decision expected.
    pub expect: Expectation,
}

impl Case {
    /// The case's request, validated, its `id` defaulting to the case's name.
    pub fn request(&self) -> Result<Request, RequestError> {
        let mut request = self.request.clone();
        if let Value::Object(members) = &mut request
            && !members.contains_key("id")
        {
            members.insert("id".to_owned(), Value::String(self.name.clone()));
        }
        Request::from_json_value(&request)
    }
}

/// What a case expects: the decision, every reason code (in any order),
/// and the output clamp where there is one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// `allow`, `deny` or `escalate`.
    pub decision: VerdictKind,
    /// The codes of the reasons given; none when absent.
    #[serde(default)]
    pub codes: Vec<String>,
    /// The `clamp_max_output_tokens` obligation, when one is expected.
    #[serde(default)]
    pub clamp_max_output_tokens: Option<u64>,
}

impl Expectation {
    /// `None` when the decision meets the expectation, else what differs.
    pub fn mismatch(&self, decision: &Decision) -> Option<String> {
        self.mismatch_of(decision.decision, decision.codes(), decision.clamp_max_output_tokens())
    }

    /// The same for a decision given by its parts (`codes` in any order),
    /// as a native test kit has them from a single policy's verdict.
    pub fn mismatch_of(&self, decision: VerdictKind, mut codes: Vec<&str>, clamp: Option<u64>) -> Option<String> {
        let mut expected: Vec<&str> = self.codes.iter().map(String::as_str).collect();
        expected.sort_unstable();
        codes.sort_unstable();
        let shown = |clamp: Option<u64>| clamp.map(|n| format!(" clamp {n}")).unwrap_or_default();
        (decision != self.decision || codes != expected || clamp != self.clamp_max_output_tokens).then(|| {
            format!(
                "expected {} {expected:?}{}, got {} {codes:?}{}",
                self.decision.as_str(),
                shown(self.clamp_max_output_tokens),
                decision.as_str(),
                shown(clamp)
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"{"cases": [{"name": "no id", "expect": {"decision": "deny", "codes": ["b", "a"]},
        "request": {"principal": {"pipeline": "p", "agent": "a", "team": "t", "environment": "prod", "run": "r"},
                    "action": {"kind": "tool_call", "tool": "x"}}}]}"#;

    #[test]
    fn a_request_without_id_takes_the_case_name() {
        let file = CaseFile::from_json(FILE).unwrap();
        assert_eq!(file.cases[0].request().unwrap().id, "no id");
        let with_id = Case {
            request: serde_json::json!({"id": "given", "principal": file.cases[0].request["principal"],
                                        "action": {"kind": "tool_call", "tool": "x"}}),
            ..file.cases[0].clone()
        };
        assert_eq!(with_id.request().unwrap().id, "given");
    }

    #[test]
    fn codes_compare_in_any_order_and_every_part_counts() {
        let expect = &CaseFile::from_json(FILE).unwrap().cases[0].expect;
        assert_eq!(expect.mismatch_of(VerdictKind::Deny, vec!["a", "b"], None), None);
        assert!(expect.mismatch_of(VerdictKind::Allow, vec!["a", "b"], None).is_some());
        assert!(expect.mismatch_of(VerdictKind::Deny, vec!["a"], None).is_some());
        assert!(expect.mismatch_of(VerdictKind::Deny, vec!["a", "b"], Some(1)).is_some());
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = CaseFile::from_json(r#"{"cases": [], "polcy": {}}"#).unwrap_err();
        assert!(err.contains("polcy"), "{err}");
    }
}
