//! The state operations on Redis: reads go straight to Redis, changes are
//! planned here with the same rules as the embedded store and applied by
//! one script.

use std::collections::{BTreeMap, HashMap};

use arbiter_types::{BreakerConfig, BreakerGuard, ChargeUnit, Window};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::RedisStore;
use super::plan::{Cap, ChargePlan, Check, IndexEntry, Plan, Push, Refusal, RollingAdd, Set, Swap, Unindex};
use super::reads::Answers;
use crate::breaker::{Breaker, BreakerState};
use crate::calendar::day_start;
use crate::error::{OutcomeRejected, StateError, UsageRejected};
use crate::escalation::{Escalation, EscalationRefused, EscalationStatus, Resolution, sort_oldest_first};
use crate::halt::{Halt, HaltScope};
use crate::history::{PastToolCall, RunKey};
use crate::ledger::{
    Booking, BudgetGauge, Place, TOTAL_RETENTION_MS, calendar_gauge, place_of, rolling_window_ms, sort_gauges,
};
use crate::ops::{Commit, CommitRefused, LlmUsage, OutcomeReport, OutcomeStatus, UsageReport};
use crate::prefetch::{BudgetRead, Prefetched, ReadSet};
use crate::reported::within;
use crate::spend::{Open, SpendDelta, SpendEntry, SpendKey, Totals};
use crate::store::{Gauges, StateStore};
use crate::tools::{ListedToolInput, Listing, ListingRefused, ToolView};

/// A breaker left unchanged this long (no outcome moved it) is forgotten:
/// it starts closed and empty on its next use.
const BREAKER_TTL_MS: i64 = 30 * 86_400_000;

/// An unreconciled LLM request or charged call: what it booked and the
/// spend it opened.
#[derive(Debug, Serialize, Deserialize)]
struct ReservationRecord {
    created_ms: i64,
    reserved_tokens: u64,
    bookings: Vec<Booking>,
    spend: Option<Open>,
}

/// The breakers an allowed request passed.
#[derive(Debug, Serialize, Deserialize)]
struct Awaiting {
    at_ms: i64,
    guards: Vec<(String, BreakerConfig)>,
}

/// A record awaiting a report (reservation, outcome), or the mark that
/// replaces it once the report is taken: kept as long as the record would
/// have been, so a second report is refused as such.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Reportable<T> {
    Reported { reported_ms: i64 },
    Awaited(T),
}

impl<T> Reportable<T> {
    /// The awaited record, or the refusal of a report at `now_ms`:
    /// `already` if one was taken within `ttl_ms`, else `unknown`.
    fn awaited<E>(self, now_ms: i64, ttl_ms: i64, already: E, unknown: E) -> Result<T, E> {
        match self {
            Reportable::Awaited(record) => Ok(record),
            Reportable::Reported { reported_ms } if within(reported_ms, now_ms, ttl_ms) => Err(already),
            Reportable::Reported { .. } => Err(unknown),
        }
    }
}

/// The swap that replaces an awaited record, read as `json`, with the mark
/// of its report.
fn mark_reported(key: String, json: String, now_ms: i64, ttl_ms: i64) -> Result<Swap, StateError> {
    let value = to_json(&Reportable::<()>::Reported { reported_ms: now_ms })?;
    Ok(Swap { key, expect: Some(json), value, ttl_ms })
}

/// A cap on pending escalations: its index, limit, and refusal when full.
struct PendingCap {
    key: String,
    max: usize,
    refusal: EscalationRefused,
}

/// Who spent, as a spend hash field prefix.
#[derive(Debug, Serialize, Deserialize)]
struct Who(String, String, String, String);

const SPEND_COUNTERS: [&str; 5] = ["requests", "reconciled", "prompt_tokens", "output_tokens", "micro_usd"];

