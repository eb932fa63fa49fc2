//! `arbiter tool-pins`: record the digests of the tools a live MCP server
//! lists into a bundle manifest's `tool-pin` settings, for a pull request
//! (the pins change only through a reviewed bundle change).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use arbiter_types::ToolListing;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// Pin the tools an MCP server lists now, by digest, in a bundle manifest.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The bundle manifest to update.
    manifest: PathBuf,
    /// The server's MCP endpoint (streamable HTTP), e.g. http://127.0.0.1:3001/mcp.
    #[arg(long)]
    mcp_url: String,
    /// The server's name, as the gateway names it (`x-arbiter-mcp-server`).
    #[arg(long)]
    server: String,
    /// The policy entry whose settings hold the pins.
    #[arg(long, default_value = "tool-pin")]
    policy: String,
    /// Extra request header `name: value` (e.g. the server's own credential).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Only report what would change; exit 1 if anything would.
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let listing = list_tools(&args)?;
    let text =
        std::fs::read_to_string(&args.manifest).with_context(|| format!("reading {}", args.manifest.display()))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().with_context(|| format!("parsing {}", args.manifest.display()))?;
    let policy = doc
        .get_mut("policies")
        .and_then(|p| p.as_array_of_tables_mut())
        .and_then(|policies| policies.iter_mut().find(|p| p.get("name").and_then(|n| n.as_str()) == Some(&args.policy)))
        .with_context(|| format!("{} has no policy `{}`", args.manifest.display(), args.policy))?;
    let settings =
        policy.entry("settings").or_insert(toml_edit::table()).as_table_mut().context("settings: not a table")?;
    let pins =
        settings.entry("pins").or_insert(toml_edit::table()).as_table_mut().context("settings.pins: not a table")?;
    pins.set_implicit(true);
    let old = pins.get(&args.server).and_then(|t| t.as_table()).cloned().unwrap_or_default();
    let mut pinned = toml_edit::Table::new();
    let mut changes = 0;
    for tool in &listing.tools {
        let digest = tool.digest();
        match old.get(&tool.name).and_then(|d| d.as_str()) {
            Some(before) if before == digest => {}
            Some(_) => {
                changes += 1;
                println!("{}: {} changed to {digest}", args.server, tool.name);
            }
            None => {
                changes += 1;
                println!("{}: {} pinned at {digest}", args.server, tool.name);
            }
        }
        pinned.insert(&tool.name, toml_edit::value(digest));
    }
    for (name, _) in old.iter().filter(|(name, _)| !listing.tools.iter().any(|t| t.name == *name)) {
        changes += 1;
        println!("{}: {name} is no longer listed; unpinned", args.server);
    }
    if changes == 0 {
        println!("{}: {} tools, all pins up to date", args.server, listing.tools.len());
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        return Ok(ExitCode::FAILURE);
    }
    pins.insert(&args.server, toml_edit::Item::Table(pinned));
    std::fs::write(&args.manifest, doc.to_string()).with_context(|| format!("writing {}", args.manifest.display()))?;
    println!("wrote {} pins of {} to {}", listing.tools.len(), args.server, args.manifest.display());
    Ok(ExitCode::SUCCESS)
}

/// Every tool the server lists (all pages), through one MCP session.
fn list_tools(args: &Args) -> anyhow::Result<ToolListing> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut session = Session { args, id: None, next: 0 };
        session
            .call(
                "initialize",
                json!({"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "arbiter tool-pins", "version": env!("CARGO_PKG_VERSION")}}),
            )
            .await?;
        session.notify("notifications/initialized").await?;
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = cursor.as_ref().map_or_else(|| json!({}), |c| json!({"cursor": c}));
            let result = session.call("tools/list", params).await?;
            tools.extend(result["tools"].as_array().cloned().unwrap_or_default());
            match result.get("nextCursor").and_then(Value::as_str) {
                Some(next) if tools.len() <= arbiter_types::MAX_LISTED_TOOLS => cursor = Some(next.to_owned()),
                _ => break,
            }
        }
        ToolListing::from_mcp(args.server.clone(), &tools, false).map_err(|(i, e)| anyhow::anyhow!("tools[{i}]: {e}"))
    })
}

struct Session<'a> {
    args: &'a Args,
    /// `mcp-session-id`, once the server gave one.
    id: Option<String>,
    next: u64,
}

impl Session<'_> {
    async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.next += 1;
        let id = json!(self.next);
        let (content_type, body) =
            self.post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await?;
        let response = arbiter_server::mcp_response(&content_type, &body, &id)
            .with_context(|| format!("{method}: the server's answer holds no response"))?;
        if let Some(error) = response.get("error") {
            bail!("{method}: the server answered {error}");
        }
        Ok(response["result"].clone())
    }

    async fn notify(&mut self, method: &str) -> anyhow::Result<()> {
        self.post(json!({"jsonrpc": "2.0", "method": method})).await.map(|_| ())
    }

    async fn post(&mut self, message: Value) -> anyhow::Result<(String, Bytes)> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(&self.args.mcp_url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(id) = &self.id {
            request = request.header("mcp-session-id", id);
        }
        for header in &self.args.headers {
            let (name, value) =
                header.split_once(':').with_context(|| format!("--header `{header}`: not `name: value`"))?;
            request = request.header(name.trim(), value.trim());
        }
        let response = client
            .request(request.body(Full::new(Bytes::from(message.to_string())))?)
            .await
            .with_context(|| format!("calling {}", self.args.mcp_url))?;
        let status = response.status();
        if let Some(id) = response.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            self.id = Some(id.to_owned());
        }
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{}: {status} {}", self.args.mcp_url, arbiter_types::excerpt(&String::from_utf8_lossy(&body), 300));
        }
        Ok((content_type, body))
    }
}
