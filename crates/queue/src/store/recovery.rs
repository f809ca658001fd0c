//! Recovery at open: finishing or undoing what a crash interrupted, and
//! the report of it.

use std::sync::atomic::Ordering;

use sled::IVec;

use crate::QueueId;
use crate::error::QueueError;
use crate::keys::{self, BODY, DUE, ENVELOPE, EXTENT, INCOMING, STATE};
use crate::segments::{Extent, Segments};
use crate::types::{QueueState, RecoveryReport};
use crate::writes::{self, Writes};

use super::{Inner, QueueStore, io_err};

impl QueueStore {
    /// What recovery found when this store was opened.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.inner.report
    }
}

impl Inner {
    /// Runs at open, before anyone else can see the store.
    pub(super) fn recover(&self) -> Result<RecoveryReport, QueueError> {
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
