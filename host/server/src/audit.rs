//! The audit log: one JSON line per decision or approval, each chained to
//! the one before by a SHA-256 hash, so editing, inserting, removing or
//! truncating records is detectable (`arbiter audit verify` comes with the
//! versioning work; the chain is written from day one).
//!
//! Durability: each record is written and flushed before the decision is
//! answered; the file is fsync'd every `SYNC_EVERY` records and on drop. A
//! crash can lose at most the records since the last sync, and never
//! leaves a record half-chained: a torn last line fails verification at
//! exactly that record.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

const SYNC_EVERY: u64 = 64;
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {action} audit log {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path} line {line} is not a chained record; refusing to append to a damaged log")]
    Damaged { path: PathBuf, line: usize },
}

#[derive(Debug)]
struct Tail {
    file: File,
    seq: u64,
    prev: String,
    unsynced: u64,
}

/// An append-only, hash-chained JSON-lines log.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// Argument names whose values are masked.
    mask: Vec<String>,
    tail: Mutex<Tail>,
}

impl AuditLog {
    /// Opens a log for appending, continuing its chain. A torn last record
    /// (a crash mid-write: never acknowledged) is cut off first.
    pub fn open(path: &Path, mask: Vec<String>) -> Result<Self, AuditError> {
        let io = |action| move |source| AuditError::Io { action, path: path.to_owned(), source };
        let (mut seq, mut prev) = (0, GENESIS.to_owned());
        if let Ok(text) = std::fs::read(path) {
            let intact = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if intact < text.len() {
                tracing::warn!(path = %path.display(), "cutting a torn last audit record");
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(intact as u64))
                    .map_err(io("truncate"))?;
            }
        }
        if let Ok(file) = File::open(path) {
            for (index, line) in BufReader::new(file).lines().enumerate() {
                let line = line.map_err(io("read"))?;
                let record: Value = serde_json::from_str(&line)
                    .map_err(|_| AuditError::Damaged { path: path.to_owned(), line: index + 1 })?;
                match (record["seq"].as_u64(), record["hash"].as_str()) {
                    (Some(s), Some(h)) => (seq, prev) = (s, h.to_owned()),
                    _ => return Err(AuditError::Damaged { path: path.to_owned(), line: index + 1 }),
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io("open"))?;
        Ok(AuditLog { path: path.to_owned(), mask, tail: Mutex::new(Tail { file, seq, prev, unsynced: 0 }) })
    }

    /// Masks the configured argument names anywhere in `value`.
    pub fn mask(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, member) in map.iter_mut() {
                    if self.mask.iter().any(|m| m == key) {
                        *member = json!("***");
                    } else {
                        self.mask(member);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask(v)),
            _ => {}
        }
    }

    /// Appends a record (an object), adding `seq`, `prev` and `hash`.
    pub fn append(&self, mut record: Map<String, Value>) -> Result<(), AuditError> {
        let mut tail = self.tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seq = tail.seq + 1;
        record.insert("seq".into(), seq.into());
        record.insert("prev".into(), tail.prev.clone().into());
        let body = Value::Object(record.clone()).to_string();
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        record.insert("hash".into(), hash.clone().into());
        let line = format!("{}\n", Value::Object(record));
        let io = |action| move |source| AuditError::Io { action, path: self.path.clone(), source };
        tail.file.write_all(line.as_bytes()).map_err(io("write"))?;
        tail.file.flush().map_err(io("flush"))?;
        tail.unsynced += 1;
        if tail.unsynced >= SYNC_EVERY {
            tail.file.sync_data().map_err(io("sync"))?;
            tail.unsynced = 0;
        }
        tail.seq = seq;
        tail.prev = hash;
        Ok(())
    }

    /// Forces the log to disk (on shutdown).
    pub fn sync(&self) -> Result<(), AuditError> {
        let mut tail = self.tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.file.sync_data().map_err(|source| AuditError::Io { action: "sync", path: self.path.clone(), source })?;
        tail.unsynced = 0;
        Ok(())
    }
}

