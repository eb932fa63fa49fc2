//! Older contracts' components keep loading and deciding beside current
//! ones: `tests/fixtures/contract-0.1.0/` holds a tool-scope component as
//! released under 0.1.0 (built from main before 0.2.0 existed), and
//! `tests/fixtures/contract-0.2.0/` the retrieval-thrash that copied a
//! run's history into the sandbox (built from main before 0.3.0).

use std::path::{Path, PathBuf};

use arbiter_engine::{Bundle, ComponentInfo, Manifest};
use arbiter_tests::{reference_component, root, scratch_dir, tool_call};
use arbiter_types::{PolicyOutcome, Request, VerdictKind};
use serde_json::json;

const MONITOR_RULES: &str = "[[policies.settings.rules]]\npipeline = \"orders_daily\"\nagent = \"monitor\"\n";
const HUMAN_REVIEW: &str = "[policies.settings]\napprovers = [\"oncall\"]\nvalid_for_seconds = 600\nirreversible_tools = [\"warehouse.drop_table\"]\n";

fn old_tool_scope() -> PathBuf {
    root().join("tests/fixtures/contract-0.1.0/tool-scope-0.2.0.wasm")
}

fn old_retrieval_thrash() -> PathBuf {
    root().join("tests/fixtures/contract-0.2.0/retrieval-thrash-0.2.1.wasm")
}

/// A manifest entry for `component` (name, version and digest as it
/// embeds them), scoped to `actions`, with `settings` (TOML).
fn entry(component: &Path, actions: &str, settings: &str) -> String {
    let info = ComponentInfo::read(&std::fs::read(component).unwrap()).unwrap();
    let meta = info.metadata.unwrap();
    format!(
        "[[policies]]\nname = \"{}\"\nversion = \"{}\"\ncomponent = \"{}\"\nsha256 = \"{}\"\n[policies.scope]\nactions = {actions}\n{settings}\n",
        meta.name,
        meta.version,
        component.display(),
        info.digest.trim_start_matches("sha256:"),
    )
}

/// Writes a bundle of `entries` under contract `contract`, in a directory
/// of the test's own (tests run in parallel), and loads it.
fn bundle(test: &str, contract: &str, entries: &[String]) -> Result<Bundle, String> {
    let dir = scratch_dir().join("contract-versions").join(test);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bundle.toml");
    let manifest =
        format!("[bundle]\nname = \"{test}\"\nversion = \"1.0.0\"\ncontract = \"{contract}\"\n\n{}", entries.concat());
    std::fs::write(&path, manifest).unwrap();
    assert!(Manifest::from_file(&path).is_ok(), "the manifest itself is well-formed");
    Bundle::load(&arbiter_tests::engine(), &path).map_err(|e| e.to_string())
}

/// The released 0.1.0 tool-scope (scoped to `old_scope`) beside the
/// current human-review.
fn mixed_bundle(test: &str, old_scope: &str) -> Result<Bundle, String> {
    let entries = [
        entry(&old_tool_scope(), old_scope, &format!("{MONITOR_RULES}tools = [\"warehouse.query\"]\n")),
        entry(&reference_component("human-review"), "[\"tool_call\"]", HUMAN_REVIEW),
    ];
    bundle(test, "0.3.0", &entries)
}

fn listing(tools: &[&str]) -> Request {
    let tools: Vec<_> = tools.iter().map(|t| json!({"name": t, "inputSchema": {"type": "object"}})).collect();
    Request::from_json_value(&json!({
        "id": "l", "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "t", "environment": "prod", "run": "1"},
        "action": {"kind": "tool_listing", "server": "warehouse", "tools": tools}
    }))
    .unwrap()
}

#[test]
fn a_0_1_0_component_decides_beside_current_ones_in_one_decision() {
    let bundle = mixed_bundle("one-decision", "[\"tool_call\"]").unwrap_or_else(|e| panic!("{e}"));
    let contract_of = |path: &Path| ComponentInfo::read(&std::fs::read(path).unwrap()).unwrap().contract_version;
    assert_eq!(contract_of(&old_tool_scope()).as_deref(), Some("0.1.0"));
    assert_eq!(contract_of(&reference_component("human-review")).as_deref(), Some("0.3.0"));
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
    let entries = [entry(&reference_component("model-pin"), "[\"llm_request\"]", "")];
    let err = bundle("older-contract", "0.1.0", &entries).unwrap_err();
    assert!(err.contains("targets contract 0.3.0, newer than the bundle's contract 0.1.0"), "{err}");
}

