//! The embedded persistent store: state in memory, every change appended to
//! a checksummed journal and fsync'd before it is acknowledged, and a
//! snapshot now and then so the journal stays short.
//!
//! Layout of the state directory:
//! - `snapshot.json`: header line, then the state as of operation `seq`;
//! - `journal.log`: header line, then one line per operation after the
//!   snapshot: `<seq> <checksum> <json>`.
//!
//! A snapshot is taken every `snapshot_every` operations, and also once the
//! journal outgrows the last snapshot (and `JOURNAL_FLOOR_BYTES`): one
//! operation may be a megabyte (a tool listing), and a server changing its
//! listing on every request must not grow the journal, and the replay on
//! restart, past the size of the state itself.
//!
//! A snapshot is written under the state lock but made durable outside it
//! (docs/decisions/0022-snapshots-off-the-lock.md): the state is streamed
//! to `snapshot.json.tmp` and appends move to a new `journal.next.log`,
//! both without an `fsync`; the append that started it then syncs the
//! snapshot, renames it into place and the new journal over the old, with
//! no lock held. Until then the directory holds two journals, which a
//! restart reads one after the other (and turns back into one).
//!
//! Appends are written under the state lock and made durable outside it,
//! one `fsync` for every append written meanwhile (group commit,
//! `group_sync.rs`); an operation is acknowledged only once it is on disk.
//! A crash can lose only an operation that was never acknowledged; a torn
//! last line is dropped on open.
//! Any other damage, or another format version, stops the open with an
//! error naming the file and line: never a silent reset.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::StateData;
use crate::error::StateError;
use crate::group_sync::{GroupSync, Pending};
use crate::memory::Locked;
use crate::memory::sealed::Append;
use crate::ops::{Op, OpRef};
use crate::store::StoreConfig;

const FORMAT: &str = "arbiter-state";
const VERSION: u32 = 1;
const SNAPSHOT: &str = "snapshot.json";
const JOURNAL: &str = "journal.log";
/// Appends go here while a snapshot is being made durable.
const NEXT_JOURNAL: &str = "journal.next.log";
/// The journal may grow to this many bytes however small the snapshot.
const JOURNAL_FLOOR_BYTES: u64 = 64 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    /// A journal started by a snapshot: the operation its first one
    /// follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follows: Option<u64>,
}

/// Read owned (`Snapshot<StateData>`), written borrowed
/// (`Snapshot<&StateData>`): a snapshot streams the state to disk without
/// a copy of it or of its JSON text.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot<S> {
    seq: u64,
    state: S,
}

/// The journal file and where it stands.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    snapshot_every: u64,
    file: Arc<File>,
    /// What of the journal is on disk.
    sync: Arc<GroupSync>,
    seq: u64,
    since_snapshot: u64,
    /// Bytes of the journal file.
    journal_bytes: u64,
    /// Bytes of the last snapshot.
    snapshot_bytes: u64,
    /// A snapshot is written but not yet in place: no other starts.
    snapshot_in_flight: Arc<AtomicBool>,
}

/// A snapshot written and its journal started, both not yet durable.
#[derive(Debug)]
pub(crate) struct SnapshotInFlight {
    dir: PathBuf,
    file: File,
    in_flight: Arc<AtomicBool>,
}

/// State kept in a directory, surviving restarts.
pub type JournalStore = Locked<Journal>;

impl JournalStore {
    /// Opens (or creates) the state kept in `dir`.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Self, StateError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let (mut data, snapshot_seq, snapshot_bytes) = read_snapshot(&dir.join(SNAPSHOT))?;
        let journal_path = dir.join(JOURNAL);
        let read = Replay { snapshot_seq, seq: snapshot_seq, after_unsynced: false };
        let (seq, valid_len) = replay_journal(&journal_path, read, &mut data, &config)?;
        // A snapshot not put in place before a stop: its journal follows.
        let next_path = dir.join(NEXT_JOURNAL);
        let interrupted = next_path.exists();
        let seq = if interrupted {
            let read = Replay { snapshot_seq, seq, after_unsynced: true };
            replay_journal(&next_path, read, &mut data, &config)?.0
        } else {
            seq
        };
        let file = Arc::new(open_journal(&journal_path, valid_len)?);
        let sync = GroupSync::new(Arc::clone(&file), journal_path, seq);
        let mut journal = Journal {
            dir: dir.to_owned(),
            snapshot_every: config.snapshot_every.max(1),
            file,
            sync,
            seq,
            since_snapshot: seq - snapshot_seq,
            journal_bytes: valid_len,
            snapshot_bytes,
            snapshot_in_flight: Arc::new(AtomicBool::new(false)),
        };
        if interrupted {
            // One snapshot of both, then one journal again.
            journal.snapshot(&data)?;
            std::fs::remove_file(&next_path).map_err(io("remove", &next_path))?;
            sync_dir(dir)?;
        }
        Ok(Locked::new(data, journal, config))
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError + use<> {
    let path = path.to_owned();
    move |source| StateError::Io { action, path, source }
}

/// Makes the directory's entries (a rename, a new file) durable.
fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync", dir))
}

