//! The per-instance state a policy's Store carries, and the host side of
//! the capability interfaces.

use std::sync::Arc;

use arbiter_state::{RunKey, StateStore};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::bindings::arbiter::policy::{breakers, budgets, clock, history, log, types};
use crate::convert;

/// Longest log line kept from a policy; the rest is cut, so a policy cannot
/// flood the host's logs.
const MAX_LOG_LINE: usize = 2048;

/// What the capabilities answer from during one decision.
#[derive(Debug)]
pub(crate) struct DecisionContext {
    pub(crate) now_ms: i64,
    pub(crate) run: RunKey,
    pub(crate) state: Arc<dyn StateStore>,
}

pub(crate) struct SandboxState {
    limits: StoreLimits,
    /// Set when the policy asked for more memory than its cap allows, so a
    /// resulting trap is reported as a memory fault.
    pub(crate) memory_refused: bool,
    pub(crate) policy: Arc<str>,
    /// Present while a decision is being evaluated.
    pub(crate) decision: Option<Arc<DecisionContext>>,
}

impl SandboxState {
    pub(crate) fn new(policy: Arc<str>, memory_bytes: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .memories(1)
            .tables(8)
            .table_elements(100_000)
            .instances(16)
            .build();
        SandboxState { limits, memory_refused: false, policy, decision: None }
    }

    fn decision(&self) -> wasmtime::Result<&DecisionContext> {
        self.decision.as_deref().ok_or_else(|| wasmtime::Error::msg("capability used outside a decision"))
    }
}

/// A capability call that could not reach the state store: the policy
/// stops, and the decision blames the store rather than the policy.
#[derive(Debug, thiserror::Error)]
#[error("state unavailable: {0}")]
pub(crate) struct StateUnavailable(arbiter_state::StateError);

fn state_error(e: arbiter_state::StateError) -> wasmtime::Error {
    wasmtime::Error::new(StateUnavailable(e))
}

impl ResourceLimiter for SandboxState {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl types::Host for SandboxState {}

impl log::Host for SandboxState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let policy = &*self.policy;
        match level {
            log::Level::Debug => tracing::debug!(target: "arbiter::policy", policy, "{message}"),
            log::Level::Info => tracing::info!(target: "arbiter::policy", policy, "{message}"),
            log::Level::Warn => tracing::warn!(target: "arbiter::policy", policy, "{message}"),
            log::Level::Error => tracing::error!(target: "arbiter::policy", policy, "{message}"),
        }
        Ok(())
    }
}

impl clock::Host for SandboxState {
    fn now_ms(&mut self) -> wasmtime::Result<i64> {
        Ok(self.decision()?.now_ms)
    }
}

impl budgets::Host for SandboxState {
    fn used(&mut self, scope: String, window: types::Window, unit: types::ChargeUnit) -> wasmtime::Result<u64> {
        let d = self.decision()?;
        d.state.used(&scope, convert::window(window)?, convert::unit(unit), d.now_ms).map_err(state_error)
    }
}

impl history::Host for SandboxState {
    fn tool_calls(&mut self, tool: Option<String>, since_ms: i64) -> wasmtime::Result<Vec<history::PastToolCall>> {
        let d = self.decision()?;
        let calls = d.state.tool_calls(&d.run, tool.as_deref(), since_ms).map_err(state_error)?;
        Ok(calls
            .into_iter()
            .map(|c| history::PastToolCall {
                request_id: c.request_id,
                timestamp_ms: c.timestamp_ms,
                tool: c.tool,
                arguments: convert::arguments(&c.arguments),
            })
            .collect())
    }

    fn count_tool_calls(&mut self, since_ms: i64) -> wasmtime::Result<u32> {
        let d = self.decision()?;
        d.state.count_tool_calls(&d.run, since_ms).map_err(state_error)
    }
}

impl breakers::Host for SandboxState {
    fn state(&mut self, key: String, config: types::BreakerConfig) -> wasmtime::Result<breakers::BreakerState> {
        let d = self.decision()?;
        let config = convert::breaker_config(config)?;
        Ok(match d.state.breaker_state(&key, &config, d.now_ms).map_err(state_error)? {
            arbiter_state::BreakerState::Closed => breakers::BreakerState::Closed,
            arbiter_state::BreakerState::Open { until_ms } => breakers::BreakerState::Open(until_ms),
            arbiter_state::BreakerState::HalfOpen { permits_left } => breakers::BreakerState::HalfOpen(permits_left),
        })
    }
}
