use super::chain::{GENESIS, is_checkpoint};
use super::*;

use arbiter_engine::signature::key_id;

fn record(n: u64) -> Map<String, Value> {
    json!({"kind": "decision", "n": n, "action": {"arguments": {"sql": "select 1", "region": "eu"}}})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

pub(super) fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

pub(super) fn keyed(every: u64) -> AuditOptions {
    AuditOptions { key: Some(key()), checkpoint_every: every, ..AuditOptions::default() }
}

pub(super) fn public() -> Vec<VerifyingKey> {
    vec![key().verifying_key()]
}

/// A log of `n` records; `shutdown` ends it as a clean stop does, else
/// as a crash leaves it.
pub(super) fn write(dir: &Path, options: AuditOptions, n: u64, shutdown: bool) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let log = AuditLog::open(&path, vec![], options).unwrap();
    for i in 1..=n {
        log.append(record(i)).unwrap();
    }
    if shutdown {
        log.checkpoint().unwrap();
    }
    path
}

pub(super) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

pub(super) fn state(path: &Path) -> Option<AuditState> {
    AuditState::read(&state_path(path)).unwrap()
}

/// `arbiter audit verify LOG [--key]`, with the log's state file.
fn check(path: &Path, keys: &[VerifyingKey]) -> Result<Verified, VerifyError> {
    verify(&read(path), keys, state(path).as_ref())
}

/// The log's records, `C` for a checkpoint and `d` for any other.
fn shape(text: &str) -> String {
    text.lines().map(|line| if line.contains(r#""kind":"checkpoint""#) { 'C' } else { 'd' }).collect()
}

/// The first `n` records: a cut at a record boundary.
fn cut(text: &str, n: usize) -> String {
    text.lines().take(n).map(|line| format!("{line}\n")).collect()
}

/// An attacker's rewrite: records changed by `edit` (dropped where it
/// returns false) and the chain recomputed from the genesis; checkpoints
/// get the new count and head but keep their signatures, for want of the
/// key.
pub(super) fn rewrite(text: &str, mut edit: impl FnMut(&mut Map<String, Value>) -> bool) -> String {
    let (mut out, mut seq, mut prev) = (String::new(), 0u64, GENESIS.to_owned());
    for line in text.lines() {
        let mut record: Map<String, Value> = serde_json::from_str(line).unwrap();
        if !edit(&mut record) {
            continue;
        }
        seq += 1;
        record.remove("hash");
        if is_checkpoint(&record) {
            record.insert("count".into(), (seq - 1).into());
            record.insert("head".into(), prev.clone().into());
        }
        record.insert("seq".into(), seq.into());
        record.insert("prev".into(), prev.into());
        prev = record_hash(&record);
        record.insert("hash".into(), prev.clone().into());
        out.push_str(&format!("{}\n", Value::Object(record)));
    }
    out
}

fn verified(records: u64, checkpoints: u64, signed_through: Option<u64>, state_record: Option<u64>) -> Verified {
    Verified { records, torn_tail: false, checkpoints, signed_through, state_record }
}

#[test]
fn chains_records_and_continues_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), AuditOptions::default(), 2, false);
    AuditLog::open(&path, vec![], AuditOptions::default()).unwrap().append(record(3)).unwrap();
    let text = read(&path);
    assert_eq!(shape(&text), "ddd", "no checkpoints without a key");
    assert_eq!(verify(&text, &[], None), Ok(verified(3, 0, None, None)));

    let edited = text.replacen("\"n\":2", "\"n\":7", 1);
    assert_eq!(verify(&edited, &[], None), Err(VerifyError::Hash { record: 2 }));
    let lines: Vec<&str> = text.lines().collect();
    let removed = format!("{}\n{}\n", lines[0], lines[2]);
    assert_eq!(verify(&removed, &[], None), Err(VerifyError::Sequence { record: 2 }));
    let inserted = format!("{}\n{}\n{}\n{}\n", lines[0], lines[0], lines[1], lines[2]);
    assert_eq!(verify(&inserted, &[], None), Err(VerifyError::Sequence { record: 2 }));
    let reordered = format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]);
    assert_eq!(verify(&reordered, &[], None), Err(VerifyError::Sequence { record: 1 }));
}

