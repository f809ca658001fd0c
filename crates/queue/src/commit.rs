//! The group committer: one thread that turns many "make my writes durable"
//! requests into one sled flush plus one fdatasync.
//!
//! A caller first applies its sled writes (in memory), then sends a request
//! and waits for its reply. The thread takes the first request, drains
//! every other request already waiting, and for the whole group:
//!
//! 1. fdatasyncs the body segments written since the last round;
//! 2. runs the staged writes: records that may only reach sled once the
//!    segments are on disk (the commit of a message whose body is in a
//!    segment: sled could write it out at any time after the insert);
//! 3. flushes sled and fdatasyncs its data file;
//! 4. answers every request, then retires segments whose last pointer's
//!    removal this sync made durable.
//!
//! Every drained request's writes were applied before it was sent, so the
//! one flush covers them all.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::segments::Segments;
use crate::types::CommitStats;

/// Why a durable write failed; Clone because one failure answers a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncFailure {
    /// The sled flush or a blob fsync failed; a later sync may succeed.
    Io(String),
    /// This fdatasync failed, which poisons the store (see `Poisoned`).
    Fdatasync(String),
    /// An earlier fdatasync failed; after that the kernel may have dropped
    /// dirty pages (fsyncgate), so nothing can be promised until reopen.
    Poisoned,
    /// The store is shutting down.
    Closed,
}

#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub requests: AtomicU64,
    pub syncs: AtomicU64,
    pub failed_syncs: AtomicU64,
    pub blob_files_synced: AtomicU64,
    pub poisoned: AtomicBool,
    pub inject_failure: AtomicBool,
    /// false = one sync per request (only for measuring the difference).
    pub serial: AtomicBool,
}

impl Shared {
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            requests: self.requests.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            failed_syncs: self.failed_syncs.load(Ordering::Relaxed),
            blob_files_synced: self.blob_files_synced.load(Ordering::Relaxed),
        }
    }
}

/// Called once with the outcome of the sync that covered the request (on
/// the committer thread: it must be short and must not block).
pub(crate) type Reply = Box<dyn FnOnce(Result<(), SyncFailure>) + Send>;

/// Writes to make once the body segments are durable (step 2 above):
/// called with the outcome of the segment sync, it writes to sled (short,
/// in memory) and returns the reply for the sled sync.
pub(crate) type Stage = Box<dyn FnOnce(Result<(), SyncFailure>) -> Reply + Send>;

#[derive(Debug)]
pub(crate) struct Committer {
    tx: Option<mpsc::Sender<Stage>>,
    thread: Option<JoinHandle<()>>,
    pub(crate) shared: Arc<Shared>,
}

/// What the committer thread needs to make sled's log durable.
pub(crate) struct Target {
    pub db: sled::Db,
    /// sled's log file (`<dir>/db`), opened once by us; fdatasync is per
    /// inode, so our descriptor covers sled's writes.
    pub data_file: File,
    /// `<dir>/blobs`: sled writes values/nodes over its blob threshold
    /// there and never fsyncs them. Our layout keeps it empty; if a file
    /// ever appears we fsync it (and the directory) rather than lose it.
    pub blob_dir: PathBuf,
    pub segments: Arc<Segments>,
}

impl Committer {
    pub(crate) fn start(target: Target, shared: Arc<Shared>) -> std::io::Result<Committer> {
        let (tx, rx) = mpsc::channel::<Stage>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("queue-commit".into())
            .spawn(move || run(target, rx, sh))?;
        Ok(Committer {
            tx: Some(tx),
            thread: Some(thread),
            shared,
        })
    }

    /// Blocks until everything written to sled before this call is on
    /// stable storage.
    pub(crate) fn sync(&self) -> Result<(), SyncFailure> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        self.sync_then(move |r| {
            let _ = reply_tx.send(r);
        });
        reply_rx.recv().unwrap_or(Err(SyncFailure::Closed))
    }

    /// Without blocking: `done` is called (on the committer thread, or
    /// here at once if the committer is gone) once everything written to
    /// sled before this call is on stable storage, or the sync failed. An
    /// async caller completes a channel in `done` instead of parking a
    /// thread on [`Committer::sync`].
    pub(crate) fn sync_then(&self, done: impl FnOnce(Result<(), SyncFailure>) + Send + 'static) {
        // Nothing to write: the reply sees the segment sync's outcome in
        // the round's result anyway.
        self.sync_staged(move |_| Box::new(done));
    }

    /// Runs `stage` on the committer thread once the body segments are
    /// durable (or their sync failed), then syncs sled and calls the reply
    /// `stage` returned.
    pub(crate) fn sync_staged(
        &self,
        stage: impl FnOnce(Result<(), SyncFailure>) -> Reply + Send + 'static,
    ) {
        self.shared.requests.fetch_add(1, Ordering::Relaxed);
        let stage: Stage = Box::new(stage);
        let stage = match &self.tx {
            Some(tx) => match tx.send(stage) {
                Ok(()) => return,
                Err(mpsc::SendError(stage)) => stage,
            },
            None => stage,
        };
        stage(Err(SyncFailure::Closed))(Err(SyncFailure::Closed));
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; join so sled's Db (and
        // with it the directory lock) is released when the store is gone.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            // The last reference can go on the committer thread itself
            // (a reply closure held it); that thread then ends on its own.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

fn run(target: Target, rx: mpsc::Receiver<Stage>, shared: Arc<Shared>) {
    let mut blobs = BlobWatch::default();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        if !shared.serial.load(Ordering::Relaxed) {
            while let Ok(more) = rx.try_recv() {
                group.push(more);
            }
        }
        // Taken before the flush: their pointers' removals were applied
        // before they were released, so this sync covers them.
        let unreferenced = target.segments.take_unreferenced();
        let bodies = sync_segments(&target, &shared);
        let replies: Vec<Reply> = group
            .into_iter()
            .map(|stage| stage(bodies.clone()))
            .collect();
        let result = bodies.and_then(|()| sync_sled(&target, &shared, &mut blobs));
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            shared.failed_syncs.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = ?e, waiters = replies.len(), "queue commit failed");
        }
        for reply in replies {
            reply(result.clone());
        }
        match result {
            Ok(()) => target.segments.retire(unreferenced),
            Err(_) => target.segments.restore_unreferenced(unreferenced),
        }
    }
}

