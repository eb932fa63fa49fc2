//! The SQL bypass corpus (`policies/human-review/tests/sql_corpus/`) through
//! the built human-review component: natively the cases only check the
//! policy's logic; in the sandbox the parser also runs on the guest's fixed
//! shadow stack, within fuel, and its verdicts cross the contract. Every case
//! must give the verdict its file expects, never a `policy_fault`.

use std::collections::BTreeMap;

use arbiter_engine::{Bundle, FailMode};
use arbiter_tests::{decide, engine, reference_component, root, single_policy_bundle, tool_call};
use arbiter_types::VerdictKind;
use serde_json::{Value, json};

#[test]
fn every_corpus_case_gets_its_verdict_in_the_sandbox() {
    let engine = engine();
    let component = reference_component("human-review");
    // One bundle per distinct rule, loaded once.
    let mut bundles: BTreeMap<String, Bundle> = BTreeMap::new();
    let (mut checked, mut wrong) = (0, Vec::new());
    let dir = root().join("policies/human-review/tests/sql_corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|entry| entry.unwrap().path()).collect();
    files.sort();
    for path in files {
        let corpus: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for case in corpus["cases"].as_array().unwrap() {
            let mut rule = corpus["rule"].clone();
            rule["tools"] = json!(["warehouse.query"]);
            rule["argument"] = json!("sql");
            if let Some(dialect) = case.get("dialect") {
                rule["dialect"] = dialect.clone();
            }
            let bundle = bundles.entry(rule.to_string()).or_insert_with(|| {
                let settings = json!({"approvers": ["oncall"], "valid_for_seconds": 60, "sql_rules": [rule]});
                single_policy_bundle(&engine, &component, settings, Vec::new(), FailMode::Closed)
                    .unwrap_or_else(|e| panic!("{e}"))
            });
            let sql = case["sql"].as_str().unwrap();
            let decision =
                decide(bundle, &tool_call(&format!("c{checked}"), "warehouse.query", json!({"sql": sql})), 0);
            let got = match decision.decision {
                VerdictKind::Allow => "allow".to_owned(),
                _ => format!("{} {}", decision.decision.as_str(), decision.codes().join(",")),
            };
            let expected = match case["expect"].as_str().unwrap() {
                "allow" => "allow".to_owned(),
                code => format!("escalate {code}"),
            };
            if got != expected {
                let file = path.file_stem().unwrap().to_string_lossy();
                let sql: String = sql.chars().take(120).collect();
                wrong.push(format!("{file}: {sql:?}: expected {expected}, got {got}"));
            }
            checked += 1;
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} cases wrong:\n{}", wrong.len(), wrong.join("\n"));
    assert!(checked >= 200, "only {checked} cases");
}
