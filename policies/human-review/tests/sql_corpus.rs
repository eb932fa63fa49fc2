//! The SQL bypass corpus: `tests/sql_corpus/<family>.json`, one test per
//! file. Each file holds the SQL rule it runs under (merged into
//! human-review's settings) and cases with the verdict they must get:
//! `allow`, or the escalation code (`needs_approval`, `sql_unparseable`).

use std::path::{Path, PathBuf};

use arbiter_sdk::testing::{RequestBuilder, policy_from_json};
use arbiter_sdk::{Decision, Policy};
use human_review::HumanReview;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Corpus {
    /// What the family tries.
    about: String,
    rule: serde_json::Map<String, Value>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    sql: String,
    expect: String,
    why: String,
    /// Overrides the rule's dialect.
    dialect: Option<String>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql_corpus")
}

/// `allow`, or the code of the escalation.
fn outcome(policy: &HumanReview, sql: &str) -> String {
    let verdict = policy.evaluate(&RequestBuilder::tool_call("warehouse.query").arg("sql", sql).build());
    match &verdict.decision {
        Decision::Allow => "allow".to_owned(),
        Decision::Escalate(_) => verdict.codes().join(","),
        Decision::Deny => format!("deny {}", verdict.codes().join(",")),
    }
}

fn run(family: &str) {
    let path = dir().join(format!("{family}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let corpus: Corpus = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!corpus.cases.is_empty(), "{family}: no cases");
    let mut wrong = Vec::new();
    for (i, case) in corpus.cases.iter().enumerate() {
        assert!(["allow", "needs_approval", "sql_unparseable"].contains(&case.expect.as_str()), "{family}[{i}]");
        let mut rule = corpus.rule.clone();
        rule.insert("tools".into(), json!(["warehouse.query"]));
        rule.insert("argument".into(), json!("sql"));
        if let Some(dialect) = &case.dialect {
            rule.insert("dialect".into(), json!(dialect));
        }
        let settings = json!({"approvers": ["oncall"], "valid_for_seconds": 60, "sql_rules": [rule]});
        let policy: HumanReview =
            policy_from_json(&settings.to_string()).unwrap_or_else(|e| panic!("{family}[{i}]: {e}"));
        let got = outcome(&policy, &case.sql);
        if got != case.expect {
            wrong.push(format!("  [{i}] {:?} ({}): expected {}, got {got}", case.sql, case.why, case.expect));
        }
    }
    let (about, total) = (&corpus.about, corpus.cases.len());
    assert!(wrong.is_empty(), "{family} ({about}): {} of {total} cases wrong:\n{}", wrong.len(), wrong.join("\n"));
}

macro_rules! corpus {
    ($($family:ident),* $(,)?) => {
        $(
            #[test]
            fn $family() {
                run(stringify!($family));
            }
        )*

        /// A file nobody lists would silently not run.
        #[test]
        fn every_file_is_a_test() {
            let mut files: Vec<String> = std::fs::read_dir(dir())
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.extension().is_some_and(|e| e == "json"))
                .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
                .collect();
            files.sort();
            let mut listed = vec![$(stringify!($family).to_owned()),*];
            listed.sort();
            assert_eq!(files, listed);
        }
    };
}

corpus!(comments, quoting, case_whitespace, stacking, cte_dml, read_only_forms, dialects, benign, keyword_mode, limits);