#[test]
fn the_state_file_catches_a_cut_at_a_record_boundary_even_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), AuditOptions::default(), 3, true);
    assert_eq!(state(&path).map(|s| s.seq()), Some(3), "the shutdown names the last record");
    let shortened = cut(&read(&path), 2);
    assert_eq!(verify(&shortened, &[], None), Ok(verified(2, 0, None, None)), "the chain alone cannot tell");
    assert_eq!(verify(&shortened, &[], state(&path).as_ref()), Err(VerifyError::Truncated { records: 2, expected: 3 }));
}

#[test]
fn checkpoints_sign_the_chain_every_n_records_and_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 7, true);
    let text = read(&path);
    assert_eq!(shape(&text), "dddCdddCdC");
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let checkpoint = &lines[3];
    assert_eq!(checkpoint["count"], 3);
    assert_eq!(checkpoint["head"], lines[2]["hash"]);
    assert_eq!(checkpoint["every"], 3);
    assert_eq!(checkpoint["key_id"], key_id(&key().verifying_key()));
    assert_eq!(check(&path, &public()), Ok(verified(10, 3, Some(10), Some(10))));
    assert_eq!(check(&path, &public()).map(|v| v.unsigned_tail()), Ok(0));

    // Nothing written since: neither a reopen nor a shutdown adds one.
    AuditLog::open(&path, vec![], keyed(3)).unwrap().checkpoint().unwrap();
    assert_eq!(read(&path), text);

    let stranger = SigningKey::from_bytes(&[8; 32]).verifying_key();
    assert_eq!(
        check(&path, &[stranger]),
        Err(VerifyError::UnknownKey { record: 4, key_id: key_id(&key().verifying_key()) })
    );
    let unkeyed = check(&path, &[]).unwrap();
    assert_eq!((unkeyed.signed_through, unkeyed.unsigned_tail()), (None, 10), "nothing is authenticated");
}

#[test]
fn a_checkpoint_must_name_the_chain_before_it_and_be_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 7, true);
    let text = read(&path);
    // The last record (a checkpoint) changed and rehashed: the chain holds.
    let with_last = |field: &str, value: Value| {
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        let mut last: Map<String, Value> = serde_json::from_str(&lines[9]).unwrap();
        last.insert(field.into(), value);
        last.remove("hash");
        let hash = record_hash(&last);
        last.insert("hash".into(), hash.into());
        lines[9] = Value::Object(last).to_string();
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    };
    let miscounted = with_last("count", 8.into());
    assert_eq!(verify(&miscounted, &[], None), Err(VerifyError::CheckpointMismatch { record: 10 }), "even unkeyed");
    let unsigned = with_last("signature", "00".into());
    assert!(verify(&unsigned, &[], None).is_ok());
    assert_eq!(
        verify(&unsigned, &public(), None),
        Err(VerifyError::MalformedCheckpoint { record: 10, field: "signature" })
    );
}

#[test]
fn a_cut_before_or_after_a_checkpoint_is_caught_by_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 7, true);
    let text = read(&path);
    let state = state(&path);
    // After the checkpoint at 8 (it stays, the rest goes) and before it.
    for (kept, shape_left) in [(8, "dddCdddC"), (7, "dddCddd")] {
        let shortened = cut(&text, kept);
        assert_eq!(shape(&shortened), shape_left);
        assert_eq!(
            verify(&shortened, &public(), state.as_ref()),
            Err(VerifyError::Truncated { records: kept as u64, expected: 10 })
        );
        assert!(verify(&shortened, &public(), None).is_ok(), "without the state file a prefix looks like a crash");
    }
}

