//! Generators shared by the property tests of arbiter's readers (the decide
//! request, the gateway classifiers, the bundle manifest, the audit
//! verifier): arbitrary JSON, hostile strings and numbers, mutations of a
//! valid example at a known path, and the check that a rejection is a
//! clear error. What each target asserts is in docs/fuzzing.md.
//!
//! Inputs are near valid on purpose: random bytes are refused by the first
//! JSON check, while a valid example with one field changed reaches the
//! code that validates that field.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

/// Cases per property when `PROPTEST_CASES` is not set: small enough that
/// every property test of the workspace runs within a minute in debug.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(default_cases);
    // Failures are turned into named regression tests by hand; no
    // `proptest-regressions/` files appear next to the sources.
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// The longest error message (in characters) a reader may give: errors
/// travel in HTTP bodies, log lines and terminal output.
pub const MAX_ERROR_CHARS: usize = 1024;

/// A rejection is clear when it says something, stays within
/// [`MAX_ERROR_CHARS`], carries no control characters (which would forge
/// log lines or drive a terminal) and names one of `names`, the field or
/// problem at fault (any text when `names` is empty).
pub fn check_clear(message: &str, names: &[&str]) -> Result<(), TestCaseError> {
    prop_assert!(!message.trim().is_empty(), "an empty error");
    let chars = message.chars().count();
    prop_assert!(chars <= MAX_ERROR_CHARS, "an error of {} chars: {}…", chars, excerpt(message));
    prop_assert!(!message.chars().any(char::is_control), "control characters in the error {:?}", excerpt(message));
    prop_assert!(
        names.is_empty() || names.iter().any(|name| message.contains(name)),
        "the error {:?} names none of {:?}",
        excerpt(message),
        names
    );
    Ok(())
}

fn excerpt(message: &str) -> String {
    message.chars().take(300).collect()
}

/// Strings that readers get wrong: empty, long, control characters,
/// separators and quotes, non-ASCII (combining, right-to-left, emoji,
/// zero-width), lookalikes of names.
pub fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9_.-]{1,12}",
        1 => Just(String::new()),
        1 => Just(" ".to_owned()),
        1 => "[\\x00-\\x1f\\x7f]{1,4}",
        1 => "[a-z]{0,4}[\n\r\t\u{1b}\u{85}\u{2028}][a-z]{0,4}",
        1 => "[\"'`\\\\/;:*?{}\\[\\]]{1,6}",
        2 => "\\PC{1,16}",
        1 => "[\u{300}-\u{36f}\u{200b}-\u{200f}\u{202a}-\u{202e}\u{feff}]{1,4}",
        1 => "[\u{1f600}-\u{1f64f}]{1,3}",
        1 => (1usize..3000).prop_map(|n| "x".repeat(n)),
        1 => (1usize..800).prop_map(|n| "é\u{1b}[".repeat(n)),
    ]
}

/// Numbers at and beyond the edges of every integer type readers parse.
pub fn hostile_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from(0)),
        Just(Value::from(-1)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(i64::MIN)),
        Just(Value::from(u32::MAX as u64 + 1)),
        Just(Value::from(1e308)),
        Just(Value::from(-0.0)),
        Just(Value::from(0.5)),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
    ]
}

