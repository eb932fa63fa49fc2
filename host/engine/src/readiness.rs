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
    /// `arbiter serve --credentials` (a path, relative to this file).
    #[serde(default)]
    pub credentials: Option<String>,
    /// `--anonymous`: requests without a key decide.
    #[serde(default)]
    pub anonymous: bool,
    /// `--clock`: `server` (the default) or `request`.
    #[serde(default)]
    pub clock: Option<String>,
}

/// What the server's credentials grant, read by the caller (the engine
/// does not parse credentials).
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub credentials: usize,
    /// Credentials with the approve role.
    pub approvers: usize,
    /// Credentials with the admin role.
    pub admins: usize,
    /// Credentials holding admin or approve together with decide: one key
    /// that an agent holds could then approve or deploy.
    pub mixed_roles: Vec<String>,
    /// Whether every credential that decides has its run pinned by its
    /// grant; otherwise runs are caller-chosen.
    pub runs_pinned: bool,
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
    identity: Option<&Identity>,
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
            let admin = d.admin_token || identity.is_some_and(|i| i.admins > 0);
            if !admin {
                evidence.push("no admin credential: rollback through the API is disabled".to_owned());
            }
            (if keep >= 2 && admin { Score::Ready } else { Score::NeedsWork }, evidence)
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
        let can_approve = identity.is_some_and(|i| i.approvers > 0);
        match deployment {
            Some(d) if can_approve && d.escalation_webhook.is_some() => {
                evidence.push("approver credentials issued; new escalations notify a webhook".to_owned());
                Score::Ready
            }
            Some(d) => {
                if !can_approve {
                    evidence.push("no credential with the approve role: nobody can approve".to_owned());
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

    // 11. Trust boundaries: the guide's "guardrail bypass", from the caller's
    // side: whose clock, whose identity, whose roles.
    let (score, evidence) = match deployment {
        None => (Score::NotStarted, vec!["no deployment settings given (--server-config)".to_owned()]),
        Some(d) => trust_boundaries(d, identity),
    };
    push("trust boundaries", score, evidence);
    items
}

fn trust_boundaries(d: &Deployment, identity: Option<&Identity>) -> (Score, Vec<String>) {
    let mut evidence = Vec::new();
    let server_clock = d.clock.as_deref().is_none_or(|c| c == "server");
    evidence.push(if server_clock {
        "server clock: request timestamps are recorded, never trusted".to_owned()
    } else {
        "REQUEST CLOCK: callers choose budget windows and expiries (replays and tests only)".to_owned()
    });
    if d.anonymous {
        evidence.push("ANONYMOUS decisions: any caller names its own principal".to_owned());
    }
    let Some(identity) = identity.filter(|i| i.credentials > 0) else {
        evidence.push("no credentials: callers are not identified".to_owned());
        return (Score::NotStarted, evidence);
    };
    evidence.push(format!("{} credentials, {} may approve", identity.credentials, identity.approvers));
    if !identity.mixed_roles.is_empty() {
        evidence.push(format!("decide together with admin or approve: {}", identity.mixed_roles.join(", ")));
    }
    evidence.push(if identity.runs_pinned {
        "every deciding credential's run is pinned: run budgets are hard limits".to_owned()
    } else {
        "runs are caller-chosen: only pipeline, agent, team and period budgets are hard limits against a hostile agent"
            .to_owned()
    });
    let ready = server_clock && !d.anonymous && identity.mixed_roles.is_empty();
    (if ready { Score::Ready } else { Score::NeedsWork }, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trust(deployment: &Deployment, identity: Option<&Identity>) -> (Score, Vec<String>) {
        trust_boundaries(deployment, identity)
    }

    fn issued() -> Identity {
        Identity { credentials: 3, approvers: 1, admins: 1, mixed_roles: vec![], runs_pinned: false }
    }

    #[test]
    fn trust_boundaries_score_the_clock_identity_and_roles() {
        let secure = Deployment { clock: Some("server".into()), ..Deployment::default() };
        let (score, evidence) = trust(&secure, Some(&issued()));
        assert_eq!(score, Score::Ready);
        assert!(evidence.iter().any(|e| e.contains("runs are caller-chosen")), "{evidence:?}");

        let pinned = Identity { runs_pinned: true, ..issued() };
        assert!(trust(&secure, Some(&pinned)).1.iter().any(|e| e.contains("run budgets are hard limits")));

        let replaying = Deployment { clock: Some("request".into()), ..Deployment::default() };
        assert_eq!(trust(&replaying, Some(&issued())).0, Score::NeedsWork);
        let anonymous = Deployment { anonymous: true, ..Deployment::default() };
        assert_eq!(trust(&anonymous, Some(&issued())).0, Score::NeedsWork);
        let mixed = Identity { mixed_roles: vec!["agent-with-admin".into()], ..issued() };
        let (score, evidence) = trust(&secure, Some(&mixed));
        assert_eq!(score, Score::NeedsWork);
        assert!(evidence.iter().any(|e| e.contains("agent-with-admin")), "{evidence:?}");
        assert_eq!(trust(&secure, None).0, Score::NotStarted, "no credentials: callers are not identified");
    }
}
