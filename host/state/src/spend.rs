//! Cost attribution: LLM tokens and money per day, pipeline, agent, team
//! and model, from reservations and their reconciliation.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::calendar::day_start;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendDimension {
    Pipeline,
    Agent,
    Team,
    Model,
}

/// Spend of one value of a dimension over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRow {
    pub key: String,
    pub requests: u64,
    pub tokens: u64,
    pub micro_usd: u64,
    /// Requests whose usage was reported (the rest count at their reservation).
    pub reconciled: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct SpendKey {
    day_ms: i64,
    pipeline: String,
    agent: String,
    team: String,
    model: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Totals {
    requests: u64,
    tokens: u64,
    micro_usd: u64,
    reconciled: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    key: SpendKey,
    tokens: u64,
    micro_usd: u64,
    created_ms: i64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Spend {
    #[serde(with = "as_pairs")]
    days: BTreeMap<SpendKey, Totals>,
    /// LLM requests whose usage may still be reported.
    open: HashMap<String, Open>,
}

/// Maps with struct keys are stored as lists of pairs in JSON.
mod as_pairs {
    use super::{SpendKey, Totals};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub(super) fn serialize<S: Serializer>(map: &BTreeMap<SpendKey, Totals>, s: S) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<SpendKey, Totals>, D::Error> {
        Ok(Vec::<(SpendKey, Totals)>::deserialize(d)?.into_iter().collect())
    }
}

/// Who spent, for [`Spend::record`].
pub(crate) struct Spender<'a> {
    pub(crate) pipeline: &'a str,
    pub(crate) agent: &'a str,
    pub(crate) team: &'a str,
    pub(crate) model: &'a str,
}

impl Spend {
    pub(crate) fn record(&mut self, request_id: &str, who: Spender<'_>, tokens: u64, micro_usd: u64, now_ms: i64) {
        let key = SpendKey {
            day_ms: day_start(now_ms),
            pipeline: who.pipeline.to_owned(),
            agent: who.agent.to_owned(),
            team: who.team.to_owned(),
            model: who.model.to_owned(),
        };
        let totals = self.days.entry(key.clone()).or_default();
        totals.requests += 1;
        totals.tokens += tokens;
        totals.micro_usd += micro_usd;
        self.open.insert(request_id.to_owned(), Open { key, tokens, micro_usd, created_ms: now_ms });
    }

    pub(crate) fn is_open(&self, request_id: &str) -> bool {
        self.open.contains_key(request_id)
    }

    /// Replaces a request's reserved tokens (and its money, in proportion)
    /// with actual usage.
    pub(crate) fn reconcile(&mut self, request_id: &str, actual_tokens: u64) -> bool {
        let Some(open) = self.open.remove(request_id) else { return false };
        let micro_usd =
            (u128::from(open.micro_usd) * u128::from(actual_tokens) / u128::from(open.tokens.max(1))) as u64;
        let totals = self.days.entry(open.key).or_default();
        totals.tokens = (totals.tokens + actual_tokens).saturating_sub(open.tokens);
        totals.micro_usd = (totals.micro_usd + micro_usd).saturating_sub(open.micro_usd);
        totals.reconciled += 1;
        true
    }

    pub(crate) fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        self.open.retain(|_, o| o.created_ms + ttl_ms >= now_ms);
    }

    /// Spend per value of `by` on the UTC days overlapping [since, until).
    pub(crate) fn report(&self, since_ms: i64, until_ms: i64, by: SpendDimension) -> Vec<SpendRow> {
        let mut rows: BTreeMap<&str, SpendRow> = BTreeMap::new();
        let first_day = day_start(since_ms);
        for (key, totals) in self.days.iter().filter(|(k, _)| k.day_ms >= first_day && k.day_ms < until_ms) {
            let name = match by {
                SpendDimension::Pipeline => &key.pipeline,
                SpendDimension::Agent => &key.agent,
                SpendDimension::Team => &key.team,
                SpendDimension::Model => &key.model,
            };
            let row = rows.entry(name).or_insert_with(|| SpendRow {
                key: name.clone(),
                requests: 0,
                tokens: 0,
                micro_usd: 0,
                reconciled: 0,
            });
            row.requests += totals.requests;
            row.tokens += totals.tokens;
            row.micro_usd += totals.micro_usd;
            row.reconciled += totals.reconciled;
        }
        rows.into_values().collect()
    }
}
