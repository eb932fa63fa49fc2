//! The audit log: one JSON line per decision or approval, each chained to
//! the one before by a SHA-256 hash (`seq`, `prev`, `hash`; the hash covers
//! the record with its keys sorted), so editing, inserting or removing a
//! record breaks the chain at that record.
//!
//! The chain alone is unkeyed: whoever can write the file can rewrite it
//! and recompute the chain, and a cut at a record boundary leaves a valid
//! chain. With a key, the server therefore appends signed **checkpoints**
//! (records of the chain, `"kind": "checkpoint"`): every
//! `checkpoint_every` records, every `checkpoint_interval` while records
//! are written, at start when the log does not end in one, and at
//! shutdown. Each signs (ed25519, domain-separated) the count and head
//! hash of the chain before it and promises the next within `every`
//! records. After each checkpoint the log is fsync'd and the state file
//! `<log>.state` is rewritten to name it (without a key: the last record),
//! so that a log that vanished or lost its end is evidence, not a fresh
//! start. [`verify`] says what a check can and cannot tell.
//!
//! At start the log is checked from the record its state file names (its
//! hash and signature checked on their own) to the end; without a state
//! file, or when that record is not where the file says, the whole log.
//!
//! Durability: each record is written (`write(2)`) before its decision is
//! answered, so a process crash loses no answered decision. The file is
//! fsync'd every `sync_every` records and at every checkpoint, so an OS
//! crash or power cut loses at most the records since the last fsync. A
//! torn last line (a crash mid-write, never answered) is cut at the next
//! start.

mod chain;
mod request_view;

pub use chain::{Verified, VerifyError, verify};
pub(crate) use request_view::request_view;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arbiter_types::format_rfc3339_ms;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde_json::{Map, Value, json};

use chain::{Walker, intact_len, record_hash, resume_at};

/// How the server keeps its audit log.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Signs the checkpoints. Without it the chain is unkeyed: a rewrite
    /// with a recomputed chain cannot be told from the original.
    pub key: Option<SigningKey>,
    /// A checkpoint after this many records (a promise verifiers hold the
    /// log to).
    pub checkpoint_every: u64,
    /// A checkpoint this often while records are written.
    pub checkpoint_interval: Duration,
    /// fsync after this many records (1: before each decision is answered).
    pub sync_every: u64,
    /// Start a new chain when the log is gone although its state file
    /// says it existed.
    pub new_chain: bool,
    /// Deny a decision whose record cannot be written (`audit_unavailable`)
    /// instead of serving it.
    pub required: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            key: None,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            sync_every: 64,
            new_chain: false,
            required: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("cannot {action} audit log {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit log {path}: {problem}; refusing to extend it (keep it as evidence: move it away and start with --audit-new-chain)"
    )]
    Broken { path: PathBuf, problem: VerifyError },
    #[error(
        "audit log {path} is gone, but {state} names its record {record} (at {at}, hash {head}): restore the log, or start a new chain with --audit-new-chain"
    )]
    Vanished { path: PathBuf, state: PathBuf, record: u64, at: String, head: String },
    #[error("audit log {path} has signed checkpoints: start with --audit-key (the key that signed them)")]
    Unkeyed { path: PathBuf },
    #[error("audit state file {path} is damaged: {reason}")]
    State { path: PathBuf, reason: String },
}

/// The state file of a log (`<log>.state`): where in the log its last
/// checkpoint is and what it holds (without a key: the last record at the
/// last checkpoint time). Rewritten atomically with every checkpoint, it
/// is the evidence that the log existed and how far it reached.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditState {
    /// The record's byte range in the log.
    start: u64,
    end: u64,
    /// The record, with its chain fields.
    record: Map<String, Value>,
}

