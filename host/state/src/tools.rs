//! The tool registry: what each MCP server lists in its `tools/list`
//! answers, for policies that pin tool definitions.
//!
//! Per server and tool name it keeps the definition listed now and the
//! digest of the first listing. The first digest is trust on first use:
//! kept for good, through delisting and re-listing, so a server cannot
//! reset the trust placed in a name by withdrawing it for a while. Per tool
//! name it also knows which servers list it now (one name from two
//! servers is shadowing).
//!
//! A listing replaces the server's whole current listing, all or nothing,
//! within bounds on servers, names and bytes ([`RegistryLimits`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::store::StoreConfig;

/// Longest server or tool name, in bytes. Longer ones are refused, never
/// truncated: two names cut to the same prefix would share one record.
pub const MAX_NAME_BYTES: usize = 256;

/// One tool of a listing, as the host records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedToolInput {
    pub name: String,
    pub digest: String,
    /// The definition's JSON text.
    pub definition: String,
}

/// A tool as its server lists it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentTool {
    pub digest: String,
    pub definition: String,
}

/// A tool name as its server first listed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstListed {
    pub digest: String,
    /// Event time of that listing.
    pub at_ms: i64,
}

/// What the store knows of one tool name for one server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolView {
    /// The server's current definition: `None` if it does not list the tool
    /// now (never did, or delisted it).
    pub current: Option<CurrentTool>,
    /// The server's first listing of the name; kept after delisting.
    pub first: Option<FirstListed>,
    /// Every server listing a tool of this name now, sorted (the server
    /// asked about included, if it does).
    pub listed_by: Vec<String>,
}

/// Whose name a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Named {
    Server,
    Tool,
}

impl std::fmt::Display for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Named::Server => "server",
            Named::Tool => "tool",
        })
    }
}

/// Why a listing was refused; nothing of it was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ListingRefused {
    #[error("a {of} name must be 1 to {MAX_NAME_BYTES} bytes, not {bytes}")]
    NameLength { of: Named, bytes: usize },
    /// Two tools of one name: which of them a client uses is its guess.
    #[error("the listing names tool {name:?} more than once")]
    DuplicateTool { name: String },
    #[error("the listing's definitions take more than {limit_bytes} bytes")]
    TooLarge { limit_bytes: usize },
    #[error("the registry keeps the tools of {limit} servers already; a new server's listing is refused")]
    TooManyServers { limit: usize },
    /// Delisted names count: their first digests are kept for good.
    #[error("the server would have more than {limit} tool names remembered, delisted ones included")]
    TooManyTools { limit: usize },
}

impl ListingRefused {
    /// Reason code of a decision refused because of it.
    pub fn code(&self) -> &'static str {
        match self {
            ListingRefused::NameLength { .. } => "tool_name_invalid",
            ListingRefused::DuplicateTool { .. } => "duplicate_tool",
            ListingRefused::TooLarge { .. } => "tool_listing_too_large",
            ListingRefused::TooManyServers { .. } => "too_many_tool_servers",
            ListingRefused::TooManyTools { .. } => "too_many_tools",
        }
    }
}

/// The registry's bounds, from [`StoreConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegistryLimits {
    pub(crate) servers: usize,
    pub(crate) tools_per_server: usize,
    pub(crate) bytes_per_server: usize,
}

impl StoreConfig {
    pub(crate) fn registry_limits(&self) -> RegistryLimits {
        RegistryLimits {
            servers: self.max_tool_servers,
            tools_per_server: self.max_tools_per_server,
            bytes_per_server: self.max_listing_bytes,
        }
    }
}

/// One server's listing: the operation the store journals.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Listing<'a> {
    pub(crate) server: Cow<'a, str>,
    pub(crate) tools: Cow<'a, [ListedToolInput]>,
    pub(crate) now_ms: i64,
}

impl<'a> Listing<'a> {
    pub(crate) fn new(server: &'a str, tools: &'a [ListedToolInput], now_ms: i64) -> Self {
        Listing { server: Cow::Borrowed(server), tools: Cow::Borrowed(tools), now_ms }
    }

    /// The refusals that depend on the listing alone, checked before any
    /// state is read (in this order on every backend, so they all refuse
    /// a listing alike). A listing of more tools than a server may have
    /// remembered is refused here too: no state could make it fit.
    pub(crate) fn check(&self, limits: &RegistryLimits) -> Result<(), ListingRefused> {
        let name_length = |of: Named, name: &str| {
            let bytes = name.len();
            if (1..=MAX_NAME_BYTES).contains(&bytes) { Ok(()) } else { Err(ListingRefused::NameLength { of, bytes }) }
        };
        name_length(Named::Server, &self.server)?;
        if self.tools.len() > limits.tools_per_server {
            return Err(ListingRefused::TooManyTools { limit: limits.tools_per_server });
        }
        let mut names = BTreeSet::new();
        let mut bytes = 0usize;
        for tool in self.tools.iter() {
            name_length(Named::Tool, &tool.name)?;
            if !names.insert(tool.name.as_str()) {
                return Err(ListingRefused::DuplicateTool { name: tool.name.clone() });
            }
            bytes = bytes.saturating_add(tool.digest.len()).saturating_add(tool.definition.len());
        }
        if bytes > limits.bytes_per_server {
            return Err(ListingRefused::TooLarge { limit_bytes: limits.bytes_per_server });
        }
        Ok(())
    }

