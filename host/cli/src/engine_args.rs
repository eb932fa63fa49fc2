//! Engine options shared by the commands that evaluate policies.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use arbiter_engine::{EngineConfig, PolicyEngine};

#[derive(clap::Args, Debug)]
pub struct EngineArgs {
    /// Directory of compiled components, keyed by digest and authenticated
    /// with the key in its `cache.key` [default: ~/.cache/arbiter]
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
    /// Time an evaluation may wait in host calls (state reads) without it
    /// counting against its deadline, in milliseconds [default: 1000].
    #[arg(long)]
    host_wait_allowance_ms: Option<u64>,
    /// Idle instances kept per policy; more are dropped when returned [default: 16].
    #[arg(long)]
    max_idle_instances: Option<usize>,
    /// Evaluations one instance serves before it is replaced by a fresh one [default: 10000].
    #[arg(long)]
    instance_reuse_limit: Option<u64>,
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
        if let Some(ms) = self.host_wait_allowance_ms {
            config.host_wait_allowance = Duration::from_millis(ms);
        }
        if let Some(n) = self.max_idle_instances {
            config.max_idle_instances =
                NonZeroUsize::new(n).context("--max-idle-instances must be positive (at least one idle instance)")?;
        }
        if let Some(n) = self.instance_reuse_limit {
            config.instance_reuse_limit =
                NonZeroU64::new(n).context("--instance-reuse-limit must be positive (evaluations per instance)")?;
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::EngineArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        engine: EngineArgs,
    }

    fn engine(args: &[&str]) -> anyhow::Result<arbiter_engine::PolicyEngine> {
        let argv = ["arbiter", "--no-cache"].into_iter().chain(args.iter().copied());
        Cli::try_parse_from(argv)?.engine.engine()
    }

    #[test]
    fn pool_and_wait_bounds_reach_the_engine() {
        let engine =
            engine(&["--max-idle-instances", "3", "--instance-reuse-limit", "7", "--host-wait-allowance-ms", "0"])
                .unwrap();
        let config = engine.config();
        assert_eq!(config.max_idle_instances.get(), 3);
        assert_eq!(config.instance_reuse_limit.get(), 7);
        assert_eq!(config.host_wait_allowance, std::time::Duration::ZERO);
    }

    #[test]
    fn zero_pool_bounds_are_refused_by_flag() {
        for flag in ["--max-idle-instances", "--instance-reuse-limit"] {
            let err = engine(&[flag, "0"]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{flag} must be positive")), "{err}");
        }
    }
}
