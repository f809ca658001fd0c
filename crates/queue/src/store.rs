//! `QueueStore`: opening, recovery, and the operations qmgr performs.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sled::{IVec, Tree};

use crate::commit::{Committer, Reply, Shared, SyncFailure, Target};
use crate::error::QueueError;
use crate::keys::{self, BODY, DUE, ENVELOPE, EXTENT, INCOMING, STATE};
use crate::segments::{Extent, Segments};
use crate::types::{
    CommitStats, Envelope, MessageMeta, QueueState, RcptState, RecoveryReport, StoredMessage,
    Summary,
};
use crate::writes::{self, Writes};
use crate::{QueueId, codec};
use postern_envelope::IdGen;

/// Largest value we ever store (body chunks, envelope parts). A body
/// that fits in one chunk stays in sled; a bigger one goes to segments.
pub const CHUNK: usize = 32 * 1024;

/// Largest extent written to a segment: bodies are buffered up to this
/// much, so a 100 KiB message is one write.
const EXTENT_BYTES: usize = 128 * 1024;

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

    /// What recovery found when this store was opened.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.report
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

    /// Starts receiving a message. Its body is written as it arrives (to
    /// sled, or to a segment once it outgrows one chunk), in an "incoming"
    /// state that recovery deletes.
    pub fn begin_message(&self) -> Result<Incoming, QueueError> {
        let id = self.inner.ids.next();
        Ok(Incoming {
            inner: self.inner.clone(),
            id,
            buf: Vec::new(),
            next_chunk: 0,
            size: 0,
            far: false,
            finished: false,
        })
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

    /// Streams the body chunk by chunk (also an `io::Read`).
    pub fn body_reader(&self, id: QueueId) -> Result<BodyReader, QueueError> {
        let msg = self.get(id)?.ok_or(QueueError::NotFound(id))?;
        let inner = &self.inner;
        // Under the lock, so a body moving into sled meanwhile is seen
        // either whole in segments or not; the reader holds a reference on
        // its segments, so none is written over while it reads.
        let (far, pinned) = {
            let _g = inner.lock(id);
            let far = inner.extents(id)?;
            let pinned = inner
                .segments
                .pin(far.iter().filter_map(|(_, e)| Some(e.as_ref()?.segment)));
            (far, pinned)
        };
        let source = if far.is_empty() {
            Source::Inline(Box::new(inner.tree.scan_prefix(keys::id_key(BODY, id))))
        } else {
            let extents = far
                .into_iter()
                .map(|(k, e)| (k, e.and_then(|e| inner.segments.file(e.segment)), e))
                .collect::<Vec<_>>();
            Source::Far {
                inner: inner.clone(),
                extents: extents.into_iter(),
                pinned,
            }
        };
        Ok(BodyReader {
            source,
            id,
            next_chunk: 0,
            seen: 0,
            expected: msg.envelope.size,
            current: None,
            pos: 0,
        })
    }

    /// The whole body in memory; use [`QueueStore::body_reader`] for big
    /// messages.
    pub fn read_body(&self, id: QueueId) -> Result<Vec<u8>, QueueError> {
        let mut out = Vec::new();
        for chunk in self.body_reader(id)? {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
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
    pub fn finish_attempt(
        &self,
        id: QueueId,
        outcomes: &[(usize, RcptState)],
        next: QueueState,
        now_unix: i64,
    ) -> Result<bool, QueueError> {
        let removed = self.inner.write_attempt(id, outcomes, next, now_unix)?;
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
        id: QueueId,
        outcomes: &[(usize, RcptState)],
        next: QueueState,
        now_unix: i64,
        done: impl FnOnce(Result<bool, QueueError>) + Send + 'static,
    ) {
        match self.inner.write_attempt(id, outcomes, next, now_unix) {
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

    /// Every committed message, in arrival order, for `qctl list` / mailq.
    /// Messages whose records do not decode are moved to corrupt and listed
    /// as such.
    pub fn list(&self) -> Result<Vec<Summary>, QueueError> {
        let inner = &self.inner;
        let mut out = Vec::new();
        for item in inner.tree.scan_prefix([STATE]) {
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
    fn write_attempt(
        &self,
        id: QueueId,
        outcomes: &[(usize, RcptState)],
        next: QueueState,
        now_unix: i64,
    ) -> Result<bool, QueueError> {
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
            next
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

    /// The `X` records of a message's body, in order (empty if the body is
    /// in sled).
    fn extents(&self, id: QueueId) -> Result<Vec<(IVec, Option<Extent>)>, QueueError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(keys::id_key(EXTENT, id)) {
            let (k, v) = item?;
            out.push((k, Extent::decode(&v)));
        }
        Ok(out)
    }

    /// Copies a body held in segments into sled (`B` chunks) and adds the
    /// removal of its `X` records to `batch`: a deferred or held message
    /// may stay for days and must not keep a segment alive. The chunks are
    /// written at once (sled reads `X` first while both exist; recovery
    /// drops such `B` leftovers). Caller holds the message lock.
    fn inline_body(&self, batch: &mut Writes, id: QueueId) -> Result<(), QueueError> {
        let far = self.extents(id)?;
        let mut chunk = 0u32;
        for (_, extent) in &far {
            let data = extent
                .and_then(|e| Some((self.segments.file(e.segment)?, e)))
                .map(|(file, e)| Segments::read(&file, &e));
            let Some(Ok(data)) = data else {
                // Delivery reports the damage; leave the records as they are.
                tracing::warn!(%id, "body extent unreadable; left in its segment");
                return Ok(());
            };
            for piece in data.chunks(CHUNK) {
                self.tree.insert(keys::body_key(BODY, id, chunk), piece)?;
                chunk += 1;
            }
        }
        for (key, extent) in far {
            batch.remove(key);
            batch.released.extend(extent.map(|e| e.segment));
        }
        Ok(())
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

    /// Runs at open, before anyone else can see the store.
    fn recover(&self) -> Result<RecoveryReport, QueueError> {
        let mut report = RecoveryReport::default();
        let tree = &self.tree;

        // 0. Changes a crash interrupted are finished first.
        let (next_intent, replayed) = writes::replay(tree)?;
        self.intents.store(next_intent, Ordering::Relaxed);
        if replayed > 0 {
            tracing::info!(replayed, "queue: finished interrupted writes");
        }

        // 1. Incoming markers, written by earlier versions for messages
        // being received; those records have no state record and go in
        // step 5 with any others.
        for k in tree.scan_prefix([INCOMING]).keys() {
            tree.remove(k?)?;
        }

        // 2. The due index is derived data: rebuild it from state records.
        let mut batch = Writes::default();
        for k in tree.scan_prefix([DUE]).keys() {
            batch.remove(k?);
        }
        self.apply(batch)?;

        // 3. Bodies whose extents point past the end of their segment (or
        // to none) did not reach the disk: their messages go to corrupt.
        let on_disk = self
            .segments
            .on_disk()
            .map_err(|e| io_err(self.segments.dir(), e))?;
        let mut broken = std::collections::BTreeSet::new();
        for item in tree.scan_prefix([EXTENT]) {
            let (k, v) = item?;
            let covered = Extent::decode(&v).is_some_and(|e| Segments::covers(&on_disk, &e));
            if let Some(id) = keys::id_of_key(&k).filter(|_| !covered) {
                broken.insert(id);
            }
        }
        for id in broken {
            if tree.contains_key(keys::id_key(STATE, id))? {
                tracing::warn!(%id, "body segment missing or short; message moved to corrupt");
                self.write_corrupt(id)?;
            }
        }

        // 4. Committed messages.
        let ids: Vec<QueueId> = tree
            .scan_prefix([STATE])
            .keys()
            .filter_map(|k| k.ok().and_then(|k| keys::id_of_key(&k)))
            .collect();
        for id in ids {
            self.ids.raise_floor(id);
            let meta = match self.read_meta(id)? {
                Some(Ok(m)) => m,
                Some(Err(reason)) => {
                    tracing::warn!(%id, %reason, "unreadable state record; message moved to corrupt");
                    self.write_corrupt(id)?;
                    report.corrupt += 1;
                    continue;
                }
                None => continue,
            };
            if meta.state == QueueState::Corrupt {
                report.corrupt += 1;
                continue;
            }
            let env = match self.read_envelope(id)? {
                Some(Ok(env)) => env,
                other => {
                    let reason = match other {
                        Some(Err(r)) => r,
                        _ => "envelope missing".into(),
                    };
                    tracing::warn!(%id, %reason, "unreadable envelope; message moved to corrupt");
                    self.write_corrupt(id)?;
                    report.corrupt += 1;
                    continue;
                }
            };
            if env.all_final() {
                let mut batch = Writes::default();
                self.purge(&mut batch, id, Some(&meta))?;
                self.apply_in_order(batch)?;
                report.removed_done += 1;
            } else if let Some(k) = keys::due_key(id, &meta.state) {
                tree.insert(k, IVec::default())?;
                report.scheduled += 1;
            } else {
                report.held += 1;
            }
        }

        // 5. Body or envelope records with neither a state record nor an
        // incoming marker (e.g. chunks that reached disk before the marker
        // did): leftovers of an unfinished receive.
        for prefix in [BODY, EXTENT, ENVELOPE] {
            let mut from = vec![prefix];
            loop {
                let next = tree
                    .range(from.clone()..vec![prefix + 1])
                    .next()
                    .transpose()?;
                let Some((k, _)) = next else { break };
                let Some(id) = keys::id_of_key(&k) else {
                    tree.remove(&k)?;
                    continue;
                };
                self.ids.raise_floor(id);
                if !tree.contains_key(keys::id_key(STATE, id))? {
                    let mut batch = Writes::default();
                    self.purge(&mut batch, id, None)?;
                    self.apply_in_order(batch)?;
                    report.removed_incomplete += 1;
                }
                from = keys::after_id(prefix, id);
            }
        }

        // 6. Pointers into each segment; segments nothing points to are
        // deleted. `B` chunks of a body that also has extents are left
        // from an interrupted `inline_body`: the extents are the body.
        let mut refs = std::collections::HashMap::<u64, u64>::new();
        let mut last = None;
        for item in tree.scan_prefix([EXTENT]) {
            let (k, v) = item?;
            if let Some(e) = Extent::decode(&v) {
                *refs.entry(e.segment).or_default() += 1;
            }
            let id = keys::id_of_key(&k);
            if id != last
                && let Some(id) = id
            {
                for k in tree.scan_prefix(keys::id_key(BODY, id)).keys() {
                    tree.remove(k?)?;
                }
            }
            last = id;
        }
        self.durable()?;
        self.segments
            .adopt(&on_disk, &refs)
            .map_err(|e| io_err(self.segments.dir(), e))?;
        Ok(report)
    }
}

/// A message being received. Body bytes are written as they arrive: the
/// first [`CHUNK`] bytes are buffered, and a body that stays within them
/// goes to sled at commit; a bigger one goes to a segment in extents of up
/// to 128 KiB. Dropping it without `commit` or `abort` discards the
/// message.
pub struct Incoming {
    pub(crate) inner: Arc<Inner>,
    id: QueueId,
    buf: Vec<u8>,
    next_chunk: u32,
    size: u64,
    /// The body outgrew one chunk: it goes to segments.
    far: bool,
    pub(crate) finished: bool,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The queue ID this message will have.
    pub fn id(&self) -> QueueId {
        self.id
    }

    /// Body bytes received so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends body bytes (any length; smtpd sends up to 64 KiB at a time).
    /// Not durable until `commit`.
    pub fn append_body(&mut self, mut data: &[u8]) -> Result<(), QueueError> {
        self.size += data.len() as u64;
        while !data.is_empty() {
            if self.buf.len() == CHUNK {
                self.far = true;
            }
            let limit = if self.far { EXTENT_BYTES } else { CHUNK };
            if self.far && self.buf.is_empty() && data.len() >= limit {
                // Write straight from the caller's buffer.
                self.write_extent(&data[..limit])?;
                data = &data[limit..];
                continue;
            }
            let take = (limit - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.far && self.buf.len() == limit {
                let full = std::mem::take(&mut self.buf);
                self.write_extent(&full)?;
                self.buf = full;
                self.buf.clear();
            }
        }
        Ok(())
    }

    fn write_extent(&mut self, data: &[u8]) -> Result<(), QueueError> {
        let segments = &self.inner.segments;
        let extent = segments
            .append(data)
            .map_err(|e| io_err(segments.dir(), e))?;
        let key = keys::body_key(EXTENT, self.id, self.next_chunk);
        if let Err(e) = self.inner.tree.insert(key, &extent.encode()) {
            segments.release([extent.segment]);
            return Err(e.into());
        }
        self.next_chunk += 1;
        Ok(())
    }

    /// Writes what is buffered: the whole body of a small message (to
    /// sled) or the last extent of a big one.
    fn flush_body(&mut self) -> Result<(), QueueError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let rest = std::mem::take(&mut self.buf);
        if self.far {
            return self.write_extent(&rest);
        }
        self.inner
            .tree
            .insert(keys::body_key(BODY, self.id, self.next_chunk), rest)?;
        self.next_chunk += 1;
        Ok(())
    }

    /// Stores the envelope and makes envelope and body durable. Returns
    /// only after they are on stable storage (flush + fdatasync, shared
    /// with concurrent commits). Blocking: async callers use
    /// [`Incoming::commit_then`]. On error nothing of the message remains
    /// and the client gets `451 4.3.0`.
    pub fn commit(self, envelope: Envelope) -> Result<QueueId, QueueError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.commit_then(envelope, move |r| {
            let _ = tx.send(r);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(commit_err(SyncFailure::Closed)))
    }

    /// [`Incoming::commit`] without blocking on the disk: the body is
    /// written here, the commit records on the group committer's thread
    /// once the body is on disk (see `commit`), and `done` is called there
    /// once they are too — so it must only hand the result on (complete a
    /// channel). On error nothing of the message remains, as with
    /// `commit`.
    pub fn commit_then(
        mut self,
        mut envelope: Envelope,
        done: impl FnOnce(Result<QueueId, QueueError>) + Send + 'static,
    ) {
        self.finished = true;
        let id = self.id;
        if let Err(e) = self.flush_body() {
            self.discard();
            return done(Err(e));
        }
        let inner = self.inner.clone();
        inner.committer.sync_staged(move |bodies| -> Reply {
            let written = bodies
                .map_err(commit_err)
                .and_then(|()| self.write_commit(&mut envelope));
            if let Err(e) = written {
                self.discard();
                drop(self);
                return Box::new(move |_| done(Err(e)));
            }
            Box::new(move |synced| {
                if synced.is_err() {
                    // If the sync failed the records may or may not be on
                    // disk; if they are and this removal is lost, the
                    // message would be delivered although the client was
                    // told 451 — a duplicate, never a loss.
                    self.discard();
                }
                // The store goes before the waiter wakes: it may close it.
                drop(self);
                done(synced.map_err(commit_err).map(|()| id))
            })
        });
    }

    /// The commit's records, applied to sled (not yet durable).
    fn write_commit(&mut self, envelope: &mut Envelope) -> Result<(), QueueError> {
        envelope.size = self.size;
        let inner = &self.inner;
        let mut batch = Writes::default();
        inner.put_envelope(&mut batch, self.id, envelope, 0)?;
        let meta = MessageMeta {
            state: QueueState::Active,
            attempts: 0,
            last_attempt_unix: None,
        };
        inner.put_meta(&mut batch, self.id, None, &meta)?;
        // The state record, written after the envelope, is what turns the
        // message from incoming into queued.
        inner.apply_in_order(batch)?;
        Ok(())
    }

    /// Discards the partial message.
    pub fn abort(mut self) -> Result<(), QueueError> {
        self.finished = true;
        let mut batch = Writes::default();
        self.inner.purge(&mut batch, self.id, None)?;
        self.inner.apply_in_order(batch)?;
        Ok(())
    }

    fn discard(&self) {
        let mut batch = Writes::default();
        // A failed commit may already have added the due-index entry.
        let committed = MessageMeta {
            state: QueueState::Active,
            attempts: 0,
            last_attempt_unix: None,
        };
        let res = self
            .inner
            .purge(&mut batch, self.id, Some(&committed))
            .and_then(|_| self.inner.apply_in_order(batch));
        if let Err(e) = res {
            // Recovery removes it at the next open; until then it is hidden.
            tracing::warn!(id = %self.id, error = %e, "could not discard message");
            self.inner
                .abandoned
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(self.id);
        }
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.finished {
            self.discard();
        }
    }
}

/// One piece of a body: a sled value or bytes read from a segment.
pub struct BodyChunk(ChunkBytes);

enum ChunkBytes {
    Inline(IVec),
    Far(Vec<u8>),
}

impl std::ops::Deref for BodyChunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            ChunkBytes::Inline(v) => v,
            ChunkBytes::Far(v) => v,
        }
    }
}

impl AsRef<[u8]> for BodyChunk {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl BodyChunk {
    /// The bytes as a `Vec` (no copy for a piece read from a segment).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            ChunkBytes::Inline(v) => v.to_vec(),
            ChunkBytes::Far(v) => v,
        }
    }
}

impl std::fmt::Debug for BodyChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BodyChunk({} bytes)", self.len())
    }
}

/// A body's place in the segment files ([`BodyReader::segment_extents`]).
#[derive(Debug)]
pub struct SegmentExtents {
    /// Each segment file once, opened read-only.
    pub files: Vec<Arc<File>>,
    /// In order: (index into `files`, offset, length).
    pub extents: Vec<(usize, u64, u32)>,
}

/// Where a body is read from: sled's `B` chunks, or the `X` extents with
/// their segment files (opened when the reader was made, so the files
/// stay readable even if the segment is unlinked meanwhile).
enum Source {
    Inline(Box<sled::Iter>),
    Far {
        inner: Arc<Inner>,
        extents: std::vec::IntoIter<(IVec, Option<Arc<File>>, Option<Extent>)>,
        /// References held on the segments until the reader is dropped.
        pinned: Vec<u64>,
    },
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Source::Far { inner, pinned, .. } = self {
            inner.release_segments(std::mem::take(pinned));
        }
    }
}

