//! The production-readiness checklist, scored from what a bundle (and the
//! server's deployment settings) actually contain.

use serde::{Deserialize, Serialize};

use crate::manifest::{FailMode, Manifest, ManifestPolicy, Mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Score {
    #[serde(rename = "Not Started")]
    NotStarted,
    #[serde(rename = "Needs Work")]
    NeedsWork,
    Ready,
}

impl Score {
    pub fn label(self) -> &'static str {
        match self {
            Score::NotStarted => "Not Started",
            Score::NeedsWork => "Needs Work",
            Score::Ready => "Ready",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub item: &'static str,
    pub score: Score,
    pub evidence: Vec<String>,
}

/// How the server runs the bundle (a TOML file of `arbiter serve`'s
/// settings); absent fields are "not configured".
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub audit_log: Option<String>,
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    #[serde(default)]
    pub admin_token: bool,
    #[serde(default)]
    pub escalation_webhook: Option<String>,
    #[serde(default)]
    pub keep_bundles: Option<usize>,
}

/// The failure modes and the policy that guards each.
pub const FAILURE_MODES: [(&str, &str); 5] = [
    ("error propagation", "circuit-breaker"),
    ("retrieval thrash", "retrieval-thrash"),
    ("tool storm", "tool-storm"),
    ("context bloat", "context-bloat"),
    ("guardrail bypass", "tool-scope"),
];

/// The bundle's policy of that name, whatever its mode.
fn named<'m>(manifest: &'m Manifest, name: &str) -> Option<&'m ManifestPolicy> {
    manifest.policies.iter().find(|p| p.name == name)
}

fn setting<'p>(policy: &'p ManifestPolicy, key: &str) -> Option<&'p toml::Value> {
    policy.settings.get(key)
}

fn strings(value: Option<&toml::Value>) -> Vec<String> {
    value.and_then(toml::Value::as_array).into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect()
}

fn presence(policy: Option<&ManifestPolicy>, name: &str, evidence: &mut Vec<String>) -> Score {
    match policy {
        None => {
            evidence.push(format!("no `{name}` policy"));
            Score::NotStarted
        }
        Some(p) if p.mode == Mode::Monitor => {
            evidence.push(format!("`{name}` only monitors (not enforced)"));
            Score::NeedsWork
        }
        Some(p) => {
            if p.fail == FailMode::Open {
                evidence.push(format!("`{name}` fails open"));
            }
            evidence.push(format!("`{name}` {} enforced", p.version));
            if p.fail == FailMode::Open { Score::NeedsWork } else { Score::Ready }
        }
    }
}