#[test]
fn a_cut_of_the_unsigned_tail_is_reported_not_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 5, false);
    let text = read(&path);
    assert_eq!(shape(&text), "dddCdd", "a crash: two records after the last checkpoint");
    let full = check(&path, &public()).unwrap();
    assert_eq!((full.signed_through, full.unsigned_tail(), full.state_record), (Some(4), 2, Some(4)));
    // The stated limit: cutting inside the unsigned tail goes unnoticed,
    // and verify says how much was exposed.
    let shortened = verify(&cut(&text, 5), &public(), state(&path).as_ref()).unwrap();
    assert_eq!((shortened.records, shortened.unsigned_tail()), (5, 1));
}

#[test]
fn a_removed_checkpoint_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 7, false);
    let text = read(&path);
    assert_eq!(shape(&text), "dddCdddCd");
    let lines: Vec<&str> = text.lines().collect();
    // Deleted as is: the chain breaks where it was.
    let deleted: String = lines.iter().enumerate().filter(|(i, _)| *i != 7).map(|(_, l)| format!("{l}\n")).collect();
    assert_eq!(verify(&deleted, &public(), None), Err(VerifyError::Sequence { record: 8 }));
    // Deleted with the chain recomputed: four records follow the checkpoint
    // that promised the next within three.
    let mut index = 0;
    let recomputed = rewrite(&text, |_| {
        index += 1;
        index != 8
    });
    assert_eq!(shape(&recomputed), "dddCdddd");
    assert_eq!(
        verify(&recomputed, &public(), None),
        Err(VerifyError::MissingCheckpoint { checkpoint: 4, every: 3, records: 4 })
    );
    assert_eq!(verify(&recomputed, &public(), state(&path).as_ref()), Err(VerifyError::StateMismatch { record: 8 }));
    // Nor can the promise be stretched to cover the gap: it is signed.
    let mut index = 0;
    let stretched = rewrite(&text, |record| {
        index += 1;
        if index == 4 {
            record.insert("every".into(), 10.into());
        }
        index != 8
    });
    assert_eq!(verify(&stretched, &public(), None), Err(VerifyError::BadSignature { record: 4 }));
}

#[test]
fn a_rewrite_with_a_recomputed_chain_is_caught_by_the_signature() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 7, true);
    let text = read(&path);
    let edit = |record: &mut Map<String, Value>| {
        if record.get("n") == Some(&json!(2)) {
            record.insert("n".into(), 9.into());
        }
        true
    };
    let forged = rewrite(&text, edit);
    assert_ne!(forged, text);
    assert!(verify(&forged, &[], None).is_ok(), "the unkeyed chain cannot tell");
    assert_eq!(verify(&forged, &public(), None), Err(VerifyError::BadSignature { record: 4 }));

    let stripped = rewrite(&text, |record| !is_checkpoint(record));
    assert_eq!(shape(&stripped), "ddddddd");
    assert_eq!(verify(&stripped, &public(), None), Err(VerifyError::NoCheckpoint { records: 7 }));
    assert_eq!(
        verify(&stripped, &public(), state(&path).as_ref()),
        Err(VerifyError::Truncated { records: 7, expected: 10 })
    );

    // Re-signed with a key of the attacker's own.
    let other = tempfile::tempdir().unwrap();
    let options = AuditOptions { key: Some(SigningKey::from_bytes(&[9; 32])), ..keyed(3) };
    let resigned = write(other.path(), options, 7, true);
    assert!(matches!(verify(&read(&resigned), &public(), None), Err(VerifyError::UnknownKey { record: 4, .. })));
}

