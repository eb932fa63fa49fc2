//! Typed settings with errors that name the field: parsing
//! ([`parse_settings`]), the path of a setting in an error ([`FieldPath`]),
//! and the checks several policies share (approvers, environments).

use std::fmt;

use serde::de::DeserializeOwned;

use crate::Environment;

/// Parses a settings document; the error names the offending field, e.g.
/// `settings.allowed[2]: invalid type: integer `3`, expected a string`.
pub fn parse_settings<T: DeserializeOwned>(json: &str) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let parsed = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner.split(" at line ").next().unwrap_or(&inner).to_owned();
        if path == "." { format!("settings: {inner}") } else { format!("settings.{path}: {inner}") }
    })?;
    de.end().map_err(|e| format!("settings: {e}"))?;
    Ok(parsed)
}

/// Where a setting is, for an error that names it the way
/// [`parse_settings`] does: `settings.rules[2].tools: empty tool name`.
///
/// ```
/// use arbiter_sdk::settings::FieldPath;
/// let tools = FieldPath::root().field("rules").index(2).field("tools");
/// assert_eq!(tools.error("empty tool name"), "settings.rules[2].tools: empty tool name");
/// assert_eq!(FieldPath::root().error("give `a` or `b`"), "settings: give `a` or `b`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// The settings document itself.
    pub fn root() -> Self {
        FieldPath("settings".to_owned())
    }

    /// A member of this table.
    pub fn field(&self, name: &str) -> Self {
        FieldPath(format!("{}.{name}", self.0))
    }

    /// An entry of this list.
    pub fn index(&self, i: usize) -> Self {
        FieldPath(format!("{}[{i}]", self.0))
    }

    /// The error message for this setting: `<path>: <message>`.
    pub fn error(&self, message: impl fmt::Display) -> String {
        format!("{}: {message}", self.0)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the approvers and validity of an escalation a policy's settings
/// configure (`at` is the table that holds both): at least one approver,
/// a positive validity. The host refuses an escalation without approvers,
/// so settings that would make one reject the bundle at load instead.
pub fn check_approval(at: &FieldPath, approvers: &[String], valid_for_seconds: u32) -> Result<(), String> {
    if approvers.is_empty() {
        return Err(at.field("approvers").error("at least one approver is needed"));
    }
    if approvers.iter().any(String::is_empty) {
        return Err(at.field("approvers").error("an approver's name is empty"));
    }
    if valid_for_seconds == 0 {
        return Err(at.field("valid_for_seconds").error("must be positive"));
    }
    Ok(())
}

/// Settings name an environment as the request does: `dev`, `staging` or
/// `prod`; anything else is refused, naming the field.
impl<'de> serde::Deserialize<'de> for Environment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const NAMES: &[&str] = &["dev", "staging", "prod"];
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Environment::from_name(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, NAMES))
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl schemars::JsonSchema for Environment {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Environment".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "enum": ["dev", "staging", "prod"]})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        allowed: Vec<String>,
        limit: u32,
    }

    #[test]
    fn names_the_field() {
        let err = parse_settings::<Settings>(r#"{"allowed": ["a", 3], "limit": 1}"#).unwrap_err();
        assert!(err.starts_with("settings.allowed[1]: invalid type"), "{err}");
        let err = parse_settings::<Settings>(r#"{"allowed": [], "limt": 1}"#).unwrap_err();
        assert!(err.contains("unknown field `limt`"), "{err}");
        let err = parse_settings::<Settings>(r#"{"allowed": []}"#).unwrap_err();
        assert!(err.contains("missing field `limit`"), "{err}");
    }

    #[test]
    fn environments_read_as_requests_name_them() {
        let envs: Vec<Environment> = parse_settings(r#"["dev", "staging", "prod"]"#).unwrap();
        assert_eq!(envs, [Environment::Dev, Environment::Staging, Environment::Prod]);
        for bad in [r#"["Prod"]"#, r#"["qa"]"#, r#"[""]"#, "[1]"] {
            let err = parse_settings::<Vec<Environment>>(bad).unwrap_err();
            assert!(err.starts_with("settings.[0]: "), "{bad}: {err}");
        }
    }

    #[test]
    fn approvals_need_named_approvers_and_a_validity() {
        let at = FieldPath::root().field("respond");
        assert_eq!(check_approval(&at, &["oncall".into()], 60), Ok(()));
        assert_eq!(
            check_approval(&at, &[], 60).unwrap_err(),
            "settings.respond.approvers: at least one approver is needed"
        );
        assert!(check_approval(&at, &[String::new()], 60).unwrap_err().contains("empty"));
        assert_eq!(
            check_approval(&at, &["oncall".into()], 0).unwrap_err(),
            "settings.respond.valid_for_seconds: must be positive"
        );
    }
}
