//! Text semantics the host and policies share, defined once: token sets
//! and their Jaccard similarity (`history.count-similar`), and markers
//! mentioned at a word start (`history.first-mention`).
//!
//! A policy asks "how many earlier queries of this run nearly repeat this
//! one?" or "did an earlier call of this run mention `pii.`?" and the host
//! answers it, so the two must agree on the answer to the last byte: the
//! host's answer and the SDK's native test kit both come from here.
//!
//! A text's tokens are its runs of ASCII letters and digits, lowercased;
//! anything else separates them. Two texts are near-duplicates at `min`
//! when the Jaccard similarity `|A ∩ B| / |A ∪ B|` of their token sets is
//! at least `min` (two empty sets are identical).
//!
//! ```
//! use arbiter_text::{TokenSet, first_marker, mentions_at_word_start};
//! let a = TokenSet::of("orders_daily schema change: column missing");
//! let b = TokenSet::of("Orders daily schema changed, column MISSING");
//! assert_eq!(a.tokens().collect::<Vec<_>>(), ["change", "column", "daily", "missing", "orders", "schema"]);
//! assert!((a.jaccard(&b) - 5.0 / 7.0).abs() < 1e-12);
//! assert!(a.is_near(&b, 0.7) && !a.is_near(&b, 0.75));
//!
//! assert!(mentions_at_word_start("select * from PII.customers", "pii."));
//! assert!(!mentions_at_word_start("select * from nopii.customers", "pii."));
//! assert_eq!(first_marker(["from dev.x", "join restricted.y"], &["pii.", "restricted."]), Some(1));
//! ```

mod mention;
mod similarity;

pub use mention::{
    MAX_QUESTION_ITEM_BYTES, MAX_QUESTION_ITEMS, QuestionTooLarge, check_question_lists, first_marker,
    mentions_at_word_start,
};
pub use similarity::{
    InvalidThreshold, MAX_QUESTION_TEXT_BYTES, TokenSet, check_threshold, jaccard, jaccard_of_counts,
};
