//! Cost attribution: LLM tokens (and money charged) per UTC day, pipeline,
//! agent, team and model, from reservations and their reconciliation.

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

/// Spend of one principal on one model on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendEntry {
    pub day_ms: i64,
    pub pipeline: String,
    pub agent: String,
    pub team: String,
    pub model: String,
    pub requests: u64,
    /// Requests whose usage was reported; the rest count at their reservation.
    pub reconciled: u64,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Money charged by budgets counted in USD, in millionths.
    pub charged_micro_usd: u64,
}

/// USD per million tokens of one model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// Spend of one value of a dimension over a period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    pub key: String,
    pub requests: u64,
    pub reconciled: u64,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    pub charged_micro_usd: u64,
    /// Cost of the tokens at the given prices.
    pub priced_usd: f64,
    /// Tokens of models without a price.
    pub unpriced_tokens: u64,
}

/// Sums entries per value of `by`, pricing tokens with `prices`.
pub fn aggregate(entries: &[SpendEntry], by: SpendDimension, prices: &BTreeMap<String, ModelPrice>) -> Vec<SpendRow> {
    let mut rows: BTreeMap<&str, SpendRow> = BTreeMap::new();
    for e in entries {
        let key = match by {
            SpendDimension::Pipeline => &e.pipeline,
            SpendDimension::Agent => &e.agent,
            SpendDimension::Team => &e.team,
            SpendDimension::Model => &e.model,
        };
        let row = rows.entry(key).or_insert_with(|| SpendRow {
            key: key.clone(),
            requests: 0,
            reconciled: 0,
            prompt_tokens: 0,
            output_tokens: 0,
            charged_micro_usd: 0,
            priced_usd: 0.0,
            unpriced_tokens: 0,
        });
        row.requests += e.requests;
        row.reconciled += e.reconciled;
        row.prompt_tokens += e.prompt_tokens;
        row.output_tokens += e.output_tokens;
        row.charged_micro_usd += e.charged_micro_usd;
        match prices.get(&e.model) {
            Some(p) => {
                row.priced_usd +=
                    (e.prompt_tokens as f64 * p.input_per_mtok + e.output_tokens as f64 * p.output_per_mtok) / 1e6;
            }
            None => row.unpriced_tokens += e.prompt_tokens + e.output_tokens,
        }
    }
    rows.into_values().collect()
}

/// Who spent on which model on which UTC day.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct SpendKey {
    pub(crate) day_ms: i64,
    pub(crate) pipeline: String,
    pub(crate) agent: String,
    pub(crate) team: String,
    pub(crate) model: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Totals {
    pub(crate) requests: u64,
    pub(crate) reconciled: u64,
    pub(crate) prompt_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) micro_usd: u64,
}

impl SpendKey {
    pub(crate) fn entry(&self, t: &Totals) -> SpendEntry {
        SpendEntry {
            day_ms: self.day_ms,
            pipeline: self.pipeline.clone(),
            agent: self.agent.clone(),
            team: self.team.clone(),
            model: self.model.clone(),
            requests: t.requests,
            reconciled: t.reconciled,
            prompt_tokens: t.prompt_tokens,
            output_tokens: t.output_tokens,
            charged_micro_usd: t.micro_usd,
        }
    }
}

/// What an LLM request added to its spend totals, until its usage comes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Open {
    pub(crate) key: SpendKey,
    pub(crate) prompt_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) micro_usd: u64,
    pub(crate) created_ms: i64,
}

/// Changes to spend totals; each total stays at zero or above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct SpendDelta {
    pub(crate) prompt_tokens: i128,
    pub(crate) output_tokens: i128,
    pub(crate) micro_usd: i128,
}

impl Open {
    pub(crate) fn of(spent: &Spent<'_>, now_ms: i64) -> Self {
        Open {
            key: SpendKey {
                day_ms: day_start(now_ms),
                pipeline: spent.pipeline.to_owned(),
                agent: spent.agent.to_owned(),
                team: spent.team.to_owned(),
                model: spent.model.to_owned(),
            },
            prompt_tokens: spent.prompt_tokens,
            output_tokens: spent.output_tokens,
            micro_usd: spent.micro_usd,
            created_ms: now_ms,
        }
    }

