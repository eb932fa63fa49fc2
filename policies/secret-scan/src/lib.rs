//! `secret-scan`: credentials and PII markers in tool-call arguments and
//! tool results.
//!
//! Every string is scanned (a call's nested arguments and object keys, a
//! result's texts and member names): AWS access key ids and, next to their
//! name, secret access keys; private key blocks; bearer tokens; GitHub,
//! Slack and OpenAI-style tokens; configured `patterns` (a prefix and a
//! run of one charset) and `markers` (literal, any case). By default each
//! finding becomes a `redact` obligation named by its detector
//! (`[redacted:aws_access_key]`); the message is refused instead
//! (`secret_in_arguments`, `secret_in_result`) when the bundle says `deny`
//! for that kind, when a finding is in an object key (no mask reaches a
//! key), or when there are more spans than a verdict may carry. A reason
//! names detectors and places, never what was found.
//!
//! Limits: a secret split across two strings is found only when they are
//! items of one array (chunks, content blocks); encodings beyond JSON's
//! (base64, percent-encoding) are not undone.

mod detect;
mod scan;

use arbiter_sdk::settings::FieldPath;
use arbiter_sdk::strings::{last_token, token_ends};
use arbiter_sdk::text::{bounded_list, excerpt};
use arbiter_sdk::{Leaf, MAX_REDACTIONS, Policy, Request, Verdict, export_policy};
use serde::{Deserialize, Serialize};

pub use detect::Charset;
use scan::{Detectors, Finding};

const SECRET_IN_ARGUMENTS: &str = "secret_in_arguments";
const SECRET_IN_RESULT: &str = "secret_in_result";
/// Places a refusal names; the rest are counted.
const NAMED_FINDINGS: usize = 8;
/// Characters of a pointer quoted in a reason.
const POINTER_CHARS: usize = 120;

/// What the bundle sets (see the crate docs and `review.toml`).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// What a finding in a tool call's arguments does.
    #[serde(default)]
    pub on_arguments: Respond,
    /// What a finding in a tool result does.
    #[serde(default)]
    pub on_results: Respond,
    /// Literal PII markers, found in any (ASCII) case; code `pii_marker`.
    #[serde(default)]
    pub markers: Vec<String>,
    /// More credential shapes.
    #[serde(default)]
    pub patterns: Vec<Pattern>,
}

/// Mask what was found and let the message on, or refuse the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Respond {
    /// Emit a `redact` obligation per finding; the message goes on masked.
    #[default]
    Redact,
    /// Refuse the message (`secret_in_arguments`, `secret_in_result`).
    Deny,
}

/// A credential shape: `prefix`, then at least `min_length` characters of
/// `charset`; the whole is masked with `code`.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    /// The redaction's code (snake_case), e.g. `acme_token`.
    pub code: String,
    /// Literal, case-sensitive, e.g. `acme_`.
    pub prefix: String,
    /// What the credential after the prefix is made of.
    pub charset: Charset,
    /// Characters of `charset` needed after the prefix (at least 8).
    pub min_length: usize,
}

/// Shortest marker: a shorter one masks half of every text.
const MIN_MARKER_BYTES: usize = 4;
/// Shortest credential after a pattern's prefix.
const MIN_PATTERN_LENGTH: usize = 8;

/// The policy: its detectors and how it answers per action kind.
pub struct SecretScan {
    on_arguments: Respond,
    on_results: Respond,
    detectors: Detectors,
}

