//! Group commit for the journal: appends are written under the state lock
//! but made durable outside it, and one `fsync` covers every append
//! written before it started. A writer is acknowledged only once an
//! `fsync` that began after its write has completed, so an acknowledged
//! change is on disk as with one `fsync` per change; what changes is that
//! concurrent writers share the wait instead of queueing behind each
//! other's. A read (or a change refused, or one that changed nothing) may
//! meanwhile see a change not yet on disk: it can only be refused more
//! than it would be after a crash, never allowed more, since every allow
//! is itself a change that waits.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::StateError;
use crate::journal::SnapshotInFlight;

/// The journal's durability: what has been written and what is on disk.
#[derive(Debug)]
pub(crate) struct GroupSync {
    state: Mutex<Progress>,
    synced: Condvar,
    /// `Progress::failed` is set: every state read checks this, so it must
    /// not take the lock.
    stopped: AtomicBool,
}

#[derive(Debug)]
struct Progress {
    /// The journal file appends go to (replaced by a snapshot).
    file: Arc<File>,
    path: PathBuf,
    /// Files appends went to before `file`, not yet synced since: the next
    /// `fsync` covers them first.
    retiring: Vec<Arc<File>>,
    /// `file` is new: its name must reach the disk with its first `fsync`.
    fresh: bool,
    /// The last sequence number written to `file`.
    written: u64,
    /// Every sequence number up to this one is on disk.
    synced: u64,
    /// A writer is running `fsync` for the others.
    syncing: bool,
    /// An `fsync` failed: nothing written since can be acknowledged, and
    /// the store stops.
    failed: Option<String>,
}

/// An append written but not yet known to be on disk; with the snapshot
/// its append started, which the appender finishes outside the lock.
#[derive(Debug)]
#[must_use = "an append is acknowledged only once it is durable"]
pub struct Pending {
    seq: u64,
    sync: Arc<GroupSync>,
    snapshot: Option<SnapshotInFlight>,
}

impl GroupSync {
    /// `file` holds everything up to `seq`, durably.
    pub(crate) fn new(file: Arc<File>, path: PathBuf, seq: u64) -> Arc<Self> {
        let progress = Progress {
            file,
            path,
            retiring: Vec::new(),
            fresh: false,
            written: seq,
            synced: seq,
            syncing: false,
            failed: None,
        };
        Arc::new(GroupSync { state: Mutex::new(progress), synced: Condvar::new(), stopped: AtomicBool::new(false) })
    }

    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        // Nothing panics while holding it; a poisoned lock still holds
        // consistent numbers.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `seq` was written to the current file (called under the state lock,
    /// in sequence order).
    pub(crate) fn written(self: &Arc<Self>, seq: u64) -> Pending {
        self.progress().written = seq;
        Pending { seq, sync: Arc::clone(self), snapshot: None }
    }

    /// A snapshot made everything up to `seq` durable and appends now go to
    /// `file`, whose name is on disk.
    pub(crate) fn snapshotted(&self, file: Arc<File>, seq: u64) {
        let mut progress = self.progress();
        progress.file = file;
        progress.retiring.clear();
        progress.fresh = false;
        progress.written = seq;
        progress.synced = progress.synced.max(seq);
        drop(progress);
        self.synced.notify_all();
    }

    /// Appends now go to `file`, new at `path`; what was written before is
    /// synced with the next `fsync`, before it.
    pub(crate) fn rotated(&self, file: Arc<File>, path: PathBuf) {
        let mut progress = self.progress();
        let before = std::mem::replace(&mut progress.file, file);
        progress.retiring.push(before);
        progress.path = path;
        progress.fresh = true;
    }

    /// The current journal file was renamed to `path`.
    pub(crate) fn renamed(&self, path: PathBuf) {
        self.progress().path = path;
    }

    /// Stops the journal: nothing is acknowledged from now on.
    fn fail(&self, reason: String) {
        self.progress().failed = Some(reason);
        self.stopped.store(true, Ordering::Release);
        self.synced.notify_all();
    }

