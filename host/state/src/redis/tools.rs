//! The tool registry on Redis (layout in keys.rs): read with one pipeline,
//! recorded by one script (`listing.lua`).

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RedisStore;
use super::store::{parse, to_json};
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

/// A stored record of an HMGET answer, if any.
fn record<T: for<'de> Deserialize<'de>>(what: &str, json: Option<String>) -> Result<Option<T>, StateError> {
    json.map(|json| parse(what, &json)).transpose()
}

impl RedisStore {
    pub(super) fn read_tool_views(&self, server: &str, names: &[String]) -> Result<Vec<ToolView>, StateError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        type Fields = Vec<Option<String>>;
        let (current, first, listers): (Fields, Fields, Fields) = self.run(|mut c| {
            let mut pipe = redis::pipe();
            for key in [self.keys.tools_current(server), self.keys.tools_first(server), self.keys.tool_listers()] {
                pipe.cmd("HMGET").arg(key).arg(names);
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        let answered = current.len() == names.len() && first.len() == names.len() && listers.len() == names.len();
        if !answered {
            return Err(StateError::Unexpected(format!("HMGET of {} tool names answered otherwise", names.len())));
        }
        current
            .into_iter()
            .zip(first)
            .zip(listers)
            .map(|((current, first), listers)| {
                let mut listed_by: Vec<String> = record("tool listers", listers)?.unwrap_or_default();
                listed_by.sort_unstable();
                Ok(ToolView {
                    current: record("tool definition", current)?,
                    first: record("first tool listing", first)?,
                    listed_by,
                })
            })
            .collect()
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
