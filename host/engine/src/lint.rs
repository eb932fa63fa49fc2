//! Review checks on a bundle manifest: floating model aliases, and whether
//! the version bump over a base bundle is large enough for what changed
//! (rules in docs/lint.md). Settings changes are judged by what each
//! policy's review description says the setting is, and reported as
//! tightening or loosening the guardrail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use arbiter_review::{Kind, Review};
use serde::Serialize;

use arbiter_types::ActionKind;

use crate::manifest::{FailMode, Manifest, ManifestPolicy, Mode, Scope};

/// Semantic-version bump levels, smallest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bump {
    /// No bump needed: nothing changed.
    None,
    /// PATCH: nothing a decision depends on.
    Patch,
    /// MINOR: a compatible change of what is allowed.
    Minor,
    /// MAJOR: who or what a rule covers changed.
    Major,
}

impl fmt::Display for Bump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Bump::None => "none",
            Bump::Patch => "PATCH",
            Bump::Minor => "MINOR",
            Bump::Major => "MAJOR",
        })
    }
}

/// What a change does to the guardrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Fewer actions pass.
    Tightens,
    /// More actions pass.
    Loosens,
    /// Neither, or it cannot be told (a redesign, wording, an undescribed
    /// setting, a new component).
    Changes,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Tightens => "tightens",
            Effect::Loosens => "loosens",
            Effect::Changes => "changes",
        })
    }
}

/// The rules of docs/lint.md, one per row of its table; each sets the bump
/// it requires at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// A policy removed (loosens).
    PolicyRemoved,
    /// A policy's fail mode or mode changed.
    FailMode,
    /// A policy's scope changed (which requests it judges).
    Scope,
    /// A setting its policy declares a `redesign` changed.
    RedesignSetting,
    /// A policy added (tightens).
    PolicyAdded,
    /// A capability granted.
    CapabilityGranted,
    /// An entry added to an allow-list (loosens).
    AllowListAdded,
    /// An entry removed from an allow-list (tightens).
    AllowListRemoved,
    /// An entry or the whole list removed from a deny-list (loosens).
    DenyListRemoved,
    /// An entry added to a deny-list (tightens).
    DenyListAdded,
    /// A limit moved the lenient way.
    LimitLoosened,
    /// A limit moved the strict way.
    LimitTightened,
    /// A detector switched off (loosens).
    DetectorOff,
    /// A detector switched on (tightens).
    DetectorOn,
    /// A setting no review description covers changed, was added or removed.
    UndescribedSetting,
    /// A new component version or digest.
    Component,
    /// A `text` setting reworded.
    TextSetting,
    /// Policies, or a list's entries, reordered.
    Reordered,
    /// A scope gains action kinds (listings, results) and nothing else.
    ScopeKindAdded,
}

impl Rule {
    /// The least bump this rule requires.
    pub fn bump(self) -> Bump {
        match self {
            Rule::PolicyRemoved | Rule::FailMode | Rule::Scope | Rule::RedesignSetting => Bump::Major,
            Rule::Component | Rule::TextSetting | Rule::Reordered => Bump::Patch,
            _ => Bump::Minor,
        }
    }

    /// The rule's name in docs/lint.md and in lint's output.
    pub fn id(self) -> &'static str {
        match self {
            Rule::PolicyRemoved => "policy-removed",
            Rule::FailMode => "fail-mode",
            Rule::Scope => "scope",
            Rule::ScopeKindAdded => "scope-kind-added",
            Rule::RedesignSetting => "redesign-setting",
            Rule::PolicyAdded => "policy-added",
            Rule::CapabilityGranted => "capability-granted",
            Rule::AllowListAdded => "allow-list-added",
            Rule::AllowListRemoved => "allow-list-removed",
            Rule::DenyListRemoved => "deny-list-removed",
            Rule::DenyListAdded => "deny-list-added",
            Rule::LimitLoosened => "limit-loosened",
            Rule::LimitTightened => "limit-tightened",
            Rule::DetectorOff => "detector-off",
            Rule::DetectorOn => "detector-on",
            Rule::UndescribedSetting => "undescribed-setting",
            Rule::Component => "component",
            Rule::TextSetting => "text-setting",
            Rule::Reordered => "reordered",
        }
    }
}