    pub(crate) fn first_listed(&self, tool: &ListedToolInput) -> FirstListed {
        FirstListed { digest: tool.digest.clone(), at_ms: self.now_ms }
    }
}

impl ListedToolInput {
    pub(crate) fn current(&self) -> CurrentTool {
        CurrentTool { digest: self.digest.clone(), definition: self.definition.clone() }
    }
}

/// What is kept of one server.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct ServerTools {
    /// Every name it ever listed.
    first: BTreeMap<String, FirstListed>,
    /// The names it lists now.
    current: BTreeMap<String, CurrentTool>,
}

impl ServerTools {
    /// Whether `tools` is exactly what it lists now (names are unique).
    fn lists(&self, tools: &[ListedToolInput]) -> bool {
        tools.len() == self.current.len()
            && tools.iter().all(|t| {
                self.current.get(&t.name).is_some_and(|c| c.digest == t.digest && c.definition == t.definition)
            })
    }
}

/// The registry of the in-memory and journal stores.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(from = "StoredRegistry")]
pub(crate) struct ToolRegistry {
    servers: BTreeMap<String, ServerTools>,
    /// Tool name → the servers listing it now (derived, rebuilt on load).
    #[serde(skip)]
    listers: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Deserialize)]
struct StoredRegistry {
    servers: BTreeMap<String, ServerTools>,
}

impl From<StoredRegistry> for ToolRegistry {
    fn from(stored: StoredRegistry) -> Self {
        let mut listers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (server, tools) in &stored.servers {
            for name in tools.current.keys() {
                listers.entry(name.clone()).or_default().insert(server.clone());
            }
        }
        ToolRegistry { servers: stored.servers, listers }
    }
}

impl ToolRegistry {
    /// Makes `listing` its server's current listing; `Ok(true)` if that
    /// changed anything. `limits` is `None` on replay: a listing accepted
    /// when it was journaled is applied whatever the limits are now.
    pub(crate) fn record(
        &mut self,
        listing: &Listing<'_>,
        limits: Option<&RegistryLimits>,
    ) -> Result<bool, ListingRefused> {
        if let Some(limits) = limits {
            listing.check(limits)?;
        }
        let server = listing.server.as_ref();
        let kept = self.servers.get(server);
        // An unknown server listing nothing has nothing to remember.
        if kept.map_or(listing.tools.is_empty(), |k| k.lists(&listing.tools)) {
            return Ok(false);
        }
        if let Some(limits) = limits {
            let first = kept.map(|k| &k.first);
            let new_names = listing.tools.iter().filter(|t| first.is_none_or(|f| !f.contains_key(&t.name))).count();
            if kept.is_none() && self.servers.len() >= limits.servers {
                return Err(ListingRefused::TooManyServers { limit: limits.servers });
            }
            if first.map_or(0, BTreeMap::len) + new_names > limits.tools_per_server {
                return Err(ListingRefused::TooManyTools { limit: limits.tools_per_server });
            }
        }
        let kept = self.servers.entry(server.to_owned()).or_default();
        let listed: BTreeSet<&str> = listing.tools.iter().map(|t| t.name.as_str()).collect();
        for name in kept.current.keys().filter(|name| !listed.contains(name.as_str())) {
            if let Some(servers) = self.listers.get_mut(name) {
                servers.remove(server);
                if servers.is_empty() {
                    self.listers.remove(name);
                }
            }
        }
        kept.current.retain(|name, _| listed.contains(name.as_str()));
        for tool in listing.tools.iter() {
            kept.first.entry(tool.name.clone()).or_insert_with(|| listing.first_listed(tool));
            if kept.current.insert(tool.name.clone(), tool.current()).is_none() {
                self.listers.entry(tool.name.clone()).or_default().insert(server.to_owned());
            }
        }
        Ok(true)
    }

