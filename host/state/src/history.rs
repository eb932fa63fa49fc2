//! Run history: the allowed tool calls of each run, bounded and aged out.
//!
//! Bounded per run (calls) and overall (runs, bytes): past an overall cap
//! by a tenth, the least recently active runs are forgotten down to it, so
//! the sort this takes is paid once per tenth of the cap, not per call.

use std::collections::{HashMap, VecDeque};

use arbiter_text::TokenSet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::similar_index::SimilarIndex;
use crate::store::StoreConfig;

/// A run, as history is kept per pipeline and run id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunKey {
    pub pipeline: String,
    pub run: String,
}

/// An allowed tool call of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastToolCall {
    pub request_id: String,
    pub timestamp_ms: i64,
    pub tool: String,
    pub arguments: Map<String, Value>,
}

impl PastToolCall {
    /// Whether a history query for `tool` (any if `None`) since `since_ms`
    /// returns it.
    pub(crate) fn matches(&self, tool: Option<&str>, since_ms: i64) -> bool {
        self.timestamp_ms >= since_ms && tool.is_none_or(|t| self.tool == t)
    }
}

/// A near-duplicate question about a run (`history.count-similar`): its
/// allowed calls of `tool` at or after `since_ms` whose string argument
/// `argument` has a token set at least `min_similarity` similar to `text`.
#[derive(Debug, Clone, Copy)]
pub struct SimilarQuery<'a> {
    pub tool: &'a str,
    pub argument: &'a str,
    pub text: &'a TokenSet,
    /// In `[0, 1]` (`arbiter_text::check_threshold`).
    pub min_similarity: f64,
    pub since_ms: i64,
}

impl SimilarQuery<'_> {
    /// Whether `call` answers the question, judged afresh (for a store
    /// that keeps no index, and past the indexes a run keeps).
    pub fn answers(&self, call: &PastToolCall) -> bool {
        call.matches(Some(self.tool), self.since_ms)
            && call
                .arguments
                .get(self.argument)
                .and_then(Value::as_str)
                .is_some_and(|text| TokenSet::of(text).is_near(self.text, self.min_similarity))
    }
}

/// How many of `calls` answer a near-duplicate question, each judged
/// afresh.
pub(crate) fn count_similar_in<'a>(calls: impl IntoIterator<Item = &'a PastToolCall>, query: &SimilarQuery<'_>) -> u32 {
    let near = calls.into_iter().filter(|call| query.answers(call)).count();
    u32::try_from(near).unwrap_or(u32::MAX)
}

/// The answer to an earlier-mention question among `calls` (oldest first),
/// each judged afresh.
pub(crate) fn first_mention_in<'a>(
    calls: impl IntoIterator<Item = &'a PastToolCall>,
    query: &MentionQuery<'_>,
) -> Option<Mention> {
    calls
        .into_iter()
        .filter(|call| call.timestamp_ms >= query.since_ms)
        .find_map(|call| query.marker_in(call).and_then(|marker| query.mention(call, marker)))
}

/// An earlier-mention question about a run (`history.first-mention`): its
/// oldest allowed call at or after `since_ms` of a tool matching one of
/// `tools` (globs) with a string argument named in `arguments` that
/// mentions one of `markers` at a word start.
#[derive(Debug, Clone, Copy)]
pub struct MentionQuery<'a> {
    pub tools: &'a [String],
    pub arguments: &'a [String],
    pub markers: &'a [String],
    pub since_ms: i64,
}

/// The answer to a [`MentionQuery`]: the call and the marker it mentioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    pub request_id: String,
    pub marker: String,
}

