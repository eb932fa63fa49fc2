//! Reads on Redis, each queued on a pipeline and taken from its answers:
//! one read alone, or a decision's whole forecast in one exchange
//! (`MULTI`/`EXEC`, so the answers are one consistent view).

use std::collections::HashMap;

use redis::{FromRedisValue, Pipeline, Value};

use super::RedisStore;
use super::store::{breaker_records, parse};
use crate::error::StateError;
use crate::halt::Halt;
use crate::history::{PastToolCall, RunKey};
use crate::ledger::{Place, place_of, rolling_window_ms};
use crate::prefetch::{BudgetRead, Prefetched, ReadSet};
use crate::tools::ToolView;
use arbiter_types::Window;

/// Reads a rolling window's total (EVAL: it is read inside a `MULTI`,
/// where a script not yet cached could not be loaded and retried).
const ROLLING_READ: &str = concat!(include_str!("rolling.lua"), include_str!("rolling_read.lua"));

/// The answers of one exchange, taken in the order their reads were queued.
pub(super) struct Answers(std::vec::IntoIter<Value>);

impl Answers {
    fn take<T: FromRedisValue>(&mut self, what: &str) -> Result<T, StateError> {
        let value = self.0.next().ok_or_else(|| StateError::Unexpected(format!("no answer for {what} from Redis")))?;
        redis::from_redis_value(value).map_err(|e| StateError::Unexpected(format!("unreadable {what} from Redis: {e}")))
    }

    pub(super) fn used(&mut self, window: Window) -> Result<u64, StateError> {
        match window {
            Window::RollingSeconds(_) => {
                let total: String = self.take("rolling budget")?;
                total.parse().map_err(|_| StateError::Unexpected(format!("rolling budget total `{total}` from Redis")))
            }
            Window::Run | Window::Calendar(_) => Ok(self.take::<Option<u64>>("budget total")?.unwrap_or(0)),
        }
    }

    pub(super) fn records(&mut self, what: &str) -> Result<Vec<Option<String>>, StateError> {
        self.take(what)
    }

    pub(super) fn history(&mut self) -> Result<Vec<PastToolCall>, StateError> {
        let calls: Vec<String> = self.take("run history")?;
        calls.iter().map(|json| parse("run history", json)).collect()
    }

    pub(super) fn halts(&mut self) -> Result<Vec<Halt>, StateError> {
        let records: HashMap<String, String> = self.take("halts")?;
        let mut halts: Vec<Halt> = records.values().map(|json| parse("halt", json)).collect::<Result<_, _>>()?;
        halts.sort_by(|a, b| a.scope.cmp(&b.scope));
        Ok(halts)
    }

    pub(super) fn tool_views(&mut self, names: &[String]) -> Result<Vec<ToolView>, StateError> {
        let current = self.records("tool definitions")?;
        let first = self.records("first tool listings")?;
        let listers = self.records("tool listers")?;
        let answered = current.len() == names.len() && first.len() == names.len() && listers.len() == names.len();
        if !answered {
            return Err(StateError::Unexpected(format!("HMGET of {} tool names answered otherwise", names.len())));
        }
        current
            .into_iter()
            .zip(first)
            .zip(listers)
            .map(|((current, first), listers)| {
                let mut listed_by: Vec<String> = record("tool listers", listers)?.unwrap_or_default();
                listed_by.sort_unstable();
                Ok(ToolView {
                    current: record("tool definition", current)?,
                    first: record("first tool listing", first)?,
                    listed_by,
                })
            })
            .collect()
    }
}

/// A stored record of an HMGET answer, if any.
fn record<T: for<'de> serde::Deserialize<'de>>(what: &str, json: Option<String>) -> Result<Option<T>, StateError> {
    json.map(|json| parse(what, &json)).transpose()
}

