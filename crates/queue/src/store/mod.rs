//! `QueueStore`: opening, recovery, and the operations qmgr performs.
//!
//! This file holds the store itself (opening, the per-message operations
//! qmgr and qctl call, and the record reads and writes under them); the
//! rest by concern:
//! - [`incoming`]: receiving a message up to its commit;
//! - [`bodies`]: reading a queued body, in sled or in segment files;
//! - [`recovery`]: finishing what a crash interrupted, at open.

mod bodies;
mod incoming;
mod recovery;

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postern_envelope::IdGen;
use sled::{IVec, Tree};

use crate::commit::{Committer, Shared, SyncFailure, Target};
use crate::error::QueueError;
use crate::keys::{self, BODY, DUE, ENVELOPE, EXTENT, STATE};
use crate::segments::{Extent, Segments};
use crate::types::{
    CommitStats, Envelope, MessageMeta, QueueState, RcptState, RecoveryReport, StoredMessage,
    Summary,
};
use crate::writes::{self, Writes};
use crate::{QueueId, codec};

pub use bodies::{BodyChunk, BodyReader, SegmentExtents};
pub use incoming::Incoming;

/// Largest value we ever store (body chunks, envelope parts). A body
/// that fits in one chunk stays in sled; a bigger one goes to segments.
pub const CHUNK: usize = 32 * 1024;

/// sled segment size. sled stores any log item larger than a quarter
/// segment as a separate, never-fsynced blob file, and a log item can be a
/// whole leaf node (about 17 entries, more under concurrency). With 8 MiB
/// segments that threshold is ~2 MiB, i.e. room for 60+ entries of
/// [`CHUNK`] bytes, so nothing we store becomes a blob.
const SEGMENT_SIZE: usize = 8 << 20;

/// Stripes of per-message locks that serialise read-modify-write updates.
const LOCK_STRIPES: usize = 64;

pub(crate) struct Inner {
    dir: PathBuf,
    pub(crate) tree: Tree,
    committer: Committer,
    pub(crate) segments: Arc<Segments>,
    pub(crate) ids: IdGen,
    locks: Vec<Mutex<()>>,
    /// The next intent number of `writes`.
    intents: std::sync::atomic::AtomicU64,
    report: RecoveryReport,
    /// Messages whose commit failed and whose records could not be
    /// removed (a full disk refuses even the removal): never shown or
    /// scheduled by this process; recovery at the next open removes them
    /// or, if they did reach the disk, delivers them (a duplicate of the
    /// client's retry, never a loss).
    abandoned: Mutex<std::collections::HashSet<QueueId>>,
}

/// How one delivery attempt ended, for [`QueueStore::finish_attempt`]:
/// each recipient's outcome (by index), the state the message goes to if
/// any recipient is left, and the time of the attempt.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEnd<'a> {
    pub id: QueueId,
    pub outcomes: &'a [(usize, RcptState)],
    pub next: &'a QueueState,
    pub now_unix: i64,
}

/// The durable mail queue. Cheap to clone (all clones share one sled
/// database and one group committer); the directory lock is released when
/// the last clone and the last [`Incoming`] are dropped.
///
/// Every mutating call blocks until its change is on stable storage (sled
/// flush + fdatasync through the group committer); concurrent callers
/// share one sync. The `_then` forms ([`Incoming::commit_then`],
/// [`QueueStore::finish_attempt_then`]) write to sled in place and report
/// through a callback instead, which is what qmgr's async tasks use; qmgr
/// runs the rare blocking calls (qctl's) in `spawn_blocking`.
#[derive(Clone)]
pub struct QueueStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for QueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path, source: std::io::Error) -> QueueError {
    QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn commit_err(f: SyncFailure) -> QueueError {
    match f {
        SyncFailure::Io(s) => QueueError::Commit(s),
        SyncFailure::Fdatasync(s) => QueueError::DurabilityLost(s),
        SyncFailure::Poisoned => QueueError::DurabilityLost(
            "an earlier fdatasync failed; reopen the queue (restart qmgr)".into(),
        ),
        SyncFailure::Closed => QueueError::Commit("queue is shutting down".into()),
    }
}

fn fsync_path(path: &Path) -> Result<(), QueueError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(path, e))
}