    /// Replaces the reserved tokens with actual usage, and the money in
    /// proportion.
    pub(crate) fn reconciliation(&self, prompt_tokens: u64, output_tokens: u64) -> SpendDelta {
        let reserved = (self.prompt_tokens + self.output_tokens).max(1);
        let actual = prompt_tokens + output_tokens;
        let micro_usd = (u128::from(self.micro_usd) * u128::from(actual) / u128::from(reserved)) as u64;
        SpendDelta {
            prompt_tokens: i128::from(prompt_tokens) - i128::from(self.prompt_tokens),
            output_tokens: i128::from(output_tokens) - i128::from(self.output_tokens),
            micro_usd: i128::from(micro_usd) - i128::from(self.micro_usd),
        }
    }
}

fn apply_delta(total: &mut u64, delta: i128) {
    *total = u64::try_from((i128::from(*total) + delta).max(0)).unwrap_or(u64::MAX);
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

/// Who spent, and what was reserved, for [`Spend::record`].
pub(crate) struct Spent<'a> {
    pub(crate) pipeline: &'a str,
    pub(crate) agent: &'a str,
    pub(crate) team: &'a str,
    pub(crate) model: &'a str,
    pub(crate) prompt_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) micro_usd: u64,
}

impl Spend {
    pub(crate) fn record(&mut self, request_id: &str, spent: Spent<'_>, now_ms: i64) {
        let open = Open::of(&spent, now_ms);
        let totals = self.days.entry(open.key.clone()).or_default();
        totals.requests += 1;
        totals.prompt_tokens += open.prompt_tokens;
        totals.output_tokens += open.output_tokens;
        totals.micro_usd += open.micro_usd;
        self.open.insert(request_id.to_owned(), open);
    }

    pub(crate) fn is_open(&self, request_id: &str) -> bool {
        self.open.contains_key(request_id)
    }

    /// Replaces a request's reserved tokens with actual usage, and its money
    /// in proportion.
    pub(crate) fn reconcile(&mut self, request_id: &str, prompt_tokens: u64, output_tokens: u64) -> bool {
        let Some(open) = self.open.remove(request_id) else { return false };
        let delta = open.reconciliation(prompt_tokens, output_tokens);
        let totals = self.days.entry(open.key).or_default();
        apply_delta(&mut totals.prompt_tokens, delta.prompt_tokens);
        apply_delta(&mut totals.output_tokens, delta.output_tokens);
        apply_delta(&mut totals.micro_usd, delta.micro_usd);
        totals.reconciled += 1;
        true
    }

    pub(crate) fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        self.open.retain(|_, o| o.created_ms + ttl_ms >= now_ms);
    }

    /// Entries of the UTC days overlapping [since, until).
    pub(crate) fn entries(&self, since_ms: i64, until_ms: i64) -> Vec<SpendEntry> {
        let first_day = day_start(since_ms);
        self.days
            .iter()
            .filter(|(k, _)| k.day_ms >= first_day && k.day_ms < until_ms)
            .map(|(k, t)| k.entry(t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent<'a>(model: &'a str, team: &'a str, prompt: u64, output: u64) -> Spent<'a> {
        Spent { pipeline: "p", agent: "a", team, model, prompt_tokens: prompt, output_tokens: output, micro_usd: 0 }
    }

    #[test]
    fn reconciliation_replaces_reserved_tokens_and_reports_aggregate() {
        let mut spend = Spend::default();
        spend.record("r1", spent("m1", "t1", 1000, 500), 0);
        spend.record("r2", spent("m2", "t1", 2000, 1000), 0);
        spend.record("r3", spent("m1", "t2", 10, 10), 86_400_000);
        assert!(spend.reconcile("r1", 1000, 100));
        assert!(!spend.reconcile("r1", 1, 1));
        let entries = spend.entries(0, 86_400_000);
        assert_eq!(entries.len(), 2, "only the first day");
        let prices = BTreeMap::from([("m1".to_owned(), ModelPrice { input_per_mtok: 3.0, output_per_mtok: 15.0 })]);
        let rows = aggregate(&entries, SpendDimension::Team, &prices);
        assert_eq!(rows.len(), 1);
        let t1 = &rows[0];
        assert_eq!((t1.requests, t1.reconciled, t1.prompt_tokens, t1.output_tokens), (2, 1, 3000, 1100));
        assert!((t1.priced_usd - (1000.0 * 3.0 + 100.0 * 15.0) / 1e6).abs() < 1e-12);
        assert_eq!(t1.unpriced_tokens, 3000);
    }
}
