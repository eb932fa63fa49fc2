//! Server configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arbiter_engine::readiness::StateBackend;

use crate::alerts::AlertRule;
use crate::audit::AuditOptions;
use crate::credentials::Credentials;

/// Whose clock decisions and reports run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The server's (never running backwards). A request's `timestamp` and
    /// a report's `at` are recorded, never used: a caller cannot pick its
    /// budget window, breaker phase or escalation expiry, nor make an
    /// expiry sweep drop live state.
    Server,
    /// The request's `timestamp` and the report's `at` (the server's clock
    /// when absent), for replaying recorded traffic and tests; times more
    /// than `max_ahead_ms` ahead of the server's clock are refused.
    Request { max_ahead_ms: i64 },
}

/// What the server does with gateway traffic it cannot read as an LLM
/// request or an MCP call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnrecognizedTraffic {
    /// Let it through (arbiter guards only what it understands).
    Allow,
    /// Refuse it with 400 (fail closed).
    Deny,
}

/// How gateway traffic becomes decisions.
#[derive(Debug, Clone)]
pub struct WireConfig {
    /// Request headers that carry the principal, e.g. `x-arbiter-pipeline`.
    pub header_prefix: String,
    /// Environment when the header is absent; `None` requires the header.
    pub default_environment: Option<String>,
    /// Worst case assumed when an LLM request states no max output tokens.
    pub default_max_output_tokens: u64,
    /// MCP methods that are session plumbing or listings: they pass
    /// untouched (notifications always do).
    pub mcp_passthrough: Vec<String>,
    /// MCP methods that make a server act or return data, decided as a tool
    /// call named by the method (`resources/read` with its `params` as
    /// arguments), so policies scope them like tools; tool-scope's
    /// allow-list refuses them unless a rule names them.
    pub mcp_guarded: Vec<String>,
    pub unrecognized: UnrecognizedTraffic,
}

impl Default for WireConfig {
    fn default() -> Self {
        WireConfig {
            header_prefix: "x-arbiter-".to_owned(),
            default_environment: None,
            default_max_output_tokens: 4096,
            mcp_passthrough: [
                "initialize",
                "ping",
                "tools/list",
                "resources/list",
                "resources/templates/list",
                "prompts/list",
                "logging/setLevel",
            ]
            .map(str::to_owned)
            .to_vec(),
            mcp_guarded: [
                "resources/read",
                "resources/subscribe",
                "resources/unsubscribe",
                "prompts/get",
                "completion/complete",
            ]
            .map(str::to_owned)
            .to_vec(),
            unrecognized: UnrecognizedTraffic::Deny,
        }
    }
}

/// Bounds of one Envoy ext_proc exchange.
#[derive(Debug, Clone, Copy)]
pub struct ExtProcConfig {
    /// Largest request body decided; larger ones are refused (413
    /// `body_too_large`). In full duplex arbiter holds the body; with
    /// `BUFFERED` Envoy does, and its listener's
    /// `per_connection_buffer_limit_bytes` must be at least this.
    pub max_request_bytes: usize,
    /// Most of an answer held to read its usage: a whole JSON body, or one
    /// server-sent event. Beyond, it is forwarded unread and settles at the
    /// full reservation.
    pub max_response_read_bytes: usize,
    /// Longest exchange: the stream is then ended (the client's answer is
    /// cut) and settled as cut.
    pub max_exchange: Duration,
    /// All full-duplex request bodies held at once for their decision;
    /// a request that would pass it is refused (503 `ext_proc_busy`).
    pub max_held_bytes: usize,
    /// The share of those one caller's requests may hold together (a
    /// gateway credential's per pipeline and agent it vouches for); past
    /// it, 429 `ext_proc_caller_busy`.
    pub max_held_per_caller_bytes: usize,
}

impl Default for ExtProcConfig {
    fn default() -> Self {
        ExtProcConfig {
            max_request_bytes: 16 << 20,
            max_response_read_bytes: 8 << 20,
            max_exchange: Duration::from_secs(3600),
            max_held_bytes: 256 << 20,
            max_held_per_caller_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// HTTP API (and HTTP ext_authz) address.
    pub http: SocketAddr,
    /// gRPC address (ext_authz and ext_proc); `None` disables it.
    pub grpc: Option<SocketAddr>,
    /// Who may call, with which roles and principals.
    pub credentials: Arc<Credentials>,
    pub clock: Clock,
    /// Where the decider's state lives, as `GET /v1/admin/settings` reports it.
    pub state_backend: StateBackend,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time limit of one API request.
    pub request_timeout: Duration,
    /// Audit log file; `None` disables auditing.
    pub audit_log: Option<PathBuf>,
    /// Tool-call arguments written to the audit log as `"***"`.
    pub audit_mask: Vec<String>,
    /// Checkpoint signing, sync and failure handling of the audit log.
    pub audit: AuditOptions,
    /// `http://` URL notified (POST, JSON) of every new escalation.
    pub escalation_webhook: Option<String>,
    /// Notifications waiting for the webhook; beyond, new ones are dropped
    /// (and counted) rather than held.
    pub webhook_queue: usize,
    /// Tasks delivering webhook notifications (each one at a time).
    pub webhook_workers: usize,
    /// Evaluations and reports running at once on blocking threads.
    pub max_in_flight: usize,
    /// How long a request waits for one of `max_in_flight` before it is
    /// refused as `overloaded`.
    pub in_flight_wait: Duration,
    /// Distinct label sets per metric family whose labels clients choose
    /// (pipeline, model, budget scope, ...); beyond, values fold into one
    /// `_other` series.
    pub max_metric_series: usize,
    pub wire: WireConfig,
    pub ext_proc: ExtProcConfig,
    /// Budget alert thresholds, the first matching rule per budget.
    pub budget_alerts: Vec<AlertRule>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc: Some(SocketAddr::from(([127, 0, 0, 1], 9191))),
            credentials: Arc::new(Credentials::default()),
            clock: Clock::Server,
            state_backend: StateBackend::Memory,
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(10),
            audit_log: None,
            audit_mask: Vec::new(),
            audit: AuditOptions::default(),
            escalation_webhook: None,
            webhook_queue: 256,
            webhook_workers: 4,
            max_in_flight: 256,
            in_flight_wait: Duration::from_millis(100),
            max_metric_series: 1000,
            wire: WireConfig::default(),
            ext_proc: ExtProcConfig::default(),
            budget_alerts: Vec::new(),
        }
    }
}
