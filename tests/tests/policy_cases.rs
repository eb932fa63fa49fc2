//! Each reference policy's case file (`policies/<name>/cases.json`) run
//! against its BUILT component through the real engine and in-memory
//! state: one test per file (`cargo test -p arbiter-tests --test
//! policy_cases -- --list`), failing on any verdict the file does not
//! expect. Each policy also runs its file natively (its
//! `cases_json_natively` test, the SDK's fake host), so a difference
//! between the fake host and the real one fails one of the two.

use std::path::Path;

use arbiter_engine::{Decider, lone_policy_bundle};
use arbiter_tests::{engine, reference_component, root};
use arbiter_types::cases::CaseFile;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root().join("policies"))
        .unwrap_or_else(|e| panic!("policies/: {e}"))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|dir| dir.join("cases.json").is_file())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let cases = dir.join("cases.json");
        trials.push(Trial::test(format!("{name}/cases.json"), move || run(&name, &cases)));
    }
    libtest_mimic::run(&args, trials).exit();
}

fn run(name: &str, path: &Path) -> Result<(), Failed> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = CaseFile::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let component = reference_component(name);
    let bundle = lone_policy_bundle(&engine(), &component, &file.policy.clone().unwrap_or_default())
        .map_err(|e| format!("{name}: {e}"))?;
    // One state for the file: later cases see what earlier allowed ones left.
    let decider = Decider::in_memory(bundle);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let mut failures = Vec::new();
    for case in &file.cases {
        let request = case.request().map_err(|e| format!("case `{}`: {e}", case.name))?;
        let decision = decider.decide(&request, request.timestamp_ms.unwrap_or(now_ms));
        if let Some(difference) = case.expect.mismatch(&decision) {
            let reasons: Vec<String> =
                decision.reasons.iter().map(|r| format!("{}: {} ({})", r.policy, r.code, r.message)).collect();
            failures.push(format!("case `{}`: {difference}; reasons: {}", case.name, reasons.join("; ")));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} cases fail:\n{}", failures.len(), file.cases.len(), failures.join("\n")).into())
    }
}