    pub(crate) fn views(&self, server: &str, names: &[String]) -> Vec<ToolView> {
        let kept = self.servers.get(server);
        names
            .iter()
            .map(|name| ToolView {
                current: kept.and_then(|k| k.current.get(name)).cloned(),
                first: kept.and_then(|k| k.first.get(name)).cloned(),
                listed_by: self.listers.get(name).map(|s| s.iter().cloned().collect()).unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RegistryLimits = RegistryLimits { servers: 2, tools_per_server: 3, bytes_per_server: 100 };

    fn tool(name: &str, digest: &str) -> ListedToolInput {
        ListedToolInput { name: name.into(), digest: digest.into(), definition: format!("{{\"name\":\"{name}\"}}") }
    }

    fn record(
        registry: &mut ToolRegistry,
        server: &str,
        tools: &[ListedToolInput],
        at: i64,
    ) -> Result<bool, ListingRefused> {
        registry.record(&Listing::new(server, tools, at), Some(&LIMITS))
    }

    fn view(registry: &ToolRegistry, server: &str, name: &str) -> ToolView {
        registry.views(server, &[name.to_owned()]).remove(0)
    }

    #[test]
    fn the_first_digest_outlives_changes_and_delisting() {
        let mut registry = ToolRegistry::default();
        assert_eq!(record(&mut registry, "s", &[tool("a", "d1")], 1), Ok(true));
        assert_eq!(record(&mut registry, "s", &[tool("a", "d2")], 2), Ok(true));
        let changed = view(&registry, "s", "a");
        assert_eq!(changed.current.map(|c| c.digest).as_deref(), Some("d2"));
        assert_eq!(changed.first, Some(FirstListed { digest: "d1".into(), at_ms: 1 }));
        assert_eq!(record(&mut registry, "s", &[], 3), Ok(true));
        let delisted = view(&registry, "s", "a");
        assert_eq!((delisted.current, delisted.listed_by.len()), (None, 0));
        assert_eq!(delisted.first.map(|f| f.digest).as_deref(), Some("d1"));
        assert_eq!(record(&mut registry, "s", &[tool("a", "d3")], 4), Ok(true));
        assert_eq!(view(&registry, "s", "a").first.map(|f| f.at_ms), Some(1));
    }

    #[test]
    fn an_unchanged_listing_changes_nothing() {
        let mut registry = ToolRegistry::default();
        let tools = [tool("a", "d"), tool("b", "d")];
        assert_eq!(record(&mut registry, "s", &tools, 1), Ok(true));
        let reordered = [tool("b", "d"), tool("a", "d")];
        assert_eq!(record(&mut registry, "s", &reordered, 2), Ok(false));
        assert_eq!(record(&mut registry, "new", &[], 2), Ok(false), "nothing to remember of an empty listing");
        let edited = [tool("a", "d"), ListedToolInput { definition: "{}".into(), ..tool("b", "d") }];
        assert_eq!(record(&mut registry, "s", &edited, 3), Ok(true), "same digest, other text");
    }

    #[test]
    fn shadowing_is_seen_from_every_server() {
        let mut registry = ToolRegistry::default();
        record(&mut registry, "s2", &[tool("a", "x")], 1).unwrap();
        record(&mut registry, "s1", &[tool("a", "y")], 1).unwrap();
        assert_eq!(view(&registry, "s1", "a").listed_by, ["s1", "s2"]);
        assert_eq!(view(&registry, "other", "a").listed_by, ["s1", "s2"], "asked by a server that does not list it");
        record(&mut registry, "s2", &[], 2).unwrap();
        assert_eq!(view(&registry, "s1", "a").listed_by, ["s1"]);
    }

    #[test]
    fn refusals_apply_nothing() {
        let mut registry = ToolRegistry::default();
        record(&mut registry, "s1", &[tool("a", "d"), tool("b", "d")], 1).unwrap();
        record(&mut registry, "s2", &[tool("a", "d")], 1).unwrap();
        let before = serde_json::to_string(&registry).unwrap();
        let refused = [
            ("s3", vec![tool("a", "d")], ListingRefused::TooManyServers { limit: 2 }),
            ("s1", vec![tool("c", "d"), tool("d", "d")], ListingRefused::TooManyTools { limit: 3 }),
            ("s1", vec![tool("a", &"d".repeat(100))], ListingRefused::TooLarge { limit_bytes: 100 }),
            ("s1", vec![tool("a", "d"), tool("a", "e")], ListingRefused::DuplicateTool { name: "a".into() }),
            ("s1", vec![tool("", "d")], ListingRefused::NameLength { of: Named::Tool, bytes: 0 }),
            (&"s".repeat(257), vec![], ListingRefused::NameLength { of: Named::Server, bytes: 257 }),
        ];
        for (server, tools, refusal) in refused {
            assert_eq!(record(&mut registry, server, &tools, 2), Err(refusal));
        }
        assert_eq!(serde_json::to_string(&registry).unwrap(), before);
        assert_eq!(view(&registry, "s1", "b").current.map(|c| c.digest).as_deref(), Some("d"));
    }

    #[test]
    fn a_reloaded_registry_knows_who_lists_what() {
        let mut registry = ToolRegistry::default();
        record(&mut registry, "s1", &[tool("a", "d"), tool("b", "d")], 1).unwrap();
        record(&mut registry, "s2", &[tool("a", "d")], 1).unwrap();
        record(&mut registry, "s1", &[tool("b", "d")], 2).unwrap();
        let reloaded: ToolRegistry = serde_json::from_str(&serde_json::to_string(&registry).unwrap()).unwrap();
        assert_eq!(reloaded.listers, registry.listers);
        assert_eq!(view(&reloaded, "s1", "a").listed_by, ["s2"]);
    }
}
