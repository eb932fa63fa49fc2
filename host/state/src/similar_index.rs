//! A run's near-duplicate index (`history.count-similar`): the question
//! walks the postings of its own tokens, not every earlier call, and each
//! call is tokenized once, when the index first meets it.
//!
//! Exact, not approximate: a call sharing no token with a non-empty query
//! is at similarity 0, below any positive threshold, so only calls on the
//! query's postings can count, and for those the shared-token count gives
//! the Jaccard similarity exactly (`arbiter_text::jaccard_of_counts`).

use std::collections::{HashMap, VecDeque};

use arbiter_text::{TokenSet, jaccard_of_counts};
use serde_json::Value;

use crate::history::{PastToolCall, SimilarQuery};

/// The calls of one tool, by the token set of one string argument. Calls
/// are numbered in their run (`seq`); the index follows the run's calls as
/// they are recorded and forgotten.
#[derive(Debug)]
pub(crate) struct SimilarIndex {
    tool: Box<str>,
    argument: Box<str>,
    /// `seq` of `entries[0]`.
    first: u64,
    /// One per call of the run from `first` on: its time and token set, if
    /// it is a call of `tool` with a string `argument`.
    entries: VecDeque<Option<(i64, TokenSet)>>,
    /// Each token, with the `seq` of every entry holding it, ascending.
    postings: HashMap<Box<str>, VecDeque<u64>>,
}

impl SimilarIndex {
    /// An empty index of a run whose oldest kept call has `seq` `first`.
    pub(crate) fn new(tool: &str, argument: &str, first: u64) -> Self {
        SimilarIndex {
            tool: tool.into(),
            argument: argument.into(),
            first,
            entries: VecDeque::new(),
            postings: HashMap::new(),
        }
    }

    pub(crate) fn is_for(&self, tool: &str, argument: &str) -> bool {
        *self.tool == *tool && *self.argument == *argument
    }

    /// Brings the index to the run's kept `calls`, the oldest of which has
    /// `seq` `first`: forgets what the run forgot, adds what it recorded.
    pub(crate) fn sync(&mut self, calls: &VecDeque<PastToolCall>, first: u64) {
        while self.first < first {
            if let Some(Some((_, set))) = self.entries.pop_front() {
                for token in set.tokens() {
                    // The forgotten entry is the oldest on each of its postings.
                    if let Some(seqs) = self.postings.get_mut(token) {
                        seqs.pop_front();
                        if seqs.is_empty() {
                            self.postings.remove(token);
                        }
                    }
                }
            }
            self.first += 1;
        }
        let known = usize::try_from(self.first - first).unwrap_or(usize::MAX).saturating_add(self.entries.len());
        for (offset, call) in calls.iter().enumerate().skip(known) {
            let seq = first + offset as u64;
            let text = (*call.tool == *self.tool).then(|| call.arguments.get(&*self.argument).and_then(Value::as_str));
            let entry = text.flatten().map(|text| (call.timestamp_ms, TokenSet::of(text)));
            if let Some((_, set)) = &entry {
                for token in set.tokens() {
                    self.postings.entry(token.into()).or_default().push_back(seq);
                }
            }
            self.entries.push_back(entry);
        }
    }

    /// How many indexed calls answer `query` (its tool and argument are
    /// this index's).
    pub(crate) fn count(&self, query: &SimilarQuery<'_>) -> u32 {
        let (text, min) = (query.text, query.min_similarity);
        let in_time = |at: i64| at >= query.since_ms;
        let near = if min <= 0.0 || text.is_empty() {
            // At 0 every call is near; above it, an empty query is near
            // exactly the empty ones (similarity 1, the rest 0).
            self.entries.iter().flatten().filter(|(at, set)| in_time(*at) && (min <= 0.0 || set.is_empty())).count()
        } else {
            let mut common = vec![0usize; self.entries.len()];
            let mut touched = Vec::new();
            for token in text.tokens() {
                for seq in self.postings.get(token).into_iter().flatten() {
                    // Postings hold kept entries only (`sync` forgets the rest).
                    let at = usize::try_from(seq.saturating_sub(self.first)).unwrap_or(usize::MAX);
                    let Some(shared) = common.get_mut(at) else { continue };
                    if *shared == 0 {
                        touched.push(at);
                    }
                    *shared += 1;
                }
            }
            touched
                .into_iter()
                .filter(|&at| match &self.entries[at] {
                    Some((when, set)) => in_time(*when) && jaccard_of_counts(common[at], text.len(), set.len()) >= min,
                    None => false,
                })
                .count()
        };
        u32::try_from(near).unwrap_or(u32::MAX)
    }
}
