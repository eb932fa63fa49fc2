//! Review checks on a bundle manifest: floating model aliases, and whether
//! the version bump over a base bundle is large enough for what changed
//! (rules in docs/lint.md).

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::manifest::{Manifest, ManifestPolicy};

/// Semantic-version bump levels, smallest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bump {
    None,
    Patch,
    Minor,
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

/// One reason a bump is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub bump: Bump,
    pub what: String,
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
pub fn changes(base: &Manifest, new: &Manifest) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut change = |bump, what: String| changes.push(Change { bump, what });
    for old in &base.policies {
        match new.policies.iter().find(|p| p.name == old.name) {
            None => change(Bump::Major, format!("policy `{}` removed", old.name)),
            Some(now) => compare_policy(old, now, &mut change),
        }
    }
    for now in new.policies.iter().filter(|p| !base.policies.iter().any(|b| b.name == p.name)) {
        change(Bump::Minor, format!("policy `{}` added", now.name));
    }
    let order = |m: &Manifest| {
        m.policies
            .iter()
            .map(|p| p.name.clone())
            .filter(|n| base.policies.iter().any(|b| &b.name == n))
            .collect::<Vec<_>>()
    };
    if order(base) != order(new) {
        change(Bump::Patch, "policies reordered".to_owned());
    }
    changes
}

fn compare_policy(old: &ManifestPolicy, now: &ManifestPolicy, change: &mut impl FnMut(Bump, String)) {
    let name = &now.name;
    if old.fail != now.fail {
        change(Bump::Major, format!("`{name}` fail mode {:?} -> {:?}", old.fail, now.fail));
    }
    if old.mode != now.mode {
        change(Bump::Major, format!("`{name}` mode {:?} -> {:?}", old.mode, now.mode));
    }
    if old.scope != now.scope {
        change(Bump::Major, format!("`{name}` scope changed (which requests it judges)"));
    }
    let (old_caps, new_caps): (BTreeSet<_>, BTreeSet<_>) =
        (old.capabilities.iter().collect(), now.capabilities.iter().collect());
    for added in new_caps.difference(&old_caps) {
        change(Bump::Minor, format!("`{name}` gains capability `{added}`"));
    }
    if old.sha256 != now.sha256 || old.version != now.version {
        change(Bump::Patch, format!("`{name}` component {} -> {}", old.version, now.version));
    }
    let (old_settings, new_settings) =
        (toml::Value::Table(old.settings.clone()), toml::Value::Table(now.settings.clone()));
    compare_settings(name, "settings", &old_settings, &new_settings, change);
}

/// Walks two settings documents: removed list entries (an allowed tool, a
/// pinned model) and lowered numbers (a limit) make a policy stricter
/// (MINOR); any other difference is a PATCH.
fn compare_settings(
    policy: &str,
    path: &str,
    old: &toml::Value,
    new: &toml::Value,
    change: &mut impl FnMut(Bump, String),
) {
    use toml::Value::{Array, Float, Integer, Table};
    match (old, new) {
        (Table(a), Table(b)) => {
            for key in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let at = format!("{path}.{key}");
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => compare_settings(policy, &at, x, y, change),
                    _ => change(Bump::Patch, format!("`{policy}` {at} added or removed")),
                }
            }
        }
        (Array(a), Array(b)) if a.iter().all(|v| !v.is_table()) => {
            let removed: Vec<String> = a.iter().filter(|v| !b.contains(v)).map(|v| v.to_string()).collect();
            if !removed.is_empty() {
                change(Bump::Minor, format!("`{policy}` {path} no longer lists {}", removed.join(", ")));
            } else if a != b {
                change(Bump::Patch, format!("`{policy}` {path} extended"));
            }
        }
        (Array(a), Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare_settings(policy, &format!("{path}[{i}]"), x, y, change);
            }
        }
        (Integer(x), Integer(y)) if y < x => change(Bump::Minor, format!("`{policy}` {path} lowered {x} -> {y}")),
        (Float(x), Float(y)) if y < x => change(Bump::Minor, format!("`{policy}` {path} lowered {x} -> {y}")),
        (x, y) if x != y => change(Bump::Patch, format!("`{policy}` {path} changed")),
        _ => {}
    }
}

