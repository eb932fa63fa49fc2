//! Contract 0.1.0 components keep loading and deciding beside 0.2.0 ones:
//! `tests/fixtures/contract-0.1.0/` holds a tool-scope component as
//! released under 0.1.0 (built from main before 0.2.0 existed).

use std::path::PathBuf;

use arbiter_engine::{Bundle, ComponentInfo, Manifest};
use arbiter_tests::{reference_component, root, scratch_dir, tool_call};
use arbiter_types::{Obligation, PolicyOutcome, Request, VerdictKind};
use serde_json::json;

fn old_tool_scope() -> PathBuf {
    root().join("tests/fixtures/contract-0.1.0/tool-scope-0.2.0.wasm")
}

/// A bundle of the released 0.1.0 tool-scope and current 0.2.0 policies,
/// each entry `(component, scope actions)`.
fn mixed_bundle(test: &str, old_scope: &str) -> Result<Bundle, String> {
    // One directory a test: tests run in parallel.
    let dir = scratch_dir().join("contract-versions").join(test);
    std::fs::create_dir_all(&dir).unwrap();
    let entry = |path: &PathBuf, scope: &str, settings: &str| {
        let bytes = std::fs::read(path).unwrap();
        let info = ComponentInfo::read(&bytes).unwrap();
        let meta = info.metadata.unwrap();
        format!(
            "[[policies]]\nname = \"{}\"\nversion = \"{}\"\ncomponent = \"{}\"\nsha256 = \"{}\"\n[policies.scope]\nactions = {scope}\n{settings}\n",
            meta.name,
            meta.version,
            path.display(),
            info.digest.trim_start_matches("sha256:"),
        )
    };
    let rules =
        "[[policies.settings.rules]]\npipeline = \"orders_daily\"\nagent = \"monitor\"\ntools = [\"warehouse.query\"]";
    let manifest = format!(
        "[bundle]\nname = \"mixed\"\nversion = \"1.0.0\"\ncontract = \"0.2.0\"\n\n{}{}",
        entry(&old_tool_scope(), old_scope, rules),
        entry(
            &reference_component("human-review"),
            "[\"tool_call\"]",
            "[policies.settings]\napprovers = [\"oncall\"]\nvalid_for_seconds = 600\nirreversible_tools = [\"warehouse.drop_table\"]"
        ),
    );
    let path = dir.join("bundle.toml");
    std::fs::write(&path, manifest).unwrap();
    Bundle::load(&arbiter_tests::engine(), &path).map_err(|e| e.to_string())
}

#[test]
fn a_0_1_0_component_decides_beside_0_2_0_ones_in_one_decision() {
    let bundle = mixed_bundle("one-decision", "[\"tool_call\"]").unwrap_or_else(|e| panic!("{e}"));
    let old = ComponentInfo::read(&std::fs::read(old_tool_scope()).unwrap()).unwrap();
    assert_eq!(old.contract_version.as_deref(), Some("0.1.0"));
    let new = ComponentInfo::read(&std::fs::read(reference_component("human-review")).unwrap()).unwrap();
    assert_eq!(new.contract_version.as_deref(), Some("0.2.0"));
    let cases =
        [("warehouse.query", VerdictKind::Allow, vec![]), ("shell.exec", VerdictKind::Deny, vec!["tool_not_allowed"])];
    for (tool, expected, codes) in cases {
        let decision = arbiter_tests::decide(&bundle, &tool_call("r", tool, json!({"sql": "select 1"})), 0);
        assert_eq!((decision.decision, decision.codes()), (expected, codes), "{tool}");
        assert_eq!(decision.policies.len(), 2, "both versions evaluated");
        for policy in &decision.policies {
            assert!(matches!(policy.outcome, PolicyOutcome::Verdict(_)), "{}: {:?}", policy.name, policy.outcome);
        }
    }
}

#[test]
fn a_0_1_0_component_cannot_be_scoped_to_what_its_contract_lacks() {
    let err = mixed_bundle("scoped", "[\"tool_call\", \"tool_listing\"]").unwrap_err();
    assert!(err.contains("scope.actions names tool_listing, which contract 0.1.0 cannot hand it"), "{err}");
}