fn corrupt(what: &str, e: serde_json::Error) -> StateError {
    StateError::Unexpected(format!("unreadable {what} in Redis: {e}"))
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(what: &str, json: &str) -> Result<T, StateError> {
    serde_json::from_str(json).map_err(|e| corrupt(what, e))
}

pub(super) fn to_json(value: &impl Serialize) -> Result<String, StateError> {
    serde_json::to_string(value).map_err(|e| StateError::Unexpected(e.to_string()))
}

/// Breakers by key, each with the record it was read from (absent: a new,
/// closed breaker).
type BreakerRecords<'a> = BTreeMap<&'a str, (Option<String>, Breaker)>;

pub(super) fn breaker_records<'a>(
    keys: &[&'a str],
    read: Vec<Option<String>>,
) -> Result<BreakerRecords<'a>, StateError> {
    let mut records = BTreeMap::new();
    for (key, json) in keys.iter().zip(read) {
        let breaker = match &json {
            Some(json) => parse("breaker", json)?,
            None => Breaker::default(),
        };
        records.insert(*key, (json, breaker));
    }
    Ok(records)
}

impl RedisStore {
    fn get(&self, key: String) -> Result<Option<String>, StateError> {
        self.run(|mut c| async move { c.get(key).await })
    }

    fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<String>>, StateError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.run(|mut c| async move { redis::cmd("MGET").arg(keys).query_async(&mut c).await })
    }

    fn history(&self, run: &RunKey) -> Result<Vec<PastToolCall>, StateError> {
        self.read_one(|pipe| self.queue_history(pipe, run), Answers::history)
    }

    /// Members of an index, oldest first.
    fn index(&self, key: String) -> Result<Vec<String>, StateError> {
        self.run(|mut c| async move { c.zrange(key, 0, -1).await })
    }

    fn spend_adds(&self, plan: &mut Plan, key: &SpendKey, delta: SpendDelta, requests: i128, reconciled: i128) {
        let who = Who(key.pipeline.clone(), key.agent.clone(), key.team.clone(), key.model.clone());
        let who = serde_json::to_string(&who).unwrap_or_default();
        let hash = self.keys.spend(key.day_ms);
        let counts = [requests, reconciled, delta.prompt_tokens, delta.output_tokens, delta.micro_usd];
        for (counter, delta) in SPEND_COUNTERS.iter().zip(counts) {
            plan.add(hash.clone(), format!("{who}\n{counter}"), delta);
        }
        plan.indexes.push(IndexEntry {
            key: self.keys.spend_index(),
            member: key.day_ms.to_string(),
            score: key.day_ms,
            drop_below: None,
        });
    }

    /// Reads every record a commit rewrites or relies on, in one exchange:
    /// its breakers (returned), the escalation it claims (its consumption
    /// planned) and whether its reservation is taken.
    fn read_commit_records<'a>(
        &self,
        commit: &Commit,
        breaker_keys: &[&'a str],
        reserves: bool,
        plan: &mut Plan,
    ) -> Result<Result<BreakerRecords<'a>, CommitRefused>, StateError> {
        let now = commit.now_ms;
        let mut reads: Vec<String> = breaker_keys.iter().map(|k| self.keys.breaker(k)).collect();
        if let Some(claim) = &commit.approval {
            reads.push(self.keys.escalation(&claim.escalation_id));
        }
        // A reservation still open under this id (checked again, absent,
        // when the plan applies): a second would replace it.
        if reserves {
            reads.push(self.keys.reservation(&commit.request_id));
        }
        let mut read = self.get_many(reads)?;
        if reserves && let Some(Some(_)) = read.pop() {
            return Ok(Err(CommitRefused::DuplicateRequest { request_id: commit.request_id.clone() }));
        }
        if let Some(claim) = &commit.approval {
            let Some(Some(json)) = read.pop() else {
                return Ok(Err(CommitRefused::Escalation(EscalationRefused::Unknown(claim.escalation_id.clone()))));
            };
            let mut escalation: Escalation = parse("escalation", &json)?;
            if let Err(refused) = escalation.check(claim, now) {
                return Ok(Err(CommitRefused::Escalation(refused)));
            }
            escalation.consume(claim, now);
            plan.swaps.push(Swap {
                key: self.keys.escalation(&claim.escalation_id),
                value: to_json(&escalation)?,
                expect: Some(json),
                ttl_ms: escalation.retention_ms(),
            });
        }
        breaker_records(breaker_keys, read).map(Ok)
    }

    /// Plans a commit. With `known` (what this decision prefetched, when
    /// it holds every breaker the commit passes and no approval is
    /// claimed) nothing is read: the breakers are expected as read, and a
    /// reservation already open under the request id is found by the
    /// script's check (a conflict, after which the plan is made again by
    /// reading).
    fn plan_commit(
        &self,
        commit: &Commit,
        known: Option<&Prefetched>,
    ) -> Result<Result<(Plan, ()), CommitRefused>, StateError> {
        let now = commit.now_ms;
        let mut plan = Plan { now, total_ttl_ms: TOTAL_RETENTION_MS, ..Plan::default() };
        let mut breaker_keys: Vec<&str> = commit.breakers.iter().map(|g| g.key.as_str()).collect();
        breaker_keys.sort_unstable();
        breaker_keys.dedup();
        let reserves = !commit.charges.is_empty() || commit.spent().is_some();
        let known = known.filter(|_| commit.approval.is_none()).and_then(|read| {
            breaker_keys.iter().map(|key| Some((*key, read.breakers.get(*key)?.clone()))).collect::<Option<_>>()
        });
        let mut breakers: BreakerRecords<'_> = match known {
            Some(records) => records,
            None => match self.read_commit_records(commit, &breaker_keys, reserves, &mut plan)? {
                Ok(records) => records,
                Err(refused) => return Ok(Err(refused)),
            },
        };
        if reserves {
            plan.checks.push(Check { key: self.keys.reservation(&commit.request_id), expect: None });
        }
        let admits = |g: &BreakerGuard| breakers.get(g.key.as_str()).is_none_or(|(_, b)| b.admits(&g.config, now));
        if let Some(guard) = commit.breakers.iter().find(|g| !admits(g)) {
            return Ok(Err(CommitRefused::CircuitOpen { key: guard.key.clone() }));
        }
        for guard in &commit.breakers {
            if let Some((_, breaker)) = breakers.get_mut(guard.key.as_str()) {
                breaker.admit(&guard.config, now);
            }
        }
        for (key, (expect, breaker)) in breakers {
            plan.rewrite(self.keys.breaker(key), expect, to_json(&breaker)?, BREAKER_TTL_MS);
            let index = self.keys.breakers_index();
            plan.indexes.push(IndexEntry { key: index, member: key.to_owned(), score: now, drop_below: None });
        }
        if !commit.breakers.is_empty() {
            plan.sets.push(Set {
                key: self.keys.awaiting(&commit.request_id),
                value: to_json(&Awaiting { at_ms: now, guards: commit.guards() })?,
                ttl_ms: self.config.outcome_ttl_ms,
            });
        }
        let mut bookings = Vec::with_capacity(commit.charges.len());
        for charge in &commit.charges {
            let place = place_of(&charge.scope, charge.window, charge.unit, now);
            let key = self.keys.budget(&place);
            let (window_ms, stamps) = match (&place, charge.window) {
                (Place::Rolling { series, .. }, Window::RollingSeconds(secs)) => {
                    (Some(rolling_window_ms(secs)), Some(self.keys.rolling_stamps(series)))
                }
                (_, Window::Calendar(_)) => {
                    plan.indexes.push(IndexEntry {
                        key: self.keys.totals_index(),
                        member: key.clone(),
                        score: now,
                        drop_below: Some(now - TOTAL_RETENTION_MS),
                    });
                    (None, None)
                }
                _ => (None, None),
            };
            plan.charges.push(ChargePlan {
                key,
                scope: charge.scope.clone(),
                amount: charge.amount,
                limit: charge.limit,
                window_ms,
                stamps,
            });
            bookings.push(Booking { place, amount: charge.amount });
        }
        let spend = commit.spent().map(|spent| Open::of(&spent, now));
        if let Some(open) = &spend {
            let delta = SpendDelta {
                prompt_tokens: i128::from(open.prompt_tokens),
                output_tokens: i128::from(open.output_tokens),
                micro_usd: i128::from(open.micro_usd),
            };
            self.spend_adds(&mut plan, &open.key, delta, 1, 0);
        }
        if !bookings.is_empty() || spend.is_some() {
            let record = ReservationRecord {
                created_ms: now,
                reserved_tokens: commit.llm.as_ref().map_or(0, LlmUsage::tokens),
                bookings,
                spend,
            };
            plan.sets.push(Set {
                key: self.keys.reservation(&commit.request_id),
                value: to_json(&record)?,
                ttl_ms: self.config.reservation_ttl_ms,
            });
        }
        if let Some(call) = commit.past_tool_call() {
            plan.pushes.push(Push {
                key: self.keys.history(&commit.run),
                value: to_json(&call)?,
                max: self.config.history_per_run.max(1),
                ttl_ms: self.config.history_ttl_ms,
            });
        }
        Ok(Ok((plan, ())))
    }

    /// Reads the record a report consumes (a reservation, an awaited
    /// outcome), with the JSON it was read as: `unknown` when absent or
    /// older than `ttl`, `already` when reported before.
    fn read_awaited<T: for<'de> Deserialize<'de>, E>(
        &self,
        key: &str,
        what: &str,
        (now, ttl): (i64, i64),
        already: E,
        unknown: impl Fn() -> E,
        since: impl Fn(&T) -> i64,
    ) -> Result<Result<(T, String), E>, StateError> {
        let Some(json) = self.get(key.to_owned())? else { return Ok(Err(unknown())) };
        Ok(match parse::<Reportable<T>>(what, &json)?.awaited(now, ttl, already, unknown()) {
            Ok(record) if within(since(&record), now, ttl) => Ok((record, json)),
            Ok(_) => Err(unknown()),
            Err(rejected) => Err(rejected),
        })
    }

    fn plan_reconcile(&self, usage: &UsageReport) -> Result<Result<(Plan, ()), UsageRejected>, StateError> {
        let (id, now, ttl) = (&usage.request_id, usage.now_ms, self.config.reservation_ttl_ms);
        let key = self.keys.reservation(id);
        let unknown = || UsageRejected::NoReservation(id.clone());
        let already = UsageRejected::AlreadyReported(id.clone());
        let read =
            self.read_awaited::<ReservationRecord, _>(&key, "reservation", (now, ttl), already, unknown, |r| {
                r.created_ms
            })?;
        let (record, json) = match read {
            Ok(read) => read,
            Err(rejected) => return Ok(Err(rejected)),
        };
        let mut plan = Plan { now, total_ttl_ms: TOTAL_RETENTION_MS, ..Plan::default() };
        let actual = usage.prompt_tokens.saturating_add(usage.output_tokens);
        for booking in &record.bookings {
            let delta = booking.reconciliation_delta(actual, record.reserved_tokens);
            let key = self.keys.budget(&booking.place);
            match &booking.place {
                Place::Total(_) => plan.add(key, "used", delta),
                Place::Rolling { series, at_ms } if delta != 0 => plan.rolling_adds.push(RollingAdd {
                    key,
                    stamps: self.keys.rolling_stamps(series),
                    at: *at_ms,
                    delta,
                }),
                Place::Rolling { .. } => {}
            }
        }
        if let Some(open) = &record.spend {
            let delta = open.reconciliation(usage.prompt_tokens, usage.output_tokens);
            self.spend_adds(&mut plan, &open.key, delta, 0, 1);
        }
        plan.swaps.push(mark_reported(key, json, now, ttl)?);
        Ok(Ok((plan, ())))
    }

    fn plan_outcome(&self, outcome: &OutcomeReport) -> Result<Result<(Plan, ()), OutcomeRejected>, StateError> {
        let (id, now, ttl) = (&outcome.request_id, outcome.now_ms, self.config.outcome_ttl_ms);
        let key = self.keys.awaiting(id);
        let unknown = || OutcomeRejected::UnknownRequest(id.clone());
        let already = OutcomeRejected::AlreadyReported(id.clone());
        let read =
            self.read_awaited::<Awaiting, _>(&key, "awaiting outcome", (now, ttl), already, unknown, |a| a.at_ms)?;
        let (awaiting, json) = match read {
            Ok(read) => read,
            Err(rejected) => return Ok(Err(rejected)),
        };
        let mut plan = Plan { now, total_ttl_ms: TOTAL_RETENTION_MS, ..Plan::default() };
        plan.swaps.push(mark_reported(key, json, now, ttl)?);
        let mut keys: Vec<&str> = awaiting.guards.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let read = self.get_many(keys.iter().map(|k| self.keys.breaker(k)).collect())?;
        let mut breakers = breaker_records(&keys, read)?;
        let failed = outcome.status != OutcomeStatus::Success;
        for (key, config) in &awaiting.guards {
            if let Some((_, breaker)) = breakers.get_mut(key.as_str()) {
                breaker.record(config, now, failed, outcome.latency_ms);
            }
        }
        for (key, (expect, breaker)) in breakers {
            plan.rewrite(self.keys.breaker(key), expect, to_json(&breaker)?, BREAKER_TTL_MS);
        }
        Ok(Ok((plan, ())))
    }

    fn plan_resolution(&self, r: &Resolution) -> Result<Result<(Plan, Escalation), EscalationRefused>, StateError> {
        let key = self.keys.escalation(&r.escalation_id);
        let Some(json) = self.get(key.clone())? else {
            return Ok(Err(EscalationRefused::Unknown(r.escalation_id.clone())));
        };
        let mut escalation: Escalation = parse("escalation", &json)?;
        if let Err(refused) = escalation.resolve(r) {
            return Ok(Err(refused));
        }
        let mut plan = Plan { now: r.now_ms, total_ttl_ms: TOTAL_RETENTION_MS, ..Plan::default() };
        plan.swaps.push(Swap {
            key,
            expect: Some(json),
            value: to_json(&escalation)?,
            ttl_ms: escalation.retention_ms(),
        });
        // Only a pending escalation resolves: it is pending no more.
        for cap in self.pending_caps(&escalation.principal) {
            plan.unindexes.push(Unindex { key: cap.key, member: escalation.id.clone() });
        }
        Ok(Ok((plan, escalation)))
    }

    /// The pending-escalation caps an escalation of `principal` counts
    /// against, in the order the script checks them.
    fn pending_caps(&self, principal: &str) -> [PendingCap; 2] {
        let limits = self.config.pending_limits();
        [
            PendingCap {
                key: self.keys.pending_escalations(principal),
                max: limits.per_principal,
                refusal: limits.principal_full(principal),
            },
            PendingCap {
                key: self.keys.all_pending_escalations(),
                max: limits.overall,
                refusal: limits.overall_full(),
            },
        ]
    }

    /// Opens an escalation only if its id is absent, and counts it against
    /// its pending caps in the script: exact however many replicas open at
    /// once.
    fn plan_open(
        &self,
        e: &Escalation,
        caps: &[PendingCap],
    ) -> Result<Result<(Plan, ()), EscalationRefused>, StateError> {
        let key = self.keys.escalation(&e.id);
        let mut plan = Plan { now: e.created_ms, total_ttl_ms: TOTAL_RETENTION_MS, ..Plan::default() };
        // An id already kept keeps its record: nothing to apply.
        if self.get(key.clone())?.is_some() {
            return Ok(Ok((plan, ())));
        }
        let ttl_ms = e.retention_ms();
        // Expecting it absent: an open of the same id in between conflicts,
        // and the next attempt finds it.
        plan.swaps.push(Swap { key, expect: None, value: to_json(e)?, ttl_ms });
        plan.indexes.push(IndexEntry {
            key: self.keys.escalations_index(),
            member: e.id.clone(),
            score: e.kept_until_ms(),
            drop_below: Some(e.created_ms),
        });
        if e.status == EscalationStatus::Pending {
            for cap in caps {
                plan.caps.push(Cap {
                    key: cap.key.clone(),
                    member: e.id.clone(),
                    score: e.expires_ms,
                    max: cap.max,
                    ttl_ms,
                });
            }
        }
        Ok(Ok((plan, ())))
    }
}

