//! `arbiter deploy` and `arbiter rollback`: a running server's admin API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// The server's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin token.
    #[arg(long, env = "ARBITER_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

/// Load a bundle on a running server (compiled and validated off to the side, then swapped in).
#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// Manifest path as the server sees it.
    manifest: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// Re-activate a previously active bundle on a running server.
#[derive(clap::Args, Debug)]
pub struct RollbackArgs {
    /// Bundle version to go back to [default: the previous one].
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

fn post(server: &ServerArgs, path: &str, body: Value) -> anyhow::Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = hyper::Request::post(format!("{}{path}", server.server.trim_end_matches('/')))
            .header("authorization", format!("Bearer {}", server.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let response = client.request(request).await.with_context(|| format!("calling {}", server.server))?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{status}: {}", value["error"]["message"].as_str().unwrap_or("no details"));
        }
        Ok(value)
    })
}

fn report(swapped: &Value) {
    let active = &swapped["active"];
    println!(
        "active: {} {} ({}); swap {:.1} µs, load {:.1} ms",
        active["name"].as_str().unwrap_or("?"),
        active["version"].as_str().unwrap_or("?"),
        active["manifest"].as_str().unwrap_or("?"),
        swapped["swap_us"].as_f64().unwrap_or(0.0),
        swapped["load_ms"].as_f64().unwrap_or(0.0)
    );
}

pub fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let manifest = std::path::absolute(&args.manifest).unwrap_or(args.manifest);
    report(&post(&args.server, "/v1/admin/bundles", json!({"manifest": manifest}))?);
    Ok(ExitCode::SUCCESS)
}

pub fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    report(&post(&args.server, "/v1/admin/rollback", json!({"to": args.to}))?);
    Ok(ExitCode::SUCCESS)
}
