//! Holds a policy's review description to its settings type, so the two
//! cannot drift: every path the description names must be a path of the
//! type, and every setting of the type must be described.

use std::collections::BTreeMap;

use arbiter_review::{Kind, Review};
use serde_json::Value;

/// A path of the settings type.
#[derive(Debug, Clone, Default, PartialEq)]
struct Node {
    need: Need,
    /// The value serde uses when the setting is absent, where the schema
    /// knows it (the field's type is `Serialize`).
    default: Option<Value>,
}

/// Whether a path of the settings type needs a description of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Need {
    /// A setting (a number, string, switch, list or map): lint must know
    /// what changing it means.
    Required,
    /// A table of settings, or an entry of a list or map: described by
    /// what it holds or by its list, but it may be described too (e.g. an
    /// optional table as a detector switch).
    #[default]
    Optional,
}

/// Deeper settings than this are not walked (a recursive type would
/// otherwise never end).
const MAX_DEPTH: usize = 32;

/// Checks a review description (`review.toml`'s text) against the settings
/// type `S`; the error lists every disagreement. A declared default must be
/// the type's; a limit or switch whose absence the type fills in must
/// declare that default, since lint reads an absent limit as no limit.
pub fn check_review<S: schemars::JsonSchema>(review: &str) -> Result<(), String> {
    let review = Review::parse(review).map_err(|e| e.to_string())?;
    let schema = schemars::schema_for!(S);
    let root = schema.as_value();
    let mut paths = BTreeMap::new();
    walk(root, root, Vec::new(), false, 0, &mut paths);
    let mut problems = Vec::new();
    for (pattern, setting) in &review.settings {
        let Some(node) = paths.get(pattern.segments()) else {
            problems.push(format!("it describes `{pattern}`, which the settings type does not have"));
            continue;
        };
        let declared = setting.default.as_ref().and_then(|d| serde_json::to_value(d).ok());
        match (&declared, &node.default) {
            (Some(declared), Some(actual)) if declared != actual => {
                problems.push(format!("`{pattern}` declares default {declared}, the settings type's is {actual}"));
            }
            (None, Some(actual))
                if matches!(setting.kind, Kind::LowerIsStricter | Kind::HigherIsStricter | Kind::Switch) =>
            {
                problems.push(format!("`{pattern}` defaults to {actual} in the settings type: declare it"));
            }
            _ => {}
        }
    }
    for (path, node) in &paths {
        let need = &node.need;
        let described = review.settings.iter().any(|(pattern, setting)| {
            pattern.segments() == path.as_slice()
                || (setting.kind.covers_subtree() && path.starts_with(pattern.segments()))
        });
        if *need == Need::Required && !described {
            problems.push(format!("`{}` of the settings type is not described", arbiter_review::pointer(path)));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// Records every path of the schema `node` at `path`: struct fields by
/// name, list items and map values as `*`.
fn walk(
    root: &Value,
    node: &Value,
    path: Vec<String>,
    in_container: bool,
    depth: usize,
    out: &mut BTreeMap<Vec<String>, Node>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    // A field's default sits beside its `$ref`, not in the definition.
    if let Some(default) = node.get("default") {
        out.entry(path.clone()).or_default().default = Some(default.clone());
    }
    let node = resolve(root, node);
    for combinator in ["oneOf", "anyOf", "allOf"] {
        for variant in node.get(combinator).and_then(Value::as_array).into_iter().flatten() {
            walk(root, variant, path.clone(), in_container, depth + 1, out);
        }
    }
    let concrete =
        ["type", "properties", "const", "enum", "items", "additionalProperties"].iter().any(|k| node.get(k).is_some());
    if !concrete || node.get("type").and_then(Value::as_str) == Some("null") {
        return;
    }
    let child = |key: &str| {
        let mut path = path.clone();
        path.push(key.to_owned());
        path
    };
    match node.get("properties").and_then(Value::as_object) {
        Some(properties) => {
            if !path.is_empty() {
                out.entry(path.clone()).or_default();
            }
            for (name, field) in properties {
                walk(root, field, child(name), false, depth + 1, out);
            }
        }
        None if in_container => {
            out.entry(path.clone()).or_default();
        }
        None => out.entry(path.clone()).or_default().need = Need::Required,
    }
    for container in ["items", "additionalProperties"] {
        if let Some(inner) = node.get(container).filter(|v| v.is_object()) {
            walk(root, inner, child("*"), true, depth + 1, out);
        }
    }
}

/// Follows a `$ref` to the root's `$defs`.
fn resolve<'v>(root: &'v Value, node: &'v Value) -> &'v Value {
    match node.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => root.get("$defs").and_then(|defs| defs.get(name)).unwrap_or(node),
        None => node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        tools: Vec<String>,
        limit: Option<u32>,
        #[serde(default = "three")]
        max: u32,
        rules: Vec<Rule>,
        burst: Option<Burst>,
        prices: std::collections::BTreeMap<String, Burst>,
        #[serde(default)]
        respond: crate::Refusal,
        dialect: crate::sql::Dialect,
        keywords: Vec<crate::sql::Kind>,
    }

    fn three() -> u32 {
        3
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        agent: String,
        tools: Vec<String>,
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Burst {
        calls: u32,
    }

    const FULL: &str = r#"
        [settings]
        "/tools" = "allow-list"
        "/limit" = "lower-is-stricter"
        "/max" = { kind = "lower-is-stricter", default = 3 }
        "/rules" = "allow-list"
        "/rules/*/agent" = "redesign"
        "/rules/*/tools" = "allow-list"
        "/burst" = "switch"
        "/burst/calls" = "lower-is-stricter"
        "/prices" = "allow-list"
        "/prices/*/calls" = "higher-is-stricter"
        "/respond/verdict" = { kind = "redesign", default = "deny" }
        "/respond/approvers" = "allow-list"
        "/respond/valid_for_seconds" = "lower-is-stricter"
        "/dialect" = "redesign"
        "/keywords" = "deny-list"
    "#;

    #[test]
    fn a_description_of_every_setting_passes() {
        check_review::<Settings>(FULL).unwrap();
        // A redesign covers what lies below it.
        let whole_rules = FULL
            .replace("\"/rules/*/agent\" = \"redesign\"\n", "")
            .replace("\"/rules\" = \"allow-list\"", "\"/rules\" = \"redesign\"");
        let whole_rules = whole_rules.replace("        \"/rules/*/tools\" = \"allow-list\"\n", "");
        check_review::<Settings>(&whole_rules).unwrap();
    }

    #[test]
    fn an_undescribed_setting_fails() {
        let missing = FULL.replace("        \"/rules/*/agent\" = \"redesign\"\n", "");
        assert_eq!(
            check_review::<Settings>(&missing).unwrap_err(),
            "`/rules/*/agent` of the settings type is not described"
        );
        let missing = FULL.replace("        \"/respond/approvers\" = \"allow-list\"\n", "");
        assert_eq!(
            check_review::<Settings>(&missing).unwrap_err(),
            "`/respond/approvers` of the settings type is not described",
            "the fields of an internally tagged enum's variants are settings too"
        );
    }

    #[test]
    fn a_path_the_type_lacks_fails() {
        let extra = format!("{FULL}\n\"/rules/*/pipeline\" = \"redesign\"\n\"/tools/*/x\" = \"text\"");
        assert_eq!(
            check_review::<Settings>(&extra).unwrap_err(),
            "it describes `/rules/*/pipeline`, which the settings type does not have; \
             it describes `/tools/*/x`, which the settings type does not have"
        );
    }

    #[test]
    fn defaults_must_be_the_types() {
        let wrong = FULL.replace("default = 3", "default = 4");
        assert_eq!(
            check_review::<Settings>(&wrong).unwrap_err(),
            "`/max` declares default 4, the settings type's is 3"
        );
        let undeclared = FULL.replace("{ kind = \"lower-is-stricter\", default = 3 }", "\"lower-is-stricter\"");
        assert_eq!(
            check_review::<Settings>(&undeclared).unwrap_err(),
            "`/max` defaults to 3 in the settings type: declare it"
        );
    }

    #[test]
    fn a_malformed_description_fails() {
        let err = check_review::<Settings>("[settings]\n\"/tools\" = \"allowlist\"").unwrap_err();
        assert!(err.starts_with("`/tools`: unknown variant `allowlist`"), "{err}");
    }
}
