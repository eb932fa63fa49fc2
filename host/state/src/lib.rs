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
//! - **Halts** (the kill switch) and once-only marks for budget alerts.
//!
//! - **Escalations**: requests waiting for a human. An id is opened once:
//!   opening it again (a re-sent request) keeps its record, so an
//!   approved, used or rejected escalation is never pending again.
//!
//! - **Tool registry**: what each MCP server lists (`tools/list`), per
//!   server and tool name: the current definition, the digest of the
//!   first listing (trust on first use: kept for good, through delisting
//!   and re-listing) and which servers list the name now (shadowing). A
//!   listing replaces the server's current one, all or nothing; one that
//!   changes nothing writes nothing.
//!
//! Every operation is a deterministic function of the state, its inputs
//! and the `now_ms` it is given, so the trace clock drives replay and the
//! journal backend can rebuild state by re-applying operations.
//!
//! # What is bounded, and by which setting
//!
//! Anyone who can get a decision adds state, so every kind of it is capped
//! or ages out ([`StoreConfig`]; the same on every backend unless noted):
//!
//! | state | bound |
//! |---|---|
//! | pending escalations | `max_pending_per_principal` (100) per `<pipeline>/<agent>` and `max_pending` (10,000) overall, pending and unexpired; more are refused with `too_many_escalations` (exact on Redis too: counted in the script) |
//! | decided and expired escalations | kept 7 days after they expire: at most `max_pending` opened per validity period (one hour: ~170 × `max_pending` kept) |
//! | run history, per run | `history_per_run` calls (1,024; the oldest go first) |
//! | run history, overall | in memory and journal: `history_runs` runs (10,000) and `history_bytes` of calls as JSON (256 MiB); over either by a tenth, the least recently active runs (by the order calls were recorded, not client timestamps) are forgotten down to it; runs idle `history_ttl_ms` (7 days) go too. On Redis: `history_ttl_ms` per run only (below) |
//! | reservations, awaited outcomes, and the marks of reports taken | `reservation_ttl_ms` / `outcome_ttl_ms` (1 h) |
//! | budgets | rolling windows their length; run and calendar totals 62 days after their last booking |
//! | tool registry: servers | `max_tool_servers` (1,024) servers with anything remembered; a new server's listing past it is refused with `too_many_tool_servers`. Never aged out: a server forgotten would get a fresh first use |
//! | tool registry: names per server | `max_tools_per_server` (1,024) names, delisted ones included; a listing that would make more is refused with `too_many_tools` |
//! | tool registry: bytes per server | `max_listing_bytes` (1 MiB) of one listing's digests and definitions, refused with `tool_listing_too_large`; so at most ~1 GiB of current definitions overall, plus the names and first digests |
//! | server and tool names | 1 to 256 bytes ([`MAX_NAME_BYTES`]); others are refused with `tool_name_invalid`, never truncated |
//!
//! Every bound is checked before a listing changes anything (exact on
//! Redis too: counted in the script), so a refused listing leaves the
//! server's previous one in place.
//!
//! A usage or outcome report is taken once per request: a second one is
//! refused ([`UsageRejected::AlreadyReported`],
//! [`OutcomeRejected::AlreadyReported`]) and changes nothing. A usage
//! report never rescales charges that were not sized on tokens (a charged
//! tool call).
//!
//! Time is event time, which callers supply: the escalation caps assume it
//! near real time. An escalation opened already expired (a backdated
//! request) is never counted as pending, yet kept 7 days, so whoever
//! passes requests to the store must bound their timestamps' skew.
//!
//! Redis keeps the number of runs bounded only by each history key's TTL:
//! a cap would need an index of every run's activity, written by every
//! tool call of every replica, and eviction deleting other runs' keys the
//! script was not handed (Redis Cluster requires a script to declare every
//! key it touches). Size Redis for it and set `maxmemory` with
//! `maxmemory-policy noeviction`: a full Redis then fails decisions closed
//! (`state_unavailable`), where an evicting policy could drop a budget
//! total and under-count it, or a tool's first digest and trust its next
//! definition anew. The tool registry's keys have no TTL: its bounds hold
//! it (two hashes per server and two shared ones; layout in `redis/keys.rs`).

// The backends share a sealed trait whose methods take crate-private types:
// reachable in the type system, unnameable by users.
#![allow(private_interfaces)]

mod breaker;
mod calendar;
mod claims;
mod data;
mod error;
mod escalation;
mod group_sync;
mod halt;
mod history;
mod journal;
mod ledger;
mod memory;
mod ops;
mod prefetch;
mod redis;
mod reported;
mod rolling;
mod similar_index;
mod spend;
mod store;
mod tools;

pub use breaker::BreakerState;
pub use calendar::period_start;
pub use error::{OutcomeRejected, StateError, UsageRejected};
pub use escalation::{ApprovalClaim, Escalation, EscalationRefused, EscalationStatus, Resolution};
pub use halt::{BadHaltScope, Halt, HaltScope, halting};
pub use history::{Mention, MentionQuery, PastToolCall, RunKey, SimilarQuery};
pub use journal::JournalStore;
pub use ledger::BudgetGauge;
pub use memory::InMemoryStore;
pub use ops::{Commit, CommitRefused, LlmUsage, OutcomeReport, OutcomeStatus, UsageReport};
pub use prefetch::{BudgetRead, DecisionReads, Prefetched, ReadSet};
pub use redis::{BadNamespace, RedisConfig, RedisStore};
pub use spend::{ModelPrice, SpendDimension, SpendEntry, SpendRow, aggregate};
pub use store::{Gauges, StateStore, StoreConfig};
pub use tools::{CurrentTool, FirstListed, ListedToolInput, ListingRefused, MAX_NAME_BYTES, Named, ToolView};