#[test]
fn a_forged_state_file_does_not_accuse() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 2, true);
    let file = state_path(&path);
    std::fs::write(&file, read(&file).replacen("\"count\":2", "\"count\":1", 1)).unwrap();
    assert_eq!(check(&path, &public()), Err(VerifyError::StateFile(Box::new(VerifyError::Hash { record: 3 }))));

    // Rehashed to claim a longer log: the signature gives it away.
    let mut forged: Value = serde_json::from_str(&read(&file)).unwrap();
    let record = forged["record"].as_object_mut().unwrap();
    record.remove("hash");
    record.insert("seq".into(), 50.into());
    record.insert("count".into(), 49.into());
    let hash = record_hash(record);
    record.insert("hash".into(), hash.into());
    std::fs::write(&file, forged.to_string()).unwrap();
    assert_eq!(
        check(&path, &public()),
        Err(VerifyError::StateFile(Box::new(VerifyError::BadSignature { record: 50 })))
    );
    assert_eq!(check(&path, &[]), Err(VerifyError::Truncated { records: 3, expected: 50 }), "unkeyed, it can");
}

#[test]
fn start_refuses_a_tampered_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 5, false);
    let text = read(&path);
    let open = || AuditLog::open(&path, vec![], keyed(3));

    // An edit after the state file's checkpoint.
    std::fs::write(&path, text.replacen("\"n\":5", "\"n\":6", 1)).unwrap();
    assert!(matches!(open(), Err(AuditError::Broken { problem: VerifyError::Hash { record: 6 }, .. })));

    // A rewrite with a recomputed chain: the state file's record is not
    // there, and without the state file the signature fails.
    std::fs::write(&path, rewrite(&text, |r| r.remove("action").is_some() || is_checkpoint(r))).unwrap();
    assert!(matches!(open(), Err(AuditError::Broken { problem: VerifyError::StateMismatch { record: 4 }, .. })));
    std::fs::remove_file(state_path(&path)).unwrap();
    let refused = open().unwrap_err().to_string();
    assert!(refused.contains("record 4: checkpoint signature does not verify"), "{refused}");
    assert!(refused.contains("refusing to extend it"), "{refused}");
}

#[test]
fn start_checks_from_the_state_files_checkpoint_and_verify_checks_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 4, true);
    let edited = read(&path).replacen("\"n\":2", "\"n\":7", 1);
    std::fs::write(&path, &edited).unwrap();
    // What start does not read (before the checkpoint the state file
    // names), verify does.
    assert!(AuditLog::open(&path, vec![], keyed(3)).is_ok());
    assert_eq!(check(&path, &public()), Err(VerifyError::Hash { record: 2 }));
    std::fs::remove_file(state_path(&path)).unwrap();
    assert!(matches!(
        AuditLog::open(&path, vec![], keyed(3)),
        Err(AuditError::Broken { problem: VerifyError::Hash { record: 2 }, .. })
    ));
}

#[test]
fn start_refuses_a_log_shorter_than_its_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 7, true);
    std::fs::write(&path, cut(&read(&path), 8)).unwrap();
    assert!(matches!(
        AuditLog::open(&path, vec![], keyed(3)),
        Err(AuditError::Broken { problem: VerifyError::Truncated { records: 8, expected: 10 }, .. })
    ));
}

#[test]
fn start_refuses_a_vanished_log_unless_told_to_start_a_new_chain() {
    for options in [AuditOptions::default(), keyed(3)] {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), options.clone(), 2, true);
        let last = state(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let refused = AuditLog::open(&path, vec![], options.clone()).unwrap_err();
        assert!(matches!(&refused, AuditError::Vanished { record, .. } if *record == last.seq()), "{refused}");
        assert!(refused.to_string().contains("--audit-new-chain"), "{refused}");
        assert!(!path.exists(), "no fresh chain was started");

        let restarted = AuditOptions { new_chain: true, ..options.clone() };
        drop(AuditLog::open(&path, vec![], restarted).unwrap());
        let text = read(&path);
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["kind"], "chain_started");
        assert_eq!(first["details"]["previous"]["record"], last.seq());
        assert_eq!(first["details"]["previous"]["hash"], last.hash());
        let keys = if options.key.is_some() { public() } else { vec![] };
        assert_eq!(check(&path, &keys).map(|v| v.state_record), Ok(Some(text.lines().count() as u64)));
        assert!(AuditLog::open(&path, vec![], options).is_ok(), "the new chain continues");
    }
}

