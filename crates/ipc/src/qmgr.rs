//! Submitters ↔ the queue manager over `$queue_directory/private/qmgr`,
//! protocol [`crate::Protocol::Qmgr`]: the enqueueing conversation, like
//! Postfix's cleanup(8) hand-over. qctl's queue operations have a socket
//! and protocol of their own ([`crate::qmgr_admin`]).
//!
//! Enqueueing a message (smtpd, or local-delivery forwarding mail):
//! [`QmgrRequest::Begin`] → [`QmgrReply::Started`]; any number of
//! [`QmgrRequest::Body`] chunks (no reply, so they stream); then
//! [`QmgrRequest::Commit`] → [`QmgrReply::Queued`] only once envelope and
//! body are on stable storage, or [`QmgrReply::Failed`] (the client answers
//! `451 4.3.0`). [`QmgrRequest::Abort`] drops the message in progress, as
//! does closing the connection. One connection carries any number of
//! messages, one after another.
//!
//! [`QmgrRequest::Flush`] (smtpd's ETRN, Postfix's flush service) makes
//! deferred mail due now: [`QmgrReply::Flushed`] or [`QmgrReply::Failed`].

use postern_envelope::{ContentFilter, Notify, Orcpt, QueueId, Ret};
use serde::{Deserialize, Serialize};

/// The socket, under `queue_directory` (master.toml's qmgr service lists
/// it first in `listen`).
pub const SOCKET: &str = "private/qmgr";

pub use postern_envelope::ClientInfo;

/// A submitter's request to qmgr.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum QmgrRequest {
    /// Start receiving a new message.
    Begin,
    /// Up to [`crate::BODY_CHUNK`] bytes of the message (headers and body,
    /// CRLF line endings, no dot-stuffing).
    Body {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    /// The envelope; commit durably.
    Commit { envelope: Box<Envelope> },
    /// Discard the message in progress.
    Abort,
    /// Retry deferred mail now (ETRN).
    Flush,
}

/// qmgr's answer to a submitter.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum QmgrReply {
    Started {
        id: QueueId,
    },
    Queued {
        id: QueueId,
    },
    /// The message was not kept (disk full, I/O error), or a flush failed:
    /// a temporary failure.
    Failed {
        reason: String,
    },
    /// How many deferred messages a Flush made due.
    Flushed {
        count: u64,
    },
}

/// The envelope of a message handed to qmgr.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct Envelope {
    /// Empty for the null sender `<>`.
    pub sender: String,
    pub recipients: Vec<EnvelopeRecipient>,
    pub client: Option<ClientInfo>,
    /// DSN ENVID (RFC 3461), decoded.
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// Send every recipient through this after-queue content filter
    /// (`content_filter`, or a `FILTER` action) instead of its route.
    pub filter: Option<ContentFilter>,
    /// Put the message on hold when it is queued (a `HOLD` action, or a
    /// milter's quarantine): it waits for `qctl release`.
    pub hold: bool,
    /// `receive_override_options = no_address_mappings`: no canonical
    /// maps and no virtual alias expansion (they happen after a content
    /// filter instead); addresses still get their canonical form.
    pub no_address_mappings: bool,
}

/// One envelope recipient with its DSN parameters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EnvelopeRecipient {
    pub address: String,
    pub orcpt: Option<Orcpt>,
    /// None when the client gave no NOTIFY ([`Notify::in_force`]).
    pub notify: Option<Notify>,
}