impl Policy for SecretScan {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        for (i, marker) in settings.markers.iter().enumerate() {
            let at = FieldPath::root().field("markers").index(i);
            if marker.trim().len() < MIN_MARKER_BYTES {
                return Err(at.error(format!("at least {MIN_MARKER_BYTES} bytes besides spaces")));
            }
            // The scan text holds no control characters but its separators.
            if marker.chars().any(char::is_control) {
                return Err(at.error("no control characters"));
            }
        }
        let mut tokens = detect::builtin_tokens();
        for (i, p) in settings.patterns.into_iter().enumerate() {
            let at = FieldPath::root().field("patterns").index(i);
            let snake = p.code.starts_with(|c: char| c.is_ascii_lowercase())
                && p.code.len() <= 48
                && p.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !snake {
                return Err(at.field("code").error("snake_case, at most 48 bytes"));
            }
            if p.prefix.is_empty() || p.prefix.chars().any(char::is_control) {
                return Err(at.field("prefix").error("empty, or holds a control character"));
            }
            if p.min_length < MIN_PATTERN_LENGTH {
                return Err(at.field("min_length").error(format!("at least {MIN_PATTERN_LENGTH}")));
            }
            tokens.push(detect::Token::configured(p.code, p.prefix, p.charset, p.min_length));
        }
        let markers = settings.markers.iter().map(|m| m.to_ascii_lowercase()).collect();
        Ok(SecretScan {
            on_arguments: settings.on_arguments,
            on_results: settings.on_results,
            detectors: Detectors { tokens, markers },
        })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let (leaves, respond, code, place) = if let Some(call) = request.tool_call() {
            (call.strings(), self.on_arguments, SECRET_IN_ARGUMENTS, "arguments")
        } else if let Some(result) = request.result() {
            (result.strings(), self.on_results, SECRET_IN_RESULT, "result")
        } else {
            return Verdict::allow();
        };
        let findings = self.detectors.scan(&leaves);
        let refusal = if findings.is_empty() {
            return Verdict::allow();
        } else if respond == Respond::Deny {
            "the bundle refuses rather than masks"
        } else if findings.iter().any(|f| !leaves[f.leaf].redactable) {
            "an object key cannot be masked"
        } else if findings.len() > MAX_REDACTIONS {
            "more spans than the 256 one verdict may mask"
        } else {
            return findings
                .iter()
                .fold(Verdict::allow(), |verdict, f| verdict.redact(&leaves[f.leaf].pointer, f.start..f.end, f.code));
        };
        // A refusal names its spans too (never applied: nothing goes on), so
        // the host keeps the secret out of the audit log and the escalation
        // summary all the same.
        let denied = Verdict::deny(code, format!("{} in the {place}; {refusal}", describe(&leaves, &findings)));
        findings
            .iter()
            .filter(|f| leaves[f.leaf].redactable)
            .take(MAX_REDACTIONS)
            .fold(denied, |verdict, f| verdict.redact(&leaves[f.leaf].pointer, f.start..f.end, f.code))
    }
}

/// `3 findings: aws_access_key ×2 at /text, …`: detectors and places only.
/// A member name that is itself a finding is shown as `[redacted]` in
/// every place, so the reason never repeats a secret.
fn describe(leaves: &[Leaf<'_>], findings: &[Finding<'_>]) -> String {
    let secret_keys: Vec<&str> =
        findings.iter().filter(|f| !leaves[f.leaf].redactable).map(|f| leaves[f.leaf].text.as_ref()).collect();
    let safe_pointer = |pointer: &str| {
        let mut shown = String::new();
        let mut start = 0;
        for end in token_ends(pointer) {
            let secret = secret_keys.contains(&last_token(&pointer[..end]).as_ref());
            shown.push_str(if secret { "/[redacted]" } else { &pointer[start..end] });
            start = end;
        }
        excerpt(&shown, POINTER_CHARS)
    };
    // Findings come sorted by string: count each detector's per string.
    let mut places: Vec<(usize, &str, usize)> = Vec::new();
    for f in findings {
        match places.iter_mut().rev().take_while(|(leaf, ..)| *leaf == f.leaf).find(|(_, code, _)| *code == f.code) {
            Some((.., count)) => *count += 1,
            None => places.push((f.leaf, f.code, 1)),
        }
    }
    let named = places.iter().map(|&(leaf, code, count)| {
        let times = if count > 1 { format!(" ×{count}") } else { String::new() };
        let key = if leaves[leaf].redactable { "" } else { " (a key)" };
        format!("{code}{times} at {}{key}", safe_pointer(&leaves[leaf].pointer))
    });
    let noun = if findings.len() == 1 { "finding" } else { "findings" };
    format!("{} {noun}: {}", findings.len(), bounded_list(named, NAMED_FINDINGS, ", "))
}

export_policy!(SecretScan, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests;
