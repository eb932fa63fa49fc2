//! Properties of the dialect against a reference matcher written for
//! clarity (recursive, exponential), over a small alphabet that makes
//! stars, escapes and multi-byte characters meet often.

use arbiter_glob::{escape, matches};
use proptest::prelude::*;

/// The dialect's definition, literally.
fn reference(pattern: &[char], text: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('*', rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
        Some(('?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
        Some(('\\', rest)) => {
            let (literal, rest) = rest.split_first().map_or(('\\', rest), |(c, r)| (*c, r));
            text.first() == Some(&literal) && reference(rest, &text[1..])
        }
        Some((literal, rest)) => text.first() == Some(literal) && reference(rest, &text[1..]),
    }
}

fn pattern() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(vec!['a', 'b', '.', 'é', '*', '?', '\\', 'A']), 0..8)
        .prop_map(|chars| chars.into_iter().collect())
}

fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop::sample::select(vec!['a', 'b', '.', 'é', '*', '?', '\\', 'A']), 0..10)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn agrees_with_the_reference(pattern in pattern(), text in text()) {
        let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
        prop_assert_eq!(matches(&pattern, &text), reference(&p, &t), "{:?} vs {:?}", pattern, text);
    }

    #[test]
    fn star_matches_everything(text in text()) {
        prop_assert!(matches("*", &text));
        prop_assert!(matches("**", &text));
    }

    #[test]
    fn double_star_is_star(pattern in pattern(), text in text()) {
        // Only unescaped stars may be doubled (`\**` is a literal star then
        // a star), so the pattern is taken without escapes.
        let pattern = pattern.replace('\\', "");
        prop_assert_eq!(matches(&pattern.replace('*', "**"), &text), matches(&pattern, &text));
    }

    #[test]
    fn an_escaped_text_matches_itself_only(literal in text(), other in text()) {
        prop_assert!(matches(&escape(&literal), &literal));
        prop_assert_eq!(matches(&escape(&literal), &other), literal == other);
    }

    #[test]
    fn case_is_never_folded(text in "[a-z]{1,8}") {
        prop_assert!(!matches(&text.to_uppercase(), &text));
    }
}