impl MentionQuery<'_> {
    /// The index of the marker `call` mentions, judged afresh (for a store
    /// that keeps no answers); the time bound aside.
    pub fn marker_in(&self, call: &PastToolCall) -> Option<usize> {
        if !arbiter_glob::any_matches(self.tools, &call.tool) {
            return None;
        }
        let texts = call
            .arguments
            .iter()
            .filter(|(name, _)| self.arguments.contains(name))
            .filter_map(|(_, value)| value.as_str());
        arbiter_text::first_marker(texts, self.markers)
    }

    /// The answer, given the marker index `call` mentions (none for an
    /// index this question has no marker at).
    pub fn mention(&self, call: &PastToolCall, marker: usize) -> Option<Mention> {
        let marker = self.markers.get(marker)?.clone();
        Some(Mention { request_id: call.request_id.clone(), marker })
    }

    /// What identifies the question among those asked of a call: each
    /// list's length, then each item's length and bytes, so no two
    /// questions share a key whatever their items hold (an item may hold
    /// any separator a plain join would use).
    fn key(&self) -> String {
        let mut key = String::new();
        for list in [self.tools, self.arguments, self.markers] {
            key.push_str(&format!("{}[", list.len()));
            for item in list {
                key.push_str(&format!("{}:{item}", item.len()));
            }
        }
        key
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(from = "StoredHistory")]
pub(crate) struct History {
    runs: HashMap<String, RunHistory>,
    /// Counts recordings. Activity is ordered by it, not by event time: a
    /// client's timestamps in the future must not keep its runs over
    /// everyone else's.
    #[serde(default)]
    recorded: u64,
    /// Bytes of every kept call (derived, rebuilt on load).
    #[serde(skip)]
    bytes: usize,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RunHistory {
    last_ms: i64,
    /// `History::recorded` at its last call.
    #[serde(default)]
    touched: u64,
    calls: VecDeque<PastToolCall>,
    /// Bytes of its calls (derived, rebuilt on load).
    #[serde(skip)]
    bytes: usize,
    /// Kept calls whose event time is earlier than the call before them
    /// (derived, rebuilt on load). While there are none the calls are in
    /// time order and a time window is found by binary search; otherwise by
    /// a scan (bounded by the per-run cap): a caller's clock may go back,
    /// and decisions made at once may commit in either order.
    #[serde(skip)]
    inversions: usize,
    /// What earlier-mention questions found in each call, one slot per
    /// call: the marker index, by question (`questions`). Derived, like
    /// what follows: made on first ask, never journaled, never counted in
    /// `bytes` (so forgetting replays the same).
    #[serde(skip)]
    mentions: VecDeque<Found>,
    /// The keys of the mention questions asked of the run, at most
    /// [`MAX_KEPT_PER_RUN`]: a call's findings name them by position.
    #[serde(skip)]
    questions: Vec<Box<str>>,
    /// The run's sequence number of `calls[0]` (calls forgotten so far).
    #[serde(skip)]
    first_seq: u64,
    /// A near-duplicate index per (tool, argument) asked about, at most
    /// [`MAX_KEPT_PER_RUN`].
    #[serde(skip)]
    similar: Vec<SimilarIndex>,
}

/// What earlier-mention questions found in one call: the marker index
/// (none: no marker), by the question's position in the run's `questions`.
type Found = Vec<(usize, Option<usize>)>;

/// Mention questions and near-duplicate indexes one run keeps; past
/// them, answers are made afresh each time and not kept, so a policy asking
/// ever-new questions cannot grow history.
const MAX_KEPT_PER_RUN: usize = 8;

/// A copy without the derived findings and indexes (made again on first
/// ask): a snapshot clones the state under its lock and serializes none of
/// them.
impl Clone for RunHistory {
    fn clone(&self) -> Self {
        RunHistory {
            last_ms: self.last_ms,
            touched: self.touched,
            calls: self.calls.clone(),
            bytes: self.bytes,
            inversions: self.inversions,
            mentions: VecDeque::new(),
            questions: Vec::new(),
            first_seq: self.first_seq,
            similar: Vec::new(),
        }
    }
}

impl RunHistory {
    fn inversions_in(calls: &VecDeque<PastToolCall>) -> usize {
        calls.iter().zip(calls.iter().skip(1)).filter(|(a, b)| b.timestamp_ms < a.timestamp_ms).count()
    }

    fn push(&mut self, call: PastToolCall) {
        if self.calls.back().is_some_and(|last| call.timestamp_ms < last.timestamp_ms) {
            self.inversions += 1;
        }
        self.calls.push_back(call);
        self.mentions.push_back(Vec::new());
    }

    fn pop_oldest(&mut self) -> Option<PastToolCall> {
        let oldest = self.calls.pop_front()?;
        self.mentions.pop_front();
        self.first_seq += 1;
        if self.calls.front().is_some_and(|next| next.timestamp_ms < oldest.timestamp_ms) {
            self.inversions -= 1;
        }
        Some(oldest)
    }

    /// Where the calls at or after `since_ms` begin: every call from there
    /// on is in the window while the calls are in time order; otherwise 0,
    /// and the caller must filter.
    fn window_start(&self, since_ms: i64) -> usize {
        if self.inversions > 0 { 0 } else { self.calls.partition_point(|c| c.timestamp_ms < since_ms) }
    }