#[test]
fn a_listing_is_decided_only_by_policies_that_ask_for_listings() {
    let bundle = mixed_bundle("listing", "[\"tool_call\"]").unwrap();
    let decision = arbiter_tests::decide(&bundle, &listing(&["warehouse.query", "shell.exec"]), 0);
    assert_eq!(decision.decision, VerdictKind::Allow);
    assert!(decision.policies.is_empty(), "no policy of this bundle asked for listings: {:?}", decision.policies);
    assert!(decision.hidden_tools().is_empty());
}

#[test]
fn tool_scope_hides_from_a_listing_exactly_what_it_would_deny_as_a_call() {
    let settings = format!("{MONITOR_RULES}tools = [\"warehouse.*\"]\n");
    let entries = [entry(&reference_component("tool-scope"), "[\"tool_call\", \"tool_listing\"]", &settings)];
    let bundle = bundle("hides", "0.3.0", &entries).unwrap_or_else(|e| panic!("{e}"));
    let tools = ["warehouse.query", "warehouse.drop_table", "shell.exec", "docs.search"];
    let decision = arbiter_tests::decide(&bundle, &listing(&tools), 0);
    assert_eq!(decision.decision, VerdictKind::Allow);
    let mut hidden = decision.hidden_tools();
    hidden.sort_unstable();
    for tool in tools {
        let call = arbiter_tests::decide(&bundle, &tool_call("c", tool, json!({})), 0);
        let denied = call.decision == VerdictKind::Deny;
        assert_eq!(hidden.contains(&tool), denied, "{tool}: the listing and the call disagree");
    }
    assert_eq!(hidden, ["docs.search", "shell.exec"]);
}

/// The same searches through the 0.2.0 retrieval-thrash (every earlier
/// query handed over and compared in the sandbox) and its 0.3.0 successor
/// (the host answers `count-similar`), each in a bundle of its own with its
/// own state: the same verdict every time.
#[test]
fn retrieval_thrash_decides_alike_whether_it_compares_or_the_host_does() {
    use std::sync::Arc;

    use arbiter_engine::Decider;
    use arbiter_state::{InMemoryStore, StoreConfig};

    let settings = "[policies.settings]\ntools = [\"docs.*\"]\nsimilarity = 0.6\nmax_near_duplicates = 2\n";
    let with_history = |component: &Path| {
        let entry = entry(component, "[\"tool_call\"]", settings);
        entry.replace("[policies.scope]", "capabilities = [\"history\"]\n[policies.scope]")
    };
    let contract_of = |path: &Path| ComponentInfo::read(&std::fs::read(path).unwrap()).unwrap().contract_version;
    assert_eq!(contract_of(&old_retrieval_thrash()).as_deref(), Some("0.2.0"));
    assert_eq!(contract_of(&reference_component("retrieval-thrash")).as_deref(), Some("0.3.0"));
    let bundles = [
        bundle("thrash-old", "0.3.0", &[with_history(&old_retrieval_thrash())]),
        bundle("thrash-new", "0.3.0", &[with_history(&reference_component("retrieval-thrash"))]),
    ]
    .map(|b| {
        Decider::new(
            Arc::new(b.unwrap_or_else(|e| panic!("{e}"))),
            Arc::new(InMemoryStore::in_memory(StoreConfig::default())),
        )
    });
    let searches = [
        "orders daily schema change",
        "orders_daily schema changed",
        "page the oncall",
        "ORDERS daily: schema change",
        "orders daily schema change column",
        "",
        "",
        "",
        "schema change orders daily",
    ];
    let mut refused = 0;
    for (n, query) in searches.iter().enumerate() {
        let request = tool_call(&format!("s{n}"), "docs.search", json!({ "query": query }));
        let [old, new] = bundles.each_ref().map(|d| d.decide(&request, n as i64 * 1_000));
        assert_eq!((old.decision, old.codes()), (new.decision, new.codes()), "search {n}: `{query}`");
        refused += usize::from(new.decision == VerdictKind::Deny);
    }
    assert_eq!(refused, 3, "`ORDERS daily: …`, the third empty query and `schema change orders daily` are refused");
}