/// Streams a message body in order; an iterator of chunks and an
/// `io::Read`. Ends with an error if chunks are missing or the message
/// vanished meanwhile.
pub struct BodyReader {
    source: Source,
    id: QueueId,
    next_chunk: u32,
    seen: u64,
    expected: u64,
    current: Option<BodyChunk>,
    pos: usize,
}

impl std::fmt::Debug for BodyReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyReader")
            .field("id", &self.id)
            .field("seen", &self.seen)
            .field("expected", &self.expected)
            .finish_non_exhaustive()
    }
}

impl BodyReader {
    /// Where the rest of a body kept in segment files is: the files (read
    /// only, each once) and the extents as (file index, offset, length).
    /// qmgr hands these to a delivery agent instead of reading the body.
    /// The segments stay as they are until this reader is dropped. None
    /// for a body in sled, or one whose segment is missing (reading it
    /// reports that).
    pub fn segment_extents(&self) -> Option<SegmentExtents> {
        let Source::Far { extents, .. } = &self.source else {
            return None;
        };
        let mut files: Vec<Arc<File>> = Vec::new();
        let mut out = Vec::new();
        for (_, file, extent) in extents.as_slice() {
            let (file, extent) = (file.as_ref()?, extent.as_ref()?);
            let index = match files.iter().position(|f| Arc::ptr_eq(f, file)) {
                Some(i) => i,
                None => {
                    files.push(file.clone());
                    files.len() - 1
                }
            };
            out.push((index, extent.offset, extent.len));
        }
        let total: u64 = out.iter().map(|&(_, _, len)| u64::from(len)).sum();
        (total == self.expected - self.seen).then_some(SegmentExtents {
            files,
            extents: out,
        })
    }

