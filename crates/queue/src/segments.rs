//! Body segments: the bodies of messages bigger than [`CHUNK`] live in
//! append-only files under `<queue>/bodies/`, not in sled.
//!
//! sled rewrites a whole leaf node (up to ~17 values) every tenth change
//! to it and at every split, so 32 KiB body values were written to disk
//! several times over: most of qmgr's CPU at 100 KiB per message. Here a
//! body is written once. sled keeps, per extent, a 20-byte `X id n` record
//! pointing into a segment ([`Extent`]).
//!
//! - **Appending:** one active segment at a time; a writer reserves its
//!   range under the lock and writes it with `pwrite` outside it, so
//!   concurrent messages interleave their extents. A segment is sealed
//!   when it passes [`SEGMENT_BYTES`].
//! - **Durability:** the group committer calls [`Segments::sync`]
//!   (fdatasync of every segment written since, and of `bodies/` after a
//!   new file) before it writes a commit record to sled and syncs sled, so
//!   a message is never queued without its body on disk.
//! - **Freeing:** each segment counts the extents that point into it and
//!   the readers using it (a `BodyReader`, whose files qmgr may hand to a
//!   delivery agent), so no file is written over while it is read.
//!   When the count reaches zero the segment is sealed (if it was the
//!   active one) and retired after the next sled sync (the removal of the
//!   last pointer is then on disk). Up to [`SPARES`] retired files are
//!   kept and written over from the start when a new segment is needed:
//!   their blocks and cached pages are already there, which spares the
//!   kernel a file's allocation, its truncation at unlink, and the size
//!   updates on every fdatasync. Others are unlinked. Recovery counts the
//!   pointers again and deletes every segment nothing points to, so a
//!   crash leaks no file.
//! - **Long stays:** a message that is deferred or held would pin its
//!   whole segment, so the store copies such a body back into sled
//!   (`Inner::inline_body`); segments hold only mail in flight.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(doc)]
use crate::store::CHUNK;

/// A segment is sealed (no more appends) once it holds this much.
const SEGMENT_BYTES: u64 = 16 << 20;

/// Retired segment files kept for reuse.
const SPARES: usize = 2;

/// Extents start on a page boundary: over a reused file, a write of whole
/// pages never has to read the old page first.
const ALIGN: u64 = 4096;

/// Where one piece of a body is: `len` bytes at `offset` in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl Extent {
    pub(crate) const ENCODED: usize = 20;

    pub(crate) fn encode(&self) -> [u8; Self::ENCODED] {
        let mut out = [0; Self::ENCODED];
        out[..8].copy_from_slice(&self.segment.to_be_bytes());
        out[8..16].copy_from_slice(&self.offset.to_be_bytes());
        out[16..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub(crate) fn decode(v: &[u8]) -> Option<Extent> {
        let v: &[u8; Self::ENCODED] = v.try_into().ok()?;
        Some(Extent {
            segment: u64::from_be_bytes(v[..8].try_into().ok()?),
            offset: u64::from_be_bytes(v[8..16].try_into().ok()?),
            len: u32::from_be_bytes(v[16..].try_into().ok()?),
        })
    }

    fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }
}

struct Segment {
    /// Opened for appending (read-only for a recovered, sealed segment).
    file: Arc<File>,
    /// Opened read-only: for readers, and handed to delivery agents.
    reader: Arc<File>,
    /// Extents pointing here (including ranges being written).
    refs: u64,
    sealed: bool,
}

#[derive(Default)]
struct State {
    segments: HashMap<u64, Segment>,
    /// The segment appends go to, and its length.
    active: Option<(u64, u64)>,
    next_number: u64,
    /// Written since the last [`Segments::sync`].
    unsynced: HashMap<u64, Arc<File>>,
    /// A segment file was created since the last sync.
    dir_unsynced: bool,
    /// Sealed and unreferenced: retired after the next sled sync.
    unreferenced: Vec<u64>,
    /// Retired files to write over, by their segment number.
    spares: Vec<(u64, Segment)>,
}

/// The segment files of one queue.
pub(crate) struct Segments {
    dir: PathBuf,
    state: Mutex<State>,
}

