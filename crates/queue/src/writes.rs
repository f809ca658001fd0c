//! Atomic multi-key writes without sled's `apply_batch`.
//!
//! sled 0.34 seals and writes its log buffer twice for every batch or
//! transaction (`PageCache::pin_log`), each time on its I/O thread pool
//! with a `sync_file_range`: at queue rates that is most of qmgr's CPU.
//! Single inserts and removes only fill the buffer, which the group
//! committer then writes once.
//!
//! So a change to several keys is made atomic with an intent record, the
//! way a write-ahead log does it: one insert of `W seq` holding every
//! operation, then the operations, then the removal of `W seq`. A single
//! sled insert is atomic, and sled recovers a prefix of its log, so after
//! a crash either the intent is missing (and so is every operation after
//! it) or it is present and [`replay`] finishes the operations. Intents
//! bigger than [`CHUNK`] would become unsynced sled blobs; those few (huge
//! envelopes) go through `apply_batch` instead.

use std::sync::atomic::{AtomicU64, Ordering};

use sled::{IVec, Tree};

use crate::codec;
use crate::keys::WRITES;
use crate::store::CHUNK;

/// The operations of one atomic change, in order; a later operation on
/// the same key wins, as in sled's `Batch`.
#[derive(Debug, Default)]
pub(crate) struct Writes {
    ops: Vec<(IVec, Option<IVec>)>,
    /// Body segments losing one pointer each (`X` records removed here):
    /// released by the store once the change is applied.
    pub(crate) released: Vec<u64>,
}

impl Writes {
    pub(crate) fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, key: impl Into<IVec>) {
        self.ops.push((key.into(), None));
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        let ops: Vec<(&[u8], Option<&[u8]>)> = self
            .ops
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_deref()))
            .collect();
        codec::encode(&ops)
    }
}

fn intent_key(seq: u64) -> [u8; 9] {
    let mut k = [WRITES; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn apply_ops(tree: &Tree, ops: impl IntoIterator<Item = (IVec, Option<IVec>)>) -> sled::Result<()> {
    for (k, v) in ops {
        match v {
            Some(v) => tree.insert(k, v)?,
            None => tree.remove(k)?,
        };
    }
    Ok(())
}

/// Applies `writes` atomically (not durably: that is the committer's job).
/// `seq` numbers the intents; callers changing the same keys must
/// serialise (the store's per-message locks do).
pub(crate) fn apply(tree: &Tree, seq: &AtomicU64, writes: Writes) -> sled::Result<()> {
    debug_assert!(writes.released.is_empty(), "the store releases segments");
    if writes.ops.len() <= 1 {
        return apply_ops(tree, writes.ops);
    }
    match writes.encode() {
        Ok(intent) if intent.len() <= CHUNK => {
            let key = intent_key(seq.fetch_add(1, Ordering::Relaxed));
            tree.insert(key, intent)?;
            apply_ops(tree, writes.ops)?;
            tree.remove(key)?;
            Ok(())
        }
        _ => {
            let mut batch = sled::Batch::default();
            for (k, v) in writes.ops {
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            tree.apply_batch(batch)
        }
    }
}

/// Applies `writes` in order without an intent, for a change that one of
/// its operations makes or unmakes at once: a commit that writes the
/// message's state record after its envelope (the due index is derived
/// from it), a removal that deletes it first. sled
/// recovers a prefix of its log, so after a crash the state record is
/// there only with everything written before it, and records left without
/// one are what recovery removes as an unfinished receive.
pub(crate) fn apply_in_order(tree: &Tree, writes: Writes) -> sled::Result<()> {
    debug_assert!(writes.released.is_empty(), "the store releases segments");
    apply_ops(tree, writes.ops)
}

/// At open: finishes every change a crash interrupted, in the order they
/// were begun, and returns the next free intent number. An intent that
/// does not decode (a damaged record) is dropped with a warning.
pub(crate) fn replay(tree: &Tree) -> sled::Result<(u64, usize)> {
    let mut replayed = 0;
    let mut next = 0;
    for item in tree.scan_prefix([WRITES]) {
        let (key, value) = item?;
        if let Some(seq) = key.get(1..9).and_then(|b| b.try_into().ok()) {
            next = u64::from_be_bytes(seq).saturating_add(1).max(next);
        }
        match codec::decode::<Vec<(Vec<u8>, Option<Vec<u8>>)>>(&value) {
            Ok(ops) => {
                apply_ops(
                    tree,
                    ops.into_iter().map(|(k, v)| (k.into(), v.map(IVec::from))),
                )?;
                replayed += 1;
            }
            Err(e) => tracing::warn!("queue: dropping an unreadable write intent: {e}"),
        }
        tree.remove(key)?;
    }
    Ok((next, replayed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    #[test]
    fn applies_in_order_and_leaves_no_intent() {
        let (_d, db) = tree();
        db.insert("a", "old").unwrap();
        let seq = AtomicU64::new(0);
        let mut w = Writes::default();
        w.insert("a", "x");
        w.remove("a");
        w.insert("b", "y");
        apply(&db, &seq, w).unwrap();
        assert_eq!(db.get("a").unwrap(), None);
        assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"y"[..]));
        assert_eq!(db.scan_prefix([WRITES]).count(), 0);
        assert_eq!(seq.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn replay_finishes_an_interrupted_change() {
        let (_d, db) = tree();
        let mut w = Writes::default();
        w.remove("incoming");
        w.insert("state", "queued");
        w.insert("due", "");
        // The crash came after the intent and its first operation.
        db.insert("incoming", "1").unwrap();
        db.insert(intent_key(7), w.encode().unwrap()).unwrap();
        db.remove("incoming").unwrap();
        // A damaged intent is dropped, not applied.
        db.insert(intent_key(3), &b"\x01garbage"[..]).unwrap();

        let (next, replayed) = replay(&db).unwrap();
        assert_eq!((next, replayed), (8, 1));
        assert_eq!(db.get("incoming").unwrap(), None);
        assert_eq!(db.get("state").unwrap().as_deref(), Some(&b"queued"[..]));
        assert!(db.get("due").unwrap().is_some());
        assert_eq!(db.scan_prefix([WRITES]).count(), 0);
    }

    #[test]
    fn a_big_change_still_applies_atomically() {
        let (_d, db) = tree();
        let seq = AtomicU64::new(0);
        let mut w = Writes::default();
        for i in 0..3u8 {
            w.insert(vec![b'E', i], vec![i; CHUNK]);
        }
        apply(&db, &seq, w).unwrap();
        assert_eq!(db.len(), 3);
        assert_eq!(seq.load(Ordering::Relaxed), 0, "no intent for a batch");
    }
}
