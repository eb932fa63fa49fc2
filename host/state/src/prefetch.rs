//! Reading a decision's state at once: where every read is a round trip
//! (Redis), the reads a decision is expected to make are fetched together
//! before its policies run, and answered from that one exchange
//! (docs/decisions/0019-one-read-one-commit.md).
//!
//! What to fetch is only a forecast: an answer always comes from this
//! decision's own exchange, a question the forecast missed is read as it
//! is asked, and a forecast read that nobody asks costs bytes only. So a
//! wrong forecast (a hostile agent's odd requests, a new bundle) can cost
//! round trips, never change an answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use arbiter_types::{BreakerConfig, ChargeUnit, Window};

use crate::breaker::{Breaker, BreakerState};
use crate::error::StateError;
use crate::halt::Halt;
use crate::history::{Mention, MentionQuery, PastToolCall, RunKey, SimilarQuery, count_similar_in, first_mention_in};
use crate::ops::{Commit, CommitRefused};
use crate::store::StateStore;
use crate::tools::ToolView;

/// Budget questions and breaker keys a forecast holds at most: a
/// decision asking more has the rest read as asked.
const MAX_FORECAST_READS: usize = 32;

/// A budget question: units booked on a scope in a window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetRead {
    pub scope: String,
    pub window: Window,
    pub unit: ChargeUnit,
}

/// What a decision is expected to read (besides the halts, always read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadSet {
    pub budgets: Vec<BudgetRead>,
    /// Breaker keys.
    pub breakers: Vec<String>,
    /// The run's history (every history question is answered from it).
    pub history: bool,
    /// The registry's views of these tool names of this server.
    pub tools: Option<(String, Vec<String>)>,
}

impl ReadSet {
    fn add_budget(&mut self, read: BudgetRead) {
        if self.budgets.len() < MAX_FORECAST_READS && !self.budgets.contains(&read) {
            self.budgets.push(read);
        }
    }

    fn add_breaker(&mut self, key: &str) {
        if self.breakers.len() < MAX_FORECAST_READS && !self.breakers.iter().any(|k| k == key) {
            self.breakers.push(key.to_owned());
        }
    }
}

/// The answers to a [`ReadSet`], read in one exchange. Made by a store
/// (see [`StateStore::prefetch`]); opaque to everyone else.
#[derive(Debug)]
pub struct Prefetched {
    pub(crate) halts: Vec<Halt>,
    pub(crate) used: HashMap<BudgetRead, u64>,
    /// Each breaker with its record exactly as stored (absent: none yet),
    /// which a commit then expects unchanged.
    pub(crate) breakers: HashMap<String, (Option<String>, Breaker)>,
    pub(crate) history: Option<(RunKey, Vec<PastToolCall>)>,
    pub(crate) tools: Option<(String, Vec<String>, Vec<ToolView>)>,
}

impl Prefetched {
    fn history_of(&self, run: &RunKey) -> Option<&[PastToolCall]> {
        self.history.as_ref().filter(|(read, _)| read == run).map(|(_, calls)| calls.as_slice())
    }
}

/// The state one decision reads and commits to: answers from its prefetch
/// where it has one, from the store otherwise; and, when it prefetched,
/// what was asked, the forecast for the next decision of its kind.
#[derive(Debug)]
pub struct DecisionReads {
    store: Arc<dyn StateStore>,
    read: Option<Prefetched>,
    asked: Mutex<ReadSet>,
}

impl DecisionReads {
    /// Reads as asked, each from the store.
    pub fn direct(store: Arc<dyn StateStore>) -> Self {
        DecisionReads { store, read: None, asked: Mutex::default() }
    }

    /// Fetches what `forecast` gives (and the halts) for a decision of
    /// `run` at `now_ms` in one exchange where the store batches reads;
    /// reads as asked where it does not (`forecast` is then not called).
    pub fn prefetch(
        store: Arc<dyn StateStore>,
        forecast: &dyn Fn() -> ReadSet,
        run: &RunKey,
        now_ms: i64,
    ) -> Result<Self, StateError> {
        let read = store.prefetch(forecast, run, now_ms)?;
        Ok(DecisionReads { store, read, asked: Mutex::default() })
    }