#[test]
fn a_bundle_of_an_older_contract_refuses_a_newer_component() {
    let dir = scratch_dir().join("contract-versions-old");
    std::fs::create_dir_all(&dir).unwrap();
    let path = reference_component("model-pin");
    let bytes = std::fs::read(&path).unwrap();
    let info = ComponentInfo::read(&bytes).unwrap();
    let manifest = format!(
        "[bundle]\nname = \"old\"\nversion = \"1.0.0\"\ncontract = \"0.1.0\"\n\n[[policies]]\nname = \"model-pin\"\nversion = \"{}\"\ncomponent = \"{}\"\nsha256 = \"{}\"\n",
        info.metadata.unwrap().version,
        path.display(),
        info.digest.trim_start_matches("sha256:")
    );
    std::fs::write(dir.join("bundle.toml"), manifest).unwrap();
    let err = Bundle::load(&arbiter_tests::engine(), &dir.join("bundle.toml")).unwrap_err().to_string();
    assert!(err.contains("targets contract 0.2.0, newer than the bundle's contract 0.1.0"), "{err}");
    assert!(Manifest::from_file(&dir.join("bundle.toml")).is_ok(), "the manifest itself is fine");
}

#[test]
fn a_listing_is_decided_only_by_policies_that_ask_for_listings() {
    let bundle = mixed_bundle("listing", "[\"tool_call\"]").unwrap();
    let listing = Request::from_json_value(&json!({
        "id": "l", "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "t", "environment": "prod", "run": "1"},
        "action": {"kind": "tool_listing", "server": "warehouse", "tools": [
            {"name": "warehouse.query", "inputSchema": {"type": "object"}},
            {"name": "shell.exec", "inputSchema": {"type": "object"}}]}
    }))
    .unwrap();
    let decision = arbiter_tests::decide(&bundle, &listing, 0);
    assert_eq!(decision.decision, VerdictKind::Allow);
    assert!(decision.policies.is_empty(), "no policy of this bundle asked for listings: {:?}", decision.policies);
    assert!(!decision.obligations.iter().any(|o| matches!(o, Obligation::HideTool(_))));
}

#[test]
fn tool_scope_hides_from_a_listing_exactly_what_it_would_deny_as_a_call() {
    let engine = arbiter_tests::engine();
    let manifest_dir = scratch_dir().join("contract-versions-listing");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let path = reference_component("tool-scope");
    let bytes = std::fs::read(&path).unwrap();
    let info = ComponentInfo::read(&bytes).unwrap();
    let manifest = format!(
        "[bundle]\nname = \"listing\"\nversion = \"1.0.0\"\n\n[[policies]]\nname = \"tool-scope\"\nversion = \"{}\"\ncomponent = \"{}\"\nsha256 = \"{}\"\n[policies.scope]\nactions = [\"tool_call\", \"tool_listing\"]\n[policies.settings]\nrules = [{{ pipeline = \"orders_daily\", agent = \"monitor\", tools = [\"warehouse.*\"] }}]\n",
        info.metadata.unwrap().version,
        path.display(),
        info.digest.trim_start_matches("sha256:")
    );
    std::fs::write(manifest_dir.join("bundle.toml"), manifest).unwrap();
    let bundle = Bundle::load(&engine, &manifest_dir.join("bundle.toml")).unwrap_or_else(|e| panic!("{e}"));
    let tools = ["warehouse.query", "warehouse.drop_table", "shell.exec", "docs.search"];
    let listing = Request::from_json_value(&json!({
        "id": "l", "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "t", "environment": "prod", "run": "1"},
        "action": {"kind": "tool_listing", "server": "warehouse",
                   "tools": tools.iter().map(|t| json!({"name": t, "inputSchema": {"type": "object"}})).collect::<Vec<_>>()}
    }))
    .unwrap();
    let decision = arbiter_tests::decide(&bundle, &listing, 0);
    assert_eq!(decision.decision, VerdictKind::Allow);
    let mut hidden: Vec<&str> = decision
        .obligations
        .iter()
        .filter_map(|o| match o {
            Obligation::HideTool(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    hidden.sort_unstable();
    for tool in tools {
        let call = arbiter_tests::decide(&bundle, &tool_call("c", tool, json!({})), 0);
        assert_eq!(
            hidden.contains(&tool),
            call.decision == VerdictKind::Deny,
            "{tool}: the listing and the call disagree"
        );
    }
    assert_eq!(hidden, ["docs.search", "shell.exec"]);
}