impl RedisStore {
    /// Runs `pipe` as one exchange.
    pub(super) fn query(&self, pipe: Pipeline) -> Result<Answers, StateError> {
        let values: Vec<Value> = self.run(|mut c| async move { pipe.query_async(&mut c).await })?;
        Ok(Answers(values.into_iter()))
    }

    pub(super) fn queue_used(&self, pipe: &mut Pipeline, read: &BudgetRead, now_ms: i64) {
        let place = place_of(&read.scope, read.window, read.unit, now_ms);
        let key = self.keys.budget(&place);
        match (&place, read.window) {
            (Place::Rolling { series, .. }, Window::RollingSeconds(secs)) => {
                let stamps = self.keys.rolling_stamps(series);
                pipe.cmd("EVAL").arg(ROLLING_READ).arg(2).arg(key).arg(stamps).arg(rolling_window_ms(secs)).arg(now_ms)
            }
            _ => pipe.cmd("HGET").arg(key).arg("used"),
        };
    }

    /// Records by key (`MGET`; at least one key).
    pub(super) fn queue_records(&self, pipe: &mut Pipeline, keys: Vec<String>) {
        pipe.cmd("MGET").arg(keys);
    }

    pub(super) fn queue_history(&self, pipe: &mut Pipeline, run: &RunKey) {
        pipe.cmd("LRANGE").arg(self.keys.history(run)).arg(0).arg(-1);
    }

    pub(super) fn queue_halts(&self, pipe: &mut Pipeline) {
        pipe.cmd("HGETALL").arg(self.keys.halts());
    }

    /// The registry's three fields of each name (at least one name).
    pub(super) fn queue_tool_views(&self, pipe: &mut Pipeline, server: &str, names: &[String]) {
        for key in [self.keys.tools_current(server), self.keys.tools_first(server), self.keys.tool_listers()] {
            pipe.cmd("HMGET").arg(key).arg(names);
        }
    }

    /// One read alone.
    pub(super) fn read_one<T>(
        &self,
        queue: impl FnOnce(&mut Pipeline),
        take: impl FnOnce(&mut Answers) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut pipe = redis::pipe();
        queue(&mut pipe);
        take(&mut self.query(pipe)?)
    }

    /// A decision's forecast and the halts, in one exchange.
    pub(super) fn read_forecast(
        &self,
        forecast: &ReadSet,
        run: &RunKey,
        now_ms: i64,
    ) -> Result<Prefetched, StateError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        self.queue_halts(&mut pipe);
        for read in &forecast.budgets {
            self.queue_used(&mut pipe, read, now_ms);
        }
        let mut breaker_keys: Vec<&str> = forecast.breakers.iter().map(String::as_str).collect();
        breaker_keys.sort_unstable();
        breaker_keys.dedup();
        if !breaker_keys.is_empty() {
            self.queue_records(&mut pipe, breaker_keys.iter().map(|k| self.keys.breaker(k)).collect());
        }
        if forecast.history {
            self.queue_history(&mut pipe, run);
        }
        let tools = forecast.tools.as_ref().filter(|(_, names)| !names.is_empty());
        if let Some((server, names)) = tools {
            self.queue_tool_views(&mut pipe, server, names);
        }
        let mut answers = self.query(pipe)?;
        let halts = answers.halts()?;
        let mut used = HashMap::with_capacity(forecast.budgets.len());
        for read in &forecast.budgets {
            used.insert(read.clone(), answers.used(read.window)?);
        }
        let breakers = if breaker_keys.is_empty() {
            HashMap::new()
        } else {
            let records = breaker_records(&breaker_keys, answers.records("breakers")?)?;
            records.into_iter().map(|(key, record)| (key.to_owned(), record)).collect()
        };
        let history = if forecast.history { Some((run.clone(), answers.history()?)) } else { None };
        let tools = match tools {
            Some((server, names)) => Some((server.clone(), names.clone(), answers.tool_views(names)?)),
            None => None,
        };
        Ok(Prefetched { halts, used, breakers, history, tools })
    }
}
