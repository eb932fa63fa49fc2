//! The `arbiter` binary, end to end.

use std::process::{Command, Output};

use arbiter_tests::{orders_daily_bundle, reference_policies, root};
use serde_json::{Value, json};

fn arbiter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .current_dir(root())
        .env("ARBITER_CACHE_DIR", root().join("target/arbiter-tests/cache"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run arbiter: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn bundle_arg() -> String {
    orders_daily_bundle().display().to_string()
}

/// A reference policy's version, as the orders_daily bundle pins it (its
/// crate's), so a version bump does not need these tests edited.
fn pinned_version(policy: &str) -> String {
    let manifest = arbiter_engine::Manifest::from_file(&orders_daily_bundle()).unwrap();
    manifest.policies.into_iter().find(|p| p.name == policy).map(|p| p.version).unwrap()
}

#[test]
fn build_produces_a_component_with_no_wasi_imports() {
    let out = tempfile::tempdir().unwrap();
    let output = arbiter(&["build", "policies/model-pin", "--out", &out.path().display().to_string()]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with(&format!("model-pin {} ", pinned_version("model-pin"))), "{stdout}");
    assert!(stdout.contains("imports: [arbiter:policy/types@0.3.0]"), "{stdout}");
    assert!(out.path().join("model-pin.wasm").is_file());
}

#[test]
fn inspect_shows_embedded_version_and_only_contract_imports() {
    let components = orders_daily_bundle().parent().unwrap().join("components");
    let manifest = arbiter_engine::Manifest::from_file(&orders_daily_bundle()).unwrap();
    assert_eq!(reference_policies().len(), 11, "the nine of 0.1.0, tool-pin and secret-scan");
    for policy in &manifest.policies {
        let path = components.join(format!("{}.wasm", policy.name));
        let output = arbiter(&["inspect", "--format", "json", &path.display().to_string()]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let info: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(info["metadata"]["name"], policy.name.as_str());
        assert_eq!(info["metadata"]["version"], policy.version.as_str());
        assert_eq!(info["contract_version"], "0.3.0");
        assert_eq!(info["actions"], json!(["tool_call", "llm_request", "tool_listing", "tool_result"]));
        assert_eq!(info["problems"], json!([]), "{} is refused", policy.name);
        let described = info["review"]["settings"].as_object().map_or(0, |s| s.len());
        assert!(described > 0, "{} embeds no review description", policy.name);
        for import in info["imports"].as_array().unwrap() {
            let import = import.as_str().unwrap();
            assert!(
                import.starts_with("arbiter:policy/") && !import.contains("wasi"),
                "{} imports {import}",
                policy.name
            );
        }
    }
    let output = arbiter(&["inspect", &components.join("human-review.wasm").display().to_string()]);
    let stdout = text(&output.stdout);
    let version = &manifest.policies.iter().find(|p| p.name == "human-review").unwrap().version;
    assert!(
        stdout.contains(&format!("version       {version}")) && stdout.contains("contract      arbiter:policy@0.3.0"),
        "{stdout}"
    );
    // A component released under 0.1.0 says what a bundle may scope it to.
    let old = root().join("tests/fixtures/contract-0.1.0/tool-scope-0.2.0.wasm");
    let stdout = text(&arbiter(&["inspect", &old.display().to_string()]).stdout);
    assert!(stdout.contains("contract      arbiter:policy@0.1.0\nactions       tool_call, llm_request\n"), "{stdout}");
}

#[test]
fn eval_prints_the_decision() {
    let bundle = bundle_arg();
    let output = arbiter(&["eval", "--bundle", &bundle, "examples/orders_daily/requests/drop-table.json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let decision: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(decision["decision"], "escalate");
    assert_eq!(decision["reasons"][0]["code"], "needs_approval");
    assert_eq!(decision["escalation"]["approvers"], json!(["data-platform-oncall"]));
    let manifest = std::fs::read_to_string(orders_daily_bundle()).unwrap();
    assert_eq!(
        decision["bundle"],
        json!({"name": "orders_daily", "version": arbiter_tests::bundle_version(&manifest)})
    );
}

/// Malformed requests: exit code 2, an error naming the field, no panic.
#[test]
fn eval_rejects_bad_input_naming_the_field() {
    let bundle = bundle_arg();
    let valid: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/orders_daily/requests/query.json")).unwrap(),
    )
    .unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v.to_string()
    };
    let cases = [
        ("{\"id\": ".to_owned(), "not valid UTF-8 JSON"),
        (with(&|v| drop(v["principal"].as_object_mut().unwrap().remove("pipeline"))), "missing field `pipeline`"),
        (with(&|v| v["action"]["kind"] = json!("sql_query")), "unknown variant `sql_query`"),
        (with(&|v| v["principal"]["team"] = json!(7)), "principal.team"),
        (with(&|v| v["action"]["tool"] = json!("")), "action.tool: must not be empty"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (body, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.json"));
        std::fs::write(&path, body).unwrap();
        let output = arbiter(&["eval", "--bundle", &bundle, &path.display().to_string()]);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{body}: {stderr}");
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn eval_reports_a_tampered_bundle_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(orders_daily_bundle()).unwrap();
    let components = orders_daily_bundle().parent().unwrap().join("components");
    let version = pinned_version("model-pin");
    let tampered = manifest.replace("components/", &format!("{}/", components.display())).replace(
        &format!("name = \"model-pin\"\nversion = \"{version}\""),
        "name = \"model-pin\"\nversion = \"9.9.9\"",
    );
    let path = dir.path().join("bundle.toml");
    std::fs::write(&path, tampered).unwrap();
    std::fs::copy(components.join("tool-scope.wasm"), dir.path().join("x.wasm")).unwrap();
    let output =
        arbiter(&["eval", "--bundle", &path.display().to_string(), "examples/orders_daily/requests/query.json"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains(&format!("policy `model-pin`: the manifest says version 9.9.9, the component says {version}")),
        "{stderr}"
    );
}

#[test]
fn test_command_reports_passes_and_failures() {
    let bundle = bundle_arg();
    let output = arbiter(&["test", &bundle, "examples/orders_daily/cases.json"]);
    assert!(output.status.success(), "{}{}", text(&output.stdout), text(&output.stderr));
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("examples/orders_daily/cases.json")).unwrap())
            .unwrap();
    let all = format!("{} passed, 0 failed", cases["cases"].as_array().unwrap().len());
    assert!(text(&output.stdout).trim_end().ends_with(&all), "{}", text(&output.stdout));

    let dir = tempfile::tempdir().unwrap();
    let cases = json!({"cases": [
        {"name": "wrongly expected allow",
         "request": serde_json::from_str::<Value>(&std::fs::read_to_string(root().join("examples/orders_daily/requests/shell-exec.json")).unwrap()).unwrap(),
         "expect": {"decision": "allow"}}
    ]});
    let path = dir.path().join("cases.json");
    std::fs::write(&path, cases.to_string()).unwrap();
    let output = arbiter(&["test", &bundle, &path.display().to_string()]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL  wrongly expected allow: expected allow [], got deny [\"tool_not_allowed\"]"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn test_command_runs_a_lone_component_with_settings() {
    let component = orders_daily_bundle().parent().unwrap().join("components/model-pin.wasm");
    let dir = tempfile::tempdir().unwrap();
    let request = |model: &str| {
        json!({"id": "r", "action": {"kind": "llm_request", "model": model, "prompt_tokens": 1, "max_output_tokens": 1},
               "principal": {"pipeline": "p", "agent": "a", "team": "t", "environment": "dev", "run": "r"}})
    };
    let cases = json!({
        "policy": {"settings": {"pinned": ["gpt-4o-2024-08-06"]}},
        "cases": [
            {"name": "pinned", "request": request("gpt-4o-2024-08-06"), "expect": {"decision": "allow"}},
            {"name": "alias", "request": request("gpt-4o"), "expect": {"decision": "deny", "codes": ["model_not_pinned"]}}
        ]
    });
    let path = dir.path().join("cases.json");
    std::fs::write(&path, cases.to_string()).unwrap();
    let output = arbiter(&["test", &component.display().to_string(), &path.display().to_string()]);
    assert!(output.status.success(), "{}{}", text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stdout).contains("2 passed, 0 failed"));
}

#[test]
fn test_command_takes_cases_whose_requests_have_no_id() {
    // A policy's own case file: requests without `id`, scoped action kinds.
    let component = orders_daily_bundle().parent().unwrap().join("components/tool-scope.wasm");
    let cases = root().join("policies/tool-scope/cases.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&cases).unwrap()).unwrap();
    let all = file["cases"].as_array().unwrap();
    assert!(all.iter().all(|c| c["request"].get("id").is_none()), "the file exercises id-less requests");
    let output = arbiter(&["test", &component.display().to_string(), &cases.display().to_string()]);
    assert!(output.status.success(), "{}{}", text(&output.stdout), text(&output.stderr));
    assert!(text(&output.stdout).trim_end().ends_with(&format!("{} passed, 0 failed", all.len())));
}

#[test]
fn pin_check_agrees_with_the_shipped_bundles() {
    let bench = root().join("examples/bench/bundle.toml").display().to_string();
    for bundle in [bundle_arg(), bench] {
        let output = arbiter(&["pin", "--check", &bundle]);
        assert!(output.status.success(), "{bundle}: digests differ from a fresh build:\n{}", text(&output.stdout));
        let output =
            arbiter(&["eval", "--format", "brief", "--bundle", &bundle, "examples/orders_daily/requests/query.json"]);
        assert!(
            text(&output.stdout).starts_with("allow"),
            "{bundle}: {}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
    }
}

#[test]
fn replay_runs_every_trace_green() {
    let traces: Vec<String> = arbiter_tests::orders_daily_traces()
        .into_iter()
        .map(|(file, _)| arbiter_tests::orders_daily_traces_dir().join(file).display().to_string())
        .collect();
    let mut args = vec!["replay", "--quiet", "--bundle"];
    let bundle = bundle_arg();
    args.push(&bundle);
    args.extend(traces.iter().map(String::as_str));
    let output = arbiter(&args);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let summary = stdout.trim_end().lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed") && !summary.starts_with("0 "), "{summary}");
}

#[test]
fn eval_with_state_feeds_the_spend_report() {
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    let bundle = bundle_arg();
    // The sample request, and the same request under another id.
    let sample = root().join("examples/orders_daily/requests/llm-pinned.json");
    let again = state.path().join("llm-pinned-again.json");
    let text_of = std::fs::read_to_string(&sample).unwrap();
    std::fs::write(&again, text_of.replace("\"demo-012\"", "\"demo-012-again\"")).unwrap();
    let eval = |request: &std::path::Path| {
        let request = request.display().to_string();
        let output = arbiter(&["eval", "--clock", "request", "--state", &state_arg, "--bundle", &bundle, &request]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    for request in [&sample, &again] {
        eval(request);
    }
    // An id whose reservation is still open is not reserved twice.
    let repeated = eval(&sample);
    assert!(repeated.contains("duplicate_request"), "{repeated}");
    let args = ["report", "--state", &state_arg, "--since", "2026-11-26", "--until", "2026-11-27", "--by", "model"];
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json", "--prices", "examples/orders_daily/prices.toml"]);
    let output = arbiter(&json_args);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    let usd = (2.0 * 5200.0 * 3.0 + 2.0 * 1024.0 * 15.0) / 1e6;
    assert_eq!(
        rows,
        json!([{"key": "claude-sonnet-4-5-20250929", "requests": 2, "reconciled": 0, "prompt_tokens": 10400,
                "output_tokens": 2048, "charged_micro_usd": 0, "priced_usd": usd, "unpriced_tokens": 0}])
    );
    let table = text(&arbiter(&args).stdout);
    assert!(table.starts_with("model ") && table.contains("claude-sonnet-4-5-20250929"), "{table}");
}

#[test]
fn replay_against_a_weakened_bundle_lists_the_changed_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let reference = orders_daily_bundle();
    let components = reference.parent().unwrap().join("components");
    let weakened = std::fs::read_to_string(&reference)
        .unwrap()
        .replace("components/", &format!("{}/", components.display()))
        .replace(
            "pinned = [\"claude-sonnet-4-5-20250929\", \"gpt-4o-2024-08-06\"]",
            "pinned = [\"claude-sonnet-4-5-20250929\"]",
        )
        .replace("max_per_run = 25", "max_per_run = 1000");
    let manifest = dir.path().join("bundle.toml");
    std::fs::write(&manifest, weakened).unwrap();
    let traces: Vec<String> = arbiter_tests::orders_daily_traces()
        .into_iter()
        .map(|(file, _)| arbiter_tests::orders_daily_traces_dir().join(file).display().to_string())
        .collect();
    let (new, old) = (manifest.display().to_string(), bundle_arg());
    let mut args = vec!["replay", "--quiet", "--fail-on-diff", "--bundle", &new, "--against", &old];
    args.extend(traces.iter().map(String::as_str));
    let output = arbiter(&args);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("     1  allow -> deny [\"model_not_pinned\"]"), "{stdout}");
    assert!(stdout.contains("     5  deny -> allow []"), "{stdout}");
    assert!(stdout.trim_end().ends_with("decisions compared, 6 differ"), "{stdout}");
    args.retain(|a| *a != "--fail-on-diff");
    args[3] = &old;
    let same = arbiter(&args);
    assert!(same.status.success() && text(&same.stdout).trim_end().ends_with(", 0 differ"), "{}", text(&same.stdout));
}

#[test]
fn lint_checks_the_bundle_and_its_version_bump() {
    let ok = arbiter(&["lint", &bundle_arg()]);
    assert!(ok.status.success() && text(&ok.stdout).trim_end().ends_with("0 findings"), "{}", text(&ok.stdout));
    let dir = tempfile::tempdir().unwrap();
    let reference = std::fs::read_to_string(orders_daily_bundle()).unwrap();
    let components = orders_daily_bundle().parent().unwrap().join("components");
    let local = reference.replace("components/", &format!("{}/", components.display()));
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let stricter = local.replace("limit = 60000", "limit = 50000");
    let same_version = write("same.toml", stricter.clone());
    let out = arbiter(&["lint", &same_version, "--base", &bundle_arg()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains(
            "need at least MINOR: `token-budget` settings/budgets/0/limit lowered 60000 -> 50000 (limit, lower is stricter)"
        ),
        "{}",
        text(&out.stdout)
    );
    // Loosening is judged by what tool-scope's component declares, and said.
    let shell = write(
        "shell.toml",
        local.replace("\"warehouse.drop_table\",\n]", "\"warehouse.drop_table\",\n    \"shell.exec\",\n]"),
    );
    let out = arbiter(&["lint", &shell, "--base", &bundle_arg()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("change  MINOR  loosens   `tool-scope` settings/rules/0/tools allow-list gains \"shell.exec\" [allow-list-added]"),
        "{stdout}"
    );
    assert!(stdout.contains("1 change loosen a guardrail"), "{stdout}");
    let minor = arbiter_tests::next_minor(arbiter_tests::bundle_version(&stricter));
    let bumped = write("minor.toml", arbiter_tests::with_bundle_version(&stricter, &minor));
    let out = arbiter(&["lint", &bumped, "--base", &bundle_arg(), "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["required_bump"].as_str(), report["actual_bump"].as_str()), (Some("minor"), Some("minor")));
    let floating = write("floating.toml", local.replace("\"gpt-4o-2024-08-06\"]", "\"gpt-4o\"]"));
    let out = arbiter(&["lint", &floating]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("pins floating model alias `gpt-4o`"), "{}", text(&out.stdout));
}

#[test]
fn readiness_scores_what_the_bundle_contains() {
    let deployment = root().join("examples/orders_daily/deployment.toml").display().to_string();
    let out = arbiter(&["readiness", &bundle_arg(), "--server-config", &deployment, "--format", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let scores: Vec<(String, String)> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["item"].as_str().unwrap().to_owned(), i["score"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(scores.len(), 11, "the guide's ten items and trust boundaries");
    for (item, score) in &scores {
        let expected = if item == "version control" { "Needs Work" } else { "Ready" };
        assert_eq!(score, expected, "{item} (the shipped bundle is not signed)");
    }
    let basis =
        |item: &str| report["items"].as_array().unwrap().iter().find(|i| i["item"] == item).unwrap()["basis"].clone();
    assert_eq!((basis("rollback plan"), basis("cost management")), (json!("self-declared"), json!("bundle")));

    // The shipped bundle without its per-agent budget.
    let components = orders_daily_bundle().parent().unwrap().join("components");
    let local = std::fs::read_to_string(orders_daily_bundle())
        .unwrap()
        .replace("components/", &format!("{}/", components.display()));
    let agent_budget = "[[policies.settings.budgets]]\nper = \"agent\"\nwindow = \"day\"\nlimit = 200000\n";
    assert!(local.contains(agent_budget));
    let dir = tempfile::tempdir().unwrap();
    let no_agent = dir.path().join("no-agent.toml");
    std::fs::write(&no_agent, local.replace(agent_budget, "")).unwrap();
    let out = arbiter(&["readiness", &no_agent.display().to_string()]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(" 4. cost management            Needs Work") && stdout.contains("- no per-agent budget"),
        "{stdout}"
    );

    // A weakened copy: no budgets, no breakers.
    let kept: Vec<&str> = local
        .split("\n[[policies]]")
        .filter(|block| !block.contains("name = \"token-budget\"") && !block.contains("name = \"circuit-breaker\""))
        .collect();
    let weakened = dir.path().join("bundle.toml");
    std::fs::write(&weakened, kept.join("\n[[policies]]")).unwrap();
    let weakened = weakened.display().to_string();
    let out = arbiter(&["readiness", &weakened, "--fail-below", "needs-work"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for line in [
        " 4. cost management            Not Started",
        " 5. circuit breakers           Not Started",
        "error propagation: NOT COVERED",
        " 2. rollback plan              Not Started",
        "- nothing known of the server (give --server URL, or --server-config)",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }
}

#[test]
fn serve_refuses_a_held_body_share_that_bounds_nothing_or_refuses_every_large_body() {
    for (share, held, request) in [("300", "256", "16"), ("8", "256", "16"), ("0", "256", "16")] {
        let out = arbiter(&[
            "serve",
            "--ext-proc-max-held-per-caller-mib",
            share,
            "--ext-proc-max-held-mib",
            held,
            "--ext-proc-max-request-mib",
            request,
        ]);
        assert!(!out.status.success(), "a share of {share} MiB is accepted");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(&format!("--ext-proc-max-held-per-caller-mib ({share}) must lie between")), "{stderr}");
    }
}

#[test]
fn a_bundle_serves_only_its_environments() {
    let dir = tempfile::tempdir().unwrap();
    let request: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("examples/orders_daily/requests/query.json")).unwrap(),
    )
    .unwrap();
    let mut staging = request.clone();
    staging["principal"]["environment"] = json!("staging");
    let path = dir.path().join("staging.json");
    std::fs::write(&path, staging.to_string()).unwrap();
    let out = arbiter(&["eval", "--format", "brief", "--bundle", &bundle_arg(), &path.display().to_string()]);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("deny") && stdout.contains("wrong_environment"), "{stdout}");
    assert!(stdout.contains("bundle orders_daily serves dev, prod, not staging"), "{stdout}");
}

#[test]
fn credential_issues_a_key_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("monitor.key");
    let key_arg = key_path.display().to_string();
    let issue = |extra: &[&str]| {
        let mut args = vec!["credential", "--name", "orders-monitor", "--role", "decide", "--key-out", &key_arg];
        args.extend_from_slice(extra);
        arbiter(&args)
    };
    let out = issue(&[
        "--pipeline",
        "orders_daily",
        "--agent",
        "monitor",
        "--team",
        "data-platform",
        "--environment",
        "prod",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let entry = text(&out.stdout);
    let key = std::fs::read_to_string(&key_path).unwrap();
    assert!(key.starts_with("arb_") && !entry.contains(key.trim()), "the entry holds the digest, not the key");
    let credentials = arbiter_server::Credentials::from_toml(&entry, std::path::Path::new("c.toml")).unwrap();
    let credential = credentials.authenticate(key.trim()).expect("the key names the credential");
    assert_eq!(credential.name, "orders-monitor");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);

    // A deciding credential without a grant is refused before any key is written.
    let refused = issue(&[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("needs a grant"), "{}", text(&refused.stderr));
}

#[test]
fn new_scaffolds_a_policy_that_builds_tests_and_runs_outside_the_repository() {
    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("deny-drops");
    let dir_arg = dir.display().to_string();
    let created = arbiter(&["new", &dir_arg]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(!arbiter(&["new", &dir_arg]).status.success(), "a second `new` must not overwrite the first");
    // Warm across runs; the crate is its own workspace wherever it is.
    let target = root().join("target/arbiter-tests/scaffold");
    let in_crate = |program: &str, args: &[&str]| {
        let output = Command::new(program)
            .args(args)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .env("ARBITER_CACHE_DIR", root().join("target/arbiter-tests/cache"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        assert!(output.status.success(), "{program} {args:?}: {}{}", text(&output.stdout), text(&output.stderr));
        text(&output.stdout)
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let native = in_crate(&cargo, &["test", "--quiet"]);
    assert!(native.contains("5 passed"), "unit tests, review and cases: {native}");
    let arbiter_bin = env!("CARGO_BIN_EXE_arbiter");
    in_crate(arbiter_bin, &["build", ".", "--out", "components"]);
    let tested = in_crate(arbiter_bin, &["test", "components/deny-drops.wasm", "cases.json"]);
    assert!(tested.contains("2 passed, 0 failed"), "{tested}");

    // The cases hold: a wrong expectation fails `arbiter test`.
    let cases = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    std::fs::write(dir.join("cases.json"), cases.replacen(r#""decision": "deny""#, r#""decision": "allow""#, 1))
        .unwrap();
    let failed = Command::new(arbiter_bin)
        .args(["test", "components/deny-drops.wasm", "cases.json"])
        .current_dir(&dir)
        .env("ARBITER_CACHE_DIR", root().join("target/arbiter-tests/cache"))
        .output()
        .unwrap();
    assert!(
        !failed.status.success() && text(&failed.stdout).contains("1 passed, 1 failed"),
        "{}",
        text(&failed.stdout)
    );
}