impl std::fmt::Debug for Segments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segments")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn file_name(number: u64) -> String {
    format!("{number:016x}")
}

impl Segments {
    /// The segments of `dir` (created if missing). Nothing is referenced
    /// until recovery calls [`Segments::adopt`].
    pub(crate) fn open(dir: PathBuf) -> io::Result<Segments> {
        std::fs::create_dir_all(&dir)?;
        Ok(Segments {
            dir,
            state: Mutex::new(State::default()),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update keeps State consistent before it can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The segment files on disk and their lengths.
    pub(crate) fn on_disk(&self) -> io::Result<HashMap<u64, u64>> {
        let mut out = HashMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .filter(|n| n.len() == 16)
                .and_then(|n| u64::from_str_radix(n, 16).ok())
            else {
                tracing::warn!(file = ?entry.path(), "not a body segment; left alone");
                continue;
            };
            out.insert(number, entry.metadata()?.len());
        }
        Ok(out)
    }

    /// Recovery's count of pointers per segment, with the files
    /// [`Segments::on_disk`] found: opens the referenced segments (all
    /// sealed: appends go to a new one) and deletes the files nothing
    /// points to.
    pub(crate) fn adopt(
        &self,
        on_disk: &HashMap<u64, u64>,
        refs: &HashMap<u64, u64>,
    ) -> io::Result<()> {
        let mut st = self.state();
        st.next_number = on_disk.keys().max().map_or(0, |n| n + 1);
        for &number in on_disk.keys() {
            let path = self.dir.join(file_name(number));
            match refs.get(&number) {
                Some(&n) if n > 0 => {
                    let file = Arc::new(File::open(&path)?);
                    st.segments.insert(
                        number,
                        Segment {
                            reader: file.clone(),
                            file,
                            refs: n,
                            sealed: true,
                        },
                    );
                }
                _ => {
                    std::fs::remove_file(&path)?;
                    tracing::info!(segment = %path.display(), "removed an unreferenced body segment");
                }
            }
        }
        Ok(())
    }

    /// Writes `data` (not durably: see [`Segments::sync`]) and returns
    /// where it is; the extent holds a reference until released.
    pub(crate) fn append(&self, data: &[u8]) -> io::Result<Extent> {
        let len = u32::try_from(data.len()).map_err(|_| io::Error::other("extent too big"))?;
        let (extent, file) = self.reserve(len)?;
        if let Err(e) = file.write_all_at(data, extent.offset) {
            self.release([extent.segment]);
            return Err(e);
        }
        // Marked after the write, so a sync that sees the mark covers it.
        self.state().unsynced.insert(extent.segment, file);
        Ok(extent)
    }

    fn reserve(&self, len: u32) -> io::Result<(Extent, Arc<File>)> {
        let mut st = self.state();
        if let Some((number, used)) = st.active
            && used > 0
            && used + u64::from(len) > SEGMENT_BYTES
        {
            st.active = None;
            let seg = st.segments.get_mut(&number).expect("active segment");
            seg.sealed = true;
            if seg.refs == 0 {
                st.unreferenced.push(number);
            }
        }
        let active = st.active;
        let spare = if active.is_none() {
            st.spares.pop()
        } else {
            None
        };
        let (number, offset) = match (active, spare) {
            (Some(active), _) => active,
            // Its old pointers are gone from disk: the number is free too.
            (None, Some((number, mut seg))) => {
                seg.sealed = false;
                st.segments.insert(number, seg);
                (number, 0)
            }
            (None, None) => {
                let number = st.next_number;
                let path = self.dir.join(file_name(number));
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                let reader = File::open(&path)?;
                st.next_number += 1;
                st.dir_unsynced = true;
                st.segments.insert(
                    number,
                    Segment {
                        file: Arc::new(file),
                        reader: Arc::new(reader),
                        refs: 0,
                        sealed: false,
                    },
                );
                (number, 0)
            }
        };
        st.active = Some((number, (offset + u64::from(len)).next_multiple_of(ALIGN)));
        let seg = st.segments.get_mut(&number).expect("active segment");
        seg.refs += 1;
        Ok((
            Extent {
                segment: number,
                offset,
                len,
            },
            seg.file.clone(),
        ))
    }

    /// Drops one reference per item (the pointers are already removed
    /// from sled). Returns true if a segment became unreferenced: the
    /// caller asks for a sync so it is unlinked soon.
    pub(crate) fn release(&self, segments: impl IntoIterator<Item = u64>) -> bool {
        let mut guard = self.state();
        let st = &mut *guard;
        let mut freed = false;
        for number in segments {
            let active = st.active.map(|(n, _)| n) == Some(number);
            // Unknown numbers: recovery's purges run before adopt.
            let Some(seg) = st.segments.get_mut(&number) else {
                continue;
            };
            seg.refs = seg.refs.saturating_sub(1);
            if seg.refs > 0 {
                continue;
            }
            // An empty active segment is sealed too: an idle queue keeps
            // no file, and the next message starts a new one.
            if active {
                seg.sealed = true;
            }
            if seg.sealed {
                st.unreferenced.push(number);
                freed = true;
                if active {
                    st.active = None;
                }
            }
        }
        freed
    }

    /// Takes one more reference on each known segment (a reader's, so the
    /// file is not written over while it reads); returns the numbers to
    /// [`Segments::release`] later.
    pub(crate) fn pin(&self, segments: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let mut st = self.state();
        segments
            .into_iter()
            .filter(|n| st.segments.get_mut(n).map(|seg| seg.refs += 1).is_some())
            .collect()
    }

    /// Segments in use: the active one and those still referenced or
    /// waiting to be retired (not the spares).
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.state().segments.len()
    }

    /// The read-only file of a segment, for reading an extent.
    pub(crate) fn file(&self, number: u64) -> Option<Arc<File>> {
        self.state().segments.get(&number).map(|s| s.reader.clone())
    }

    /// Makes every completed append durable: fdatasync of each segment
    /// written since the last call, then of the directory if a segment
    /// was created. On failure the caller poisons the store.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let (files, dir) = {
            let mut st = self.state();
            let files: Vec<Arc<File>> = st.unsynced.drain().map(|(_, f)| f).collect();
            (files, std::mem::take(&mut st.dir_unsynced))
        };
        for f in files {
            f.sync_data()?;
        }
        if dir {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Unreferenced segments, taken before a sled sync; pass them to
    /// [`Segments::retire`] once it succeeded (or back to
    /// [`Segments::restore_unreferenced`] if it failed).
    pub(crate) fn take_unreferenced(&self) -> Vec<u64> {
        std::mem::take(&mut self.state().unreferenced)
    }

    pub(crate) fn restore_unreferenced(&self, numbers: Vec<u64>) {
        self.state().unreferenced.extend(numbers);
    }

    /// Keeps as a spare or deletes each segment whose last pointer's
    /// removal is on disk. A failed unlink only leaks the file until
    /// recovery deletes it.
    pub(crate) fn retire(&self, numbers: Vec<u64>) {
        for number in numbers {
            let unlink = {
                let mut guard = self.state();
                let st = &mut *guard;
                // Referenced again? Never: sealed segments take no
                // appends. Checked anyway.
                if st.segments.get(&number).is_none_or(|s| s.refs != 0) {
                    continue;
                }
                let seg = st.segments.remove(&number).expect("checked above");
                if st.spares.len() < SPARES {
                    st.spares.push((number, seg));
                    false
                } else {
                    true
                }
            };
            if unlink && let Err(e) = std::fs::remove_file(self.dir.join(file_name(number))) {
                tracing::warn!(segment = number, error = %e, "cannot remove body segment");
            }
        }
    }

    /// Reads one extent, checking the file holds all of it.
    pub(crate) fn read(file: &File, extent: &Extent) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; extent.len as usize];
        file.read_exact_at(&mut buf, extent.offset)?;
        Ok(buf)
    }

    /// Whether a recovered pointer's bytes are all in the file.
    pub(crate) fn covers(on_disk: &HashMap<u64, u64>, extent: &Extent) -> bool {
        on_disk
            .get(&extent.segment)
            .is_some_and(|&len| len >= extent.end())
    }
}
