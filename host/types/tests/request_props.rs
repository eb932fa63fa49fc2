//! Properties of the decide-request parser (docs/fuzzing.md): no input
//! makes it panic, every refusal is a clear error naming the field at
//! fault, and what it accepts survives a round trip through its JSON.

use arbiter_testgen::{
    Mutation, Step, check_clear, config, damaged_bytes, hostile_string, json_value, mutated, nested_text,
};
use arbiter_types::{Action, Request, RequestError, excerpt, format_rfc3339_ms};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// The year 0000 to 9999, the range RFC 3339 writes.
const MIN_MS: i64 = -62_167_219_200_000;
const MAX_MS: i64 = 253_402_300_799_999;

fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.:-]{1,40}", "\\PC{1,30}"].prop_filter("a valid name", |s| s.len() <= 256)
}

fn arguments() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((hostile_string(), json_value()), 0..4).prop_map(|members| members.into_iter().collect())
}

fn tool_call() -> impl Strategy<Value = Value> {
    (name(), arguments(), prop::option::of((any::<Option<bool>>(), prop::option::of(name()), prop::option::of(name()))))
        .prop_map(|(tool, arguments, declared)| {
            let mut action = json!({"kind": "tool_call", "tool": tool, "arguments": arguments});
            if let Some((irreversible, resource, region)) = declared {
                let mut facts = Map::new();
                facts.extend(irreversible.map(|b| ("irreversible".to_owned(), Value::from(b))));
                facts.extend(resource.map(|r| ("resource".to_owned(), Value::from(r))));
                facts.extend(region.map(|r| ("region".to_owned(), Value::from(r))));
                action["declared"] = Value::Object(facts);
            }
            action
        })
}

fn llm_request() -> impl Strategy<Value = Value> {
    let prompt = prop_oneof![
        any::<u64>().prop_map(|n| ("prompt_tokens", Value::from(n))),
        prop::collection::vec(json_value(), 1..4).prop_map(|m| ("messages", Value::Array(m))),
    ];
    (name(), prompt, any::<u64>(), prop::option::of(name())).prop_map(|(model, (field, prompt), max, digest)| {
        let mut action = json!({"kind": "llm_request", "model": model, "max_output_tokens": max});
        action[field] = prompt;
        if let Some(digest) = digest {
            action["content_digest"] = Value::from(digest);
        }
        action
    })
}

/// A valid decide request body.
fn valid_body() -> impl Strategy<Value = Value> {
    let principal = (name(), name(), name(), prop::sample::select(vec!["dev", "staging", "prod"]), name());
    (
        name(),
        principal,
        prop_oneof![tool_call(), llm_request()],
        prop::option::of(MIN_MS..=MAX_MS),
        prop::option::of(prop::collection::btree_map(hostile_string(), hostile_string(), 0..4)),
        prop::option::of(name()),
    )
        .prop_map(|(id, (pipeline, agent, team, environment, run), action, timestamp, labels, escalation)| {
            let mut body = json!({
                "id": id,
                "principal": {"pipeline": pipeline, "agent": agent, "team": team, "environment": environment, "run": run},
                "action": action,
            });
            if let Some(ms) = timestamp {
                body["timestamp"] = Value::from(format_rfc3339_ms(ms));
            }
            if let Some(labels) = labels {
                body["labels"] = json!(labels);
            }
            if let Some(id) = escalation {
                body["escalation_id"] = Value::from(id);
            }
            body
        })
}

/// The request as the audit log and a re-sent body see it: a count of
/// prompt tokens once estimated is a count given.
fn as_given(mut request: Request) -> Request {
    if let Action::LlmRequest(llm) = &mut request.action {
        llm.prompt_tokens_estimated = false;
    }
    request
}

/// Whether one path lies on the way to the other (`a` and `a.b[0]`).
fn related(a: &str, b: &str) -> bool {
    let within = |outer: &str, inner: &str| {
        inner == outer || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with(['.', '[']))
    };
    within(a, b) || within(b, a)
}