/// Scores every item of the checklist.
pub fn assess(
    manifest: &Manifest,
    signed: bool,
    floating_pins: &[String],
    deployment: Option<&Deployment>,
) -> Vec<Item> {
    let mut items = Vec::new();
    let mut push = |item, score, evidence| items.push(Item { item, score, evidence });

    // 1. Environment strategy.
    let mut evidence = Vec::new();
    let scoped = manifest.policies.iter().filter(|p| p.scope.environments.is_some()).count();
    let env_rules = manifest.policies.iter().any(|p| {
        setting(p, "cross_environment").is_some()
            || setting(p, "rules")
                .and_then(|r| r.as_array())
                .is_some_and(|r| r.iter().any(|x| x.get("environments").is_some()))
    });
    if scoped > 0 {
        evidence.push(format!("{scoped} policies scoped by environment"));
    }
    if env_rules {
        evidence.push("environment-aware rules (cross-environment or per-environment tools)".to_owned());
    }
    let score = if env_rules {
        Score::Ready
    } else if scoped > 0 {
        Score::NeedsWork
    } else {
        Score::NotStarted
    };
    if score == Score::NotStarted {
        evidence.push("nothing distinguishes dev, staging and prod".to_owned());
    }
    push("environment strategy", score, evidence);

    // 2. Rollback plan.
    let (score, evidence) = match deployment {
        None => (Score::NotStarted, vec!["no deployment settings given (--server-config)".to_owned()]),
        Some(d) => {
            let keep = d.keep_bundles.unwrap_or(5);
            let mut evidence = vec![format!("server keeps {keep} activated bundles for `arbiter rollback`")];
            if !d.admin_token {
                evidence.push("no admin token: rollback through the API is disabled".to_owned());
            }
            (if keep >= 2 && d.admin_token { Score::Ready } else { Score::NeedsWork }, evidence)
        }
    };
    push("rollback plan", score, evidence);

    // 3. Failure-mode inventory.
    let covered: Vec<String> = FAILURE_MODES
        .iter()
        .map(|(mode, policy)| match named(manifest, policy) {
            Some(p) if p.mode == Mode::Enforce => format!("{mode}: `{policy}`"),
            _ => format!("{mode}: NOT COVERED"),
        })
        .collect();
    let missing = covered.iter().filter(|c| c.ends_with("NOT COVERED")).count();
    let score = match missing {
        0 => Score::Ready,
        n if n == FAILURE_MODES.len() => Score::NotStarted,
        _ => Score::NeedsWork,
    };
    push("failure-mode inventory", score, covered);

    // 4. Cost management.
    let mut evidence = Vec::new();
    let score = match named(manifest, "token-budget") {
        None => {
            evidence.push("no `token-budget` policy".to_owned());
            Score::NotStarted
        }
        Some(p) => {
            let budgets = setting(p, "budgets").and_then(|b| b.as_array()).cloned().unwrap_or_default();
            let per: Vec<String> =
                budgets.iter().filter_map(|b| b.get("per").and_then(|v| v.as_str()).map(str::to_owned)).collect();
            let periodic = budgets.iter().any(|b| b.get("window").and_then(|w| w.as_str()).is_some_and(|w| w != "run"));
            evidence.push(format!("budgets per {}", per.join(", ")));
            let levels = ["run", "pipeline", "team"].iter().all(|l| per.iter().any(|p| p == l))
                || per.iter().any(|p| p == "agent");
            if periodic {
                evidence.push("calendar or rolling period budgets".to_owned());
            }
            if levels && periodic && p.mode == Mode::Enforce { Score::Ready } else { Score::NeedsWork }
        }
    };
    push("cost management", score, evidence);

    // 5. Circuit breakers.
    let mut evidence = Vec::new();
    let score = presence(named(manifest, "circuit-breaker"), "circuit-breaker", &mut evidence);
    push("circuit breakers", score, evidence);

    // 6. Compliance verification.
    let mut evidence = Vec::new();
    let score = match named(manifest, "data-residency") {
        None => {
            evidence.push("no `data-residency` policy".to_owned());
            Score::NotStarted
        }
        Some(p) => {
            let regions = strings(setting(p, "allowed_regions"));
            evidence.push(format!("allowed regions: {}", regions.join(", ")));
            let cross = setting(p, "cross_environment").is_some();
            let egress = setting(p, "egress").is_some();
            evidence.push(format!("cross-environment rules: {cross}; egress rules: {egress}"));
            if !regions.is_empty() && (cross || egress) { Score::Ready } else { Score::NeedsWork }
        }
    };
    push("compliance verification", score, evidence);

    // 7. Version control.
    let mut evidence = vec![format!(
        "bundle {} {}, {} policies pinned by sha256",
        manifest.bundle.name,
        manifest.bundle.version,
        manifest.policies.len()
    )];
    evidence.push(if signed { "manifest signed".to_owned() } else { "manifest NOT signed".to_owned() });
    let pinned_models = named(manifest, "model-pin").is_some();
    evidence.push(if pinned_models {
        "model ids pinned by `model-pin`".to_owned()
    } else {
        "model ids not pinned".to_owned()
    });
    evidence.extend(floating_pins.iter().cloned());
    let trusted = deployment.is_some_and(|d| !d.trusted_keys.is_empty());
    if deployment.is_some() {
        evidence.push(format!("server trusts {} signing keys", deployment.map_or(0, |d| d.trusted_keys.len())));
    }
    let score = if signed && pinned_models && floating_pins.is_empty() && trusted {
        Score::Ready
    } else if signed || pinned_models {
        Score::NeedsWork
    } else {
        Score::NotStarted
    };
    push("version control", score, evidence);

    // 8. Observability baseline.
    let (score, evidence) = match deployment {
        None => (Score::NotStarted, vec!["no deployment settings given (--server-config)".to_owned()]),
        Some(d) => {
            let mut evidence = vec!["Prometheus /metrics always on".to_owned()];
            match &d.audit_log {
                Some(log) => evidence.push(format!("audit log {log} (hash-chained)")),
                None => evidence.push("no audit log".to_owned()),
            }
            if d.state.is_none() {
                evidence.push("state in memory: budgets and breakers reset on restart".to_owned());
            }
            (if d.audit_log.is_some() && d.state.is_some() { Score::Ready } else { Score::NeedsWork }, evidence)
        }
    };
    push("observability baseline", score, evidence);

    // 9. Human review gates.
    let mut evidence = Vec::new();
    let score = match named(manifest, "human-review") {
        None => {
            evidence.push("no `human-review` policy".to_owned());
            Score::NotStarted
        }
        Some(p) => {
            let gated = strings(setting(p, "irreversible_tools"));
            evidence.push(format!("irreversible tools gated: {}", gated.join(", ")));
            let allowed: Vec<String> = named(manifest, "tool-scope")
                .and_then(|t| setting(t, "rules"))
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
                .flat_map(|rule| strings(rule.get("tools")))
                .collect();
            let risky = ["drop", "delete", "truncate", "alter", "write", "create_incident", "exec"];
            let ungated: Vec<&String> = allowed
                .iter()
                .filter(|t| risky.iter().any(|r| t.contains(r)))
                .filter(|t| !gated.iter().any(|g| crate::lint::glob_matches(g, t)))
                .collect();
            if ungated.is_empty() {
                evidence.push("every allowed tool that looks irreversible is gated".to_owned());
                Score::Ready
            } else {
                evidence.push(format!(
                    "allowed but not gated: {}",
                    ungated.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
                Score::NeedsWork
            }
        }
    };
    push("human review gates", score, evidence);

    // 10. Escalation path.
    let mut evidence = Vec::new();
    let approvers = named(manifest, "human-review").map(|p| strings(setting(p, "approvers"))).unwrap_or_default();
    let score = if approvers.is_empty() {
        evidence.push("no approvers configured".to_owned());
        Score::NotStarted
    } else {
        evidence.push(format!("approvers: {}", approvers.join(", ")));
        match deployment {
            Some(d) if d.admin_token && d.escalation_webhook.is_some() => {
                evidence.push("approval API enabled; new escalations notify a webhook".to_owned());
                Score::Ready
            }
            Some(d) => {
                if !d.admin_token {
                    evidence.push("no admin token: nobody can approve".to_owned());
                }
                if d.escalation_webhook.is_none() {
                    evidence.push("no escalation webhook: approvers are not told".to_owned());
                }
                Score::NeedsWork
            }
            None => {
                evidence.push("no deployment settings given".to_owned());
                Score::NeedsWork
            }
        }
    };
    push("escalation path", score, evidence);
    items
}