/// One reason a bump is needed: the rule that set it, what the change does
/// to the guardrail, and what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The bump it requires.
    pub bump: Bump,
    /// What it does to the guardrail.
    pub effect: Effect,
    /// The rule that set the bump.
    pub rule: Rule,
    /// What changed, for the reader (`policies[tool-scope].settings.allow`).
    pub what: String,
}

impl Change {
    fn new(rule: Rule, effect: Effect, what: String) -> Self {
        Change { bump: rule.bump(), effect, rule, what }
    }
}

/// The bump between two versions (`None` if the new one is not greater).
pub fn bump_between(base: &str, new: &str) -> Option<Bump> {
    let (b, n) = (semver::Version::parse(base).ok()?, semver::Version::parse(new).ok()?);
    if n <= b {
        return Some(Bump::None);
    }
    Some(if n.major > b.major {
        Bump::Major
    } else if n.minor > b.minor {
        Bump::Minor
    } else {
        Bump::Patch
    })
}

/// What changed from `base` to `new`, each with the bump it requires.
/// `reviews` holds, by policy name, the description its settings are
/// judged by (the new component's); a policy without one has every
/// settings change judged undescribed.
pub fn changes(base: &Manifest, new: &Manifest, reviews: &BTreeMap<String, Review>) -> Vec<Change> {
    let mut changes = Vec::new();
    for old in &base.policies {
        match new.policies.iter().find(|p| p.name == old.name) {
            None => changes.push(Change::new(
                Rule::PolicyRemoved,
                Effect::Loosens,
                format!("policy `{}` removed", old.name),
            )),
            Some(now) => compare_policy(old, now, reviews.get(&now.name), &mut changes),
        }
    }
    for now in new.policies.iter().filter(|p| !base.policies.iter().any(|b| b.name == p.name)) {
        changes.push(Change::new(Rule::PolicyAdded, Effect::Tightens, format!("policy `{}` added", now.name)));
    }
    // The order of the policies both bundles have.
    let both = |n: &String| base.policies.iter().any(|b| &b.name == n) && new.policies.iter().any(|p| &p.name == n);
    let order = |m: &Manifest| m.policies.iter().map(|p| p.name.clone()).filter(both).collect::<Vec<_>>();
    if order(base) != order(new) {
        changes.push(Change::new(Rule::Reordered, Effect::Changes, "policies reordered".to_owned()));
    }
    changes
}

fn compare_policy(old: &ManifestPolicy, now: &ManifestPolicy, review: Option<&Review>, changes: &mut Vec<Change>) {
    let name = &now.name;
    if old.fail != now.fail {
        let effect = if now.fail == FailMode::Open { Effect::Loosens } else { Effect::Tightens };
        changes.push(Change::new(
            Rule::FailMode,
            effect,
            format!("`{name}` fail mode {:?} -> {:?}", old.fail, now.fail),
        ));
    }
    if old.mode != now.mode {
        let effect = if now.mode == Mode::Monitor { Effect::Loosens } else { Effect::Tightens };
        changes.push(Change::new(Rule::FailMode, effect, format!("`{name}` mode {:?} -> {:?}", old.mode, now.mode)));
    }
    if old.scope != now.scope {
        changes.push(scope_change(name, &old.scope, &now.scope));
    }
    let (old_caps, new_caps): (BTreeSet<_>, BTreeSet<_>) =
        (old.capabilities.iter().collect(), now.capabilities.iter().collect());
    for added in new_caps.difference(&old_caps) {
        changes.push(Change::new(
            Rule::CapabilityGranted,
            Effect::Changes,
            format!("`{name}` gains capability `{added}`"),
        ));
    }
    if old.sha256 != now.sha256 || old.version != now.version {
        changes.push(Change::new(
            Rule::Component,
            Effect::Changes,
            format!("`{name}` component {} -> {}", old.version, now.version),
        ));
    }
    let (old_settings, new_settings) =
        (toml::Value::Table(old.settings.clone()), toml::Value::Table(now.settings.clone()));
    let mut settings = Settings { policy: name, review, changes };
    settings.compare(&mut Vec::new(), Some(&old_settings), Some(&new_settings));
}