/// Where the state file of the log at `log` is.
pub fn state_path(log: &Path) -> PathBuf {
    with_suffix(log, ".state")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl AuditState {
    /// Reads a state file; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, AuditError> {
        let damaged = |reason: String| AuditError::State { path: path.to_owned(), reason };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AuditError::Io { action: "read", path: path.to_owned(), source }),
        };
        let state: Self = serde_json::from_str(&text).map_err(|e| damaged(e.to_string()))?;
        if state.seq() == 0 || state.hash().is_empty() || state.end <= state.start {
            return Err(damaged("it names no record".to_owned()));
        }
        // The log resumes after the record it names: there must be a next.
        if state.seq() == u64::MAX {
            return Err(damaged("it names a record no log can follow (sequence number u64::MAX)".to_owned()));
        }
        Ok(Some(state))
    }

    /// The number of the record it names.
    pub fn seq(&self) -> u64 {
        self.record.get("seq").and_then(Value::as_u64).unwrap_or(0)
    }

    /// That record's hash.
    pub fn hash(&self) -> &str {
        self.field("hash")
    }

    /// When that record was written.
    pub fn at(&self) -> &str {
        self.field("at")
    }

    fn field(&self, name: &str) -> &str {
        self.record.get(name).and_then(Value::as_str).unwrap_or_default()
    }

    /// The record as a log line.
    pub(crate) fn line(&self) -> String {
        Value::Object(self.record.clone()).to_string()
    }
}

/// The end of the chain, where records are appended.
#[derive(Debug)]
struct Tail {
    file: File,
    /// The last record's number and hash.
    seq: u64,
    prev: String,
    /// The last record's byte range, and the line itself (a checkpoint
    /// names it in the state file).
    last_start: u64,
    len: u64,
    last_line: String,
    unsynced: u64,
    /// Records since the last checkpoint.
    since: u64,
    /// A failed write may have left bytes after `len`: they are cut before
    /// the next write.
    dirty: bool,
}

impl Tail {
    /// Appends a record, adding `seq`, `prev` and `hash`. On failure
    /// whatever part was written is cut again: a record is in the log only
    /// if its write (and fsync, with `sync`) succeeded.
    fn append(&mut self, path: &Path, mut record: Map<String, Value>, sync: bool) -> Result<u64, AuditError> {
        let io = |action| move |source| AuditError::Io { action, path: path.to_owned(), source };
        if self.dirty {
            self.file.set_len(self.len).map_err(io("repair"))?;
            self.dirty = false;
        }
        let seq = self.seq + 1;
        record.insert("seq".into(), seq.into());
        record.insert("prev".into(), self.prev.clone().into());
        let hash = record_hash(&record);
        record.insert("hash".into(), hash.clone().into());
        let line = Value::Object(record).to_string();
        let written = self
            .file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        if let Err(source) = written {
            self.dirty = self.file.set_len(self.len).is_err();
            return Err(io("write")(source));
        }
        self.unsynced = if sync { 0 } else { self.unsynced + 1 };
        self.last_start = self.len;
        self.len += line.len() as u64 + 1;
        (self.seq, self.prev, self.last_line) = (seq, hash, line);
        Ok(seq)
    }
}

/// An append-only, hash-chained JSON-lines log with signed checkpoints.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    /// Argument names whose values are masked.
    mask: Vec<String>,
    options: AuditOptions,
    tail: Mutex<Tail>,
    /// The last append failed.
    failing: AtomicBool,
}

