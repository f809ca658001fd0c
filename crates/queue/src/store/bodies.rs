//! Reading a queued body: [`BodyReader`] over its chunks in sled or its
//! extents in segment files, the [`SegmentExtents`] handed to delivery
//! agents, and moving a body from segments into sled.

use std::fs::File;
use std::sync::Arc;

use sled::IVec;

use crate::QueueId;
use crate::error::QueueError;
use crate::keys::{self, BODY, EXTENT};
use crate::segments::{Extent, Segments};
use crate::writes::Writes;

use super::{CHUNK, Inner, QueueStore, io_err};

impl QueueStore {
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
}

impl Inner {
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
    pub(super) fn inline_body(&self, batch: &mut Writes, id: QueueId) -> Result<(), QueueError> {
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