/// A commit's refusal by the script: only over a budget.
fn commit_refusal(refusal: Refusal) -> Result<CommitRefused, StateError> {
    match refusal {
        Refusal::OverBudget(refused) => Ok(refused),
        other => unexpected(other),
    }
}

/// Only commits charge budgets, and only opens are capped.
fn unexpected<E>(refusal: Refusal) -> Result<E, StateError> {
    Err(StateError::Unexpected(format!("the state script refused a change it could not: {refusal:?}")))
}

impl StateStore for RedisStore {
    fn used(&self, scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> Result<u64, StateError> {
        let read = BudgetRead { scope: scope.to_owned(), window, unit };
        self.read_one(|pipe| self.queue_used(pipe, &read, now_ms), |answers| answers.used(window))
    }

    fn breaker_state(&self, key: &str, config: &BreakerConfig, now_ms: i64) -> Result<BreakerState, StateError> {
        match self.get(self.keys.breaker(key))? {
            Some(json) => Ok(parse::<Breaker>("breaker", &json)?.state(config, now_ms)),
            None => Ok(BreakerState::Closed),
        }
    }

    fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Result<Vec<PastToolCall>, StateError> {
        Ok(self.history(run)?.into_iter().filter(|c| c.matches(tool, since_ms)).collect())
    }

    fn count_tool_calls(&self, run: &RunKey, since_ms: i64) -> Result<u32, StateError> {
        let count = self.history(run)?.iter().filter(|c| c.matches(None, since_ms)).count();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    fn commit(&self, commit: Commit) -> Result<Result<(), CommitRefused>, StateError> {
        self.transact(|| self.plan_commit(&commit, None), commit_refusal)
    }

    fn prefetch(
        &self,
        forecast: &dyn Fn() -> ReadSet,
        run: &RunKey,
        now_ms: i64,
    ) -> Result<Option<Prefetched>, StateError> {
        self.read_forecast(&forecast(), run, now_ms).map(Some)
    }

    fn commit_prefetched(&self, commit: Commit, read: &Prefetched) -> Result<Result<(), CommitRefused>, StateError> {
        // Only the first plan trusts what was read; after a conflict it
        // reads again.
        let mut known = Some(read);
        self.transact(|| self.plan_commit(&commit, known.take()), commit_refusal)
    }

    fn reconcile(&self, usage: UsageReport) -> Result<Result<(), UsageRejected>, StateError> {
        self.transact(|| self.plan_reconcile(&usage), unexpected)
    }

    fn record_outcome(&self, outcome: OutcomeReport) -> Result<Result<(), OutcomeRejected>, StateError> {
        self.transact(|| self.plan_outcome(&outcome), unexpected)
    }

    fn open_escalation(&self, escalation: Escalation) -> Result<Result<(), EscalationRefused>, StateError> {
        let caps = self.pending_caps(&escalation.principal);
        let refused = |refusal| match refusal {
            Refusal::Full(i) => caps.get(i).map_or_else(|| unexpected(Refusal::Full(i)), |cap| Ok(cap.refusal.clone())),
            other => unexpected(other),
        };
        self.transact(|| self.plan_open(&escalation, &caps), refused)
    }

    fn resolve_escalation(&self, resolution: Resolution) -> Result<Result<Escalation, EscalationRefused>, StateError> {
        self.transact(|| self.plan_resolution(&resolution), unexpected)
    }

    fn escalation(&self, id: &str) -> Result<Option<Escalation>, StateError> {
        self.get(self.keys.escalation(id))?.map(|json| parse("escalation", &json)).transpose()
    }

    fn escalations(&self) -> Result<Vec<Escalation>, StateError> {
        let ids = self.index(self.keys.escalations_index())?;
        let records = self.get_many(ids.iter().map(|id| self.keys.escalation(id)).collect())?;
        let mut all: Vec<Escalation> =
            records.iter().flatten().map(|json| parse("escalation", json)).collect::<Result<_, _>>()?;
        sort_oldest_first(&mut all);
        Ok(all)
    }

    fn gauges(&self, now_ms: i64) -> Result<Gauges, StateError> {
        let totals = self.index(self.keys.totals_index())?;
        let values: Vec<(Option<u64>, Option<u64>)> = if totals.is_empty() {
            Vec::new()
        } else {
            self.run(|mut c| {
                let mut pipe = redis::pipe();
                for key in &totals {
                    pipe.cmd("HMGET").arg(key).arg("used").arg("limit");
                }
                async move { pipe.query_async(&mut c).await }
            })?
        };
        let mut budgets: Vec<BudgetGauge> = totals
            .iter()
            .zip(values)
            .filter_map(|(key, (used, limit))| {
                calendar_gauge(self.keys.total_name(key)?, used.unwrap_or(0), limit.unwrap_or(0), now_ms)
            })
            .collect();
        sort_gauges(&mut budgets);
        let names = self.index(self.keys.breakers_index())?;
        let records = self.get_many(names.iter().map(|k| self.keys.breaker(k)).collect())?;
        let (mut breakers, mut failure_percent) = (Vec::new(), BTreeMap::new());
        for (name, json) in names.into_iter().zip(records) {
            let Some(json) = json else { continue };
            let breaker = parse::<Breaker>("breaker", &json)?;
            if let Some(rate) = breaker.failure_percent() {
                failure_percent.insert(name.clone(), rate);
            }
            if let Some(state) = breaker.gauge(now_ms) {
                breakers.push((name, state));
            }
        }
        breakers.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Gauges { budgets, breakers, failure_percent })
    }

    fn spend(&self, since_ms: i64, until_ms: i64) -> Result<Vec<SpendEntry>, StateError> {
        let index = self.keys.spend_index();
        let first_day = day_start(since_ms);
        let days: Vec<i64> =
            self.run(|mut c| async move { c.zrangebyscore(index, first_day, format!("({until_ms}")).await })?;
        if days.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<HashMap<String, u64>> = self.run(|mut c| {
            let mut pipe = redis::pipe();
            for day in &days {
                pipe.hgetall(self.keys.spend(*day));
            }
            async move { pipe.query_async(&mut c).await }
        })?;
        let mut totals: BTreeMap<SpendKey, Totals> = BTreeMap::new();
        for (day_ms, hash) in days.iter().zip(hashes) {
            for (field, amount) in hash {
                let Some((who, counter)) = field.rsplit_once('\n') else { continue };
                let Who(pipeline, agent, team, model) = parse("spend", who)?;
                let t = totals.entry(SpendKey { day_ms: *day_ms, pipeline, agent, team, model }).or_default();
                let slot = match counter {
                    "requests" => &mut t.requests,
                    "reconciled" => &mut t.reconciled,
                    "prompt_tokens" => &mut t.prompt_tokens,
                    "output_tokens" => &mut t.output_tokens,
                    "micro_usd" => &mut t.micro_usd,
                    _ => continue,
                };
                *slot = amount;
            }
        }
        Ok(totals.iter().map(|(key, t)| key.entry(t)).collect())
    }

    fn tool_views(&self, server: &str, names: &[String]) -> Result<Vec<ToolView>, StateError> {
        self.read_tool_views(server, names)
    }

    fn record_listing(
        &self,
        server: &str,
        tools: &[ListedToolInput],
        now_ms: i64,
    ) -> Result<Result<(), ListingRefused>, StateError> {
        self.write_listing(&Listing::new(server, tools, now_ms))
    }

    fn halts(&self) -> Result<Vec<Halt>, StateError> {
        self.read_one(|pipe| self.queue_halts(pipe), Answers::halts)
    }

    fn halt(&self, halt: Halt) -> Result<(), StateError> {
        let (key, field, json) = (self.keys.halts(), halt.scope.to_string(), to_json(&halt)?);
        self.run(|mut c| async move { c.hset::<_, _, _, ()>(key, field, json).await })
    }

    fn resume(&self, scope: &HaltScope) -> Result<bool, StateError> {
        let (key, field) = (self.keys.halts(), scope.to_string());
        let removed: u32 = self.run(|mut c| async move { c.hdel(key, field).await })?;
        Ok(removed > 0)
    }

    fn claim(&self, key: &str, until_ms: i64, now_ms: i64) -> Result<bool, StateError> {
        let (key, ttl_ms) = (self.keys.claim(key), until_ms.saturating_sub(now_ms).max(1));
        // SET NX: exactly one replica's claim succeeds.
        let set: Option<String> = self.run(|mut c| async move {
            redis::cmd("SET").arg(key).arg(now_ms).arg("NX").arg("PX").arg(ttl_ms).query_async(&mut c).await
        })?;
        Ok(set.is_some())
    }
}
