//! `tool-pin`: each MCP tool's definition (name, description, input schema,
//! annotations) is pinned by the digest the host computes, so a server
//! cannot change what a tool tells the model, or add a tool, behind the
//! bundle's back.
//!
//! Scoped to `tool_listing`, it hides every tool whose definition is not
//! the pinned one; scoped to `tool_call`, it denies calls of the same tools
//! — both from [`ToolPin::judge`], so the listing and the call agree. A
//! tool is judged against its pin in `pins`; a tool without one by
//! `unpinned`: `deny` (hidden, calls `tool_not_pinned`),
//! `trust_on_first_use` (against the digest it had when first listed), or
//! `allow`. A tool that another server lists too (shadowing) is hidden and
//! denied unless `deny_shadowed = false`. Calls outside MCP (no server)
//! are not its business.

use std::collections::BTreeMap;

use arbiter_sdk::settings::FieldPath;
use arbiter_sdk::text::{bounded_list, excerpt};
use arbiter_sdk::{ListedTool, Policy, Request, Verdict, export_policy};
use serde::{Deserialize, Serialize};

const TOOL_DEFINITION_UNKNOWN: &str = "tool_definition_unknown";
const TOOL_DEFINITION_CHANGED: &str = "tool_definition_changed";
const TOOL_NOT_PINNED: &str = "tool_not_pinned";
const TOOL_SHADOWED: &str = "tool_shadowed";
/// Characters of a peer-chosen name quoted in a reason.
const NAME_CHARS: usize = 64;
/// Hidden tools a listing's reason names; the rest are counted.
const NAMED_TOOLS: usize = 8;

/// What the bundle sets (docs: the crate's `review.toml` and lib docs).
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `{server: {tool: "sha256:<hex>"}}`, servers as the gateway names them.
    #[serde(default)]
    pub pins: BTreeMap<String, BTreeMap<String, String>>,
    /// What a tool without a pin gets.
    #[serde(default)]
    pub unpinned: Unpinned,
    /// Hide and deny a tool that another server lists too.
    #[serde(default = "yes")]
    pub deny_shadowed: bool,
}

fn yes() -> bool {
    true
}

/// How a tool without a pin is judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Unpinned {
    /// Hidden; its calls denied (`tool_not_pinned`).
    #[default]
    Deny,
    /// Held to the digest it had when the server first listed it.
    TrustOnFirstUse,
    /// Let through.
    Allow,
}

/// What is wrong with a tool's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finding<'a> {
    /// Not the definition it is held to: a pin, or the first one seen.
    Changed {
        held_to: &'a str,
        by: HeldBy,
    },
    NotPinned,
    Shadowed {
        by: &'a [String],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldBy {
    Pin,
    FirstSeen,
}

impl Finding<'_> {
    fn code(&self) -> &'static str {
        match self {
            Finding::Changed { .. } => TOOL_DEFINITION_CHANGED,
            Finding::NotPinned => TOOL_NOT_PINNED,
            Finding::Shadowed { .. } => TOOL_SHADOWED,
        }
    }

    /// What is wrong with `tool`, for a reason (digests shortened).
    fn describe(&self, tool: &ListedTool) -> String {
        let digest = short(tool.digest());
        match self {
            Finding::Changed { held_to, by: HeldBy::Pin } => {
                format!("definition {digest} is not the pinned {}", short(held_to))
            }
            Finding::Changed { held_to, by: HeldBy::FirstSeen } => {
                format!("definition {digest} differs from the first one seen, {}", short(held_to))
            }
            Finding::NotPinned => format!("definition {digest} is not pinned"),
            Finding::Shadowed { by } => {
                let by: Vec<String> = by.iter().take(4).map(|s| format!("`{}`", excerpt(s, NAME_CHARS))).collect();
                format!("also listed by {}", by.join(", "))
            }
        }
    }
}

/// `sha256:` and the first 12 hex digits.
fn short(digest: &str) -> String {
    excerpt(digest, "sha256:".len() + 12)
}

/// The policy: its settings, judged by [`ToolPin::judge`].
pub struct ToolPin {
    settings: Settings,
}

impl Policy for ToolPin {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        for (server, tools) in &settings.pins {
            if server.is_empty() {
                return Err("settings.pins: empty server name".into());
            }
            for (tool, digest) in tools {
                let hex = digest.strip_prefix("sha256:").unwrap_or_default();
                if tool.is_empty() {
                    return Err(FieldPath::root().field("pins").field(server).error("empty tool name"));
                }
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    let at = FieldPath::root().field("pins").field(server).field(tool);
                    return Err(at.error("`sha256:` and 64 lowercase hex digits"));
                }
            }
        }
        Ok(ToolPin { settings })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        if let Some(listing) = request.listing() {
            return self.filter(&listing.server, &listing.tools);
        }
        let Some(call) = request.tool_call() else { return Verdict::allow() };
        let Some(server) = &call.server else { return Verdict::allow() };
        let name = |tool: &str| format!("`{}`/`{}`", excerpt(server, NAME_CHARS), excerpt(tool, NAME_CHARS));
        let listed = match &call.listed {
            Some(listed) if listed.name() == call.tool => listed,
            _ => {
                return Verdict::deny(
                    TOOL_DEFINITION_UNKNOWN,
                    format!("{}: the server never listed it through arbiter", name(&call.tool)),
                );
            }
        };
        match self.judge(server, listed) {
            None => Verdict::allow(),
            Some(finding) => Verdict::deny(
                finding.code(),
                format!(
                    "{}: {}; calls are denied until a reviewed bundle pins it",
                    name(&call.tool),
                    finding.describe(listed)
                ),
            ),
        }
    }
}

impl ToolPin {
    /// The one rule: what, if anything, is wrong with `server`'s `tool`.
    fn judge<'a>(&'a self, server: &str, tool: &'a ListedTool) -> Option<Finding<'a>> {
        let digest = tool.digest();
        let pin = self.settings.pins.get(server).and_then(|tools| tools.get(tool.name()));
        let finding = match (pin, self.settings.unpinned) {
            (Some(pin), _) => (pin != digest).then_some(Finding::Changed { held_to: pin, by: HeldBy::Pin }),
            (None, Unpinned::Deny) => Some(Finding::NotPinned),
            (None, Unpinned::TrustOnFirstUse) => tool
                .first_seen_digest
                .as_deref()
                .filter(|first| *first != digest)
                .map(|first| Finding::Changed { held_to: first, by: HeldBy::FirstSeen }),
            (None, Unpinned::Allow) => None,
        };
        finding.or_else(|| {
            (self.settings.deny_shadowed && tool.is_shadowed())
                .then_some(Finding::Shadowed { by: &tool.also_listed_by })
        })
    }

    /// Allows the listing with every tool [`ToolPin::judge`] faults hidden,
    /// and one reason per kind of fault for the audit record.
    fn filter(&self, server: &str, tools: &[ListedTool]) -> Verdict {
        let mut by_code: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut verdict = Verdict::allow();
        for tool in tools {
            if let Some(finding) = self.judge(server, tool) {
                verdict = verdict.hide_tool(tool.name());
                let named = by_code.entry(finding.code()).or_default();
                named.push(format!("`{}` ({})", excerpt(tool.name(), NAME_CHARS), finding.describe(tool)));
            }
        }
        let server = excerpt(server, NAME_CHARS);
        for (code, named) in by_code {
            let named = bounded_list(named.iter(), NAMED_TOOLS, "; ");
            verdict = verdict.with_reason(code, format!("`{server}` tools hidden: {named}"));
        }
        verdict
    }
}

export_policy!(ToolPin, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests;
