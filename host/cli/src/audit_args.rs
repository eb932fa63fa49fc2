//! `arbiter serve`'s audit flags beyond `--audit-log`: checkpoint signing,
//! sync, and what to do when the log cannot be written or is gone.

use std::path::PathBuf;
use std::time::Duration;

use arbiter_server::AuditOptions;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Secret key (`arbiter keygen`) that signs audit checkpoints; verify
    /// with `arbiter audit verify --key <key>.pub`. Without it the chain
    /// is unkeyed: a rewrite with a recomputed chain cannot be told.
    #[arg(long)]
    audit_key: Option<PathBuf>,
    /// A signed checkpoint after this many records.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    audit_checkpoint_every: u64,
    /// A checkpoint this often (milliseconds) while records are written.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    audit_checkpoint_interval_ms: u64,
    /// fsync the audit log after this many records (1: before each
    /// decision is answered); checkpoints always fsync.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    audit_sync_every: u64,
    /// Start a new chain although the audit log's state file shows that a
    /// log existed (the first record says so and names its last record).
    #[arg(long)]
    audit_new_chain: bool,
    /// Deny a decision whose audit record cannot be written (code
    /// `audit_unavailable`) instead of serving it.
    #[arg(long)]
    audit_required: bool,
}

impl AuditArgs {
    /// The options, for a server with (`logging`) or without an audit log.
    pub fn options(&self, logging: bool) -> anyhow::Result<AuditOptions> {
        anyhow::ensure!(
            logging || (self.audit_key.is_none() && !self.audit_required && !self.audit_new_chain),
            "--audit-key, --audit-required and --audit-new-chain need --audit-log"
        );
        let key = self.audit_key.as_deref().map(arbiter_engine::signature::read_secret_key).transpose()?;
        Ok(AuditOptions {
            key,
            checkpoint_every: self.audit_checkpoint_every,
            checkpoint_interval: Duration::from_millis(self.audit_checkpoint_interval_ms),
            sync_every: self.audit_sync_every,
            new_chain: self.audit_new_chain,
            required: self.audit_required,
        })
    }
}