impl AuditLog {
    /// Opens a log for appending, continuing its chain after checking it
    /// (see the module docs). A torn last record (a crash mid-write, never
    /// acknowledged) is cut off first. Refuses a broken chain, a bad
    /// signature, a log shorter than its state file says, a signed log
    /// without the key, and a log that is gone while its state file
    /// remains (unless `options.new_chain`: the new chain then begins with
    /// a `chain_started` record naming what the state file recorded).
    pub fn open(path: &Path, mask: Vec<String>, options: AuditOptions) -> Result<Self, AuditError> {
        let io = |action| move |source| AuditError::Io { action, path: path.to_owned(), source };
        let keys: Vec<VerifyingKey> = options.key.iter().map(SigningKey::verifying_key).collect();
        let state = AuditState::read(&state_path(path))?;
        let existing = match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(io("read")(source)),
        };
        let mut started = None;
        let (walker, end) = match existing {
            None => {
                if let Some(previous) = &state
                    && !options.new_chain
                {
                    return Err(AuditError::Vanished {
                        path: path.to_owned(),
                        state: state_path(path),
                        record: previous.seq(),
                        at: previous.at().to_owned(),
                        head: previous.hash().to_owned(),
                    });
                }
                if options.new_chain {
                    started = Some(json!({
                        "reason": if state.is_some() { "the log was gone at start (--audit-new-chain)" }
                                  else { "no previous log (--audit-new-chain)" },
                        "previous": state.as_ref().map(|s| json!({"record": s.seq(), "hash": s.hash(), "at": s.at()})),
                    }));
                }
                (Walker::new(&keys), End::default())
            }
            Some(bytes) => {
                if options.new_chain {
                    tracing::warn!(path = %path.display(), "--audit-new-chain ignored: the audit log exists");
                }
                check_existing(path, &keys, state.as_ref(), &bytes)?
            }
        };
        // A checkpoint is due at start unless the state file names the last
        // record and (with a key) that record is a checkpoint promising the
        // configured interval: a crash's unsigned tail gets signed, and a
        // changed `checkpoint_every` is announced before it applies.
        let current = state.as_ref().is_some_and(|s| s.seq() == walker.seq);
        let signed_here =
            walker.since == 0 && walker.signed.is_some_and(|(_, every)| every == options.checkpoint_every);
        let due = walker.seq > 0 && !(current && (options.key.is_none() || signed_here));
        let file = OpenOptions::new().create(true).append(true).open(path).map_err(io("open"))?;
        let tail = Tail {
            file,
            seq: walker.seq,
            prev: walker.prev,
            last_start: end.last_start,
            len: end.len,
            last_line: end.last_line,
            unsynced: 0,
            since: walker.since,
            dirty: false,
        };
        let log =
            AuditLog { path: path.to_owned(), mask, options, tail: Mutex::new(tail), failing: AtomicBool::new(false) };
        let fresh_chain = started.is_some();
        if let Some(details) = started {
            let mut record = Map::new();
            record.insert("kind".into(), "chain_started".into());
            record.insert("at".into(), format_rfc3339_ms(crate::state::now_ms()).into());
            record.insert("details".into(), details);
            log.append(record)?;
        }
        if due || fresh_chain {
            log.mark(&mut log.lock())?;
        }
        Ok(log)
    }

    fn lock(&self) -> MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a decision must be denied when its record cannot be written.
    /// The log file (the console reads records back from its tail).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn required(&self) -> bool {
        self.options.required
    }

    /// Whether checkpoints are signed.
    pub(crate) fn signed(&self) -> bool {
        self.options.key.is_some()
    }

    /// Whether the last append failed.
    pub(crate) fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
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

    /// Appends a record (an object), adding `seq`, `prev` and `hash`; then a
    /// checkpoint if one is due. Returns the record's `seq`.
    pub fn append(&self, record: Map<String, Value>) -> Result<u64, AuditError> {
        let mut tail = self.lock();
        let sync = tail.unsynced + 1 >= self.options.sync_every;
        let appended = tail.append(&self.path, record, sync);
        self.failing.store(appended.is_err(), Ordering::Relaxed);
        let seq = appended?;
        tail.since += 1;
        if tail.since >= self.options.checkpoint_every
            && let Err(e) = self.mark(&mut tail)
        {
            // The record itself is written; the checkpoint is retried
            // after the next one.
            tracing::error!("audit checkpoint failed: {e}");
        }
        Ok(seq)
    }

    /// A checkpoint, if records were written since the last one (on an
    /// interval and at shutdown).
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut tail = self.lock();
        if tail.since == 0 {
            return Ok(());
        }
        self.mark(&mut tail)
    }

    /// Checkpoints every `checkpoint_interval` (until the task is aborted).
    pub(crate) async fn checkpoint_periodically(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(self.options.checkpoint_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let audit = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || audit.checkpoint()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("audit checkpoint failed: {e}"),
                Err(e) => tracing::error!("audit checkpoint task failed: {e}"),
            }
        }
    }

    /// Ends a stretch of records: a signed checkpoint (with a key), an
    /// fsync, and the state file pointed at the last record.
    fn mark(&self, tail: &mut Tail) -> Result<(), AuditError> {
        if let Some(key) = &self.options.key {
            let at = format_rfc3339_ms(crate::state::now_ms());
            let record = chain::checkpoint(key, tail.seq, &tail.prev, self.options.checkpoint_every, at);
            tail.append(&self.path, record, false)?;
        }
        tail.file.sync_data().map_err(|source| AuditError::Io { action: "sync", path: self.path.clone(), source })?;
        (tail.unsynced, tail.since) = (0, 0);
        let target = state_path(&self.path);
        let damaged = |reason: String| AuditError::State { path: target.clone(), reason };
        let record = serde_json::from_str(&tail.last_line).map_err(|e| damaged(e.to_string()))?;
        let state = AuditState { start: tail.last_start, end: tail.len, record };
        let text = serde_json::to_vec(&state).map_err(|e| damaged(e.to_string()))?;
        write_atomically(&target, &text)
    }
}