    /// What the decision asked, when it prefetched (`None` for a store
    /// whose reads cost no round trip: nothing to forecast).
    pub fn asked(&self) -> Option<ReadSet> {
        self.read.as_ref()?;
        Some(self.asked.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    fn ask(&self, note: impl FnOnce(&mut ReadSet)) {
        if self.read.is_some() {
            note(&mut self.asked.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    pub fn halts(&self) -> Result<Vec<Halt>, StateError> {
        match &self.read {
            Some(read) => Ok(read.halts.clone()),
            None => self.store.halts(),
        }
    }

    pub fn used(&self, scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> Result<u64, StateError> {
        // Read as asked, nothing is noted: no question is built.
        let Some(read) = &self.read else { return self.store.used(scope, window, unit, now_ms) };
        let question = BudgetRead { scope: scope.to_owned(), window, unit };
        let known = read.used.get(&question).copied();
        self.ask(|asked| asked.add_budget(question));
        match known {
            Some(used) => Ok(used),
            None => self.store.used(scope, window, unit, now_ms),
        }
    }

    pub fn breaker_state(&self, key: &str, config: &BreakerConfig, now_ms: i64) -> Result<BreakerState, StateError> {
        self.ask(|asked| asked.add_breaker(key));
        match self.read.as_ref().and_then(|read| read.breakers.get(key)) {
            Some((_, breaker)) => Ok(breaker.clone().state(config, now_ms)),
            None => self.store.breaker_state(key, config, now_ms),
        }
    }

    /// The run's calls as prefetched, noting that history was asked.
    fn history(&self, run: &RunKey) -> Option<&[PastToolCall]> {
        self.ask(|asked| asked.history = true);
        self.read.as_ref()?.history_of(run)
    }

    pub fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Result<Vec<PastToolCall>, StateError> {
        match self.history(run) {
            Some(calls) => Ok(calls.iter().filter(|c| c.matches(tool, since_ms)).cloned().collect()),
            None => self.store.tool_calls(run, tool, since_ms),
        }
    }

    pub fn count_tool_calls(&self, run: &RunKey, since_ms: i64) -> Result<u32, StateError> {
        match self.history(run) {
            Some(calls) => {
                Ok(u32::try_from(calls.iter().filter(|c| c.matches(None, since_ms)).count()).unwrap_or(u32::MAX))
            }
            None => self.store.count_tool_calls(run, since_ms),
        }
    }

    pub fn count_similar(&self, run: &RunKey, query: &SimilarQuery<'_>) -> Result<u32, StateError> {
        match self.history(run) {
            Some(calls) => Ok(count_similar_in(calls, query)),
            None => self.store.count_similar(run, query),
        }
    }

    pub fn first_mention(&self, run: &RunKey, query: &MentionQuery<'_>) -> Result<Option<Mention>, StateError> {
        match self.history(run) {
            Some(calls) => Ok(first_mention_in(calls, query)),
            None => self.store.first_mention(run, query),
        }
    }

    /// What the registry knows of `names` for `server` (always part of the
    /// forecast: the request names them).
    pub fn tool_views(&self, server: &str, names: &[String]) -> Result<Vec<ToolView>, StateError> {
        match self.read.as_ref().and_then(|read| read.tools.as_ref()) {
            Some((read_server, read_names, views)) if read_server == server && read_names == names => Ok(views.clone()),
            _ => self.store.tool_views(server, names),
        }
    }

    /// Commits the decision, the records it read standing as what the
    /// commit expects unchanged (no second read on Redis).
    pub fn commit(&self, commit: Commit) -> Result<Result<(), CommitRefused>, StateError> {
        match &self.read {
            Some(read) => self.store.commit_prefetched(commit, read),
            None => self.store.commit(commit),
        }
    }
}
