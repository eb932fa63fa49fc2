//! `arbiter serve`: the HTTP API and Envoy ext_authz.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arbiter_engine::{Bundle, Decider};
use arbiter_server::{ReloadConfig, Server, ServerConfig, UnrecognizedTraffic};

use crate::engine_args::EngineArgs;
use crate::state_args::StateArgs;

/// Serve decisions: HTTP JSON API, Envoy ext_authz (gRPC and HTTP), metrics.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle manifest (TOML).
    #[arg(long)]
    bundle: PathBuf,
    #[command(flatten)]
    state: StateArgs,
    /// HTTP API and HTTP ext_authz address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// gRPC ext_authz address.
    #[arg(long, default_value = "127.0.0.1:9191")]
    grpc: SocketAddr,
    /// Do not serve gRPC ext_authz.
    #[arg(long)]
    no_grpc: bool,
    /// Bearer token for admin and approval endpoints (prefer the env var).
    #[arg(long, env = "ARBITER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Audit log (JSON lines, hash-chained).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Tool-call argument names masked in the audit log (comma-separated).
    #[arg(long, value_delimiter = ',')]
    audit_mask: Vec<String>,
    /// http:// URL notified (POST, JSON, with retries) of every new escalation.
    #[arg(long)]
    escalation_webhook: Option<String>,
    /// Load only bundles signed by one of these public keys (repeatable).
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<PathBuf>,
    /// Activated bundles kept for rollback.
    #[arg(long, default_value_t = 5)]
    keep_bundles: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Environment for gateway traffic without an x-arbiter-environment header.
    #[arg(long)]
    default_environment: Option<String>,
    /// Gateway traffic that is neither an LLM call nor MCP: allow or deny.
    #[arg(long, value_enum, default_value = "deny")]
    unrecognized: Unrecognized,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Unrecognized {
    Allow,
    Deny,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let trusted_keys = args
        .trusted_keys
        .iter()
        .map(|path| arbiter_engine::signature::read_public_key(path))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = Bundle::load_trusted(&engine, &args.bundle, &trusted_keys)?;
    let reload = ReloadConfig { engine, trusted_keys, initial_manifest: args.bundle.clone(), keep: args.keep_bundles };
    let decider = Decider::new(Arc::new(bundle), args.state.open()?);
    let mut config = ServerConfig {
        http: args.http,
        grpc: (!args.no_grpc).then_some(args.grpc),
        admin_token: args.admin_token.filter(|t| !t.is_empty()),
        max_body_bytes: args.max_body_bytes,
        audit_log: args.audit_log,
        audit_mask: args.audit_mask,
        escalation_webhook: args.escalation_webhook,
        ..ServerConfig::default()
    };
    config.wire.default_environment = args.default_environment;
    config.wire.unrecognized = match args.unrecognized {
        Unrecognized::Allow => UnrecognizedTraffic::Allow,
        Unrecognized::Deny => UnrecognizedTraffic::Deny,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let bundle = decider.bundle().clone();
        let server = Server::bind(config, decider, Some(reload)).await?;
        let http = server.http_addr().map(|a| a.to_string()).unwrap_or_default();
        let grpc = server.grpc_addr().map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        // One line that scripts and tests can read the bound ports from.
        println!("arbiter serving bundle {} {} http={http} grpc={grpc}", bundle.name(), bundle.version());
        server.run(shutdown_signal()).await?;
        eprintln!("arbiter stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
