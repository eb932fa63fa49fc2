//! arbiter inside a Rust gateway: the [`GuardLayer`] `tower` layer decides
//! each OpenAI, Anthropic and MCP request that passes through it, exactly
//! as `arbiter serve` does behind Envoy's ext_proc (the same classifiers,
//! credentials, answers and settlement: [`Exchange`] is shared by both),
//! and reads the answer back to reconcile usage, feed the breakers, and
//! filter MCP tool listings and results.

mod exchange;
mod layer;
pub(crate) mod settle;
mod watch;

use arbiter_engine::Decider;

pub(crate) use exchange::{Admission, Exchange};
pub use layer::{Guard, GuardLayer, GuardedBody};

use crate::AuditError;
use crate::config::ServerConfig;
use crate::ext_authz::grpc::GatewayMetadata;
use crate::server::{ServerError, app_state};
use crate::state::AppState;

/// arbiter for an embedding gateway: one per process, shared by every
/// route's [`GuardLayer`].
///
/// Of the [`ServerConfig`] it reads the credentials, wire settings
/// (`wire`), the answer bounds (`ext_proc`), the audit log, budget alerts,
/// the escalation webhook and `max_in_flight`; the listen addresses are
/// the gateway's own business.
#[derive(Clone, Debug)]
pub struct Gateway {
    state: AppState,
}

/// What a route tells arbiter that the request cannot: which MCP server
/// it goes to (tool listings and pins are per server, and a client must
/// not name it), and the gateway's own credential when the gateway has
/// already authenticated the agent.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Route {
    mcp_server: Option<String>,
    gateway_key: Option<String>,
}

impl Route {
    /// A route whose callers present their own arbiter key
    /// (`x-arbiter-key`) and which reaches no named MCP server.
    pub fn new() -> Self {
        Route::default()
    }

    /// MCP traffic on this route goes to the server `name`: its listings
    /// are decided and recorded under that name.
    pub fn mcp_server(mut self, name: impl Into<String>) -> Self {
        self.mcp_server = Some(name.into());
        self
    }

    /// The gateway authenticated the agent itself and vouches for the
    /// principal headers with this key (a credential with the `gateway`
    /// role, trusted within its grant).
    pub fn gateway_key(mut self, key: impl Into<String>) -> Self {
        self.gateway_key = Some(key.into());
        self
    }
}

impl Gateway {
    /// Opens the audit log and starts the webhook workers and the audit
    /// checkpoints; call it on the Tokio runtime the gateway serves on.
    pub fn new(config: &ServerConfig, decider: Decider) -> Result<Self, ServerError> {
        let state = app_state(config, decider, None)?;
        if let Some(audit) = state.audit.clone() {
            tokio::spawn(audit.checkpoint_periodically());
        }
        Ok(Gateway { state })
    }

    /// The layer guarding one route.
    pub fn layer(&self, route: Route) -> GuardLayer {
        let metadata = GatewayMetadata { key: route.gateway_key, mcp_server: route.mcp_server };
        GuardLayer::new(self.state.clone(), metadata)
    }

    /// The decider the gateway decides with (its bundle can be swapped
    /// with [`Decider::activate`]).
    pub fn decider(&self) -> &Decider {
        &self.state.decider
    }

    /// Writes a signed checkpoint of the audit log (also written
    /// periodically); call it before the process exits.
    pub fn checkpoint_audit(&self) -> Result<(), AuditError> {
        match &self.state.audit {
            Some(audit) => audit.checkpoint(),
            None => Ok(()),
        }
    }
}
