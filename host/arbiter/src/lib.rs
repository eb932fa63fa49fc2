//! arbiter decides every action an AI agent proposes — each tool call and
//! each LLM request — against a **bundle** of sandboxed WebAssembly
//! policies, and answers allow, deny or escalate. Around the verdict it
//! keeps the state policies ask for: token budgets reserved atomically per
//! pipeline / agent / team / period, failure-rate circuit breakers, the
//! run's history, spend, and escalations waiting for a human.
//!
//! This is the crate to embed: it re-exports what a Rust program needs to
//! load a bundle, decide, and report how each allowed call went.
//!
//! ```
//! use std::sync::Arc;
//!
//! use arbiter::state::{InMemoryStore, StoreConfig};
//! use arbiter::{Bundle, Decider, EngineConfig, OutcomeStatus, PolicyEngine, Request, VerdictKind};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/orders_daily/bundle.toml");
//! // Compile each policy once; evaluations instantiate cheaply from it.
//! let engine = PolicyEngine::new(EngineConfig::default())?;
//! // The manifest pins every component by digest: a changed file is refused.
//! let bundle = Bundle::load(&engine, manifest.as_ref())?;
//! // Budgets, breakers and history: in memory here; `JournalStore` survives
//! // restarts, `RedisStore` is shared by replicas.
//! let state = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
//! let decider = Decider::new(Arc::new(bundle), state);
//!
//! let principal = r#"{"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
//!                     "environment": "prod", "run": "2026-11-26T02:00Z"}"#;
//!
//! // An irreversible statement: escalated to a human, with the policy and
//! // code that say why (`decision.escalation` names the approvers).
//! let drop = Request::from_json_slice(format!(r#"{{"id": "r-1", "principal": {principal},
//!     "action": {{"kind": "tool_call", "tool": "warehouse.query",
//!                 "arguments": {{"sql": "select 1; drop table orders_daily"}}}}}}"#).as_bytes())?;
//! let decision = decider.decide(&drop, arbiter::now_ms());
//! assert_eq!(decision.decision, VerdictKind::Escalate);
//! assert!(decision.reasons.iter().any(|r| r.policy == "human-review"), "{:?}", decision.reasons);
//!
//! // An LLM request: allowed, its tokens reserved on every budget it draws on.
//! let ask = Request::from_json_slice(format!(r#"{{"id": "r-2", "principal": {principal},
//!     "action": {{"kind": "llm_request", "model": "claude-sonnet-4-5-20250929",
//!                 "prompt_tokens": 5200, "max_output_tokens": 1024}}}}"#).as_bytes())?;
//! let decision = decider.decide(&ask, arbiter::now_ms());
//! assert_eq!(decision.decision, VerdictKind::Allow, "{:?}", decision.reasons);
//! assert!(!decision.charges.is_empty());
//!
//! // The provider answered: the reservation becomes what it reported, and
//! // the breakers the call passed learn how it went.
//! decider.report_usage(&decision.id, 5180, 412, arbiter::now_ms())?;
//! decider.report_outcome(&decision.id, OutcomeStatus::Success, Some(850), arbiter::now_ms())?;
//! # Ok(())
//! # }
//! ```
//!
//! - Requests and decisions are JSON on the wire ([`Request::from_json_slice`],
//!   `serde` for [`Decision`]); unknown fields are refused, and every
//!   error names the field at fault.
//! - A policy that traps, runs out of fuel or time, or answers nonsense
//!   never takes the host down: the decision counts it as a fault and the
//!   bundle's fail mode (deny by default) applies.
//! - With the `gateway` feature, [`gateway`] guards OpenAI, Anthropic and
//!   MCP traffic inside a Rust gateway as a `tower` layer, and [`server`]
//!   is the whole `arbiter serve` (HTTP API, Envoy ext_authz and ext_proc).

#![deny(missing_docs)]

pub use arbiter_engine::{
    Bundle, BundleError, CONTRACT_VERSION, CONTRACT_VERSIONS, Decider, EngineConfig, EngineError, FailMode, Manifest,
    ManifestError, PolicyEngine, ReportError, SandboxLimits,
};
pub use arbiter_state::OutcomeStatus;
pub use arbiter_types::clock::now_ms;
pub use arbiter_types::{Action, Decision, DecisionReason, Principal, Request, RequestError, VerdictKind};

/// Every request, verdict and decision type (the JSON wire format).
pub mod types {
    pub use arbiter_types::*;
}

/// Where budgets, breakers, run history, spend and escalations live: in
/// memory, an embedded journal, or Redis shared by replicas.
pub mod state {
    pub use arbiter_state::*;
}

/// Checking bundles before they ship: the semver lint of a change and the
/// production-readiness score.
pub mod review {
    pub use arbiter_engine::lint;
    pub use arbiter_engine::readiness;
}

/// arbiter inside a Rust gateway (axum, hyper, tonic): a `tower` layer
/// per route that decides each OpenAI, Anthropic and MCP request exactly
/// as `arbiter serve` does behind Envoy, and reads the answers back
/// (usage reconciled, breakers fed, MCP listings and results filtered).
/// `examples/gateway` is a working reverse proxy built on it.
#[cfg(feature = "gateway")]
pub mod gateway {
    pub use arbiter_server::{Gateway, Guard, GuardLayer, GuardedBody, Route};
}

/// The `arbiter serve` server: HTTP decision API, Envoy ext_authz and
/// ext_proc, escalations, audit log, metrics.
#[cfg(feature = "gateway")]
pub mod server {
    pub use arbiter_server::*;
}
