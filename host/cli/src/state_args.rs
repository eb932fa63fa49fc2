//! `--state`: where budgets, breakers, history and escalations live.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arbiter_engine::readiness::StateBackend;
use arbiter_state::{InMemoryStore, JournalStore, RedisConfig, RedisStore, StateStore, StoreConfig};

#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// Where state lives: a directory (embedded journal: one process),
    /// `redis://host:port[/db]` or `rediss://...` (shared by every replica
    /// on that Redis); in memory if absent.
    #[arg(long)]
    state: Option<String>,
    /// Redis only: keeps deployments apart on one Redis, and is the hash
    /// tag of every key (one Cluster slot per namespace).
    #[arg(long, default_value = "arbiter")]
    state_namespace: String,
    /// Redis only: a state operation slower than this fails, and the
    /// decision with it (`state_unavailable`).
    #[arg(long, default_value_t = 250)]
    state_timeout_ms: u64,
    /// Runs whose tool-call history is kept (memory and journal; Redis
    /// bounds history by TTL); the least recently active go first.
    #[arg(long, default_value_t = StoreConfig::default().history_runs)]
    state_history_runs: usize,
    /// Bytes of run history kept in all (memory and journal), in MiB.
    #[arg(long, default_value_t = StoreConfig::default().history_bytes >> 20)]
    state_history_mib: usize,
    /// Escalations one principal (pipeline/agent) may have waiting at once.
    #[arg(long, default_value_t = StoreConfig::default().max_pending_per_principal)]
    max_pending_escalations_per_principal: usize,
    /// Escalations that may wait for approval at once, in all.
    #[arg(long, default_value_t = StoreConfig::default().max_pending)]
    max_pending_escalations: usize,
}

impl StateArgs {
    /// Whether a store was named (else state lives in memory).
    pub fn is_set(&self) -> bool {
        self.state.is_some()
    }

    /// The retention and bound settings the flags give.
    fn config(&self) -> anyhow::Result<StoreConfig> {
        let positive = [
            ("--state-history-runs", self.state_history_runs),
            ("--state-history-mib", self.state_history_mib),
            ("--max-pending-escalations-per-principal", self.max_pending_escalations_per_principal),
            ("--max-pending-escalations", self.max_pending_escalations),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            anyhow::bail!("{flag} must be positive");
        }
        Ok(StoreConfig {
            history_runs: self.state_history_runs,
            history_bytes: self.state_history_mib.saturating_mul(1 << 20),
            max_pending_per_principal: self.max_pending_escalations_per_principal,
            max_pending: self.max_pending_escalations,
            ..StoreConfig::default()
        })
    }

    /// Which backend [`StateArgs::open`] opens.
    pub fn backend(&self) -> StateBackend {
        StateBackend::of(self.state.as_deref())
    }

    pub fn open(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        let config = self.config()?;
        let Some(spec) = &self.state else { return Ok(Arc::new(InMemoryStore::in_memory(config))) };
        if self.backend() == StateBackend::Redis {
            let redis = RedisConfig {
                url: spec.clone(),
                namespace: self.state_namespace.clone(),
                timeout: Duration::from_millis(self.state_timeout_ms.max(1)),
            };
            return Ok(Arc::new(RedisStore::connect(&redis, config)?));
        }
        Ok(Arc::new(open_journal(Path::new(spec), config)?))
    }
}

/// Opens the embedded state store kept in `dir`.
fn open_journal(dir: &Path, config: StoreConfig) -> anyhow::Result<JournalStore> {
    JournalStore::open(dir, config).with_context(|| format!("opening state {}", dir.display()))
}
