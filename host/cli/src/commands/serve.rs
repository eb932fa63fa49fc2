//! `arbiter serve`: the HTTP API, Envoy ext_authz and ext_proc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arbiter_engine::{Bundle, Decider};
use arbiter_server::{
    AlertRule, Clock, Credentials, ExtProcConfig, ReloadConfig, Role, Server, ServerConfig, UnrecognizedTraffic,
};

use crate::audit_args::AuditArgs;
use crate::clock_args::ClockArg;
use crate::engine_args::EngineArgs;
use crate::state_args::StateArgs;

/// Serve decisions: HTTP JSON API, Envoy ext_authz (gRPC and HTTP) and ext_proc (gRPC), metrics.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle manifest (TOML) [default: the orders_daily demo: its bundle,
    /// sample data, anonymous decisions, and a console key printed once].
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The only directory the admin API loads manifests from (they are
    /// named relative to it) [default: the directory of --bundle]
    #[arg(long)]
    bundle_dir: Option<PathBuf>,
    #[command(flatten)]
    state: StateArgs,
    /// HTTP API and HTTP ext_authz address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// gRPC address: Envoy ext_authz and ext_proc.
    #[arg(long, default_value = "127.0.0.1:9191")]
    grpc: SocketAddr,
    /// Do not serve gRPC (ext_authz, ext_proc).
    #[arg(long)]
    no_grpc: bool,
    /// Credentials (TOML): API keys by SHA-256, with roles and the principals
    /// each may act as. See docs/deploy.md, "Credentials".
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Let requests without a key decide for any principal they name, and
    /// report their own decisions: a local demo only, never a deployment.
    #[arg(long)]
    anonymous: bool,
    /// Bearer token of an admin-only credential named `admin` (deploy,
    /// rollback, bundles, spend); prefer the env var.
    #[arg(long, env = "ARBITER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Whose clock decisions and reports run on: the server's, or the
    /// requests' own (replaying recorded traffic and tests only).
    #[arg(long, value_enum, default_value = "server")]
    clock: ClockArg,
    /// With `--clock request`: how far ahead of the server's clock a
    /// request's time may be, in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    max_clock_ahead_ms: i64,
    /// Audit log (JSON lines, hash-chained; its state file is <log>.state).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Tool-call argument names masked in the audit log (comma-separated).
    #[arg(long, value_delimiter = ',')]
    audit_mask: Vec<String>,
    #[command(flatten)]
    audit: AuditArgs,
    /// http:// URL notified (POST, JSON with a Slack-style `text`, with retries) of every new escalation and budget alert.
    #[arg(long)]
    escalation_webhook: Option<String>,
    /// Budget alert thresholds for budgets whose scope matches a glob, e.g.
    /// 'team:*=50,80,100' (repeatable; the first match counts). Each fires
    /// once per window: to the webhook, the console and the metrics.
    #[arg(long = "budget-alert", value_parser = AlertRule::parse)]
    budget_alerts: Vec<AlertRule>,
    /// Notifications queued for the webhook; when full, new ones are dropped (and counted).
    #[arg(long, default_value_t = 256)]
    webhook_queue: usize,
    /// Tasks delivering webhook notifications.
    #[arg(long, default_value_t = 4)]
    webhook_workers: usize,
    /// Evaluations and reports running at once; beyond, requests wait up to
    /// --in-flight-wait-ms, then get 503 `overloaded` (ext_authz: a deny).
    #[arg(long, default_value_t = 256)]
    max_in_flight: usize,
    /// How long a request waits for an evaluation slot, in milliseconds.
    #[arg(long, default_value_t = 100)]
    in_flight_wait_ms: u64,
    /// Label sets per metric family with client-chosen labels (pipeline,
    /// model, scope, ...); beyond, new values count under `_other`.
    #[arg(long, default_value_t = 1000)]
    max_metric_series: usize,
    /// Load only bundles signed by one of these public keys (repeatable).
    #[arg(long = "trusted-key")]
    trusted_keys: Vec<PathBuf>,
    /// Activated bundles kept for rollback.
    #[arg(long, default_value_t = 5)]
    keep_bundles: usize,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// ext_proc: largest request body decided, in MiB (larger: 413). With
    /// BUFFERED, Envoy's listener must buffer at least as much
    /// (per_connection_buffer_limit_bytes).
    #[arg(long, default_value_t = 16)]
    ext_proc_max_request_mib: usize,
    /// ext_proc: most of an answer read for its usage (a JSON body, one
    /// event), in MiB; a larger one settles at its whole reservation.
    #[arg(long, default_value_t = 8)]
    ext_proc_max_read_mib: usize,
    /// ext_proc: longest exchange, in seconds; the stream is then cut.
    #[arg(long, default_value_t = 3600)]
    ext_proc_max_exchange_s: u64,
    /// ext_proc: all request bodies held at once for their decision (full
    /// duplex), in MiB; a request that would pass it is refused (503).
    #[arg(long, default_value_t = 256)]
    ext_proc_max_held_mib: usize,
    /// ext_proc: what one caller's request bodies may hold of those at once,
    /// in MiB (a gateway credential's: per pipeline and agent); past it,
    /// its next one is refused (429).
    #[arg(long, default_value_t = 64)]
    ext_proc_max_held_per_caller_mib: usize,
    /// Output tokens reserved for (and, through ext_proc, imposed on) gateway
    /// LLM calls that state no limit.
    #[arg(long, default_value_t = 4096)]
    default_max_output_tokens: u64,
    /// Environment for gateway traffic without an x-arbiter-environment header.
    #[arg(long)]
    default_environment: Option<String>,
    /// Gateway traffic that is neither an LLM call nor MCP: allow or deny.
    #[arg(long, value_enum, default_value = "deny")]
    unrecognized: Unrecognized,
    // Boxed to keep `Command`, which holds every command's arguments, small.
    #[command(flatten)]
    engine: Box<EngineArgs>,
}

