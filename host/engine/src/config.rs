//! Engine and sandbox configuration, with safe defaults.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

/// What one policy evaluation may consume before it is stopped and counted
/// as a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Wasm fuel (roughly instructions) per evaluation; `None` disables
    /// fuel metering and leaves only the wall-clock deadline.
    pub fuel: Option<u64>,
    /// Wall-clock time per evaluation spent in the policy's own code
    /// (enforced with epoch interruption). Time waiting in host calls is not
    /// charged, up to [`EngineConfig::host_wait_allowance`].
    pub deadline: Duration,
    /// Linear memory per policy instance, in bytes.
    pub memory_bytes: usize,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits { fuel: Some(50_000_000), deadline: Duration::from_millis(100), memory_bytes: 16 << 20 }
    }
}

const DEFAULT_MAX_IDLE_INSTANCES: NonZeroUsize = NonZeroUsize::new(16).unwrap();
const DEFAULT_INSTANCE_REUSE_LIMIT: NonZeroU64 = NonZeroU64::new(10_000).unwrap();

/// Settings of a [`crate::PolicyEngine`], fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Default limits; a bundle may lower or raise them per policy.
    pub limits: SandboxLimits,
    /// Wasm stack per call, in bytes (applies to every policy).
    pub max_wasm_stack: usize,
    /// Where compiled components are cached by digest; `None` disables the
    /// cache.
    ///
    /// Cache entries are native code, so each carries an HMAC-SHA256 over
    /// the artifact and the component digest, under a key only the engine
    /// reads (see `cache_key_file`). An entry whose tag does not verify
    /// (tampered, truncated, another component's, written under another key)
    /// is never loaded: it is recompiled from the component and rewritten.
    ///
    /// Threat model: someone who can write (or replace) files in this
    /// directory, but cannot read the key, cannot make the engine run code
    /// of their choosing; at worst they make it recompile. A key file that
    /// is not a regular file, not owned by the engine's user, or open to
    /// group or others is refused and replaced by a fresh one. Someone who
    /// can read the key (the engine's own user, or root) is out of scope:
    /// they could as well replace the binary.
    pub cache_dir: Option<PathBuf>,
    /// The cache's MAC key: 32 random bytes, created on first use with mode
    /// 0600. `None` means `cache.key` inside `cache_dir`.
    pub cache_key_file: Option<PathBuf>,
    /// How often the deadline clock ticks.
    pub epoch_tick: Duration,
    /// Time one evaluation may spend waiting in host calls (state reads)
    /// without it counting against its deadline (default 1 s; the Redis
    /// store gives up on a call after 250 ms); waiting beyond this counts
    /// like the policy's own work. This bounds an evaluation's wall time by
    /// deadline + allowance (plus one host call in flight), so a policy
    /// cannot hold a request forever by calling the host in a loop.
    pub host_wait_allowance: Duration,
    /// Idle instances kept per policy for reuse (default 16); an instance
    /// returned to a full pool is dropped, so memory falls back after a
    /// burst.
    pub max_idle_instances: NonZeroUsize,
    /// Evaluations one instance serves (default 10 000) before it is dropped
    /// and the next is instantiated afresh, so guest memory and whatever a
    /// policy keeps in its globals do not live forever.
    pub instance_reuse_limit: NonZeroU64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: SandboxLimits::default(),
            max_wasm_stack: 512 << 10,
            cache_dir: None,
            cache_key_file: None,
            epoch_tick: Duration::from_millis(1),
            host_wait_allowance: Duration::from_secs(1),
            max_idle_instances: DEFAULT_MAX_IDLE_INSTANCES,
            instance_reuse_limit: DEFAULT_INSTANCE_REUSE_LIMIT,
        }
    }
}
