//! Token sets and their Jaccard similarity (`history.count-similar`).

use std::cmp::Ordering;
use std::fmt;

/// The distinct tokens of a text, sorted, kept in one allocation no larger
/// than the text (the host keeps one per remembered query).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenSet {
    /// The tokens in byte order, each followed by a space (tokens never
    /// hold one).
    joined: Box<str>,
    len: usize,
}

impl TokenSet {
    /// The token set of `text`.
    pub fn of(text: &str) -> Self {
        let mut tokens: Vec<String> = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|t| !t.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        let mut joined = String::with_capacity(tokens.iter().map(|t| t.len() + 1).sum());
        for token in &tokens {
            joined.push_str(token);
            joined.push(' ');
        }
        TokenSet { joined: joined.into_boxed_str(), len: tokens.len() }
    }

    /// How many distinct tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the text had no token at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tokens, sorted.
    pub fn tokens(&self) -> impl Iterator<Item = &str> {
        self.joined.split_terminator(' ')
    }

    /// Bytes held on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.joined.len()
    }

    /// Jaccard similarity with `other` (1.0 for two empty sets).
    pub fn jaccard(&self, other: &TokenSet) -> f64 {
        let (mut a, mut b) = (self.tokens(), other.tokens());
        let (mut x, mut y) = (a.next(), b.next());
        let mut common = 0usize;
        while let (Some(p), Some(q)) = (x, y) {
            match p.cmp(q) {
                Ordering::Less => x = a.next(),
                Ordering::Greater => y = b.next(),
                Ordering::Equal => {
                    common += 1;
                    x = a.next();
                    y = b.next();
                }
            }
        }
        jaccard_of_counts(common, self.len, other.len)
    }

    /// Whether `other` is a near-duplicate at `min`: `jaccard >= min`,
    /// without comparing tokens when the sizes alone rule it out (the
    /// similarity is at most the smaller size over the larger).
    pub fn is_near(&self, other: &TokenSet, min: f64) -> bool {
        let (small, large) = if self.len <= other.len { (self.len, other.len) } else { (other.len, self.len) };
        if large > 0 && ratio(small, large) < min {
            return false;
        }
        self.jaccard(other) >= min
    }
}

/// The Jaccard similarity of a set of `a` and a set of `b` elements that
/// share `common` (1.0 for two empty sets): what an index that counts
/// shared tokens computes, to the bit what [`TokenSet::jaccard`] does.
pub fn jaccard_of_counts(common: usize, a: usize, b: usize) -> f64 {
    ratio(common, a + b - common)
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}

/// Jaccard similarity `|a ∩ b| / |a ∪ b|` of two sorted, deduplicated
/// slices (1.0 for two empty ones).
pub fn jaccard<T: Ord>(a: &[T], b: &[T]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => i += 1,
            Ordering::Greater => j += 1,
            Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    ratio(common, a.len() + b.len() - common)
}

/// Most bytes of the text a near-duplicate question compares: a request's
/// own bound, so a policy cannot hand the host unmetered work beyond it.
pub const MAX_QUESTION_TEXT_BYTES: usize = 1 << 20;

/// A similarity threshold outside `[0, 1]` (or NaN): a question no answer
/// fits, refused rather than answered with nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidThreshold(pub f64);

impl fmt::Display for InvalidThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a similarity threshold must be in [0, 1], got {}", self.0)
    }
}

impl std::error::Error for InvalidThreshold {}

/// `min` if it is a similarity threshold.
pub fn check_threshold(min: f64) -> Result<f64, InvalidThreshold> {
    if (0.0..=1.0).contains(&min) { Ok(min) } else { Err(InvalidThreshold(min)) }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    /// The definition, spelled out with a set type.
    fn naive(a: &str, b: &str) -> f64 {
        let set = |t: &str| -> BTreeSet<String> {
            t.split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|s| !s.is_empty())
                .map(|s| s.to_ascii_lowercase())
                .collect()
        };
        let (a, b) = (set(a), set(b));
        let union = a.union(&b).count();
        if union == 0 { 1.0 } else { a.intersection(&b).count() as f64 / union as f64 }
    }

    #[test]
    fn tokens_are_ascii_alphanumeric_runs_lowercased() {
        let set = TokenSet::of("SELECT * FROM prod.orders_2024 -- café Straße");
        assert_eq!(set.tokens().collect::<Vec<_>>(), ["2024", "caf", "e", "from", "orders", "prod", "select", "stra"]);
        assert_eq!(set.len(), 8);
        assert!(set.heap_bytes() <= "SELECT * FROM prod.orders_2024 -- café Straße".len());
    }

    #[test]
    fn edge_cases() {
        let empty = TokenSet::of(" -- ");
        assert!(empty.is_empty());
        assert_eq!(empty.jaccard(&TokenSet::of("")), 1.0);
        assert_eq!(empty.jaccard(&TokenSet::of("a")), 0.0);
        assert!(empty.is_near(&TokenSet::default(), 1.0));
        assert!(!empty.is_near(&TokenSet::of("a"), 0.01));
        assert!(TokenSet::of("a b").is_near(&TokenSet::of("x y z"), 0.0), "0 admits everything");
        assert_eq!(TokenSet::of("a a A").len(), 1);
    }

    #[test]
    fn thresholds_outside_the_unit_interval_are_refused() {
        for bad in [f64::NAN, -0.1, 1.0000001, f64::INFINITY] {
            assert!(check_threshold(bad).is_err(), "{bad}");
        }
        assert_eq!(check_threshold(0.0), Ok(0.0));
        assert_eq!(check_threshold(1.0), Ok(1.0));
        assert_eq!(InvalidThreshold(2.0).to_string(), "a similarity threshold must be in [0, 1], got 2");
    }

    proptest! {
        #[test]
        fn agrees_with_the_definition(a in "[a-cA-C0-2 ,.é]{0,24}", b in "[a-cA-C0-2 ,.é]{0,24}", min in 0.0f64..=1.0) {
            let (x, y) = (TokenSet::of(&a), TokenSet::of(&b));
            prop_assert_eq!(x.jaccard(&y), naive(&a, &b));
            prop_assert_eq!(x.jaccard(&y), y.jaccard(&x));
            prop_assert_eq!(x.is_near(&y, min), naive(&a, &b) >= min);
            let (xs, ys): (Vec<&str>, Vec<&str>) = (x.tokens().collect(), y.tokens().collect());
            prop_assert_eq!(jaccard(&xs, &ys), x.jaccard(&y));
            let common = xs.iter().filter(|t| ys.contains(t)).count();
            prop_assert_eq!(jaccard_of_counts(common, x.len(), y.len()), x.jaccard(&y));
        }
    }
}
