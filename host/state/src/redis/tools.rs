//! The tool registry on Redis (layout in keys.rs): read with one pipeline,
//! recorded by one script (`listing.lua`).

use redis::AsyncCommands;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::RedisStore;
use super::store::to_json;
use crate::error::StateError;
use crate::tools::{ListedToolInput, Listing, ListingRefused, ToolView};

/// A listing as `listing.lua` takes it.
#[derive(Serialize)]
struct ScriptListing<'a> {
    server: &'a str,
    digest: String,
    max_servers: usize,
    max_tools: usize,
    tools: Vec<ScriptTool<'a>>,
}

/// A tool with its records as they are stored.
#[derive(Serialize)]
struct ScriptTool<'a> {
    name: &'a str,
    first: String,
    current: String,
}

/// The digest of a listing, whatever order it names its tools in (names
/// are unique): equal digests, nothing to change.
fn listing_digest(tools: &[ListedToolInput]) -> Result<String, StateError> {
    let mut sorted: Vec<&ListedToolInput> = tools.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(hex::encode(Sha256::digest(to_json(&sorted)?)))
}

impl RedisStore {
    pub(super) fn read_tool_views(&self, server: &str, names: &[String]) -> Result<Vec<ToolView>, StateError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.read_one(|pipe| self.queue_tool_views(pipe, server, names), |answers| answers.tool_views(names))
    }

    /// Records a listing. One that changes nothing is seen with one HGET
    /// (its digest is the one kept), and the script checks that again.
    pub(super) fn write_listing(&self, listing: &Listing<'_>) -> Result<Result<(), ListingRefused>, StateError> {
        let limits = self.config.registry_limits();
        if let Err(refused) = listing.check(&limits) {
            return Ok(Err(refused));
        }
        let server = listing.server.as_ref();
        let digest = listing_digest(&listing.tools)?;
        let servers = self.keys.tool_servers();
        let known: Option<String> = self.run(|mut c| async move { c.hget(servers, server).await })?;
        if known.as_deref() == Some(digest.as_str()) || (known.is_none() && listing.tools.is_empty()) {
            return Ok(Ok(()));
        }
        let tools = listing
            .tools
            .iter()
            .map(|tool| {
                let first = to_json(&listing.first_listed(tool))?;
                Ok(ScriptTool { name: &tool.name, first, current: to_json(&tool.current())? })
            })
            .collect::<Result<_, StateError>>()?;
        let arg =
            ScriptListing { server, digest, max_servers: limits.servers, max_tools: limits.tools_per_server, tools };
        let keys = [
            self.keys.tool_servers(),
            self.keys.tools_first(server),
            self.keys.tools_current(server),
            self.keys.tool_listers(),
        ];
        let reply = self.invoke(&self.listing, &arg, &keys.each_ref().map(String::as_str))?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Ok(())),
            Some("too_many_servers") => Ok(Err(ListingRefused::TooManyServers { limit: limits.servers })),
            Some("too_many_tools") => Ok(Err(ListingRefused::TooManyTools { limit: limits.tools_per_server })),
            _ => Err(StateError::Unexpected(format!("unexpected reply from the listing script: {reply:?}"))),
        }
    }
}