fn sync_segments(t: &Target, shared: &Shared) -> Result<(), SyncFailure> {
    if shared.poisoned.load(Ordering::SeqCst) {
        return Err(SyncFailure::Poisoned);
    }
    if shared.inject_failure.load(Ordering::SeqCst) {
        return Err(SyncFailure::Io("injected commit failure".into()));
    }
    if let Err(e) = t.segments.sync() {
        shared.poisoned.store(true, Ordering::SeqCst);
        return Err(SyncFailure::Fdatasync(format!(
            "fdatasync of body segments: {e}"
        )));
    }
    Ok(())
}

fn sync_sled(t: &Target, shared: &Shared, blobs: &mut BlobWatch) -> Result<(), SyncFailure> {
    // sled's flush only writes its buffers and calls sync_file_range, which
    // neither flushes the device cache nor the file size.
    t.db.flush()
        .map_err(|e| SyncFailure::Io(format!("sled flush: {e}")))?;
    if blobs.changed(&t.blob_dir) {
        sync_blobs(t, shared, &mut blobs.synced)?;
    }
    if let Err(e) = t.data_file.sync_data() {
        shared.poisoned.store(true, Ordering::SeqCst);
        return Err(SyncFailure::Fdatasync(format!(
            "fdatasync of sled data file: {e}"
        )));
    }
    Ok(())
}

/// Whether `blobs/` may hold a file not yet fsynced: one stat per sync
/// instead of reading the directory (it stays empty in our layout).
#[derive(Default)]
struct BlobWatch {
    /// The directory's modification time and size when last read.
    seen: Option<(std::time::SystemTime, u64)>,
    synced: HashSet<OsString>,
}

impl BlobWatch {
    fn changed(&mut self, dir: &std::path::Path) -> bool {
        let now = std::fs::metadata(dir)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if now.is_some() && now == self.seen {
            return false;
        }
        // A time within the last seconds may not move when a file is
        // added in the same clock tick: trust only an older one (and with
        // no such directory or no time, read it every time).
        let settled = now.is_some_and(|(mtime, _)| {
            mtime
                .elapsed()
                .is_ok_and(|age| age > Duration::from_secs(2))
        });
        self.seen = if settled { now } else { None };
        true
    }
}

fn sync_blobs(
    t: &Target,
    shared: &Shared,
    synced: &mut HashSet<OsString>,
) -> Result<(), SyncFailure> {
    let io = |what: &str, e: std::io::Error| SyncFailure::Io(format!("{what}: {e}"));
    let entries = match std::fs::read_dir(&t.blob_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("reading blobs dir", e)),
    };
    let mut present = HashSet::new();
    let mut new = 0;
    for entry in entries {
        let entry = entry.map_err(|e| io("reading blobs dir", e))?;
        let name = entry.file_name();
        if !synced.contains(&name) {
            File::open(entry.path())
                .and_then(|f| f.sync_all())
                .map_err(|e| io("fsync of sled blob", e))?;
            new += 1;
            tracing::warn!(blob = ?entry.path(), "sled wrote a blob file; fsynced it");
        }
        present.insert(name);
    }
    if new > 0 {
        File::open(&t.blob_dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("fsync of blobs dir", e))?;
        shared.blob_files_synced.fetch_add(new, Ordering::Relaxed);
    }
    // Forget blobs sled has garbage-collected.
    *synced = present;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_watch_reads_the_directory_only_when_it_may_have_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("blobs");
        let mut watch = BlobWatch::default();
        assert!(watch.changed(&dir), "no directory: always read");
        std::fs::create_dir(&dir).unwrap();
        assert!(watch.changed(&dir));
        assert!(watch.changed(&dir), "a fresh time is not trusted");

        let old = std::time::SystemTime::now() - Duration::from_secs(60);
        File::open(&dir).unwrap().set_modified(old).unwrap();
        assert!(watch.changed(&dir), "first sight of the settled time");
        assert!(!watch.changed(&dir), "unchanged: no read");

        File::create(dir.join("blob-1")).unwrap();
        assert!(watch.changed(&dir), "a new file moves the time");
    }
}
