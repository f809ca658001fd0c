use std::path::PathBuf;

use crate::QueueId;

/// Everything the queue can fail with. Any error from
/// [`crate::Incoming::commit`] means "not queued": smtpd answers
/// `451 4.3.0` and the client retries.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Another process (usually a qmgr that is still exiting) holds sled's
    /// exclusive lock on the directory.
    #[error("queue directory {dir} is locked by another process (is another qmgr still running?)")]
    Locked { dir: PathBuf },
    #[error("cannot open queue at {dir}: {source}")]
    Open { dir: PathBuf, source: sled::Error },
    #[error("queue storage error: {0}")]
    Storage(#[from] sled::Error),
    #[error("queue I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The write was not made durable (sled flush or blob fsync failed,
    /// the store is closing); the store itself is still sound, so a later
    /// write may succeed.
    #[error("queue write not durable: {0}")]
    Commit(String),
    /// An fdatasync failed, now or earlier: the kernel may have dropped
    /// dirty pages, so no later write can be trusted until the queue is
    /// reopened (qmgr exits and the master restarts it).
    #[error("queue durability lost: {0}")]
    DurabilityLost(String),
    #[error("no message {0} in the queue")]
    NotFound(QueueId),
    /// A stored record did not decode; the message was moved to the corrupt
    /// state.
    #[error("message {id} is corrupt: {reason}")]
    Corrupt { id: QueueId, reason: String },
    #[error("cannot encode queue record: {0}")]
    Encode(String),
    #[error("message {id} has no recipient #{index}")]
    BadRecipient { id: QueueId, index: usize },
}
