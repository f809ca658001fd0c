//! The serde types qmgr stores per message: envelope, recipient outcomes and
//! the message-level queue state. Their fields are postern-envelope's
//! types; a change of their layout bumps the record version in `codec`,
//! whose `legacy` module keeps reading the older one.

use serde::{Deserialize, Serialize};

use postern_envelope::{
    ClientInfo, ContentFilter, EnhancedStatus, Notify, Orcpt, QueueId, QueueName, Ret,
};

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RcptState {
    /// Not yet attempted.
    #[default]
    Pending,
    /// Delivered; `reply` is the remote (or local) response.
    Sent { at: i64, reply: String },
    /// Permanently failed (or expired); the bounce for it has been queued.
    Bounced {
        at: i64,
        reply: String,
        dsn: EnhancedStatus,
    },
    /// Temporarily failed at the last attempt.
    Deferred { reason: String },
    /// Deferred, and the sender has had the one delay notification for it
    /// (delay_warning_time), so a later attempt or a restart does not send
    /// another. Kept last: stored records name variants by position.
    DelayNotified { reason: String },
}

impl RcptState {
    /// Sent and Bounced are final: nothing more will be done for the
    /// recipient.
    pub fn is_final(&self) -> bool {
        matches!(self, RcptState::Sent { .. } | RcptState::Bounced { .. })
    }
}

/// One envelope recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Recipient {
    pub address: String,
    /// DSN `ORCPT=`.
    pub orcpt: Option<Orcpt>,
    /// DSN `NOTIFY=`, None when not given ([`Notify::in_force`]).
    pub notify: Option<Notify>,
    pub state: RcptState,
}

impl Recipient {
    /// A pending recipient with no DSN parameters.
    pub fn new(address: impl Into<String>) -> Recipient {
        Recipient {
            address: address.into(),
            ..Recipient::default()
        }
    }
}

/// The envelope stored next to the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Envelope {
    /// Envelope sender; empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<Recipient>,
    pub arrival_unix: i64,
    /// Body size in bytes. [`crate::Incoming::commit`] sets it to the number
    /// of bytes actually appended.
    pub size: u64,
    pub client: Option<ClientInfo>,
    /// DSN `ENVID=`.
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// The after-queue content filter every recipient goes through
    /// instead of its route (`content_filter`, `FILTER`).
    pub filter: Option<ContentFilter>,
}

impl Envelope {
    /// True when every recipient is Sent or Bounced.
    pub fn all_final(&self) -> bool {
        self.recipients.iter().all(|r| r.state.is_final())
    }
}

/// Message-level queue state (Postfix's queue directories; "incoming" is
/// not a state here because an uncommitted message has no state record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueState {
    Active,
    Deferred { next_try_unix: i64, reason: String },
    Hold,
    Corrupt,
}

impl QueueState {
    /// The queue, as `mailq`/`qctl list` shows it.
    pub fn queue_name(&self) -> QueueName {
        match self {
            QueueState::Active => QueueName::Active,
            QueueState::Deferred { .. } => QueueName::Deferred,
            QueueState::Hold => QueueName::Hold,
            QueueState::Corrupt => QueueName::Corrupt,
        }
    }
}

/// The per-message record that changes on every attempt; kept apart from the
/// envelope so a state change does not rewrite a large envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    pub state: QueueState,
    pub attempts: u32,
    pub last_attempt_unix: Option<i64>,
}

/// A committed message as [`crate::QueueStore::get`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: QueueId,
    pub envelope: Envelope,
    pub state: QueueState,
    pub attempts: u32,
    pub last_attempt_unix: Option<i64>,
}

/// One line of `qctl list` / mailq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: QueueId,
    pub state: QueueState,
    /// Empty for the null sender, and for a corrupt message whose envelope
    /// cannot be read.
    pub sender: String,
    /// Recipients that are not final yet (what mailq shows).
    pub recipients: Vec<String>,
    pub size: u64,
    pub arrival_unix: i64,
    pub attempts: u32,
    /// The deferral reason, for deferred messages.
    pub reason: Option<String>,
}

/// What [`crate::QueueStore::open`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryReport {
    /// Active or deferred messages that will be tried again.
    pub scheduled: usize,
    /// Messages on hold (kept, not scheduled).
    pub held: usize,
    /// Partially received messages (crash mid-receive) that were deleted.
    pub removed_incomplete: usize,
    /// Committed messages whose recipients were all final: deleted.
    pub removed_done: usize,
    /// Messages in the corrupt state (found so, or moved there now).
    pub corrupt: usize,
}

/// Counters of the group committer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Durable writes requested (commits, state changes, removals).
    pub requests: u64,
    /// flush + fdatasync rounds performed; `requests / syncs` is the batch
    /// factor.
    pub syncs: u64,
    /// Rounds that failed.
    pub failed_syncs: u64,
    /// Blob files found and fsynced (should stay 0; see the crate docs).
    pub blob_files_synced: u64,
}