/// Blocking threads beyond --max-in-flight.
const BLOCKING_HEADROOM: usize = 16;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Unrecognized {
    Allow,
    Deny,
}

pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    // Before the bundle loads. A caller's share below one largest body would
    // refuse that body forever; above the server's bound it bounds nothing.
    anyhow::ensure!(
        args.ext_proc_max_request_mib <= args.ext_proc_max_held_per_caller_mib
            && args.ext_proc_max_held_per_caller_mib <= args.ext_proc_max_held_mib,
        "--ext-proc-max-held-per-caller-mib ({}) must lie between --ext-proc-max-request-mib ({}) and --ext-proc-max-held-mib ({})",
        args.ext_proc_max_held_per_caller_mib,
        args.ext_proc_max_request_mib,
        args.ext_proc_max_held_mib
    );
    let demo = args.bundle.is_none();
    let manifest = match &args.bundle {
        Some(path) => path.clone(),
        None => super::demo::bundle()?,
    };
    if demo {
        args.anonymous = true;
    }
    let engine = args.engine.engine()?;
    let trusted_keys = args
        .trusted_keys
        .iter()
        .map(|path| arbiter_engine::signature::read_public_key(path))
        .collect::<Result<Vec<_>, _>>()?;
    let bundle = Bundle::load_trusted(&engine, &manifest, &trusted_keys)?;
    let mut credentials = credentials(&args)?;
    let demo_key = if demo { Some(arbiter_server::new_key()?) } else { None };
    if let Some(key) = &demo_key {
        credentials.add_demo_operator(key);
    }
    let bundle_dir = match args.bundle_dir.clone() {
        Some(dir) => dir,
        None => manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned(),
    };
    let reload = ReloadConfig {
        engine,
        trusted_keys,
        initial_manifest: manifest.clone(),
        // Absolute, but not canonical: a symlinked release directory is
        // followed anew at each load.
        bundle_dir: std::path::absolute(&bundle_dir).unwrap_or(bundle_dir),
        keep: args.keep_bundles,
    };
    let (clock_name, anonymous) = (args.clock.name(), args.anonymous);
    let clock = match args.clock {
        ClockArg::Server => Clock::Server,
        ClockArg::Request => {
            anyhow::ensure!(args.max_clock_ahead_ms >= 0, "--max-clock-ahead-ms must not be negative");
            eprintln!(
                "warning: --clock request: request timestamps choose budget windows and expiries (replays and tests only)"
            );
            Clock::Request { max_ahead_ms: args.max_clock_ahead_ms }
        }
    };
    let decider = Decider::new(Arc::new(bundle), args.state.open()?);
    if demo {
        super::demo::seed(&decider, arbiter_types::clock::now_ms())?;
    }
    let mut config = ServerConfig {
        http: args.http,
        grpc: (!args.no_grpc).then_some(args.grpc),
        credentials: Arc::new(credentials),
        clock,
        state_backend: args.state.backend(),
        max_body_bytes: args.max_body_bytes,
        audit: args.audit.options(args.audit_log.is_some())?,
        audit_log: args.audit_log,
        audit_mask: args.audit_mask,
        escalation_webhook: args.escalation_webhook,
        budget_alerts: args.budget_alerts,
        webhook_queue: args.webhook_queue,
        webhook_workers: args.webhook_workers,
        max_in_flight: args.max_in_flight,
        in_flight_wait: Duration::from_millis(args.in_flight_wait_ms),
        max_metric_series: args.max_metric_series,
        ext_proc: ExtProcConfig {
            max_request_bytes: args.ext_proc_max_request_mib.saturating_mul(1 << 20),
            max_response_read_bytes: args.ext_proc_max_read_mib.saturating_mul(1 << 20),
            max_exchange: Duration::from_secs(args.ext_proc_max_exchange_s),
            max_held_bytes: args.ext_proc_max_held_mib.saturating_mul(1 << 20),
            max_held_per_caller_bytes: args.ext_proc_max_held_per_caller_mib.saturating_mul(1 << 20),
        },
        ..ServerConfig::default()
    };
    config.wire.default_environment = args.default_environment;
    config.wire.default_max_output_tokens = args.default_max_output_tokens;
    config.wire.unrecognized = match args.unrecognized {
        Unrecognized::Allow => UnrecognizedTraffic::Allow,
        Unrecognized::Deny => UnrecognizedTraffic::Deny,
    };
    // Before the runtime: it cannot have 0 blocking threads (the server
    // checks the upper bound).
    anyhow::ensure!(config.max_in_flight > 0, "--max-in-flight must be positive");
    // Evaluations and reports take at most --max-in-flight blocking threads;
    // the rest is for admin work (bundle compiles, approvals, spend
    // reports) and the webhook's DNS lookups.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.max_in_flight.saturating_add(BLOCKING_HEADROOM))
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let bundle = decider.bundle().clone();
        let server = Server::bind(config, decider, Some(reload)).await?;
        let http = server.http_addr().map(|a| a.to_string()).unwrap_or_default();
        let grpc = server.grpc_addr().map(|a| a.to_string()).unwrap_or_else(|| "off".into());
        // One line that scripts and tests can read the bound ports from.
        println!(
            "arbiter serving bundle {} {} http={http} grpc={grpc} clock={} anonymous={}",
            bundle.name(),
            bundle.version(),
            clock_name,
            anonymous
        );
        if let Some(key) = &demo_key {
            eprintln!("demo: open http://{http}/ui and log in with the key {key} (approver and admin, this run only)");
        }
        server.run(shutdown_signal()).await?;
        eprintln!("arbiter stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The credentials file, the admin token and the anonymous switch; a
/// server that no one could get a decision from is refused.
fn credentials(args: &Args) -> anyhow::Result<Credentials> {
    let mut credentials = match &args.credentials {
        Some(path) => Credentials::load(path)?,
        None => Credentials::default(),
    };
    if let Some(token) = args.admin_token.as_deref().filter(|t| !t.is_empty()) {
        credentials.add_admin_token(token).map_err(anyhow::Error::msg)?;
    }
    credentials.anonymous = args.anonymous;
    let can_decide = credentials.iter().any(|c| c.has(Role::Decide) || c.has(Role::Gateway));
    anyhow::ensure!(
        can_decide || args.anonymous,
        "no credential may decide: give --credentials FILE (see docs/deploy.md), or --anonymous for a local demo"
    );
    if args.anonymous {
        eprintln!("warning: --anonymous: requests without a key decide for any principal they name (local demo only)");
    }
    Ok(credentials)
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
