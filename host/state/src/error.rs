//! Errors of the state layer.

use std::path::PathBuf;

/// The store itself failed: nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} state file {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt at line {line}: {detail}")]
    Corrupt { path: PathBuf, line: usize, detail: String },
    #[error(
        "state file {path} has format {found}; this arbiter reads format {expected} (move the file aside or migrate it)"
    )]
    Incompatible { path: PathBuf, found: String, expected: String },
    #[error("state lock poisoned by a panic in another thread")]
    Poisoned,
    #[error("state store stopped after a failed write ({0}); restart arbiter once the cause is fixed")]
    Stopped(String),
    #[error("state store at {endpoint} unavailable: {detail}")]
    Unavailable { endpoint: String, detail: String },
    #[error("state store URL {url} is invalid: {detail}")]
    InvalidUrl { url: String, detail: String },
    #[error(transparent)]
    Namespace(#[from] crate::redis::BadNamespace),
    #[error("state change lost {attempts} races in a row to other replicas; try again")]
    Contended { attempts: u32 },
    #[error("state store answered unexpectedly: {0}")]
    Unexpected(String),
}

/// A usage report that changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageRejected {
    #[error("no reservation for request `{0}` (it was not allowed, or expired)")]
    NoReservation(String),
    /// A request's usage is taken once: a second report could otherwise
    /// rescale its charges again.
    #[error("the usage of request `{0}` was already reported")]
    AlreadyReported(String),
}

/// An outcome report that changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeRejected {
    #[error("no allowed request `{0}` awaits an outcome (unknown, denied, or expired)")]
    UnknownRequest(String),
    /// A call's outcome is taken once: a second report would count twice
    /// in its breakers.
    #[error("the outcome of request `{0}` was already reported")]
    AlreadyReported(String),
}