    /// How many calls are at or after `since_ms`.
    fn count_since(&self, since_ms: i64) -> usize {
        if self.inversions > 0 {
            self.calls.iter().filter(|c| c.matches(None, since_ms)).count()
        } else {
            self.calls.len() - self.window_start(since_ms)
        }
    }

    /// Each call with its slot of mention findings.
    fn with_mentions(&mut self) -> impl Iterator<Item = (&PastToolCall, &mut Found)> {
        if self.mentions.len() != self.calls.len() {
            // After a clone, which drops findings (loading and recording
            // keep one slot per call); unmended, a zip would skip calls.
            self.mentions = self.calls.iter().map(|_| Vec::new()).collect();
        }
        self.calls.iter().zip(self.mentions.iter_mut())
    }
}

/// What a snapshot holds of [`History`].
#[derive(Deserialize)]
struct StoredHistory {
    runs: HashMap<String, RunHistory>,
    #[serde(default)]
    recorded: u64,
}

impl From<StoredHistory> for History {
    fn from(stored: StoredHistory) -> Self {
        let mut runs = stored.runs;
        for run in runs.values_mut() {
            run.bytes = run.calls.iter().map(size).sum();
            run.inversions = RunHistory::inversions_in(&run.calls);
            run.mentions = run.calls.iter().map(|_| Vec::new()).collect();
        }
        let bytes = runs.values().map(|r| r.bytes).sum();
        History { runs, recorded: stored.recorded, bytes }
    }
}

fn key(run: &RunKey) -> String {
    format!("{}\u{1f}{}", run.pipeline, run.run)
}

/// What a call costs to keep, near enough: its size as JSON.
fn size(call: &PastToolCall) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing JSON values to a counter cannot fail.
    serde_json::to_writer(&mut count, call).map_or(0, |()| count.0)
}

/// A cap and the tenth over it that triggers forgetting down to it.
fn over(value: usize, cap: usize) -> bool {
    value > cap.saturating_add(cap / 10)
}

impl History {
    pub(crate) fn record(&mut self, run: &RunKey, call: PastToolCall, config: &StoreConfig) {
        self.recorded += 1;
        let key = key(run);
        let entry = self.runs.entry(key.clone()).or_default();
        entry.last_ms = entry.last_ms.max(call.timestamp_ms);
        entry.touched = self.recorded;
        let added = size(&call);
        entry.bytes += added;
        self.bytes += added;
        entry.push(call);
        while entry.calls.len() > config.history_per_run
            || (entry.bytes > config.history_bytes && entry.calls.len() > 1)
        {
            let Some(oldest) = entry.pop_oldest() else { break };
            let freed = size(&oldest);
            entry.bytes = entry.bytes.saturating_sub(freed);
            self.bytes = self.bytes.saturating_sub(freed);
        }
        if over(self.runs.len(), config.history_runs) || over(self.bytes, config.history_bytes) {
            self.forget_least_active(&key, config.history_runs, config.history_bytes);
        }
    }

