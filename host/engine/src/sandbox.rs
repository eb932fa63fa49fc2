//! The per-instance state a policy's Store carries, and the host side of
//! the capability interfaces.

use std::sync::Arc;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use crate::bindings::arbiter::policy::{clock, log, types};

/// Longest log line kept from a policy; the rest is cut, so a policy cannot
/// flood the host's logs.
const MAX_LOG_LINE: usize = 2048;

pub(crate) struct SandboxState {
    limits: StoreLimits,
    /// Set when the policy asked for more memory than its cap allows, so a
    /// resulting trap is reported as a memory fault.
    pub(crate) memory_refused: bool,
    pub(crate) policy: Arc<str>,
    /// The decision's time, served by the `clock` capability.
    pub(crate) now_ms: i64,
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
        SandboxState { limits, memory_refused: false, policy, now_ms: 0 }
    }
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
    fn log(&mut self, level: log::Level, message: String) {
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
    }
}

impl clock::Host for SandboxState {
    fn now_ms(&mut self) -> i64 {
        self.now_ms
    }
}