/// Any JSON value, up to a few levels deep, with hostile leaves.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_number(),
        hostile_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((hostile_string(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `depth` nested arrays around `null`: deeper than any reader recurses
/// safely without a limit.
pub fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

/// The same as text, without building the value (a value nested deeply
/// enough to matter overflows the stack when dropped).
pub fn nested_text(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// One step into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Where a mutation happened, as the readers name fields: `a.b[2].c`.
pub fn path_text(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) if text.is_empty() => text.push_str(key),
            Step::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Step::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// Every path to a member or element of `value`, outermost first.
pub fn paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let children: Vec<(Step, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
            Value::Array(items) => items.iter().enumerate().map(|(i, v)| (Step::Index(i), v)).collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            at.push(step);
            out.push(at.clone());
            walk(child, at, out);
            at.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

/// What to do at a path.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Remove the member or element.
    Remove,
    /// Replace it with another value (often of another type).
    Replace(Value),
    /// Add an unknown member next to it (in its object).
    AddSibling(String, Value),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => Just(Mutation::Remove),
        2 => hostile_string().prop_map(|s| Mutation::Replace(Value::String(s))),
        2 => hostile_number().prop_map(Mutation::Replace),
        2 => json_value().prop_map(Mutation::Replace),
        1 => (1usize..200).prop_map(|depth| Mutation::Replace(nested(depth))),
        1 => ("[a-z_]{1,10}", json_value()).prop_map(|(k, v)| Mutation::AddSibling(k, v)),
    ]
}

/// Applies `mutation` at `path` (which must exist in `value`).
pub fn apply(value: &mut Value, path: &[Step], mutation: &Mutation) {
    let Some((last, parent_path)) = path.split_last() else { return };
    let mut parent = value;
    for step in parent_path {
        parent = match (step, parent) {
            (Step::Key(key), Value::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return,
            },
            (Step::Index(i), Value::Array(items)) => match items.get_mut(*i) {
                Some(child) => child,
                None => return,
            },
            _ => return,
        };
    }
    match (parent, last, mutation) {
        (Value::Object(map), Step::Key(key), Mutation::Remove) => {
            map.remove(key);
        }
        (Value::Array(items), Step::Index(i), Mutation::Remove) if *i < items.len() => {
            items.remove(*i);
        }
        (Value::Object(map), Step::Key(key), Mutation::Replace(new)) => {
            map.insert(key.clone(), new.clone());
        }
        (Value::Array(items), Step::Index(i), Mutation::Replace(new)) if *i < items.len() => {
            items[*i] = new.clone();
        }
        (Value::Object(map), Step::Key(_), Mutation::AddSibling(key, new)) => {
            map.entry(key.clone()).or_insert_with(|| new.clone());
        }
        _ => {}
    }
}

/// `seed` with one mutation at one of its paths, and that path.
pub fn mutated(seed: Value) -> impl Strategy<Value = (Value, Vec<Step>, Mutation)> {
    let all = paths(&seed);
    (prop::sample::select(all), mutation()).prop_map(move |(path, mutation)| {
        let mut value = seed.clone();
        apply(&mut value, &path, &mutation);
        (value, path, mutation)
    })
}

/// `text` with bytes changed, inserted, removed or cut: what a damaged
/// body or file looks like.
pub fn damaged_bytes(text: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = text.len().max(1);
    prop::collection::vec((0..len, any::<u8>(), 0u8..4), 1..4).prop_map(move |edits| {
        let mut bytes = text.clone();
        for (at, byte, how) in edits {
            let at = at.min(bytes.len());
            match how {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_name_members_and_elements() {
        let value = json!({"a": {"b": [1, {"c": 2}]}});
        let named: Vec<String> = paths(&value).iter().map(|p| path_text(p)).collect();
        assert_eq!(named, ["a", "a.b", "a.b[0]", "a.b[1]", "a.b[1].c"]);
    }

    #[test]
    fn mutations_land_where_they_say() {
        let mut value = json!({"a": {"b": [1, {"c": 2}]}});
        let path = [Step::Key("a".into()), Step::Key("b".into()), Step::Index(1), Step::Key("c".into())];
        apply(&mut value, &path, &Mutation::Replace(json!("x")));
        assert_eq!(value, json!({"a": {"b": [1, {"c": "x"}]}}));
        apply(&mut value, &path[..2], &Mutation::Remove);
        assert_eq!(value, json!({"a": {}}));
    }

    #[test]
    fn unclear_errors_are_caught() {
        assert!(check_clear("id: must not be empty", &["id"]).is_ok());
        assert!(check_clear("", &[]).is_err());
        assert!(check_clear("line\nforged", &[]).is_err());
        assert!(check_clear(&"x".repeat(MAX_ERROR_CHARS + 1), &[]).is_err());
        assert!(check_clear("principal: missing field", &["action"]).is_err());
    }
}
