//! postern-queue: the durable mail queue, stored in sled and linked only by
//! qmgr (sled's directory lock makes it the single owner).
//!
//! It keeps DESIGN.md's promise: [`Incoming::commit`] returns — and smtpd
//! says "250 2.0.0 Ok: queued as ID" — only after envelope and body are on
//! stable storage. sled 0.34's `flush()` is not enough for that (it ends in
//! `sync_file_range`, which neither flushes the device cache nor file
//! metadata), so every durable write is a sled flush followed by
//! `fdatasync` of sled's data file, preceded by an fdatasync of the body
//! segments written since. A single committer thread performs these once
//! for every request waiting at the time (group commit), so concurrent
//! commits share one disk sync.
//!
//! Queue states follow Postfix: incoming (being received, deleted by
//! recovery if we crashed), active, deferred (next try time + reason), hold,
//! corrupt. A message leaves the queue when every recipient is sent or
//! bounced. Any record that fails to decode moves its message to corrupt;
//! nothing stored can make the store panic.
//!
//! # Layout
//!
//! One sled tree in the queue directory (sled's own files: `db`, the log
//! that we fdatasync; `conf`; `snap.*`; `blobs/`), and `bodies/`: the
//! append-only segment files that hold bodies bigger than one [`CHUNK`]
//! (module `segments`). Keys, all prefixed by a kind byte; a change to
//! several keys of a message is atomic through a write intent (module
//! `writes`: sled's own batches cost two log writes each):
//!
//! - `I id` — the incoming marker of earlier versions; recovery removes
//!   it. A message is incoming while it has body records and no `S`.
//! - `B id chunk` — a body of at most [`CHUNK`] bytes, or the body of a
//!   deferred or held message, in chunks of at most [`CHUNK`] bytes.
//! - `X id n` — where the n-th piece of a bigger body is in `bodies/`
//!   (segment, offset, length). Bodies are written as they arrive, so a big
//!   message is never held whole in memory.
//! - `E id part` — the bincode [`Envelope`], split into parts of at most
//!   [`CHUNK`] bytes.
//! - `S id` — [`types::MessageMeta`]: state, attempts, last attempt.
//!   Written by the commit after the envelope and removed first when the
//!   message goes, so its presence is what makes a message queued (and
//!   those two changes need no write intent).
//! - `D time id` — due index (active first, then deferred by next try) so
//!   [`QueueStore::due`] never scans the queue.
//! - `W seq` — a multi-key change in progress; recovery finishes it.
//!
//! sled writes any log item bigger than a quarter segment to its own file
//! under `blobs/` and never fsyncs it, and a log item may be a whole leaf
//! node (~17 entries). So values are capped at [`CHUNK`] (32 KiB) and the
//! segment size is 8 MiB (blob threshold ~2 MiB): no blob is ever written,
//! and the one fdatasync of `db` covers everything. The committer still
//! checks `blobs/` after each flush and fsyncs any file it finds.
//!
//! Every record starts with a version byte. Version 3 holds the envelope
//! with postern-envelope's typed ORCPT, NOTIFY, enhanced status code and
//! client protocol (the same types qmgr and the agents exchange); version
//! 2, written by earlier qmgrs, held the protocol as its name, and version
//! 1 also held ORCPT and the status code as text and NOTIFY as a bit set.
//! Old queues are read as they are: `codec` converts an older record when
//! it is read, and the next change of the message writes it in version 3.
//!
//! Modules: `store` (open, recovery, operations, [`Incoming`],
//! [`BodyReader`]), `commit` (group committer), `segments` (body files),
//! `keys` (key layout), `codec` (the only bincode user, record versions),
//! `types` (serde types), `writes` (atomic multi-key changes). Queue IDs,
//! DSN parameters and status codes are postern-envelope's.
//!
//! Differences from Postfix: one database instead of one file per message
//! in queue directories; queue IDs are 12 hex digits counting 10 µs ticks
//! since 2020, so they sort by arrival.

mod codec;
mod commit;
mod error;
mod keys;
mod segments;
mod store;
pub mod types;
mod writes;

pub use error::QueueError;
pub use postern_envelope::{
    ClientInfo, EnhancedStatus, Notify, Orcpt, ParseQueueIdError, QueueId, Ret,
};
pub use store::{AttemptEnd, BodyChunk, BodyReader, CHUNK, Incoming, QueueStore, SegmentExtents};
pub use types::{
    CommitStats, Envelope, QueueState, RcptState, Recipient, RecoveryReport, StoredMessage, Summary,
};

#[cfg(test)]
mod tests;
