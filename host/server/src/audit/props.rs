//! Properties of the audit verifier (docs/fuzzing.md): a signed log
//! verifies untouched, and any cut, byte flip, deleted, duplicated or
//! reordered record, or rewrite with a recomputed chain, is detected (with
//! the key and the state file); no text makes the verifier panic, and what
//! it reports is a clear error.

use std::sync::LazyLock;

use arbiter_testgen::{check_clear, config, json_value, mutated};
use proptest::prelude::*;
use serde_json::{Map, Value};

use super::tests::{keyed, public, read, rewrite, state, write};
use super::{AuditState, VerifyError, verify};

/// Signed logs as a clean shutdown leaves them, with their state files:
/// (records written, checkpoint every).
static LOGS: LazyLock<Vec<(String, AuditState)>> = LazyLock::new(|| {
    [(1, 1), (3, 2), (8, 3), (20, 1000)]
        .into_iter()
        .map(|(records, every)| {
            let dir = tempfile::tempdir().unwrap();
            let path = write(dir.path(), keyed(every), records, true);
            (read(&path), state(&path).unwrap())
        })
        .collect()
});

/// What an attacker (or a bad disk) does to a log.
#[derive(Debug, Clone)]
enum Tamper {
    Cut(usize),
    Flip(usize, u8),
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    /// Drop a record and recompute the chain (without the key).
    Rewrite(usize),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        any::<usize>().prop_map(Tamper::Cut),
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Tamper::Flip(at, mask)),
        any::<usize>().prop_map(Tamper::Delete),
        any::<usize>().prop_map(Tamper::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Tamper::Swap(a, b)),
        any::<usize>().prop_map(Tamper::Rewrite),
    ]
}

/// The log's bytes after `tamper`, or `None` when it changes nothing (a
/// swap of a record with itself).
fn tampered(text: &str, tamper: &Tamper) -> Option<Vec<u8>> {
    let mut lines: Vec<&str> = text.lines().collect();
    let n = lines.len();
    let joined = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
    Some(match *tamper {
        Tamper::Cut(at) => text.as_bytes()[..at % text.len()].to_vec(),
        Tamper::Flip(at, mask) => {
            let mut bytes = text.as_bytes().to_vec();
            bytes[at % text.len()] ^= mask;
            bytes
        }
        Tamper::Delete(i) => {
            lines.remove(i % n);
            joined(&lines)
        }
        Tamper::Duplicate(i) => {
            lines.insert(i % n, lines[i % n]);
            joined(&lines)
        }
        Tamper::Swap(a, b) if a % n != b % n => {
            lines.swap(a % n, b % n);
            joined(&lines)
        }
        Tamper::Swap(..) => return None,
        Tamper::Rewrite(i) => {
            let mut seen = 0;
            rewrite(text, |_| {
                seen += 1;
                seen != i % n + 1
            })
            .into_bytes()
        }
    })
}

fn check_report(error: &VerifyError) -> Result<(), TestCaseError> {
    check_clear(&error.to_string(), &[])
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn untouched_signed_logs_verify(log in prop::sample::select(LOGS.clone())) {
        let (text, state) = log;
        let verified = verify(&text, &public(), Some(&state)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(verified.unsigned_tail(), 0);
        prop_assert_eq!(verified.state_record, Some(verified.records));
    }

    /// Tampering is detected: the verifier refuses the log, or (bytes that
    /// are not UTF-8) `arbiter audit verify` cannot read it as one.
    #[test]
    fn tampering_is_detected(log in prop::sample::select(LOGS.clone()), tamper in tamper()) {
        let (text, state) = log;
        let Some(bytes) = tampered(&text, &tamper) else { return Ok(()) };
        if let Ok(text) = String::from_utf8(bytes) {
            match verify(&text, &public(), Some(&state)) {
                Ok(verified) => prop_assert!(false, "{tamper:?} verified as {verified:?}"),
                Err(error) => check_report(&error)?,
            }
        }
    }

    /// A record of a real log, changed at one field and re-hashed or not:
    /// the verifier reports clearly, with or without keys and state.
    #[test]
    fn mutated_records_are_reported_clearly(
        (log, line, ((record, _, _), rehash)) in prop::sample::select(LOGS.clone()).prop_flat_map(|(text, state)| {
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            (0..lines.len()).prop_flat_map(move |i| {
                let record: Value = serde_json::from_str(&lines[i]).unwrap();
                (Just((text.clone(), state.clone())), Just(i), (mutated(record), any::<bool>()))
            })
        }),
        keyed in any::<bool>(),
    ) {
        let (text, state) = log;
        let mut record = record;
        if rehash && let Value::Object(map) = &mut record {
            map.remove("hash");
            let hash = super::chain::record_hash(map);
            map.insert("hash".into(), hash.into());
        }
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines[line] = record.to_string();
        let changed: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let keys = if keyed { public() } else { Vec::new() };
        for state in [None, Some(&state)] {
            if let Err(error) = verify(&changed, &keys, state) {
                check_report(&error)?;
            }
        }
    }

    /// Lines that are any JSON (or none): no panic, clear reports.
    #[test]
    fn arbitrary_lines_are_reported_clearly(
        lines in prop::collection::vec(prop_oneof![json_value().prop_map(|v| v.to_string()), "\\PC{0,40}"], 0..6),
        keyed in any::<bool>(),
    ) {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let keys = if keyed { public() } else { Vec::new() };
        if let Err(error) = verify(&text, &keys, None) {
            check_report(&error)?;
        }
    }
}

/// Found by the property tests: the key id was quoted whole.
#[test]
fn an_unknown_key_id_is_quoted_bounded() {
    let (text, _) = &LOGS[0];
    let mut lines: Vec<Map<String, Value>> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let checkpoint = lines.iter_mut().find(|r| super::chain::is_checkpoint(r)).unwrap();
    checkpoint.insert("key_id".into(), format!("\u{1b}[2J{}", "k".repeat(10_000)).into());
    checkpoint.remove("hash");
    let hash = super::chain::record_hash(checkpoint);
    checkpoint.insert("hash".into(), hash.into());
    let changed: String = lines.iter().map(|r| format!("{}\n", Value::Object(r.clone()))).collect();
    let error = verify(&changed, &public(), None).unwrap_err();
    assert!(matches!(error, VerifyError::UnknownKey { .. }), "{error}");
    let text = error.to_string();
    assert!(text.len() < 300 && !text.contains('\u{1b}'), "{text}");
}
