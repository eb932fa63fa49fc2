//! A case file (`arbiter_types::cases`) run natively against a policy.

use std::path::Path;

use arbiter_types::VerdictKind;
use arbiter_types::cases::CaseFile;

use super::decide::{decide, request_from_host};
use super::{policy_from_json, reset_host};
use crate::{Decision, Obligation, Policy, Verdict};

/// Runs the cases of `path` in order against `P` created from the file's
/// `policy.settings`, on a fresh fake host, each [`decide`]d as the engine
/// would (a request outside the file's `policy.actions` is not shown to
/// the policy and is allowed). `Ok` with the number of cases when every
/// one is met; `Err` lists each case that is not, and why.
pub fn run_case_file<P: Policy>(path: impl AsRef<Path>) -> Result<usize, String> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = CaseFile::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let lone = file.policy.unwrap_or_default();
    let settings = serde_json::Value::Object(lone.settings).to_string();
    let policy: P = policy_from_json(&settings).map_err(|e| format!("{}: {e}", path.display()))?;
    let kinds = lone.actions.unwrap_or_else(|| arbiter_types::ActionKind::ORIGINAL.to_vec());
    reset_host();
    let now_ms = wall_clock_ms();
    let mut failures = Vec::new();
    for case in &file.cases {
        let request = case.request().map_err(|e| format!("{}: case `{}`: {e}", path.display(), case.name))?;
        let verdict = if kinds.contains(&request.action.kind()) {
            decide(&policy, &request_from_host(&request, now_ms)?)
        } else {
            Verdict::allow()
        };
        if let Some(difference) = case.expect.mismatch_of(kind(&verdict), verdict.codes(), clamp(&verdict)) {
            failures.push(format!("case `{}`: {difference}", case.name));
        }
    }
    reset_host();
    if failures.is_empty() {
        Ok(file.cases.len())
    } else {
        Err(format!(
            "{}: {} of {} cases fail natively:\n{}",
            path.display(),
            failures.len(),
            file.cases.len(),
            failures.join("\n")
        ))
    }
}

fn kind(verdict: &Verdict) -> VerdictKind {
    match verdict.decision {
        Decision::Allow => VerdictKind::Allow,
        Decision::Deny => VerdictKind::Deny,
        Decision::Escalate(_) => VerdictKind::Escalate,
    }
}

/// The tightest clamp, as the host combines them.
fn clamp(verdict: &Verdict) -> Option<u64> {
    verdict
        .obligations
        .iter()
        .filter_map(|o| match o {
            Obligation::ClampMaxOutputTokens(n) => Some(*n),
            _ => None,
        })
        .min()
}

/// Now, as the host reads it for a case without a timestamp.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