#[test]
fn start_refuses_a_signed_log_without_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 2, true);
    assert!(matches!(AuditLog::open(&path, vec![], AuditOptions::default()), Err(AuditError::Unkeyed { .. })));
    let other = AuditOptions { key: Some(SigningKey::from_bytes(&[8; 32])), ..keyed(3) };
    assert!(matches!(
        AuditLog::open(&path, vec![], other),
        Err(AuditError::Broken { problem: VerifyError::UnknownKey { record: 3, .. }, .. })
    ));
}

#[test]
fn start_signs_a_crash_tail_and_announces_a_new_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 5, false);
    assert_eq!(shape(&read(&path)), "dddCdd");
    drop(AuditLog::open(&path, vec![], keyed(3)).unwrap());
    assert_eq!(shape(&read(&path)), "dddCddC");
    drop(AuditLog::open(&path, vec![], keyed(5)).unwrap());
    assert_eq!(shape(&read(&path)), "dddCddCC", "the next checkpoint is now 5 records away");
    let log = AuditLog::open(&path, vec![], keyed(5)).unwrap();
    for i in 0..6 {
        log.append(record(i)).unwrap();
    }
    assert_eq!(shape(&read(&path)), "dddCddCCdddddCd");
    assert_eq!(check(&path, &public()).map(|v| v.unsigned_tail()), Ok(1));
}

#[test]
fn a_torn_tail_verifies_up_to_the_last_complete_record_and_is_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(3), 2, false);
    let text = read(&path);
    std::fs::write(&path, &text[..text.len() - 20]).unwrap();
    let torn = read(&path);
    assert_eq!(verify(&torn, &[], None), Ok(Verified { torn_tail: true, ..verified(1, 0, None, None) }));
    AuditLog::open(&path, vec![], keyed(3)).unwrap().append(record(3)).unwrap();
    assert_eq!(shape(&read(&path)), "dCd", "the torn record is cut, the rest signed at start");
    assert_eq!(check(&path, &public()).map(|v| v.unsigned_tail()), Ok(1));
}

#[test]
fn a_failed_write_leaves_no_partial_record_and_the_chain_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path, vec![], AuditOptions::default()).unwrap();
    log.append(record(1)).unwrap();
    let before = read(&path);
    // The log cannot be written (a read-only handle), and a failed write
    // left half a record behind.
    log.lock().file = File::open(&path).unwrap();
    assert!(matches!(log.append(record(2)), Err(AuditError::Io { action: "write", .. })));
    assert!(log.failing());
    assert_eq!(read(&path), before);
    OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"kind\":\"deci").unwrap();
    log.lock().file = OpenOptions::new().append(true).open(&path).unwrap();
    log.append(record(3)).unwrap();
    assert!(!log.failing());
    let text = read(&path);
    assert_eq!(verify(&text, &[], None), Ok(verified(2, 0, None, None)));
    assert!(text.contains("\"n\":3") && !text.contains("\"n\":2"), "{text}");
}

#[test]
fn fsyncs_every_sync_every_records_and_at_each_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let options = AuditOptions { sync_every: 3, ..keyed(5) };
    let log = AuditLog::open(&dir.path().join("audit.jsonl"), vec![], options).unwrap();
    let unsynced: Vec<u64> = (1..=6)
        .map(|n| {
            log.append(record(n)).unwrap();
            log.lock().unsynced
        })
        .collect();
    assert_eq!(unsynced, [1, 2, 0, 1, 0, 1], "the 3rd record is synced, the 5th by its checkpoint");
}

