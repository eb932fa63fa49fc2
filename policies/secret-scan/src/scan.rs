//! From a document's strings to the spans to mask: strings that are items
//! of one array (a result's `content` blocks, chunks of one text) are
//! scanned as one text, so a secret split across two of them is still
//! found; invisible characters are left out of the scan text, so one
//! inserted inside a key does not hide it; each hit is mapped back to the
//! strings it covers.

use std::collections::HashMap;

use arbiter_sdk::Leaf;
use arbiter_sdk::strings::last_token;

use crate::detect::{self, Hit, Token};

/// What the policy looks for.
pub(crate) struct Detectors {
    pub tokens: Vec<Token>,
    /// Lowercase.
    pub markers: Vec<String>,
}

/// A span of one string (`leaf`, an index into the scanned strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finding<'p> {
    pub leaf: usize,
    pub start: usize,
    pub end: usize,
    pub code: &'p str,
}

impl Detectors {
    /// Every span to mask in `leaves`, in string order, overlapping spans
    /// of one detector merged.
    pub(crate) fn scan(&self, leaves: &[Leaf<'_>]) -> Vec<Finding<'_>> {
        let mut findings = Vec::new();
        let mut hits = Vec::new();
        for chain in chains(leaves) {
            let text = ScanText::new(leaves, &chain);
            hits.clear();
            self.find(&text.text, &mut hits);
            for hit in &hits {
                text.map(hit, &mut findings);
            }
        }
        for (leaf, l) in leaves.iter().enumerate().filter(|(_, l)| l.redactable) {
            if let Some((start, end)) = detect::aws_secret_by_member(&last_token(&l.pointer), &l.text) {
                findings.push(Finding { leaf, start, end, code: detect::AWS_SECRET_KEY });
            }
        }
        merge(findings)
    }

    fn find<'p>(&'p self, text: &str, out: &mut Vec<Hit<'p>>) {
        let lower = text.to_ascii_lowercase();
        for token in &self.tokens {
            token.find(text, &lower, out);
        }
        detect::private_keys(text, out);
        detect::aws_secrets_after_name(text, &lower, out);
        detect::markers(&self.markers, &lower, out);
    }
}

/// Groups strings into the texts to scan: the items of one array (strings
/// whose pointers differ only in their last array index) in index order,
/// each other string alone. Keys are never joined to anything.
fn chains(leaves: &[Leaf<'_>]) -> Vec<Vec<usize>> {
    let mut chains: Vec<Vec<(u64, usize)>> = Vec::new();
    let mut by_shape: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, leaf) in leaves.iter().enumerate() {
        match leaf.redactable.then(|| last_index(&leaf.pointer)).flatten() {
            Some((before, index, after)) => match by_shape.get(&(before, after)) {
                Some(&chain) => chains[chain].push((index, i)),
                None => {
                    by_shape.insert((before, after), chains.len());
                    chains.push(vec![(index, i)]);
                }
            },
            None => chains.push(vec![(0, i)]),
        }
    }
    chains
        .into_iter()
        .map(|mut chain| {
            chain.sort_unstable();
            chain.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

/// The pointer around its last all-digit token, and that index.
fn last_index(pointer: &str) -> Option<(&str, u64, &str)> {
    let mut end = pointer.len();
    for (slash, _) in pointer.rmatch_indices('/') {
        let token = &pointer[slash + 1..end];
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            return Some((&pointer[..slash + 1], token.parse().ok()?, &pointer[end..]));
        }
        end = slash;
    }
    None
}

/// Characters that render as nothing: left out of the scan text.
fn invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// The strings of a chain joined, without invisible characters, and where
/// each run of its bytes came from.
struct ScanText {
    text: String,
    pieces: Vec<Piece>,
}

/// Bytes `at..at + len` of the scan text are bytes `from..` of `leaf`.
#[derive(Debug, Clone, Copy)]
struct Piece {
    at: usize,
    leaf: usize,
    from: usize,
    len: usize,
}

impl ScanText {
    fn new(leaves: &[Leaf<'_>], chain: &[usize]) -> Self {
        let mut text = String::with_capacity(chain.iter().map(|&i| leaves[i].text.len()).sum());
        let mut pieces = Vec::new();
        for &leaf in chain {
            let source: &str = &leaves[leaf].text;
            // The common case, one piece: nothing invisible is ASCII.
            let mut runs: Vec<(usize, usize)> = Vec::new();
            if source.is_ascii() {
                runs.push((0, source.len()));
            } else {
                let mut run_start = 0;
                for (i, c) in source.char_indices().filter(|(_, c)| invisible(*c)) {
                    runs.push((run_start, i));
                    run_start = i + c.len_utf8();
                }
                runs.push((run_start, source.len()));
            }
            for (from, to) in runs.into_iter().filter(|(from, to)| from < to) {
                pieces.push(Piece { at: text.len(), leaf, from, len: to - from });
                text.push_str(&source[from..to]);
            }
        }
        ScanText { text, pieces }
    }

    /// The spans of the strings that `hit` covers, invisible characters
    /// inside it included.
    fn map<'p>(&self, hit: &Hit<'p>, out: &mut Vec<Finding<'p>>) {
        let first = self.pieces.partition_point(|p| p.at + p.len <= hit.start);
        let mut current: Option<Finding<'p>> = None;
        for piece in self.pieces[first..].iter().take_while(|p| p.at < hit.end) {
            let start = piece.from + hit.start.saturating_sub(piece.at);
            let end = piece.from + (hit.end.min(piece.at + piece.len) - piece.at);
            match &mut current {
                Some(f) if f.leaf == piece.leaf => f.end = end,
                _ => {
                    out.extend(current.take());
                    current = Some(Finding { leaf: piece.leaf, start, end, code: hit.code });
                }
            }
        }
        out.extend(current);
    }
}

/// Sorted by string and start; overlapping or touching spans of one code
/// become one (the host merges across codes when it masks).
fn merge(mut findings: Vec<Finding<'_>>) -> Vec<Finding<'_>> {
    findings.sort_unstable_by(|a, b| (a.leaf, a.start, a.end, a.code).cmp(&(b.leaf, b.start, b.end, b.code)));
    let mut merged: Vec<Finding<'_>> = Vec::with_capacity(findings.len());
    for f in findings {
        // Same code only: the previous span of this code in this string.
        match merged.iter_mut().rev().take_while(|m| m.leaf == f.leaf).find(|m| m.code == f.code) {
            Some(m) if f.start <= m.end => m.end = m.end.max(f.end),
            _ => merged.push(f),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_items_chain_in_index_order() {
        let leaf = |p: &'static str| Leaf { pointer: p.into(), text: "x".into(), redactable: true };
        let leaves = [
            leaf("/content/10/text"),
            leaf("/content/0/text"),
            leaf("/content/0/type"),
            leaf("/content/2/text"),
            leaf("/title"),
            Leaf { redactable: false, ..leaf("/content/1/text") },
        ];
        assert_eq!(chains(&leaves), [vec![1, 3, 0], vec![2], vec![4], vec![5]]);
        assert_eq!(last_index("/a/3/b/12/c"), Some(("/a/3/b/", 12, "/c")));
        assert_eq!(last_index("/a/b"), None);
    }
}