fn check_refusal(error: &RequestError) -> Result<(), TestCaseError> {
    let text = error.to_string();
    match error {
        RequestError::Syntax(_) => check_clear(&text, &["not valid UTF-8 JSON"]),
        RequestError::Field { path, .. } => {
            check_clear(&text, &[])?;
            prop_assert!(text.starts_with(path.as_str()), "the error {text:?} does not lead with its field");
            prop_assert!(!path.is_empty(), "no field named in {text:?}");
            Ok(())
        }
        // A new kind of refusal needs its own check here.
        _ => Err(TestCaseError::fail(format!("a refusal of no kind this test knows: {text}"))),
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Whatever the bytes, a request or a clear refusal.
    #[test]
    fn arbitrary_bytes_are_refused_clearly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(error) = Request::from_json_slice(&bytes) {
            check_refusal(&error)?;
        }
    }

    /// Any JSON value reads the same as a value and as text, and a
    /// refusal of it names a field.
    #[test]
    fn arbitrary_json_reads_the_same_as_text_and_value(value in json_value()) {
        let from_value = Request::from_json_value(&value);
        let from_text = Request::from_json_slice(value.to_string().as_bytes());
        match (&from_value, &from_text) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => {
                check_refusal(a)?;
                check_refusal(b)?;
                prop_assert!(matches!(a, RequestError::Field { .. }), "{a}");
                // serde_json words some type errors differently for text
                // and values; the field named is the same.
                prop_assert_eq!(a.path(), b.path());
            }
            _ => prop_assert!(false, "value: {from_value:?}, text: {from_text:?}"),
        }
    }

    /// A valid request parses, and its JSON parses back to itself, as a
    /// value and as text; its fingerprint survives.
    #[test]
    fn valid_requests_round_trip(body in valid_body()) {
        let request = Request::from_json_slice(body.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{e} for {body}")))?;
        let json = request.to_json();
        let again = Request::from_json_value(&json).map_err(|e| TestCaseError::fail(format!("{e} for {json}")))?;
        prop_assert_eq!(&again, &as_given(request.clone()));
        prop_assert_eq!(Request::from_json_slice(json.to_string().as_bytes()).ok(), Some(again.clone()));
        prop_assert_eq!(again.to_json(), json);
        prop_assert_eq!(again.fingerprint(), request.fingerprint());
    }

    /// A valid request with one field removed, retyped, replaced by a
    /// hostile string or number, nested deeply or joined by an unknown
    /// sibling: accepted, or refused naming that field (or one on the way
    /// to it).
    #[test]
    fn mutated_requests_name_the_field((body, path, mutation) in valid_body().prop_flat_map(mutated)) {
        let at = arbiter_testgen::path_text(&path);
        let from_value = Request::from_json_value(&body);
        if let Err(error) = &from_value {
            check_refusal(error)?;
            let named = error.path().unwrap_or_default();
            // An unknown member is named itself.
            let added = match &mutation {
                Mutation::AddSibling(key, _) => {
                    let mut sibling = path[..path.len() - 1].to_vec();
                    sibling.push(Step::Key(key.clone()));
                    Some(arbiter_testgen::path_text(&sibling))
                }
                _ => None,
            };
            // Errors show paths escaped, and long ones cut.
            let names = |path: &str| {
                let shown = excerpt(path, usize::MAX);
                match named.strip_suffix('…') {
                    Some(cut) => shown.starts_with(cut) || related(&shown, cut),
                    None => related(named, &shown),
                }
            };
            // Or, for one of two alternatives, the message names it.
            let mentioned = matches!(path.last(), Some(Step::Key(k)) if error.to_string().contains(&format!("`{k}`")));
            prop_assert!(
                named == "request" || names(&at) || added.is_some_and(|added| names(&added)) || mentioned,
                "{mutation:?} at `{at}` refused as {error}"
            );
        }
        match (Request::from_json_slice(body.to_string().as_bytes()), from_value) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) if a.path() == b.path() => {}
            // Text nested deeper than serde_json reads.
            (Err(e), _) if e.to_string().ends_with("recursion limit exceeded") => {}
            (a, b) => prop_assert!(false, "text: {a:?}, value: {b:?}"),
        }
    }

    /// A valid body damaged at the byte level: a request or a clear refusal.
    #[test]
    fn damaged_bodies_are_refused_clearly(bytes in valid_body().prop_flat_map(|b| damaged_bytes(b.to_string().into_bytes()))) {
        if let Err(error) = Request::from_json_slice(&bytes) {
            check_refusal(&error)?;
        }
    }
}

/// Nesting deeper than serde_json's limit is refused at the field, not
/// read until the stack overflows.
#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    let body = format!(
        r#"{{"id": "r", "principal": {{"pipeline": "p", "agent": "a", "team": "t", "environment": "dev", "run": "r"}},
            "action": {{"kind": "tool_call", "tool": "t", "arguments": {{"a": {}}}}}}}"#,
        nested_text(100_000)
    );
    let error = Request::from_json_slice(body.as_bytes()).unwrap_err();
    assert_eq!(error.path().map(|p| &p[..18]), Some("action.arguments.a"), "{error}");
    assert!(error.to_string().ends_with("recursion limit exceeded"), "{error}");
    assert!(error.to_string().len() < 500, "{error}");
}
