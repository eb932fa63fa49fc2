//! Properties of the bundle manifest loader (docs/fuzzing.md): no text
//! makes it panic; a refusal is a clear error that names the field, and
//! what a remote caller sees of a file that is not a manifest quotes none
//! of it; what it accepts survives a round trip through TOML.

use std::path::Path;

use arbiter_engine::{Manifest, ManifestError};
use arbiter_testgen::{check_clear, config, damaged_bytes, mutated};
use proptest::prelude::*;
use serde_json::{Value, json};

fn valid() -> Value {
    json!({
        "bundle": {"name": "orders_daily", "version": "1.0.0", "environments": ["prod"]},
        "policies": [{
            "name": "tool-scope", "version": "0.1.0", "component": "components/tool-scope.wasm",
            "sha256": "0".repeat(64), "capabilities": ["log"], "mode": "monitor", "fail": "open",
            "scope": {"environments": ["prod"], "actions": ["tool_call"], "tools": ["warehouse.*"]},
            "limits": {"fuel": 1000, "deadline_ms": 5},
            "settings": {"allowed": ["a"]},
        }],
    })
}

fn load(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::from_toml(text, Path::new("bundle.toml"))
}

/// What any refusal must be, and what a remote caller may see of it.
fn check_refusal(error: &ManifestError, text: &str) -> Result<(), TestCaseError> {
    let remote = error.without_contents();
    check_clear(&remote, &["bundle manifest bundle.toml is invalid: "])?;
    if let ManifestError::Parse { problem, .. } = error {
        // The fixed wording, and toml's grammar messages: no line of the
        // file longer than a keyword may show through.
        for line in text.lines().map(str::trim).filter(|l| l.len() > 12) {
            prop_assert!(!problem.contains(line), "{problem:?} quotes the file's {line:?}");
        }
    }
    Ok(())
}

/// Strings in `value`, for the check that a refusal does not quote them.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out)
        }),
        _ => {}
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_is_refused_clearly(text in prop_oneof!["\\PC{0,200}", any::<String>()]) {
        if let Err(error) = load(&text) {
            check_refusal(&error, &text)?;
        }
    }

    /// A valid manifest with one field changed: accepted and stable
    /// through TOML, or refused clearly; what does not parse as a manifest
    /// is refused without quoting the value put in.
    #[test]
    fn mutated_manifests_round_trip_or_are_refused((value, path, _) in mutated(valid())) {
        // TOML has no null; such a document cannot be written.
        let Ok(text) = toml::to_string(&value) else { return Ok(()) };
        match load(&text) {
            Ok(manifest) => {
                let again = toml::to_string(&manifest).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let reloaded = load(&again).map_err(|e| TestCaseError::fail(format!("{e} for {again}")))?;
                prop_assert_eq!(toml::to_string(&reloaded).ok(), Some(again));
            }
            Err(error) => {
                check_refusal(&error, &text)?;
                if let ManifestError::Parse { problem, .. } = &error {
                    let mut put = Vec::new();
                    strings(&value, &mut put);
                    for s in put.iter().filter(|s| s.len() >= 8) {
                        prop_assert!(!problem.contains(s.as_str()), "{problem:?} quotes {s:?}");
                    }
                }
                if let ManifestError::Invalid { problems, .. } = &error {
                    let top = arbiter_testgen::path_text(&path[..1]);
                    for problem in problems {
                        check_clear(&problem.to_string(), &[&top, "bundle", "policies"])?;
                    }
                }
            }
        }
    }

    #[test]
    fn damaged_manifests_are_refused_clearly(bytes in damaged_bytes(toml::to_string(&valid()).unwrap().into_bytes())) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(error) = load(&text) {
            check_refusal(&error, &text)?;
        }
    }
}