impl QueueStore {
    /// Opens (creating if needed) the queue in `dir` and runs recovery.
    /// Fails at once with [`QueueError::Locked`] if another process has it.
    /// `cache_capacity` is sled's page cache size in bytes.
    pub fn open(dir: &Path, cache_capacity: u64) -> Result<QueueStore, QueueError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_capacity)
            .segment_size(SEGMENT_SIZE)
            .open()
            .map_err(|e| match &e {
                // sled reports its failed flock only as text.
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    QueueError::Locked {
                        dir: dir.to_path_buf(),
                    }
                }
                _ => QueueError::Open {
                    dir: dir.to_path_buf(),
                    source: e,
                },
            })?;
        let data_path = dir.join("db");
        // No flock here: sled holds the lock on its own descriptor.
        let data_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&data_path)
            .map_err(|e| io_err(&data_path, e))?;
        // sled writes `conf` and creates its files without fsyncing them or
        // the directory; do it once so a fresh queue survives power loss.
        fsync_path(&dir.join("conf"))?;
        data_file.sync_all().map_err(|e| io_err(&data_path, e))?;
        fsync_path(&dir.join("blobs"))?;
        let bodies = dir.join("bodies");
        let segments = Arc::new(Segments::open(bodies.clone()).map_err(|e| io_err(&bodies, e))?);
        fsync_path(&bodies)?;
        fsync_path(dir)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsync_path(parent)?;
        }

        let shared = Arc::new(Shared::default());
        let tree: Tree = (*db).clone();
        let committer = Committer::start(
            Target {
                db,
                data_file,
                blob_dir: dir.join("blobs"),
                segments: segments.clone(),
            },
            shared,
        )
        .map_err(|e| io_err(dir, e))?;
        let mut inner = Inner {
            dir: dir.to_path_buf(),
            tree,
            committer,
            segments,
            ids: IdGen::new(),
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            intents: std::sync::atomic::AtomicU64::new(0),
            report: RecoveryReport::default(),
            abandoned: Mutex::new(std::collections::HashSet::new()),
        };
        inner.report = inner.recover()?;
        tracing::info!(
            dir = %dir.display(),
            scheduled = inner.report.scheduled,
            held = inner.report.held,
            removed_incomplete = inner.report.removed_incomplete,
            removed_done = inner.report.removed_done,
            corrupt = inner.report.corrupt,
            "queue opened"
        );
        Ok(QueueStore {
            inner: Arc::new(inner),
        })
    }

    /// [`QueueStore::open`], retrying while the directory is locked (a
    /// previous qmgr is still exiting) for up to `total_wait`.
    pub fn open_with_retry(
        dir: &Path,
        cache_capacity: u64,
        total_wait: Duration,
    ) -> Result<QueueStore, QueueError> {
        let deadline = Instant::now() + total_wait;
        loop {
            match QueueStore::open(dir, cache_capacity) {
                Err(QueueError::Locked { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Group-commit counters.
    pub fn stats(&self) -> CommitStats {
        self.inner.committer.shared.stats()
    }

    /// Test hook: make every following sync fail as if the disk were full.
    #[doc(hidden)]
    pub fn inject_commit_failure(&self, on: bool) {
        self.inner
            .committer
            .shared
            .inject_failure
            .store(on, Ordering::SeqCst);
    }

    /// Benchmark hook: one flush+fdatasync per request instead of groups.
    #[doc(hidden)]
    pub fn set_serial_commits(&self, on: bool) {
        self.inner
            .committer
            .shared
            .serial
            .store(on, Ordering::SeqCst);
    }

    /// The envelope and state of a committed message. A record that does not
    /// decode moves the message to the corrupt state and returns
    /// [`QueueError::Corrupt`].
    pub fn get(&self, id: QueueId) -> Result<Option<StoredMessage>, QueueError> {
        let inner = &self.inner;
        if inner.is_abandoned(id) {
            return Ok(None);
        }
        let Some(meta) = inner.read_meta(id)? else {
            return Ok(None);
        };
        let meta = match meta {
            Ok(m) => m,
            Err(reason) => return Err(inner.corrupt_now(id, reason)),
        };
        let env = match inner.read_envelope(id)? {
            Some(Ok(env)) => env,
            Some(Err(reason)) => return Err(inner.corrupt_now(id, reason)),
            None => return Err(inner.corrupt_now(id, "envelope missing".into())),
        };
        Ok(Some(StoredMessage {
            id,
            envelope: env,
            state: meta.state,
            attempts: meta.attempts,
            last_attempt_unix: meta.last_attempt_unix,
        }))
    }

    /// Sets the message-level state (durable).
    pub fn set_state(&self, id: QueueId, state: QueueState) -> Result<(), QueueError> {
        self.inner.update_meta(id, |m| m.state = state)
    }

    /// Puts a message on hold: it stays queued but is never due.
    pub fn hold(&self, id: QueueId) -> Result<(), QueueError> {
        self.set_state(id, QueueState::Hold)
    }

    /// Moves a held message back to active. Returns false (and changes
    /// nothing) if it was not on hold.
    pub fn release(&self, id: QueueId) -> Result<bool, QueueError> {
        let mut released = false;
        self.inner.update_meta(id, |m| {
            if m.state == QueueState::Hold {
                m.state = QueueState::Active;
                released = true;
            }
        })?;
        Ok(released)
    }

    /// Moves a message to the corrupt state (kept for the administrator,
    /// never scheduled). Works even if its state record is unreadable.
    pub fn mark_corrupt(&self, id: QueueId) -> Result<(), QueueError> {
        let inner = &self.inner;
        let _g = inner.lock(id);
        let exists = inner.tree.contains_key(keys::id_key(STATE, id))?
            || inner
                .tree
                .scan_prefix(keys::id_key(ENVELOPE, id))
                .next()
                .is_some();
        if !exists {
            return Err(QueueError::NotFound(id));
        }
        inner.write_corrupt(id)?;
        inner.durable()
    }

    /// Records per-recipient outcomes (index into `envelope.recipients`).
    /// Returns true if every recipient is now final; the caller then
    /// [`QueueStore::remove`]s it (or use [`QueueStore::finish_attempt`]).
    pub fn record_outcomes(
        &self,
        id: QueueId,
        outcomes: &[(usize, RcptState)],
    ) -> Result<bool, QueueError> {
        let inner = &self.inner;
        let _g = inner.lock(id);
        let (_, env, parts) = inner.load(id)?;
        let mut env = env;
        apply_outcomes(id, &mut env, outcomes)?;
        let mut batch = Writes::default();
        inner.put_envelope(&mut batch, id, &env, parts)?;
        inner.apply(batch)?;
        inner.durable()?;
        Ok(env.all_final())
    }

    /// Ends a delivery attempt in one write: records the outcomes, counts
    /// the attempt, and either removes the message (every recipient final;
    /// returns true; not waited for on disk, see below) or moves it to
    /// `next` (durable). A message put on hold meanwhile stays on hold.
    pub fn finish_attempt(&self, end: &AttemptEnd<'_>) -> Result<bool, QueueError> {
        let removed = self.inner.write_attempt(end)?;
        if !removed {
            self.inner.durable()?;
        }
        Ok(removed)
    }

    /// [`QueueStore::finish_attempt`] without blocking on the disk: the
    /// records go to sled here (in memory, short) and `done` is called,
    /// on the group committer's thread when it has to wait for the disk,
    /// so it must only hand the result on.
    pub fn finish_attempt_then(
        &self,
        end: &AttemptEnd<'_>,
        done: impl FnOnce(Result<bool, QueueError>) + Send + 'static,
    ) {
        match self.inner.write_attempt(end) {
            Ok(false) => self.inner.durable_then(move |r| done(r.map(|()| false))),
            other => done(other),
        }
    }

    /// Deletes a message and its body (durable). Returns false if there was
    /// nothing to delete.
    pub fn remove(&self, id: QueueId) -> Result<bool, QueueError> {
        let inner = &self.inner;
        let _g = inner.lock(id);
        let meta = inner.read_meta(id)?.and_then(Result::ok);
        let mut batch = Writes::default();
        let n = inner.purge(&mut batch, id, meta.as_ref())?;
        if n == 0 {
            return Ok(false);
        }
        inner.apply_in_order(batch)?;
        inner.durable()?;
        Ok(true)
    }

    /// Every committed message, in arrival order. Messages whose records
    /// do not decode are moved to corrupt and listed as such.
    pub fn list(&self) -> Result<Vec<Summary>, QueueError> {
        self.list_page(None, usize::MAX)
    }

    /// Up to `limit` messages after `after` (from the first with None), in
    /// arrival order, as [`QueueStore::list`]: a listing of any length is
    /// read a page at a time (`qctl list`, mailq).
    pub fn list_page(
        &self,
        after: Option<QueueId>,
        limit: usize,
    ) -> Result<Vec<Summary>, QueueError> {
        let inner = &self.inner;
        let mut out = Vec::new();
        let start = match after {
            Some(id) => keys::after_id(STATE, id),
            None => vec![STATE],
        };
        for item in inner.tree.range(start..vec![STATE + 1]) {
            if out.len() >= limit {
                break;
            }
            let (k, _) = item?;
            let Some(id) = keys::id_of_key(&k) else {
                continue;
            };
            match self.get(id) {
                Ok(Some(m)) => {
                    let reason = match &m.state {
                        QueueState::Deferred { reason, .. } => Some(reason.clone()),
                        _ => None,
                    };
                    out.push(Summary {
                        id,
                        state: m.state,
                        sender: m.envelope.sender,
                        recipients: m
                            .envelope
                            .recipients
                            .into_iter()
                            .filter(|r| !r.state.is_final())
                            .map(|r| r.address)
                            .collect(),
                        size: m.envelope.size,
                        arrival_unix: m.envelope.arrival_unix,
                        attempts: m.attempts,
                        reason,
                    });
                }
                Ok(None) => {}
                Err(QueueError::Corrupt { reason, .. }) => out.push(Summary {
                    id,
                    state: QueueState::Corrupt,
                    sender: String::new(),
                    recipients: Vec::new(),
                    size: 0,
                    arrival_unix: 0,
                    attempts: 0,
                    reason: Some(reason),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Messages to attempt at `now`: all active ones (arrival order), then
    /// deferred ones whose next try is due (earliest first). Reads only the
    /// due index, not the whole queue.
    pub fn due(&self, now_unix: i64) -> Result<Vec<QueueId>, QueueError> {
        let inner = &self.inner;
        let mut out = Vec::new();
        for item in inner.tree.range(vec![DUE]..keys::due_upper(now_unix)) {
            let (k, _) = item?;
            let Some(id) = keys::id_of_due_key(&k) else {
                inner.tree.remove(&k)?;
                continue;
            };
            if inner.is_abandoned(id) {
                continue;
            }
            // The index may hold stale entries (a state record that was
            // unreadable when it changed); drop those lazily.
            let current = match inner.read_meta(id)? {
                Some(Ok(m)) => keys::due_key(id, &m.state),
                _ => None,
            };
            if current.as_deref() == Some(&k[..]) {
                out.push(id);
            } else {
                inner.tree.remove(&k)?;
            }
        }
        Ok(out)
    }
}

fn apply_outcomes(
    id: QueueId,
    env: &mut Envelope,
    outcomes: &[(usize, RcptState)],
) -> Result<(), QueueError> {
    for (index, state) in outcomes {
        let r = env
            .recipients
            .get_mut(*index)
            .ok_or(QueueError::BadRecipient { id, index: *index })?;
        r.state = state.clone();
    }
    Ok(())
}

/// A decoded record, or why it did not decode.
type Decoded<T> = Result<T, String>;

impl Inner {
    fn is_abandoned(&self, id: QueueId) -> bool {
        self.abandoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id)
    }

    fn lock(&self, id: QueueId) -> MutexGuard<'_, ()> {
        let m = &self.locks[(id.as_u64() % LOCK_STRIPES as u64) as usize];
        // The guarded data is (), so a poisoned lock carries no bad state.
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn durable(&self) -> Result<(), QueueError> {
        self.committer.sync().map_err(commit_err)
    }

    fn durable_then(&self, done: impl FnOnce(Result<(), QueueError>) + Send + 'static) {
        self.committer
            .sync_then(move |r| done(r.map_err(commit_err)));
    }

    /// The records of [`QueueStore::finish_attempt`], applied to sled (not
    /// yet durable). True if the message was removed.
    fn write_attempt(&self, end: &AttemptEnd<'_>) -> Result<bool, QueueError> {
        let &AttemptEnd {
            id,
            outcomes,
            next,
            now_unix,
        } = end;
        let _g = self.lock(id);
        let (meta, mut env, parts) = self.load(id)?;
        apply_outcomes(id, &mut env, outcomes)?;
        let mut batch = Writes::default();
        if env.all_final() {
            // A fully delivered message's removal need not wait for the
            // disk: if it is lost, the message comes back at the next
            // start and is delivered again — the repeated in-flight
            // delivery the queue's promise allows. sled's log is ordered,
            // so the removal can never reach the disk without the writes
            // before it. Anything that stays queued is written durably by
            // the caller.
            self.purge(&mut batch, id, Some(&meta))?;
            self.apply_in_order(batch)?;
            return Ok(true);
        }
        let state = if meta.state == QueueState::Hold {
            QueueState::Hold
        } else {
            next.clone()
        };
        if state != QueueState::Active {
            self.inline_body(&mut batch, id)?;
        }
        self.put_envelope(&mut batch, id, &env, parts)?;
        let new = MessageMeta {
            state,
            attempts: meta.attempts.saturating_add(1),
            last_attempt_unix: Some(now_unix),
        };
        self.put_meta(&mut batch, id, Some(&meta), &new)?;
        self.apply(batch)?;
        Ok(false)
    }

    /// Applies one atomic change (see `writes`); not yet durable.
    fn apply(&self, w: Writes) -> Result<(), QueueError> {
        self.apply_with(w, |tree, w| writes::apply(tree, &self.intents, w))
    }

    /// Applies a commit or a removal (see `writes::apply_in_order`); not
    /// yet durable.
    fn apply_in_order(&self, w: Writes) -> Result<(), QueueError> {
        self.apply_with(w, writes::apply_in_order)
    }

    /// Writes with `write`, then releases the segments the change stopped
    /// pointing into.
    fn apply_with(
        &self,
        mut w: Writes,
        write: impl FnOnce(&Tree, Writes) -> sled::Result<()>,
    ) -> Result<(), QueueError> {
        let released = std::mem::take(&mut w.released);
        write(&self.tree, w)?;
        self.release_segments(released);
        Ok(())
    }

    fn release_segments(&self, segments: Vec<u64>) {
        if self.segments.release(segments) {
            // The freed segment is retired after the next sync: ask for
            // one, or an idle queue would keep the file.
            self.committer.sync_then(|_| {});
        }
    }

    fn read_meta(&self, id: QueueId) -> Result<Option<Decoded<MessageMeta>>, QueueError> {
        Ok(self
            .tree
            .get(keys::id_key(STATE, id))?
            .map(|v| codec::decode::<MessageMeta>(&v)))
    }

    /// The envelope, reassembled from its parts; also returns nothing if
    /// there are no parts.
    fn read_envelope(&self, id: QueueId) -> Result<Option<Decoded<Envelope>>, QueueError> {
        Ok(self.read_envelope_parts(id)?.map(|(env, _)| env))
    }

    fn read_envelope_parts(
        &self,
        id: QueueId,
    ) -> Result<Option<(Decoded<Envelope>, usize)>, QueueError> {
        let mut bytes = Vec::new();
        let mut parts = 0usize;
        let mut gap = false;
        for item in self.tree.scan_prefix(keys::id_key(ENVELOPE, id)) {
            let (k, v) = item?;
            if k.len() != 11 || u16::from_be_bytes([k[9], k[10]]) as usize != parts {
                gap = true;
            }
            bytes.extend_from_slice(&v);
            parts += 1;
        }
        if parts == 0 {
            return Ok(None);
        }
        let env = if gap {
            Err("envelope parts missing".to_string())
        } else {
            codec::decode::<Envelope>(&bytes)
        };
        Ok(Some((env, parts)))
    }

    /// Meta and envelope for an update; undecodable → corrupt.
    fn load(&self, id: QueueId) -> Result<(MessageMeta, Envelope, usize), QueueError> {
        let meta = match self.read_meta(id)? {
            None => return Err(QueueError::NotFound(id)),
            Some(Ok(m)) => m,
            Some(Err(reason)) => return Err(self.corrupt_locked(id, reason)),
        };
        match self.read_envelope_parts(id)? {
            Some((Ok(env), parts)) => Ok((meta, env, parts)),
            Some((Err(reason), _)) => Err(self.corrupt_locked(id, reason)),
            None => Err(self.corrupt_locked(id, "envelope missing".into())),
        }
    }

    fn put_envelope(
        &self,
        batch: &mut Writes,
        id: QueueId,
        env: &Envelope,
        old_parts: usize,
    ) -> Result<(), QueueError> {
        let bytes = codec::encode(env).map_err(QueueError::Encode)?;
        let chunks: Vec<&[u8]> = bytes.chunks(CHUNK).collect();
        if chunks.len() > usize::from(u16::MAX) {
            return Err(QueueError::Encode("envelope too large".into()));
        }
        for (i, c) in chunks.iter().enumerate() {
            batch.insert(keys::envelope_key(id, i as u16), *c);
        }
        for i in chunks.len()..old_parts.min(usize::from(u16::MAX)) {
            batch.remove(keys::envelope_key(id, i as u16));
        }
        Ok(())
    }

    /// Writes a new state record and moves the due-index entry.
    fn put_meta(
        &self,
        batch: &mut Writes,
        id: QueueId,
        old: Option<&MessageMeta>,
        new: &MessageMeta,
    ) -> Result<(), QueueError> {
        // The state record first: `due` drops an index entry that does not
        // match the state it reads, so the new entry must find the new
        // state (after a crash, recovery rebuilds the index anyway).
        batch.insert(
            keys::id_key(STATE, id),
            codec::encode(new).map_err(QueueError::Encode)?,
        );
        let old_due = old.and_then(|m| keys::due_key(id, &m.state));
        let new_due = keys::due_key(id, &new.state);
        if old_due != new_due {
            if let Some(k) = old_due {
                batch.remove(k);
            }
            if let Some(k) = &new_due {
                batch.insert(k.clone(), IVec::default());
            }
        } else if let Some(k) = new_due {
            batch.insert(k, IVec::default());
        }
        Ok(())
    }

    fn update_meta(
        &self,
        id: QueueId,
        change: impl FnOnce(&mut MessageMeta),
    ) -> Result<(), QueueError> {
        let _g = self.lock(id);
        let old = match self.read_meta(id)? {
            None => return Err(QueueError::NotFound(id)),
            Some(Ok(m)) => m,
            Some(Err(reason)) => return Err(self.corrupt_locked(id, reason)),
        };
        let mut new = old.clone();
        change(&mut new);
        if new == old {
            return Ok(());
        }
        let mut batch = Writes::default();
        if new.state != QueueState::Active {
            self.inline_body(&mut batch, id)?;
        }
        self.put_meta(&mut batch, id, Some(&old), &new)?;
        self.apply(batch)?;
        self.durable()
    }

    /// Adds removal of every record of `id` to `batch`, the state record
    /// first (see `writes::apply_in_order`); returns how many.
    fn purge(
        &self,
        batch: &mut Writes,
        id: QueueId,
        meta: Option<&MessageMeta>,
    ) -> Result<usize, QueueError> {
        let mut n = 0;
        for prefix in [STATE, BODY, EXTENT, ENVELOPE] {
            for item in self.tree.scan_prefix(keys::id_key(prefix, id)) {
                let (k, v) = item?;
                if prefix == EXTENT {
                    batch.released.extend(Extent::decode(&v).map(|e| e.segment));
                }
                batch.remove(k);
                n += 1;
            }
        }
        if let Some(k) = meta.and_then(|m| keys::due_key(id, &m.state)) {
            batch.remove(k);
        }
        Ok(n)
    }

    /// State record → Corrupt (keeping the attempt count if readable).
    fn write_corrupt(&self, id: QueueId) -> Result<(), QueueError> {
        let old = self.read_meta(id)?.and_then(Result::ok);
        let new = MessageMeta {
            state: QueueState::Corrupt,
            attempts: old.as_ref().map_or(0, |m| m.attempts),
            last_attempt_unix: old.as_ref().and_then(|m| m.last_attempt_unix),
        };
        let mut batch = Writes::default();
        self.put_meta(&mut batch, id, old.as_ref(), &new)?;
        self.apply(batch)?;
        Ok(())
    }

    /// Moves `id` to corrupt (caller holds its lock) and returns the error
    /// to report.
    fn corrupt_locked(&self, id: QueueId, reason: String) -> QueueError {
        tracing::warn!(%id, %reason, "queue record does not decode; moving message to corrupt");
        if let Err(e) = self.write_corrupt(id).and_then(|()| self.durable()) {
            tracing::error!(%id, error = %e, "could not mark message corrupt");
        }
        QueueError::Corrupt { id, reason }
    }

    fn corrupt_now(&self, id: QueueId, reason: String) -> QueueError {
        let _g = self.lock(id);
        self.corrupt_locked(id, reason)
    }
}
