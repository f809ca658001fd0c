//! Receiving a message: [`Incoming`], from [`QueueStore::begin_message`]
//! to its commit or abort, with the body buffered up to [`CHUNK`] bytes in
//! sled and beyond that written to segment files in extents.

use std::sync::Arc;

use crate::QueueId;
use crate::commit::{Reply, SyncFailure};
use crate::error::QueueError;
use crate::keys::{self, BODY, EXTENT};
use crate::types::{Envelope, MessageMeta, QueueState};
use crate::writes::Writes;

use super::{CHUNK, Inner, QueueStore, commit_err, io_err};

/// Largest extent written to a segment: bodies are buffered up to this
/// much, so a 100 KiB message is one write.
const EXTENT_BYTES: usize = 128 * 1024;

impl QueueStore {
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
            hold: false,
            finished: false,
        })
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
    /// Commit into the hold queue instead of active.
    hold: bool,
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
    /// Makes the commit put the message on hold (Postfix's cleanup writes
    /// such mail straight into the hold queue): it is queued, never due,
    /// and waits for [`QueueStore::release`]. There is no moment at which
    /// it is active, so a crash cannot let it be delivered.
    pub fn hold(&mut self) {
        self.hold = true;
    }

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
        let state = if self.hold {
            // A held message may wait for days: its body must not pin a
            // segment (the body is on disk already, see `commit`).
            inner.inline_body(&mut batch, self.id)?;
            QueueState::Hold
        } else {
            QueueState::Active
        };
        let meta = MessageMeta {
            state,
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