/// The version a WIT file's `package arbiter:policy@X.Y.Z;` line names.
fn package_version(wit: &Path) -> String {
    let text = std::fs::read_to_string(wit).unwrap_or_else(|e| panic!("{}: {e}", wit.display()));
    let line = text.lines().find_map(|l| l.trim().strip_prefix("package arbiter:policy@"));
    let version = line.and_then(|rest| rest.strip_suffix(';'));
    version.unwrap_or_else(|| panic!("{} names no `package arbiter:policy@…;`", wit.display())).to_owned()
}

#[test]
fn the_wit_package_the_host_and_the_sdk_name_one_current_version() {
    let current = package_version(&root().join("wit/policy.wit"));
    assert_eq!(arbiter_engine::CONTRACT_VERSION, current, "the host's CONTRACT_VERSION and wit/policy.wit");
    assert_eq!(arbiter_sdk::CONTRACT_VERSION, current, "the SDK's CONTRACT_VERSION and wit/policy.wit");
}

#[test]
fn every_frozen_contract_is_served_and_every_served_one_is_frozen_or_current() {
    let mut frozen = Vec::new();
    for dir in std::fs::read_dir(root().join("wit/frozen")).unwrap() {
        let dir = dir.unwrap().path();
        let version = package_version(&dir.join("policy.wit"));
        assert_eq!(dir.file_name().and_then(|n| n.to_str()), Some(version.as_str()), "{}", dir.display());
        assert!(arbiter_engine::CONTRACT_VERSIONS.contains(&version.as_str()), "frozen {version} is not served");
        frozen.push(version);
    }
    frozen.sort();
    let (current, older) = arbiter_engine::CONTRACT_VERSIONS.split_last().unwrap();
    assert_eq!(frozen, older, "served versions older than the current one, and wit/frozen/");
    assert!(!frozen.contains(&current.to_string()), "the current version {current} is also frozen");
}

#[test]
fn every_problem_of_a_policy_is_listed_typed_and_naming_the_policy() {
    use arbiter_engine::{BundleError, ComponentError, ComponentFileError, IdentitySource, LoadProblem};
    let component = reference_component("model-pin");
    let found = ComponentInfo::read(&std::fs::read(&component).unwrap()).unwrap().metadata.unwrap();
    let dir = scratch_dir().join("contract-versions").join("every-problem");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bundle.toml");
    let manifest = format!(
        "[bundle]\nname = \"b\"\nversion = \"1.0.0\"\n[[policies]]\nname = \"not-model-pin\"\nversion = \"9.9.9\"\ncomponent = \"{}\"\nsha256 = \"{}\"\n",
        component.display(),
        "0".repeat(64)
    );
    std::fs::write(&path, manifest).unwrap();
    let error = Bundle::load(&arbiter_tests::engine(), &path).unwrap_err();
    let text = error.to_string();
    let BundleError::Policies { problems, .. } = error else { panic!("not a policy problem: {text}") };
    assert!(problems.iter().all(|p| p.policy == "not-model-pin"), "{text}");
    let problems: Vec<&LoadProblem> = problems.iter().map(|p| &p.problem).collect();
    assert!(
        matches!(
            problems[..],
            [
                LoadProblem::File(ComponentFileError::DigestMismatch { .. }),
                LoadProblem::Component(_),
                LoadProblem::Component(_)
            ]
        ),
        "{text}"
    );
    let LoadProblem::Component(name) = problems[1] else { unreachable!() };
    let expected = ComponentError::NameMismatch {
        stated_by: IdentitySource::Manifest,
        expected: "not-model-pin".into(),
        found: found.name.clone(),
    };
    assert_eq!(name, &expected, "{text}");
    let version_line =
        format!("  - policy `not-model-pin`: the manifest says version 9.9.9, the component says {}", found.version);
    assert!(text.lines().any(|l| l == version_line), "{text}");
}