/// Glob match (`*`, `?`) as the manifest's tool scopes use it.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    globset::Glob::new(pattern).map(|g| g.compile_matcher().is_match(text)).unwrap_or(false)
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
        component = "a.wasm"
        sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
        [policies.settings]
        tools = ["a", "b"]
        limit = 10
        [[policies]]
        name = "model-pin"
        version = "0.1.0"
        component = "m.wasm"
        sha256 = "1111111111111111111111111111111111111111111111111111111111111111"
        [policies.settings]
        pinned = ["gpt-4o-2024-08-06"]
    "#;

    fn required(edit: impl Fn(String) -> String) -> Bump {
        let base = Manifest::from_toml(BASE, Path::new("base")).unwrap();
        let new = Manifest::from_toml(&edit(BASE.to_owned()), Path::new("new")).unwrap();
        changes(&base, &new).iter().map(|c| c.bump).max().unwrap_or(Bump::None)
    }

    /// The table of changes and the bump each requires at least.
    #[test]
    fn bump_rules() {
        type Edit = Box<dyn Fn(String) -> String>;
        let cases: Vec<(&str, Edit, Bump)> = vec![
            ("nothing", Box::new(|s| s), Bump::None),
            ("a tool added", Box::new(|s| s.replace(r#"["a", "b"]"#, r#"["a", "b", "c"]"#)), Bump::Patch),
            ("a tool removed", Box::new(|s| s.replace(r#"["a", "b"]"#, r#"["a"]"#)), Bump::Minor),
            ("a limit lowered", Box::new(|s| s.replace("limit = 10", "limit = 5")), Bump::Minor),
            ("a limit raised", Box::new(|s| s.replace("limit = 10", "limit = 50")), Bump::Patch),
            (
                "a new capability",
                Box::new(|s| s.replacen("[policies.settings]", "capabilities = [\"log\"]\n[policies.settings]", 1)),
                Bump::Minor,
            ),
            (
                "a new policy",
                Box::new(|s| {
                    format!(
                        "{s}\n[[policies]]\nname = \"x\"\nversion = \"1.0.0\"\ncomponent = \"x\"\nsha256 = \"{}\"\n",
                        "2".repeat(64)
                    )
                }),
                Bump::Minor,
            ),
            (
                "a policy removed",
                Box::new(|s| s[..s.find("[[policies]]\n        name = \"model-pin\"").unwrap()].to_owned()),
                Bump::Major,
            ),
            (
                "fail mode changed",
                Box::new(|s| s.replacen("[policies.settings]", "fail = \"open\"\n[policies.settings]", 1)),
                Bump::Major,
            ),
            (
                "monitor mode",
                Box::new(|s| s.replacen("[policies.settings]", "mode = \"monitor\"\n[policies.settings]", 1)),
                Bump::Major,
            ),
            (
                "new component version",
                Box::new(|s| s.replacen("version = \"0.1.0\"", "version = \"0.1.1\"", 1)),
                Bump::Patch,
            ),
        ];
        for (what, edit, bump) in cases {
            assert_eq!(required(edit), bump, "{what}");
        }
    }

    #[test]
    fn versions_and_aliases() {
        assert_eq!(bump_between("1.2.3", "2.0.0"), Some(Bump::Major));
        assert_eq!(bump_between("1.2.3", "1.3.0"), Some(Bump::Minor));
        assert_eq!(bump_between("1.2.3", "1.2.4"), Some(Bump::Patch));
        assert_eq!(bump_between("1.2.3", "1.2.3"), Some(Bump::None));
        let manifest = Manifest::from_toml(&BASE.replace("gpt-4o-2024-08-06", "gpt-4o"), Path::new("m")).unwrap();
        assert_eq!(floating_pins(&manifest), ["`model-pin` pins floating model alias `gpt-4o`"]);
        assert!(floating_pins(&Manifest::from_toml(BASE, Path::new("m")).unwrap()).is_empty());
    }
}
