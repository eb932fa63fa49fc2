//! Engine and sandbox configuration, with safe defaults.

use std::path::PathBuf;
use std::time::Duration;

/// What one policy evaluation may consume before it is stopped and counted
/// as a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Wasm fuel (roughly instructions) per evaluation; `None` disables
    /// fuel metering and leaves only the wall-clock deadline.
    pub fuel: Option<u64>,
    /// Wall-clock time per evaluation (enforced with epoch interruption).
    pub deadline: Duration,
    /// Linear memory per policy instance, in bytes.
    pub memory_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits { fuel: Some(50_000_000), deadline: Duration::from_millis(100), memory_bytes: 16 << 20 }
    }
}

/// Settings of a [`crate::PolicyEngine`], fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Default limits; a bundle may lower or raise them per policy.
    pub limits: SandboxLimits,
    /// Wasm stack per call, in bytes (applies to every policy).
    pub max_wasm_stack: usize,
    /// Where compiled components are cached by digest; `None` disables the
    /// cache. The directory must be as trusted as the arbiter binary: its
    /// files are native code.
    pub cache_dir: Option<PathBuf>,
    /// How often the deadline clock ticks.
    pub epoch_tick: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: SandboxLimits::default(),
            max_wasm_stack: 512 << 10,
            cache_dir: None,
            epoch_tick: Duration::from_millis(1),
        }
    }
}
