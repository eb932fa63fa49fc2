//! Typed settings with errors that name the field.

use serde::de::DeserializeOwned;

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
}