/// Compares one policy's settings by what its review description says
/// each setting is.
struct Settings<'a> {
    policy: &'a str,
    review: Option<&'a Review>,
    changes: &'a mut Vec<Change>,
}

impl Settings<'_> {
    fn push(&mut self, rule: Rule, effect: Effect, path: &[String], what: String) {
        let what = format!("`{}` settings{} {what}", self.policy, arbiter_review::pointer(path));
        self.changes.push(Change::new(rule, effect, what));
    }

    fn compare(&mut self, path: &mut Vec<String>, old: Option<&toml::Value>, new: Option<&toml::Value>) {
        if old == new {
            return;
        }
        match self.review.and_then(|r| r.setting(path)) {
            Some((_, setting)) => {
                let default = setting.default.as_ref();
                let (old, new) = (old.or(default), new.or(default));
                if old != new {
                    self.judge(path, setting.kind, old, new);
                }
            }
            // A table the description does not name is a group of settings.
            None if old.is_none_or(toml::Value::is_table) && new.is_none_or(toml::Value::is_table) => {
                self.descend(path, old, new);
            }
            None => {
                let why = match self.review {
                    Some(_) => "the policy does not describe it",
                    None => "the policy declares no review description",
                };
                self.push(Rule::UndescribedSetting, Effect::Changes, path, format!("{} ({why})", presence(old, new)));
            }
        }
    }

    /// Compares each key of two tables (either may be absent).
    fn descend(&mut self, path: &mut Vec<String>, old: Option<&toml::Value>, new: Option<&toml::Value>) {
        let table = |v: Option<&toml::Value>| v.and_then(toml::Value::as_table).cloned().unwrap_or_default();
        let (old, new) = (table(old), table(new));
        for key in old.keys().chain(new.keys().filter(|k| !old.contains_key(*k))) {
            path.push(key.clone());
            self.compare(path, old.get(key), new.get(key));
            path.pop();
        }
    }

    fn judge(&mut self, path: &mut Vec<String>, kind: Kind, old: Option<&toml::Value>, new: Option<&toml::Value>) {
        match kind {
            Kind::Redesign => {
                self.push(Rule::RedesignSetting, Effect::Changes, path, format!("{} (a redesign)", presence(old, new)))
            }
            Kind::Text => self.push(Rule::TextSetting, Effect::Changes, path, "reworded".to_owned()),
            Kind::AllowList | Kind::DenyList => self.lists(path, kind, old, new),
            Kind::LowerIsStricter | Kind::HigherIsStricter => self.limits(path, kind, old, new),
            Kind::Switch => {
                let on = |v: Option<&toml::Value>| v.is_some_and(|v| v.as_bool() != Some(false));
                match (on(old), on(new)) {
                    (true, false) => self.push(Rule::DetectorOff, Effect::Loosens, path, "turned off".to_owned()),
                    (false, true) => self.push(Rule::DetectorOn, Effect::Tightens, path, "turned on".to_owned()),
                    // On both sides: what it holds is judged setting by setting.
                    _ => self.descend(path, old, new),
                }
            }
        }
    }

    /// Entries added and removed; lists of tables of one length, and the
    /// values of keys both maps have, are compared entry by entry.
    fn lists(&mut self, path: &mut Vec<String>, kind: Kind, old: Option<&toml::Value>, new: Option<&toml::Value>) {
        let (added, removed) = match (old.unwrap_or(&EMPTY), new.unwrap_or(&EMPTY)) {
            (toml::Value::Array(a), toml::Value::Array(b))
                if a.len() == b.len() && a.iter().chain(b).all(toml::Value::is_table) =>
            {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    path.push(i.to_string());
                    self.compare(path, Some(x), Some(y));
                    path.pop();
                }
                return;
            }
            (toml::Value::Table(a), toml::Value::Table(b)) => {
                for key in a.keys().filter(|k| b.contains_key(*k)) {
                    path.push(key.clone());
                    self.compare(path, a.get(key), b.get(key));
                    path.pop();
                }
                let keys = |t: &toml::Table, other: &toml::Table| {
                    t.keys()
                        .filter(|k| !other.contains_key(*k))
                        .map(|k| toml::Value::String(k.clone()))
                        .collect::<Vec<_>>()
                };
                (keys(b, a), keys(a, b))
            }
            (a, b) => {
                let entries = |v: &toml::Value| v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
                let (a, b) = (entries(a), entries(b));
                let added: Vec<_> = b.iter().filter(|v| !a.contains(v)).cloned().collect();
                let removed: Vec<_> = a.iter().filter(|v| !b.contains(v)).cloned().collect();
                if added.is_empty() && removed.is_empty() {
                    self.push(Rule::Reordered, Effect::Changes, path, "reordered".to_owned());
                    return;
                }
                (added, removed)
            }
        };
        let (on_add, on_remove) = match kind {
            Kind::AllowList => ((Rule::AllowListAdded, Effect::Loosens), (Rule::AllowListRemoved, Effect::Tightens)),
            _ => ((Rule::DenyListAdded, Effect::Tightens), (Rule::DenyListRemoved, Effect::Loosens)),
        };
        let list = kind.describe();
        if !added.is_empty() {
            self.push(on_add.0, on_add.1, path, format!("{list} gains {}", entries(&added)));
        }
        if !removed.is_empty() {
            self.push(on_remove.0, on_remove.1, path, format!("{list} loses {}", entries(&removed)));
        }
    }

    /// A limit absent (with no default) is no limit at all.
    fn limits(&mut self, path: &[String], kind: Kind, old: Option<&toml::Value>, new: Option<&toml::Value>) {
        let number = |v: Option<&toml::Value>| match v {
            None => Some(None),
            Some(toml::Value::Integer(i)) => Some(Some(*i as f64)),
            Some(toml::Value::Float(f)) => Some(Some(*f)),
            Some(_) => None,
        };
        let (Some(a), Some(b)) = (number(old), number(new)) else {
            self.push(
                Rule::UndescribedSetting,
                Effect::Changes,
                path,
                format!("{} (not a number)", presence(old, new)),
            );
            return;
        };
        // Stricter as seen from a lower-is-stricter limit: no limit is the loosest.
        let rank = |n: Option<f64>| match kind {
            Kind::HigherIsStricter => -n.unwrap_or(f64::NEG_INFINITY),
            _ => n.unwrap_or(f64::INFINITY),
        };
        let show =
            |n: Option<f64>, v: Option<&toml::Value>| n.and(v).map_or("no limit".to_owned(), toml::Value::to_string);
        let (from, to) = (show(a, old), show(b, new));
        let moved = if b.unwrap_or(f64::INFINITY) < a.unwrap_or(f64::INFINITY) { "lowered" } else { "raised" };
        if rank(b) < rank(a) {
            self.push(
                Rule::LimitTightened,
                Effect::Tightens,
                path,
                format!("{moved} {from} -> {to} ({})", kind.describe()),
            );
        } else if rank(b) > rank(a) {
            self.push(
                Rule::LimitLoosened,
                Effect::Loosens,
                path,
                format!("{moved} {from} -> {to} ({})", kind.describe()),
            );
        }
    }
}