    /// Why the journal stopped, if an `fsync` failed.
    pub(crate) fn failure(&self) -> Option<String> {
        if !self.stopped.load(Ordering::Acquire) {
            return None;
        }
        self.progress().failed.clone()
    }
}

impl Pending {
    /// The snapshot this append started, to finish before it is acknowledged.
    pub(crate) fn with_snapshot(self, snapshot: SnapshotInFlight) -> Pending {
        Pending { snapshot: Some(snapshot), ..self }
    }

    /// Returns once the append is on disk (and the snapshot it started, if
    /// any): the first writer to find no `fsync` running starts one for
    /// everything written so far; the others wait for it, and start the
    /// next if theirs came too late for it.
    pub fn wait(self) -> Result<(), StateError> {
        let sync = &self.sync;
        if let Some(snapshot) = self.snapshot {
            // A snapshot not put in place leaves two journals: the store
            // stops rather than start a third.
            if let Err(e) = snapshot.finish(sync) {
                sync.fail(e.to_string());
                return Err(e);
            }
        }
        let mut progress = sync.progress();
        loop {
            if let Some(reason) = &progress.failed {
                return Err(StateError::Stopped(reason.clone()));
            }
            if progress.synced >= self.seq {
                return Ok(());
            }
            if progress.syncing {
                progress = sync.synced.wait(progress).unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            progress.syncing = true;
            let (file, target, path) = (Arc::clone(&progress.file), progress.written, progress.path.clone());
            let (retiring, fresh) = (std::mem::take(&mut progress.retiring), std::mem::take(&mut progress.fresh));
            drop(progress);
            let result = sync_journal(&retiring, &file, fresh.then(|| path.parent()).flatten());
            progress = sync.progress();
            progress.syncing = false;
            match result {
                Ok(()) => progress.synced = progress.synced.max(target),
                Err(e) => {
                    progress.failed = Some(format!("cannot sync {}: {e}", path.display()));
                    sync.stopped.store(true, Ordering::Release);
                }
            }
            sync.synced.notify_all();
        }
    }
}

/// Syncs the files appends went to before `file`, then `file`, then the
/// directory holding a new `file`'s name.
fn sync_journal(retiring: &[Arc<File>], file: &File, new_in: Option<&Path>) -> std::io::Result<()> {
    for before in retiring {
        before.sync_data()?;
    }
    file.sync_data()?;
    match new_in {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempfile::TempDir, Arc<GroupSync>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.log");
        let file = Arc::new(File::create(&path).unwrap());
        (dir, GroupSync::new(file, path, 0))
    }

    #[test]
    fn every_writer_returns_once_its_append_is_synced() {
        let (_dir, sync) = journal();
        let pending: Vec<Pending> = (1..=64).map(|seq| sync.written(seq)).collect();
        std::thread::scope(|scope| {
            for p in pending {
                scope.spawn(move || p.wait().unwrap());
            }
        });
        assert_eq!(sync.progress().synced, 64);
    }

    #[test]
    fn a_write_after_a_sync_started_waits_for_the_next_one() {
        let (_dir, sync) = journal();
        let first = sync.written(1);
        // A sync is running for seq 1 when seq 2 is written.
        sync.progress().syncing = true;
        let second = sync.written(2);
        let waiter = std::thread::spawn(move || second.wait());
        // The running sync completes, covering only what it started with.
        {
            let mut progress = sync.progress();
            progress.syncing = false;
            progress.synced = 1;
        }
        sync.synced.notify_all();
        first.wait().unwrap();
        waiter.join().unwrap().unwrap();
        assert_eq!(sync.progress().synced, 2, "seq 2 needed a sync of its own");
    }

    #[test]
    fn a_failed_sync_stops_every_waiter() {
        let (_dir, sync) = journal();
        let pending = sync.written(1);
        sync.progress().failed = Some("disk gone".into());
        sync.stopped.store(true, Ordering::Release);
        assert!(matches!(pending.wait(), Err(StateError::Stopped(reason)) if reason == "disk gone"));
        assert_eq!(sync.failure().as_deref(), Some("disk gone"));
    }
}