fn header_line(follows: Option<u64>) -> String {
    serde_json::json!(Header { format: FORMAT.to_owned(), version: VERSION, follows }).to_string()
}

fn check_header(path: &Path, line: &str) -> Result<Header, StateError> {
    let header: Header = serde_json::from_str(line).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        line: 1,
        detail: format!("not an arbiter state header: {e}"),
    })?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(StateError::Incompatible {
            path: path.to_owned(),
            found: format!("{} v{}", header.format, header.version),
            expected: format!("{FORMAT} v{VERSION}"),
        });
    }
    Ok(header)
}

fn checksum(json: &str) -> String {
    hex::encode(&Sha256::digest(json.as_bytes())[..8])
}

/// The state a snapshot holds, its sequence number and its size in bytes.
fn read_snapshot(path: &Path) -> Result<(StateData, u64, u64), StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((StateData::default(), 0, 0)),
        Err(e) => return Err(io("read", path)(e)),
    };
    let (header, body) = text.split_once('\n').unwrap_or((&text, ""));
    check_header(path, header)?;
    let snapshot: Snapshot<StateData> = serde_json::from_str(body).map_err(|e| StateError::Corrupt {
        path: path.to_owned(),
        line: 2,
        detail: e.to_string(),
    })?;
    Ok((snapshot.state, snapshot.seq, text.len() as u64))
}

/// Where a journal's replay starts.
#[derive(Debug, Clone, Copy)]
struct Replay {
    /// Operations up to this one are in the snapshot.
    snapshot_seq: u64,
    /// The last operation applied so far.
    seq: u64,
    /// The journal a snapshot started, perhaps before the one it follows
    /// was all on disk: if it follows an operation the replay has not
    /// reached, that one's tail was lost, so nothing in this journal was
    /// acknowledged and it is skipped.
    after_unsynced: bool,
}

/// Re-applies the journal's operations after `read.snapshot_seq`; returns
/// the last sequence number and the length of the intact prefix of the
/// file.
fn replay_journal(
    path: &Path,
    read: Replay,
    data: &mut StateData,
    config: &StoreConfig,
) -> Result<(u64, u64), StateError> {
    let Replay { snapshot_seq, mut seq, after_unsynced } = read;
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((seq, 0)),
        Err(e) => return Err(io("open", path)(e)),
    };
    let mut reader = BufReader::new(file);
    let (mut valid_len, mut number) = (0u64, 0usize);
    let mut line = String::new();
    loop {
        line.clear();
        let read = reader.read_line(&mut line).map_err(io("read", path))?;
        if read == 0 {
            break;
        }
        number += 1;
        if !line.ends_with('\n') {
            // Torn write of an operation that was never acknowledged.
            break;
        }
        let text = line.trim_end_matches('\n');
        let corrupt = |detail: String| StateError::Corrupt { path: path.to_owned(), line: number, detail };
        if number == 1 {
            let header = check_header(path, text)?;
            if after_unsynced && header.follows.is_some_and(|follows| follows > seq) {
                return Ok((seq, 0));
            }
        } else {
            let mut parts = text.splitn(3, ' ');
            let (Some(n), Some(sum), Some(json)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(corrupt("expected `<seq> <checksum> <json>`".into()));
            };
            if checksum(json) != sum {
                return Err(corrupt("checksum mismatch".into()));
            }
            let n: u64 = n.parse().map_err(|_| corrupt(format!("bad sequence number `{n}`")))?;
            if n > snapshot_seq {
                if n != seq + 1 {
                    return Err(corrupt(format!("sequence jumps from {seq} to {n}")));
                }
                let op: Op = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
                if !data.replay(&op, config) {
                    return Err(corrupt(format!("operation {n} no longer applies")));
                }
                seq = n;
            }
        }
        valid_len += read as u64;
    }
    Ok((seq, valid_len))
}

/// Opens the journal for appending, cutting a torn tail and writing the
/// header of a new file.
fn open_journal(path: &Path, valid_len: u64) -> Result<File, StateError> {
    let mut file =
        OpenOptions::new().create(true).read(true).write(true).truncate(false).open(path).map_err(io("open", path))?;
    file.set_len(valid_len).map_err(io("truncate", path))?;
    if valid_len == 0 {
        writeln!(file, "{}", header_line(None)).map_err(io("write", path))?;
        file.sync_all().map_err(io("sync", path))?;
        // A new file's name is the directory's: synced too, or appends
        // acknowledged through it could vanish with it.
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    let mut file = OpenOptions::new().append(true).open(path).map_err(io("open", path))?;
    file.flush().map_err(io("flush", path))?;
    Ok(file)
}

impl Append for Journal {
    fn append(&mut self, op: OpRef<'_>, data: &StateData) -> Result<Option<Pending>, StateError> {
        let path = self.dir.join(JOURNAL);
        let json = serde_json::to_string(&op).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            line: 0,
            detail: format!("cannot encode operation: {e}"),
        })?;
        let seq = self.seq + 1;
        let line = format!("{seq} {} {json}\n", checksum(&json));
        (&*self.file).write_all(line.as_bytes()).map_err(io("write", &path))?;
        self.seq = seq;
        let pending = self.sync.written(seq);
        self.since_snapshot += 1;
        self.journal_bytes += line.len() as u64;
        let due = self.since_snapshot >= self.snapshot_every
            || self.journal_bytes > self.snapshot_bytes.max(JOURNAL_FLOOR_BYTES);
        if due && !self.snapshot_in_flight.load(Ordering::Acquire) {
            return Ok(Some(pending.with_snapshot(self.start_snapshot(data)?)));
        }
        Ok(Some(pending))
    }

    fn failure(&self) -> Option<String> {
        self.sync.failure()
    }
}