const EMPTY: toml::Value = toml::Value::Array(Vec::new());

fn entries(values: &[toml::Value]) -> String {
    values.iter().map(|v| serde_json::to_string(v).unwrap_or_default()).collect::<Vec<_>>().join(", ")
}

fn presence(old: Option<&toml::Value>, new: Option<&toml::Value>) -> &'static str {
    match (old, new) {
        (None, _) => "added",
        (_, None) => "removed",
        _ => "changed",
    }
}

/// A scope that only gains action kinds (the policy now also judges
/// listings or results) tightens; any other change moves what it judges.
fn scope_change(name: &str, old: &Scope, now: &Scope) -> Change {
    let kinds = |s: &Scope| -> BTreeSet<ActionKind> {
        s.actions.clone().unwrap_or_else(|| ActionKind::ORIGINAL.to_vec()).into_iter().collect()
    };
    let (before, after) = (kinds(old), kinds(now));
    let same_but_kinds = Scope { actions: None, ..old.clone() } == Scope { actions: None, ..now.clone() };
    if same_but_kinds && after.is_superset(&before) {
        let added: Vec<&str> = after.difference(&before).map(|k| k.as_str()).collect();
        let what = format!("`{name}` now also judges {}", added.join(", "));
        return Change::new(Rule::ScopeKindAdded, Effect::Tightens, what);
    }
    Change::new(Rule::Scope, Effect::Changes, format!("`{name}` scope changed (which requests it judges)"))
}

