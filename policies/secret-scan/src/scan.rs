//! From a document's strings to the spans to mask. The strings become one
//! scan text, so scanning costs one pass of each detector however many
//! strings a result has: strings that are items of one array (a result's
//! `content` blocks, chunks of one text) are joined as they are, so a
//! secret split across two of them is still found; every other string is
//! kept apart by a NUL, which no detector reads across (a private key
//! block ends at it). Invisible characters (and NULs of the document) are
//! left out, so one inserted inside a key does not hide it; each hit is
//! mapped back to the strings it covers.

use std::collections::{HashMap, HashSet};

use arbiter_sdk::Leaf;

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
        let text = ScanText::new(leaves, &chains(leaves));
        let mut hits = Vec::new();
        self.find(&text.text, &mut hits);
        let mut findings = Vec::new();
        for hit in &hits {
            text.map(hit, &mut findings);
        }
        for (leaf, l) in leaves.iter().enumerate().filter(|(_, l)| l.redactable) {
            if let Some((start, end)) = detect::aws_secret_by_member(&l.pointer, &l.text) {
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
        detect::private_keys(text, SEPARATOR, out);
        detect::aws_secrets_after_name(text, &lower, out);
        detect::markers(&self.markers, &lower, out);
    }
}

/// Between strings that are not items of one array.
const SEPARATOR: char = '\0';

/// Orders strings into the texts to scan: `(chain, leaf)` pairs, a chain
/// being the items of one array (strings whose pointers differ only in
/// their last array index) in index order, or one other string alone.
/// Keys are never joined to anything, and a key repeated (each row's
/// member names) is scanned once. Flat, without a list per chain: a
/// result may hold many thousands of strings.
fn chains(leaves: &[Leaf<'_>]) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, u64, usize)> = Vec::with_capacity(leaves.len());
    let mut by_shape: HashMap<(&str, &str), usize, Fnv> = HashMap::default();
    let mut keys: HashSet<&str, Fnv> = HashSet::default();
    for (i, leaf) in leaves.iter().enumerate() {
        if !leaf.redactable && !keys.insert(&leaf.text) {
            continue;
        }
        let fresh = order.len();
        match leaf.redactable.then(|| last_index(&leaf.pointer)).flatten() {
            Some((before, index, after)) => {
                let chain = *by_shape.entry((before, after)).or_insert(fresh);
                order.push((chain, index, i));
            }
            None => order.push((fresh, 0, i)),
        }
    }
    order.sort_unstable();
    order.into_iter().map(|(chain, _, leaf)| (chain, leaf)).collect()
}

/// FNV-1a: the map keys are short pointers the host built, and SipHash
/// per string costs more than the rest of a small string's scan.
type Fnv = std::hash::BuildHasherDefault<FnvHasher>;

/// See [`Fnv`].
struct FnvHasher(u64);

impl Default for FnvHasher {
    fn default() -> Self {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
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

/// Characters that render as nothing, and NUL (the separator): left out
/// of the scan text.
fn invisible(c: char) -> bool {
    matches!(c, '\0' | '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

/// The strings of each chain joined, chains apart by [`SEPARATOR`],
/// without invisible characters; and where each run of its bytes came from.
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
    fn new(leaves: &[Leaf<'_>], chains: &[(usize, usize)]) -> Self {
        let mut text = String::with_capacity(leaves.iter().map(|l| l.text.len() + 1).sum());
        let mut pieces = Vec::new();
        let mut previous = None;
        for &(chain, leaf) in chains {
            if previous.is_some_and(|p| p != chain) {
                text.push(SEPARATOR);
            }
            previous = Some(chain);
            let source: &str = &leaves[leaf].text;
            let mut piece = |from: usize, to: usize| {
                if from < to {
                    pieces.push(Piece { at: text.len(), leaf, from, len: to - from });
                    text.push_str(&source[from..to]);
                }
            };
            // The common case, one piece: ASCII without NUL.
            if !source.bytes().any(|b| b == 0 || b >= 0x80) {
                piece(0, source.len());
                continue;
            }
            let mut run_start = 0;
            for (i, c) in source.char_indices().filter(|(_, c)| invisible(*c)) {
                piece(run_start, i);
                run_start = i + c.len_utf8();
            }
            piece(run_start, source.len());
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
        assert_eq!(chains(&leaves), [(0, 1), (0, 3), (0, 0), (2, 2), (4, 4), (5, 5)]);
        assert_eq!(last_index("/a/3/b/12/c"), Some(("/a/3/b/", 12, "/c")));
        assert_eq!(last_index("/a/b"), None);
    }
}