impl Journal {
    /// Streams the state as of `seq` to `snapshot.json.tmp`, unsynced; its
    /// file and size.
    fn write_snapshot(&self, data: &StateData) -> Result<(File, u64), StateError> {
        let tmp = self.dir.join(format!("{SNAPSHOT}.tmp"));
        let mut out = BufWriter::new(File::create(&tmp).map_err(io("create", &tmp))?);
        writeln!(out, "{}", header_line(None)).map_err(io("write", &tmp))?;
        serde_json::to_writer(&mut out, &Snapshot { seq: self.seq, state: data }).map_err(|e| {
            if e.is_io() {
                io("write", &tmp)(e.into())
            } else {
                StateError::Corrupt { path: self.dir.join(SNAPSHOT), line: 0, detail: e.to_string() }
            }
        })?;
        out.write_all(b"\n").map_err(io("write", &tmp))?;
        let file = out.into_inner().map_err(|e| io("write", &tmp)(e.into_error()))?;
        let bytes = file.metadata().map_err(io("stat", &tmp))?.len();
        Ok((file, bytes))
    }

    /// Writes the state as of `seq` and starts a fresh journal, durably,
    /// before returning (on open, with nothing waiting). A crash in between
    /// is safe: replay skips operations the snapshot holds.
    fn snapshot(&mut self, data: &StateData) -> Result<(), StateError> {
        let (file, bytes) = self.write_snapshot(data)?;
        put_snapshot_in_place(&self.dir, &file)?;
        let journal = self.dir.join(JOURNAL);
        self.file = Arc::new(open_journal(&journal, 0)?);
        // The snapshot holds every operation so far, on disk.
        self.sync.snapshotted(Arc::clone(&self.file), self.seq);
        self.since_snapshot = 0;
        self.journal_bytes = 0;
        self.snapshot_bytes = bytes;
        Ok(())
    }

    /// Writes the state as of `seq` and moves appends to a new journal,
    /// neither synced: what makes them durable runs outside the lock
    /// ([`SnapshotInFlight::finish`]).
    fn start_snapshot(&mut self, data: &StateData) -> Result<SnapshotInFlight, StateError> {
        let (file, bytes) = self.write_snapshot(data)?;
        let next = self.dir.join(NEXT_JOURNAL);
        let mut journal =
            OpenOptions::new().create(true).write(true).truncate(true).open(&next).map_err(io("create", &next))?;
        let header = format!("{}\n", header_line(Some(self.seq)));
        journal.write_all(header.as_bytes()).map_err(io("write", &next))?;
        self.file = Arc::new(journal);
        self.sync.rotated(Arc::clone(&self.file), next);
        self.since_snapshot = 0;
        self.journal_bytes = header.len() as u64;
        self.snapshot_bytes = bytes;
        self.snapshot_in_flight.store(true, Ordering::Release);
        Ok(SnapshotInFlight { dir: self.dir.clone(), file, in_flight: Arc::clone(&self.snapshot_in_flight) })
    }
}

/// Syncs the snapshot written to `snapshot.json.tmp` (open as `file`) and
/// renames it into place, durably.
fn put_snapshot_in_place(dir: &Path, file: &File) -> Result<(), StateError> {
    let (tmp, path) = (dir.join(format!("{SNAPSHOT}.tmp")), dir.join(SNAPSHOT));
    file.sync_all().map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    // The rename must be on disk before the journal it replaces is cut.
    sync_dir(dir)
}

impl SnapshotInFlight {
    /// Puts the snapshot in place, then the new journal over the old one
    /// (whose operations the snapshot holds), with no lock held; another
    /// snapshot may start once this returns.
    pub(crate) fn finish(self, sync: &GroupSync) -> Result<(), StateError> {
        put_snapshot_in_place(&self.dir, &self.file)?;
        let (next, journal) = (self.dir.join(NEXT_JOURNAL), self.dir.join(JOURNAL));
        std::fs::rename(&next, &journal).map_err(io("rename", &journal))?;
        sync_dir(&self.dir)?;
        sync.renamed(journal);
        self.in_flight.store(false, Ordering::Release);
        Ok(())
    }
}