    fn corrupt(&mut self, reason: String) -> Option<Result<BodyChunk, QueueError>> {
        self.expected = self.seen; // stop reporting twice
        Some(Err(QueueError::Corrupt {
            id: self.id,
            reason,
        }))
    }

    /// The next stored piece and its key.
    fn next_piece(&mut self) -> Option<Result<(IVec, BodyChunk), QueueError>> {
        match &mut self.source {
            Source::Inline(iter) => Some(
                iter.next()?
                    .map(|(k, v)| (k, BodyChunk(ChunkBytes::Inline(v))))
                    .map_err(QueueError::from),
            ),
            Source::Far { inner, extents, .. } => {
                let (k, file, extent) = extents.next()?;
                let (Some(file), Some(extent)) = (file, extent) else {
                    return Some(Err(QueueError::Corrupt {
                        id: self.id,
                        reason: "body segment missing".into(),
                    }));
                };
                Some(
                    Segments::read(&file, &extent)
                        .map(|data| (k, BodyChunk(ChunkBytes::Far(data))))
                        .map_err(|e| io_err(inner.segments.dir(), e)),
                )
            }
        }
    }
}

impl Iterator for BodyReader {
    type Item = Result<BodyChunk, QueueError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_piece() {
            Some(Ok((k, chunk))) => {
                if keys::chunk_of_key(&k) != Some(self.next_chunk) {
                    let n = self.next_chunk;
                    return self.corrupt(format!("body chunk {n} missing"));
                }
                self.next_chunk += 1;
                self.seen += chunk.len() as u64;
                Some(Ok(chunk))
            }
            Some(Err(e)) => {
                self.expected = self.seen; // stop reporting twice
                Some(Err(e))
            }
            None if self.seen != self.expected => {
                let (seen, expected) = (self.seen, self.expected);
                self.corrupt(format!("body has {seen} bytes, envelope says {expected}"))
            }
            None => None,
        }
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(cur) = &self.current
                && self.pos < cur.len()
            {
                let n = (cur.len() - self.pos).min(out.len());
                out[..n].copy_from_slice(&cur[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.next() {
                Some(Ok(chunk)) => {
                    self.current = Some(chunk);
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
    }
}