/// Replaces `target` by `text` so that a crash leaves the old or the new
/// file, never a mix, and the new one survives a power cut.
fn write_atomically(target: &Path, text: &[u8]) -> Result<(), AuditError> {
    let io = |action| move |source| AuditError::Io { action, path: target.to_owned(), source };
    let temporary = with_suffix(target, ".tmp");
    let mut file = File::create(&temporary).map_err(io("write"))?;
    file.write_all(text).and_then(|()| file.sync_all()).map_err(io("write"))?;
    std::fs::rename(&temporary, target).map_err(io("replace"))?;
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync the directory of"))
}

/// Where an existing log ends: its last record's byte range and line.
#[derive(Debug, Default)]
struct End {
    last_start: u64,
    len: u64,
    last_line: String,
}

/// Checks an existing log at start (see [`walk`]); then cuts a torn last
/// record (a crash mid-write, never acknowledged).
fn check_existing<'k>(
    path: &Path,
    keys: &'k [VerifyingKey],
    state: Option<&AuditState>,
    bytes: &[u8],
) -> Result<(Walker<'k>, End), AuditError> {
    let broken = |problem| AuditError::Broken { path: path.to_owned(), problem };
    let intact = intact_len(bytes);
    let text = std::str::from_utf8(&bytes[..intact]).map_err(|e| {
        let record = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        broken(VerifyError::NotJson { record })
    })?;
    let walker = walk(keys, text, state).map_err(broken)?;
    if walker.checkpoints > 0 && keys.is_empty() {
        return Err(AuditError::Unkeyed { path: path.to_owned() });
    }
    if intact < bytes.len() {
        tracing::warn!(path = %path.display(), "cutting a torn last audit record");
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(intact as u64))
            .map_err(|source| AuditError::Io { action: "truncate", path: path.to_owned(), source })?;
    }
    let body = text.strip_suffix('\n').unwrap_or_default();
    let last_start = body.rfind('\n').map_or(0, |i| i + 1);
    Ok((walker, End { last_start: last_start as u64, len: intact as u64, last_line: body[last_start..].to_owned() }))
}

/// Walks an existing log at start. With a state file, only from the record
/// it names, checked on its own (hash, signature); when that record is not
/// where the state file says, the whole log, to name what is wrong.
fn walk<'k>(keys: &'k [VerifyingKey], text: &str, state: Option<&AuditState>) -> Result<Walker<'k>, VerifyError> {
    if let Some(state) = state
        && let (Ok(start), Ok(end)) = (usize::try_from(state.start), usize::try_from(state.end))
        && text.get(..start).is_some_and(|before| before.is_empty() || before.ends_with('\n'))
        && let Some(line) = text.get(start..end).and_then(|line| line.strip_suffix('\n'))
        && let Ok(mut walker) = resume_at(keys, state.seq(), line)
        && walker.prev == state.hash()
    {
        for line in text[end..].lines() {
            walker.step(line)?;
        }
        walker.finish(false)?;
        return Ok(walker);
    }
    let mut walker = Walker::new(keys);
    if let Some(state) = state {
        walker.expect(state);
    }
    for line in text.lines() {
        walker.step(line)?;
    }
    walker.finish(false)?;
    Ok(walker)
}
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