/// What `verify` found in an intact chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    /// The file ends in a partial record: a crash mid-write, never
    /// acknowledged; everything before it verified.
    pub torn_tail: bool,
}

/// Checks a log's chain; the error names the first bad record.
pub fn verify(text: &str) -> Result<Verified, String> {
    let mut prev = GENESIS.to_owned();
    let mut count = 0;
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let complete = if torn_tail { &text[..text.rfind('\n').map_or(0, |i| i + 1)] } else { text };
    for (index, line) in complete.lines().enumerate() {
        let mut record: Map<String, Value> =
            serde_json::from_str(line).map_err(|e| format!("record {}: not JSON ({e})", index + 1))?;
        let hash = record.remove("hash").and_then(|h| h.as_str().map(str::to_owned));
        let expected_seq = count + 1;
        if record.get("seq").and_then(Value::as_u64) != Some(expected_seq) {
            return Err(format!("record {}: sequence number is not {expected_seq}", index + 1));
        }
        if record.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(format!("record {}: does not chain to the record before", index + 1));
        }
        let actual = hex::encode(Sha256::digest(Value::Object(record).to_string().as_bytes()));
        if hash.as_deref() != Some(actual.as_str()) {
            return Err(format!("record {}: hash mismatch (edited)", index + 1));
        }
        prev = actual;
        count = expected_seq;
    }
    Ok(Verified { records: count, torn_tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64) -> Map<String, Value> {
        json!({"kind": "decision", "n": n, "action": {"arguments": {"sql": "select 1", "region": "eu"}}})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// A log of two records, closed again.
    fn two_records(dir: &Path) -> PathBuf {
        let path = dir.join("audit.jsonl");
        let log = AuditLog::open(&path, vec![]).unwrap();
        log.append(record(1)).unwrap();
        log.append(record(2)).unwrap();
        path
    }

    #[test]
    fn chains_records_and_continues_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_records(dir.path());
        AuditLog::open(&path, vec![]).unwrap().append(record(3)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify(&text), Ok(Verified { records: 3, torn_tail: false }));

        let edited = text.replacen("\"n\":2", "\"n\":7", 1);
        assert_eq!(verify(&edited), Err("record 2: hash mismatch (edited)".into()));
        let lines: Vec<&str> = text.lines().collect();
        let removed = format!("{}\n{}\n", lines[0], lines[2]);
        assert!(verify(&removed).unwrap_err().starts_with("record 2: sequence number"));
        let inserted = format!("{}\n{}\n{}\n{}\n", lines[0], lines[0], lines[1], lines[2]);
        assert!(verify(&inserted).unwrap_err().starts_with("record 2: sequence number"));
        let truncated = format!("{}\n", lines[0]);
        assert_eq!(
            verify(&truncated),
            Ok(Verified { records: 1, torn_tail: false }),
            "a cut at a record boundary verifies; the count shows it"
        );
    }

    #[test]
    fn a_torn_tail_verifies_up_to_the_last_complete_record_and_is_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_records(dir.path());
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 20]).unwrap();
        let torn = std::fs::read_to_string(&path).unwrap();
        assert_eq!(verify(&torn), Ok(Verified { records: 1, torn_tail: true }));
        AuditLog::open(&path, vec![]).unwrap().append(record(3)).unwrap();
        assert_eq!(verify(&std::fs::read_to_string(&path).unwrap()), Ok(Verified { records: 2, torn_tail: false }));
    }

    #[test]
    fn masks_configured_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(&dir.path().join("a.jsonl"), vec!["sql".into()]).unwrap();
        let mut value = Value::Object(record(1));
        log.mask(&mut value);
        assert_eq!(value["action"]["arguments"]["sql"], "***");
        assert_eq!(value["action"]["arguments"]["region"], "eu");
    }

    #[test]
    fn refuses_to_extend_a_damaged_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "not json\n").unwrap();
        assert!(matches!(AuditLog::open(&path, vec![]), Err(AuditError::Damaged { line: 1, .. })));
    }
}
