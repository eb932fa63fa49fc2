//! `--state`: where budgets, breakers, history and escalations live.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
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
}

impl StateArgs {
    /// Whether a store was named (else state lives in memory).
    pub fn is_set(&self) -> bool {
        self.state.is_some()
    }

    pub fn open(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        let Some(spec) = &self.state else { return Ok(Arc::new(InMemoryStore::in_memory(StoreConfig::default()))) };
        if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            let config = RedisConfig {
                url: spec.clone(),
                namespace: self.state_namespace.clone(),
                timeout: Duration::from_millis(self.state_timeout_ms.max(1)),
            };
            return Ok(Arc::new(RedisStore::connect(&config, StoreConfig::default())?));
        }
        Ok(Arc::new(open_journal(Path::new(spec))?))
    }
}

/// Opens the embedded state store kept in `dir`.
pub fn open_journal(dir: &Path) -> anyhow::Result<JournalStore> {
    JournalStore::open(dir, StoreConfig::default()).with_context(|| format!("opening state {}", dir.display()))
}