#[tokio::test]
async fn checkpoints_on_an_interval_while_records_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let options = AuditOptions { checkpoint_interval: Duration::from_millis(20), ..keyed(1000) };
    let log = Arc::new(AuditLog::open(&path, vec![], options).unwrap());
    let ticker = tokio::spawn(Arc::clone(&log).checkpoint_periodically());
    log.append(record(1)).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(shape(&read(&path)), "dC", "one checkpoint, none while idle");
    ticker.abort();
}

#[test]
fn hashes_cover_sorted_keys_whatever_order_the_line_has() {
    // A record as the log format has always hashed it (keys sorted), on a
    // line in insertion order (what a build with serde_json's
    // `preserve_order` writes).
    let line = r#"{"kind":"decision","at":"2026-11-26T02:00:01.250Z","request":{"id":"r-1","action":{"kind":"tool_call","tool":"shell.exec","arguments":{"command":"ls"}}},"decision":{"decision":"deny","reasons":[{"policy":"tool-scope","code":"tool_not_allowed","message":"no"}]},"seq":1,"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"dbd4ec455bfbf6eb641c9adaeb161f396bfe596a6d0a6dc1812b1efcff1b15ef"}"#;
    assert_eq!(verify(&format!("{line}\n"), &[], None), Ok(verified(1, 0, None, None)));
    let sorted = r#"{"at":"2026-11-26T02:00:01.250Z","decision":{"decision":"deny","reasons":[{"code":"tool_not_allowed","message":"no","policy":"tool-scope"}]},"kind":"decision","prev":"0000000000000000000000000000000000000000000000000000000000000000","request":{"action":{"arguments":{"command":"ls"},"kind":"tool_call","tool":"shell.exec"},"id":"r-1"},"seq":1}"#;
    let mut record: Map<String, Value> = serde_json::from_str(line).unwrap();
    record.remove("hash");
    assert_eq!(record_hash(&record), hex::encode(<sha2::Sha256 as sha2::Digest>::digest(sorted.as_bytes())));
}

#[test]
fn masks_configured_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("a.jsonl"), vec!["sql".into()], AuditOptions::default()).unwrap();
    let mut value = Value::Object(record(1));
    log.mask(&mut value);
    assert_eq!(value["action"]["arguments"]["sql"], "***");
    assert_eq!(value["action"]["arguments"]["region"], "eu");
}

#[test]
fn refuses_to_extend_a_damaged_log() {
    let dir = tempfile::tempdir().unwrap();
    let damaged = dir.path().join("damaged.jsonl");
    std::fs::write(&damaged, "not json\n").unwrap();
    assert!(matches!(
        AuditLog::open(&damaged, vec![], AuditOptions::default()),
        Err(AuditError::Broken { problem: VerifyError::NotJson { record: 1 }, .. })
    ));
    let path = write(dir.path(), AuditOptions::default(), 1, false);
    OpenOptions::new().append(true).open(&path).unwrap().write_all(b"\xff\n").unwrap();
    assert!(matches!(
        AuditLog::open(&path, vec![], AuditOptions::default()),
        Err(AuditError::Broken { problem: VerifyError::NotJson { record: 2 }, .. })
    ));
}

#[test]
fn a_state_file_naming_the_last_possible_record_is_damaged_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), keyed(2), 2, true);
    let mut text = std::fs::read_to_string(state_path(&path)).unwrap();
    let seq = state(&path).unwrap().seq();
    text = text.replace(&format!("\"seq\":{seq}"), &format!("\"seq\":{}", u64::MAX));
    std::fs::write(state_path(&path), text).unwrap();
    let error = AuditState::read(&state_path(&path)).unwrap_err().to_string();
    assert!(error.contains("names a record no log can follow"), "{error}");
    let opened = AuditLog::open(&path, vec![], keyed(2)).unwrap_err().to_string();
    assert!(opened.contains("is damaged"), "{opened}");
}
