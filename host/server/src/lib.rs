//! `arbiter serve`: arbiter where agents run, behind a gateway.
//!
//! - the HTTP JSON API (`/v1/decide`, `/v1/usage`, `/v1/outcomes`,
//!   `/v1/escalations`, `/v1/report`, health, Prometheus `/metrics`);
//! - Envoy external authorization over gRPC
//!   (`envoy.service.auth.v3.Authorization/Check`) and over HTTP
//!   (`/ext_authz/...`), which turn OpenAI, Anthropic and MCP traffic into
//!   decisions;
//! - Envoy external processing over gRPC
//!   (`envoy.service.ext_proc.v3.ExternalProcessor/Process`): the same
//!   decisions, the request body rewritten to hold the provider to the
//!   reservation, and the answer read back to reconcile usage and feed the
//!   breakers;
//! - a hash-chained JSON-lines audit log of every decision and approval,
//!   with signed checkpoints.
//!
//! Evaluation runs on blocking threads, never on the async runtime.

mod alerts;
mod api;
mod audit;
mod bundles;
mod config;
mod console;
mod credentials;
mod ext_authz;
mod ext_proc;
mod gateway;
mod halts;
mod metrics;
mod recent;
mod server;
mod state;
mod webhook;
mod wire;

pub use alerts::AlertRule;
pub use audit::{
    AuditError, AuditLog, AuditOptions, AuditState, Verified, VerifyError, state_path as audit_state_path,
    verify as verify_audit_log,
};
pub use bundles::ReloadConfig;
pub use config::{Clock, ExtProcConfig, ServerConfig, UnrecognizedTraffic, WireConfig};
pub use credentials::{ANONYMOUS, Credential, Credentials, CredentialsError, Grant, Role, key_digest, new_key};
pub use gateway::{Gateway, Guard, GuardLayer, GuardedBody, Route};
pub use server::{Server, ServerError};
pub use wire::mcp_response;
