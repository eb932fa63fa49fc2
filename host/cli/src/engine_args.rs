//! Engine options shared by the commands that evaluate policies.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use arbiter_engine::{EngineConfig, PolicyEngine};

#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// Directory of compiled components, keyed by digest [default: ~/.cache/arbiter]
    #[arg(long, env = "ARBITER_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile every component afresh and cache nothing.
    #[arg(long)]
    no_cache: bool,
    /// Fuel per policy evaluation; 0 turns fuel metering off.
    #[arg(long)]
    fuel: Option<u64>,
    /// Wall-clock deadline per policy evaluation, in milliseconds.
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Memory cap per policy instance, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
}

impl EngineArgs {
    pub fn engine(&self) -> anyhow::Result<PolicyEngine> {
        let mut config = EngineConfig::default();
        if let Some(fuel) = self.fuel {
            config.limits.fuel = (fuel > 0).then_some(fuel);
        }
        if let Some(ms) = self.deadline_ms {
            anyhow::ensure!(ms > 0, "--deadline-ms must be positive");
            config.limits.deadline = Duration::from_millis(ms);
        }
        if let Some(mib) = self.memory_mib {
            anyhow::ensure!(mib > 0, "--memory-mib must be positive");
            config.limits.memory_bytes = mib << 20;
        }
        config.cache_dir = if self.no_cache { None } else { self.cache_dir.clone().or_else(default_cache_dir) };
        PolicyEngine::new(config).context("cannot start the policy engine")
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|dir| dir.join("arbiter"))
}
