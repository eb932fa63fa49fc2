//! arbiter's state: what policies remember between decisions.
//!
//! - **Budgets**: windowed counters and atomic reservations. A decision's
//!   charges are committed all or nothing, each under its limit, so
//!   concurrent requests can never overshoot a budget. Usage reports replace
//!   a reservation with what was actually used; unreconciled reservations
//!   expire (and keep their reserved amount: never undercount).
//! - **Circuit breakers** fed by outcome reports of allowed calls.
//! - **Run history**: the allowed actions of each run.
//! - **Spend** per pipeline, agent, team and model, for cost attribution.
//!
//! Every operation is a deterministic function of the state, its inputs
//! and the `now_ms` it is given, so the trace clock drives replay and the
//! journal backend can rebuild state by re-applying operations.

// The backends share a sealed trait whose methods take crate-private types:
// reachable in the type system, unnameable by users.
#![allow(private_interfaces)]

mod breaker;
mod calendar;
mod data;
mod error;
mod escalation;
mod history;
mod journal;
mod ledger;
mod memory;
mod ops;
mod redis;
mod spend;
mod store;

pub use breaker::BreakerState;
pub use error::{OutcomeRejected, StateError, UsageRejected};
pub use escalation::{ApprovalClaim, Escalation, EscalationRefused, EscalationStatus, Resolution};
pub use history::{PastToolCall, RunKey};
pub use journal::JournalStore;
pub use ledger::BudgetGauge;
pub use memory::InMemoryStore;
pub use ops::{Commit, CommitRefused, LlmUsage, OutcomeReport, OutcomeStatus, UsageReport};
pub use redis::{BadNamespace, RedisConfig, RedisStore};
pub use spend::{ModelPrice, SpendDimension, SpendEntry, SpendRow, aggregate};
pub use store::{Gauges, StateStore, StoreConfig};