    /// Forgets the least recently active runs, never `keep` (the one just
    /// recorded), until at most `max_runs` and `max_bytes` are kept.
    fn forget_least_active(&mut self, keep: &str, max_runs: usize, max_bytes: usize) {
        let mut by_activity: Vec<(u64, &String, usize)> =
            self.runs.iter().filter(|(k, _)| *k != keep).map(|(k, r)| (r.touched, k, r.bytes)).collect();
        // Ties (runs loaded from before `touched`) go by key: replay forgets the same ones.
        by_activity.sort_unstable();
        let (mut runs, mut bytes) = (self.runs.len(), self.bytes);
        let mut forget = Vec::new();
        for (_, key, run_bytes) in by_activity {
            if runs <= max_runs && bytes <= max_bytes {
                break;
            }
            forget.push(key.clone());
            runs -= 1;
            bytes = bytes.saturating_sub(run_bytes);
        }
        for key in forget {
            self.forget(&key);
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(run) = self.runs.remove(key) {
            self.bytes = self.bytes.saturating_sub(run.bytes);
        }
    }

    pub(crate) fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Vec<PastToolCall> {
        self.calls(run, tool, since_ms).cloned().collect()
    }

    pub(crate) fn count(&self, run: &RunKey, since_ms: i64) -> u32 {
        let counted = self.runs.get(&key(run)).map_or(0, |r| r.count_since(since_ms));
        u32::try_from(counted).unwrap_or(u32::MAX)
    }

    /// Answers a near-duplicate question from the run's index for its
    /// tool and argument (made on first ask, then kept in step with the
    /// run), so it costs what the question's tokens' postings hold, not
    /// what the run holds.
    pub(crate) fn count_similar(&mut self, run: &RunKey, query: &SimilarQuery<'_>) -> u32 {
        let Some(run) = self.runs.get_mut(&key(run)) else { return 0 };
        let at = match run.similar.iter().position(|index| index.is_for(query.tool, query.argument)) {
            Some(at) => at,
            None if run.similar.len() < MAX_KEPT_PER_RUN => {
                run.similar.push(SimilarIndex::new(query.tool, query.argument, run.first_seq));
                run.similar.len() - 1
            }
            None => return count_similar_in(&run.calls, query),
        };
        let index = &mut run.similar[at];
        index.sync(&run.calls, run.first_seq);
        index.count(query)
    }

    /// Answers an earlier-mention question from what earlier asks of it
    /// found, judging only the calls it was not asked of yet.
    pub(crate) fn first_mention(&mut self, run: &RunKey, query: &MentionQuery<'_>) -> Option<Mention> {
        let run = self.runs.get_mut(&key(run))?;
        let question = query.key();
        let asked = match run.questions.iter().position(|asked| **asked == *question) {
            Some(at) => Some(at),
            None if run.questions.len() < MAX_KEPT_PER_RUN => {
                run.questions.push(question.into());
                Some(run.questions.len() - 1)
            }
            None => None,
        };
        for (call, found) in run.with_mentions() {
            if call.timestamp_ms < query.since_ms {
                continue;
            }
            let marker = match asked {
                Some(asked) => match found.iter().find(|(question, _)| *question == asked) {
                    Some((_, marker)) => *marker,
                    None => {
                        let marker = query.marker_in(call);
                        found.push((asked, marker));
                        marker
                    }
                },
                None => query.marker_in(call),
            };
            if let Some(mention) = marker.and_then(|marker| query.mention(call, marker)) {
                return Some(mention);
            }
        }
        None
    }

    fn calls<'a>(
        &'a self,
        run: &RunKey,
        tool: Option<&'a str>,
        since_ms: i64,
    ) -> impl Iterator<Item = &'a PastToolCall> {
        self.runs
            .get(&key(run))
            .into_iter()
            .flat_map(move |r| r.calls.range(r.window_start(since_ms)..))
            .filter(move |c| c.matches(tool, since_ms))
    }

    /// Forgets runs with no activity since `cutoff_ms`.
    pub(crate) fn age_out(&mut self, cutoff_ms: i64) {
        let stale: Vec<String> =
            self.runs.iter().filter(|(_, r)| r.last_ms < cutoff_ms).map(|(k, _)| k.clone()).collect();
        for key in stale {
            self.forget(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(n: usize) -> RunKey {
        RunKey { pipeline: "p".into(), run: format!("r{n}") }
    }

    fn call(n: usize, padding: usize) -> PastToolCall {
        let arguments = serde_json::json!({"n": n, "pad": "x".repeat(padding)});
        PastToolCall {
            request_id: format!("q{n}"),
            timestamp_ms: 0,
            tool: "t".into(),
            arguments: arguments.as_object().cloned().unwrap_or_default(),
        }
    }

    fn runs_kept(h: &History, upto: usize) -> Vec<usize> {
        (0..upto).filter(|n| h.count(&run(*n), i64::MIN) > 0).collect()
    }

    proptest::proptest! {
        /// The index answers as judging every kept call afresh does, through
        /// calls of two tools, non-string arguments, the per-run cap
        /// forgetting calls under it, and thresholds from 0 to 1.
        #[test]
        fn the_near_duplicate_index_answers_as_a_full_scan(
            steps in proptest::collection::vec(
                (0..3usize, proptest::collection::vec(0..6usize, 0..5), 0..5usize, 0..40i64),
                1..60,
            )
        ) {
            const WORDS: [&str; 6] = ["orders", "daily", "schema", "change", "column", "late"];
            let thresholds = [0.0, 0.25, 0.5, 0.6, 1.0];
            let config = StoreConfig { history_per_run: 7, ..StoreConfig::default() };
            let mut h = History::default();
            let run = run(0);
            for (n, (kind, words, threshold, since)) in steps.into_iter().enumerate() {
                let text: Vec<&str> = words.iter().map(|w| WORDS[*w]).collect();
                let text = text.join(" ");
                let tool = if kind == 1 { "web.search" } else { "docs.search" };
                let query = if kind == 2 { serde_json::json!(n) } else { serde_json::json!(text) };
                let arguments = serde_json::json!({ "query": query });
                let call = PastToolCall {
                    request_id: format!("q{n}"),
                    timestamp_ms: n as i64,
                    tool: tool.into(),
                    arguments: arguments.as_object().cloned().unwrap_or_default(),
                };
                h.record(&run, call, &config);
                let text = TokenSet::of(&text);
                let query = SimilarQuery {
                    tool: "docs.search",
                    argument: "query",
                    text: &text,
                    min_similarity: thresholds[threshold],
                    since_ms: since,
                };
                let scanned = h.calls(&run, None, i64::MIN).filter(|c| query.answers(c)).count();
                proptest::prop_assert_eq!(h.count_similar(&run, &query) as usize, scanned, "step {}", n);
            }
        }
    }

    proptest::proptest! {
        // A failure becomes a named test, not a seed file (docs/fuzzing.md).
        #![proptest_config(proptest::test_runner::Config { failure_persistence: None, ..Default::default() })]

        /// Time windows (counts and listed calls) answer as a scan of every
        /// kept call does: calls in time order, a caller's clock stepping
        /// back (one step back must not hide calls from a window, or a
        /// storm would pass uncounted), the per-run cap forgetting the
        /// oldest (and with it an inversion, when the run is in order
        /// again), and a snapshot reloaded halfway.
        #[test]
        fn time_windows_answer_as_a_full_scan(
            steps in proptest::collection::vec((-3..20i64, 0..2usize, -5..60i64), 1..40),
            reload_at in 0..40usize,
        ) {
            let config = StoreConfig { history_per_run: 9, ..StoreConfig::default() };
            let mut h = History::default();
            let run = run(0);
            let mut clock = 0i64;
            for (n, (step, tool, back)) in steps.into_iter().enumerate() {
                clock += step;
                // Windows reaching back over the kept calls, and beyond either end.
                let since = match back { -5 => i64::MIN, -4 => i64::MAX, back => clock - back };
                let tool = ["docs.search", "web.search"][tool];
                let call = PastToolCall { timestamp_ms: clock, tool: tool.into(), ..call(n, 0) };
                h.record(&run, call, &config);
                if n == reload_at {
                    h = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
                }
                let kept = &h.runs[&key(&run)].calls;
                let in_window = |t: Option<&str>| kept.iter().filter(|c| c.matches(t, since)).cloned().collect::<Vec<_>>();
                proptest::prop_assert_eq!(h.count(&run, since) as usize, in_window(None).len(), "step {}", n);
                proptest::prop_assert_eq!(h.tool_calls(&run, Some(tool), since), in_window(Some(tool)), "step {}", n);
                proptest::prop_assert_eq!(h.tool_calls(&run, None, since), in_window(None), "step {}", n);
            }
        }
    }

    #[test]
    fn a_run_is_searched_again_once_its_inverted_calls_are_forgotten() {
        // Two decisions made at once may commit in either order: one
        // inversion turns the run to scans only while the pair is kept.
        let config = StoreConfig { history_per_run: 3, ..StoreConfig::default() };
        let mut h = History::default();
        let run = run(0);
        for (n, at) in [10, 5, 20, 30, 40].into_iter().enumerate() {
            h.record(&run, PastToolCall { timestamp_ms: at, ..call(n, 0) }, &config);
            let inversions = h.runs[&key(&run)].inversions;
            assert_eq!(inversions, usize::from((1..=2).contains(&n)), "after the call at {at}");
        }
        assert_eq!(h.count(&run, 25), 2);
    }

    #[test]
    fn questions_differing_only_in_where_items_split_are_answered_apart() {
        let config = StoreConfig::default();
        let mut h = History::default();
        let arguments = serde_json::json!({"sql": "select * from pii.customers"});
        let call = PastToolCall {
            request_id: "q1".into(),
            timestamp_ms: 0,
            tool: "warehouse.query".into(),
            arguments: arguments.as_object().cloned().unwrap_or_default(),
        };
        h.record(&run(0), call, &config);
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (tools, sql) = (strings(&["warehouse.*"]), strings(&["sql"]));
        let ask = |h: &mut History, markers: &[String]| {
            let query = MentionQuery { tools: &tools, arguments: &sql, markers, since_ms: i64::MIN };
            h.first_mention(&run(0), &query).map(|m| m.marker)
        };
        // A joined key would make these one question: the first's "none"
        // would hide the second's mention, and an index kept for a
        // three-marker question would be read against a one-marker one.
        assert_eq!(ask(&mut h, &strings(&["zz\u{1f}pii."])), None);
        assert_eq!(ask(&mut h, &strings(&["zz", "pii."])).as_deref(), Some("pii."));
        assert_eq!(ask(&mut h, &strings(&["a", "b", "pii."])).as_deref(), Some("pii."));
        assert_eq!(ask(&mut h, &strings(&["a\u{1f}b\u{1f}pii."])), None);
        // Past the questions a run keeps, answers are made afresh, alike.
        for round in 0..2 {
            for n in 0..3 * MAX_KEPT_PER_RUN {
                let marker = if n % 2 == 0 { "pii." } else { "nothing." };
                let expected = (n % 2 == 0).then(|| marker.to_owned());
                assert_eq!(ask(&mut h, &strings(&[&format!("m{n}."), marker])), expected, "{round} {n}");
            }
        }
        assert_eq!(h.runs.values().map(|r| r.questions.len()).max(), Some(MAX_KEPT_PER_RUN));
    }

    #[test]
    fn runs_past_the_cap_go_least_recently_active_first() {
        let config = StoreConfig { history_runs: 100, ..StoreConfig::default() };
        let mut h = History::default();
        for n in 0..1_000 {
            h.record(&run(n), call(n, 0), &config);
            assert!(h.runs.len() <= 110, "{} runs kept after {n}", h.runs.len());
        }
        let kept = runs_kept(&h, 1_000);
        assert!(kept.len() >= 100, "{}", kept.len());
        assert!(kept.iter().all(|n| *n >= 1_000 - kept.len()), "the most recent runs are kept: {kept:?}");
        // Activity, not creation, counts: run 0 called again is recent.
        h.record(&run(0), call(0, 0), &config);
        for n in 1_000..1_050 {
            h.record(&run(n), call(n, 0), &config);
        }
        assert_eq!(h.count(&run(0), i64::MIN), 1, "only its new call: it was forgotten before");
        assert_eq!(h.bytes, h.runs.values().flat_map(|r| &r.calls).map(size).sum::<usize>(), "bytes add up");
    }

    #[test]
    fn future_timestamps_do_not_keep_a_run() {
        let config = StoreConfig { history_runs: 10, ..StoreConfig::default() };
        let mut h = History::default();
        h.record(&run(0), PastToolCall { timestamp_ms: i64::MAX, ..call(0, 0) }, &config);
        for n in 1..100 {
            h.record(&run(n), call(n, 0), &config);
        }
        assert_eq!(h.count(&run(0), i64::MIN), 0);
    }

    #[test]
    fn bytes_are_capped_overall_and_per_run() {
        let one = size(&call(10, 1_000));
        let config = StoreConfig { history_bytes: 10 * one, ..StoreConfig::default() };
        let mut h = History::default();
        for n in 0..100 {
            h.record(&run(n), call(n, 1_000), &config);
            assert!(h.bytes <= 11 * one, "{} bytes after {n}", h.bytes);
        }
        assert!(h.count(&run(99), i64::MIN) == 1);
        // One run alone: its oldest calls go, its newest stays even if over.
        let mut h = History::default();
        for n in 0..30 {
            h.record(&run(0), call(n, 1_000), &config);
        }
        assert_eq!(h.count(&run(0), i64::MIN), 10);
        h.record(&run(0), call(30, 20_000), &config);
        assert_eq!(h.tool_calls(&run(0), None, i64::MIN).iter().map(|c| &c.request_id).collect::<Vec<_>>(), ["q30"]);
    }

    #[test]
    fn sizes_and_order_survive_a_snapshot() {
        let config = StoreConfig { history_runs: 3, ..StoreConfig::default() };
        let mut h = History::default();
        for n in 0..3 {
            h.record(&run(n), call(n, 10), &config);
        }
        let mut loaded: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
        assert_eq!(loaded.bytes, h.bytes);
        for n in 3..5 {
            loaded.record(&run(n), call(n, 10), &config);
        }
        assert_eq!(runs_kept(&loaded, 5), [2, 3, 4]);
    }
}