/// Model ids in `pinned` settings that float (`*-latest`, or no date).
pub fn floating_pins(manifest: &Manifest) -> Vec<String> {
    let mut found = Vec::new();
    for policy in &manifest.policies {
        collect_pins(&policy.name, &toml::Value::Table(policy.settings.clone()), false, &mut found);
    }
    found
}

fn collect_pins(policy: &str, value: &toml::Value, under_pinned: bool, found: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => t.iter().for_each(|(k, v)| collect_pins(policy, v, k == "pinned", found)),
        toml::Value::Array(items) => items.iter().for_each(|v| collect_pins(policy, v, under_pinned, found)),
        toml::Value::String(model) if under_pinned => {
            let dated = model.as_bytes().windows(8).any(|w| w.iter().all(u8::is_ascii_digit))
                || model
                    .as_bytes()
                    .windows(10)
                    .any(|w| w[4] == b'-' && w[7] == b'-' && w.iter().filter(|b| b.is_ascii_digit()).count() == 8);
            if model.ends_with("-latest") || !dated {
                found.push(format!("`{policy}` pins floating model alias `{model}`"));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
        [bundle]
        name = "b"
        version = "1.0.0"
        [[policies]]
        name = "tool-scope"
        version = "0.1.0"
        component = "t.wasm"
        sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
        [[policies.settings.rules]]
        agent = "monitor"
        tools = ["warehouse.query", "docs.search"]
        [[policies]]
        name = "human-review"
        version = "0.1.0"
        component = "h.wasm"
        sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
        [policies.settings]
        approvers = ["oncall"]
        valid_for_seconds = 3600
        irreversible_tools = ["warehouse.drop_table", "pagerduty.create_incident"]
        [[policies.settings.sql_rules]]
        tools = ["warehouse.query"]
        argument = "sql"
        keywords = ["drop", "delete"]
        [[policies]]
        name = "token-budget"
        version = "0.1.0"
        component = "b.wasm"
        sha256 = "2222222222222222222222222222222222222222222222222222222222222222"
        [[policies.settings.budgets]]
        per = "pipeline"
        window = "day"
        limit = 200000
        [[policies]]
        name = "context-bloat"
        version = "0.1.0"
        component = "c.wasm"
        sha256 = "3333333333333333333333333333333333333333333333333333333333333333"
        [policies.settings]
        deny_above = 80000
        summarize = { above = 40000, to = 10000 }
        [[policies]]
        name = "undescribed"
        version = "0.1.0"
        component = "u.wasm"
        sha256 = "4444444444444444444444444444444444444444444444444444444444444444"
        [policies.settings]
        tools = ["a"]
    "#;

    /// The reference policies' own descriptions: the rules are tested on
    /// what the shipped policies declare.
    fn reviews() -> BTreeMap<String, Review> {
        let parse = |text: &str| Review::parse(text).unwrap();
        BTreeMap::from([
            ("tool-scope".to_owned(), parse(include_str!("../../../policies/tool-scope/review.toml"))),
            ("human-review".to_owned(), parse(include_str!("../../../policies/human-review/review.toml"))),
            ("token-budget".to_owned(), parse(include_str!("../../../policies/token-budget/review.toml"))),
            ("context-bloat".to_owned(), parse(include_str!("../../../policies/context-bloat/review.toml"))),
        ])
    }

    fn lint(edit: impl Fn(&str) -> String) -> Vec<Change> {
        let base = Manifest::from_toml(BASE, Path::new("base")).unwrap();
        let new = Manifest::from_toml(&edit(BASE), Path::new("new")).unwrap();
        changes(&base, &new, &reviews())
    }

    /// The one change an edit makes, checked against the rule, its bump and
    /// its effect.
    fn only(edit: impl Fn(&str) -> String, rule: Rule, bump: Bump, effect: Effect) -> String {
        let changes = lint(edit);
        assert_eq!(changes.len(), 1, "{changes:#?}");
        let change = &changes[0];
        assert_eq!((change.rule, change.bump, change.effect), (rule, bump, effect), "{}", change.what);
        change.what.clone()
    }

    #[test]
    fn nothing_changed_needs_nothing() {
        assert!(lint(str::to_owned).is_empty());
        // An explicit default is no change.
        let explicit = |s: &str| s.replace("argument = \"sql\"", "argument = \"sql\"\nread_only = false");
        assert!(lint(explicit).is_empty(), "{:?}", lint(explicit));
    }

    #[test]
    fn policy_removed() {
        let cut = |s: &str| s[..s.find("[[policies]]\n        name = \"undescribed\"").unwrap()].to_owned();
        only(cut, Rule::PolicyRemoved, Bump::Major, Effect::Loosens);
    }

    #[test]
    fn fail_mode() {
        let open =
            |s: &str| s.replacen("[[policies.settings.rules]]", "fail = \"open\"\n[[policies.settings.rules]]", 1);
        only(open, Rule::FailMode, Bump::Major, Effect::Loosens);
        let monitor =
            |s: &str| s.replacen("[[policies.settings.rules]]", "mode = \"monitor\"\n[[policies.settings.rules]]", 1);
        only(monitor, Rule::FailMode, Bump::Major, Effect::Loosens);
    }

    #[test]
    fn scope() {
        let scoped = |s: &str| {
            s.replacen(
                "[[policies.settings.rules]]",
                "scope = { actions = [\"tool_call\"] }\n[[policies.settings.rules]]",
                1,
            )
        };
        only(scoped, Rule::Scope, Bump::Major, Effect::Changes);
    }

    #[test]
    fn a_scope_newly_judging_results_is_at_least_minor() {
        fn scoped(actions: &'static str) -> impl Fn(&str) -> String {
            move |s: &str| {
                s.replacen(
                    "[[policies.settings.rules]]",
                    &format!("scope = {{ actions = {actions} }}\n[[policies.settings.rules]]"),
                    1,
                )
            }
        }
        // No `actions` means tool calls and LLM requests.
        let what = only(
            scoped("[\"tool_call\", \"llm_request\", \"tool_result\"]"),
            Rule::ScopeKindAdded,
            Bump::Minor,
            Effect::Tightens,
        );
        assert!(what.ends_with("now also judges tool_result"), "{what}");
        // Trading one kind for another is still a redesign.
        only(scoped("[\"tool_result\"]"), Rule::Scope, Bump::Major, Effect::Changes);
    }

    #[test]
    fn redesign_setting() {
        let per_team = |s: &str| s.replace("per = \"pipeline\"", "per = \"team\"");
        let what = only(per_team, Rule::RedesignSetting, Bump::Major, Effect::Changes);
        assert_eq!(what, "`token-budget` settings/budgets/0/per changed (a redesign)");
        let other_agent = |s: &str| s.replace("agent = \"monitor\"", "agent = \"*\"");
        only(other_agent, Rule::RedesignSetting, Bump::Major, Effect::Changes);
    }

    #[test]
    fn policy_added() {
        let added = |s: &str| {
            format!(
                "{s}\n[[policies]]\nname = \"x\"\nversion = \"1.0.0\"\ncomponent = \"x\"\nsha256 = \"{}\"\n",
                "5".repeat(64)
            )
        };
        only(added, Rule::PolicyAdded, Bump::Minor, Effect::Tightens);
    }

    #[test]
    fn capability_granted() {
        let granted = |s: &str| {
            s.replacen("[[policies.settings.rules]]", "capabilities = [\"log\"]\n[[policies.settings.rules]]", 1)
        };
        only(granted, Rule::CapabilityGranted, Bump::Minor, Effect::Changes);
    }

    #[test]
    fn allow_list_added() {
        let shell = |s: &str| s.replace("\"docs.search\"]", "\"docs.search\", \"shell.exec\"]");
        let what = only(shell, Rule::AllowListAdded, Bump::Minor, Effect::Loosens);
        assert_eq!(what, "`tool-scope` settings/rules/0/tools allow-list gains \"shell.exec\"");
        let approver = |s: &str| s.replace("[\"oncall\"]", "[\"oncall\", \"intern\"]");
        only(approver, Rule::AllowListAdded, Bump::Minor, Effect::Loosens);
        let rule = |s: &str| {
            s.replacen(
                "[[policies]]\n        name = \"human-review\"",
                "[[policies.settings.rules]]\ntools = [\"s3.*\"]\n[[policies]]\n        name = \"human-review\"",
                1,
            )
        };
        only(rule, Rule::AllowListAdded, Bump::Minor, Effect::Loosens);
    }

    #[test]
    fn allow_list_removed() {
        let fewer = |s: &str| s.replace(", \"docs.search\"]", "]");
        only(fewer, Rule::AllowListRemoved, Bump::Minor, Effect::Tightens);
    }

    #[test]
    fn deny_list_removed() {
        let ungated = |s: &str| {
            s.replace("[\"warehouse.drop_table\", \"pagerduty.create_incident\"]", "[\"warehouse.drop_table\"]")
        };
        let what = only(ungated, Rule::DenyListRemoved, Bump::Minor, Effect::Loosens);
        assert_eq!(what, "`human-review` settings/irreversible_tools deny-list loses \"pagerduty.create_incident\"");
        let keywords = |s: &str| s.replace("keywords = [\"drop\", \"delete\"]", "keywords = [\"drop\"]");
        only(keywords, Rule::DenyListRemoved, Bump::Minor, Effect::Loosens);
        // Removing the whole key is removing every entry, not a PATCH.
        let key =
            |s: &str| s.replace("irreversible_tools = [\"warehouse.drop_table\", \"pagerduty.create_incident\"]\n", "");
        only(key, Rule::DenyListRemoved, Bump::Minor, Effect::Loosens);
    }

    #[test]
    fn deny_list_added() {
        let gated =
            |s: &str| s.replace("[\"warehouse.drop_table\",", "[\"warehouse.drop_table\", \"s3.delete_object\",");
        only(gated, Rule::DenyListAdded, Bump::Minor, Effect::Tightens);
    }

    #[test]
    fn limit_loosened() {
        let raised = |s: &str| s.replace("limit = 200000", "limit = 500000");
        let what = only(raised, Rule::LimitLoosened, Bump::Minor, Effect::Loosens);
        assert_eq!(what, "`token-budget` settings/budgets/0/limit raised 200000 -> 500000 (limit, lower is stricter)");
        let longer = |s: &str| s.replace("valid_for_seconds = 3600", "valid_for_seconds = 86400");
        only(longer, Rule::LimitLoosened, Bump::Minor, Effect::Loosens);
    }

    #[test]
    fn limit_tightened() {
        let lowered = |s: &str| s.replace("limit = 200000", "limit = 150000");
        let what = only(lowered, Rule::LimitTightened, Bump::Minor, Effect::Tightens);
        assert_eq!(what, "`token-budget` settings/budgets/0/limit lowered 200000 -> 150000 (limit, lower is stricter)");
        let quicker = |s: &str| s.replace("valid_for_seconds = 3600", "valid_for_seconds = 600");
        only(quicker, Rule::LimitTightened, Bump::Minor, Effect::Tightens);
    }

    #[test]
    fn detector_off() {
        let unread = |s: &str| {
            s.replace("valid_for_seconds = 3600", "valid_for_seconds = 3600\nhonour_declared_irreversible = false")
        };
        only(unread, Rule::DetectorOff, Bump::Minor, Effect::Loosens);
        let no_summary = |s: &str| s.replace("summarize = { above = 40000, to = 10000 }\n", "");
        let what = only(no_summary, Rule::DetectorOff, Bump::Minor, Effect::Loosens);
        assert_eq!(what, "`context-bloat` settings/summarize turned off");
    }

    #[test]
    fn detector_on() {
        let read_only = |s: &str| s.replace("argument = \"sql\"", "argument = \"sql\"\nread_only = true");
        only(read_only, Rule::DetectorOn, Bump::Minor, Effect::Tightens);
    }

    #[test]
    fn undescribed_setting() {
        let extra = |s: &str| s.replace("deny_above = 80000", "deny_above = 80000\nsummarise = true");
        let what = only(extra, Rule::UndescribedSetting, Bump::Minor, Effect::Changes);
        assert_eq!(what, "`context-bloat` settings/summarise added (the policy does not describe it)");
        let no_review = |s: &str| s.replace("tools = [\"a\"]", "tools = [\"a\", \"b\"]");
        let what = only(no_review, Rule::UndescribedSetting, Bump::Minor, Effect::Changes);
        assert_eq!(what, "`undescribed` settings/tools changed (the policy declares no review description)");
        let removed = |s: &str| s.replace("tools = [\"a\"]\n", "");
        only(removed, Rule::UndescribedSetting, Bump::Minor, Effect::Changes);
    }

    #[test]
    fn component() {
        let version = |s: &str| s.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1);
        only(version, Rule::Component, Bump::Patch, Effect::Changes);
    }

    #[test]
    fn text_setting() {
        let review = Review::parse("[settings]\n\"/message\" = \"text\"").unwrap();
        let manifest = |message: &str| {
            let text = format!(
                "[bundle]\nname = \"b\"\nversion = \"1.0.0\"\n[[policies]]\nname = \"p\"\nversion = \"1.0.0\"\ncomponent = \"p\"\nsha256 = \"{}\"\nsettings = {{ message = \"{message}\" }}\n",
                "6".repeat(64)
            );
            Manifest::from_toml(&text, Path::new("m")).unwrap()
        };
        let changes = changes(&manifest("hello"), &manifest("hi"), &BTreeMap::from([("p".to_owned(), review)]));
        assert_eq!(changes.iter().map(|c| (c.rule, c.bump)).collect::<Vec<_>>(), [(Rule::TextSetting, Bump::Patch)]);
    }

    #[test]
    fn reordered() {
        let swapped =
            |s: &str| s.replace("[\"warehouse.query\", \"docs.search\"]", "[\"docs.search\", \"warehouse.query\"]");
        only(swapped, Rule::Reordered, Bump::Patch, Effect::Changes);
    }

    #[test]
    fn versions_and_aliases() {
        assert_eq!(bump_between("1.2.3", "2.0.0"), Some(Bump::Major));
        assert_eq!(bump_between("1.2.3", "1.3.0"), Some(Bump::Minor));
        assert_eq!(bump_between("1.2.3", "1.2.4"), Some(Bump::Patch));
        assert_eq!(bump_between("1.2.3", "1.2.3"), Some(Bump::None));
        let pinned = |model: &str| {
            let text = format!(
                "[bundle]\nname = \"b\"\nversion = \"1.0.0\"\n[[policies]]\nname = \"model-pin\"\nversion = \"1.0.0\"\ncomponent = \"p\"\nsha256 = \"{}\"\nsettings = {{ pinned = [\"{model}\"] }}\n",
                "7".repeat(64)
            );
            floating_pins(&Manifest::from_toml(&text, Path::new("m")).unwrap())
        };
        assert_eq!(pinned("gpt-4o"), ["`model-pin` pins floating model alias `gpt-4o`"]);
        assert!(pinned("gpt-4o-2024-08-06").is_empty());
    }
}
