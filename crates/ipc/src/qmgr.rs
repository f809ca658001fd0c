//! Daemons and qctl ↔ the queue manager over `$queue_directory/private/qmgr`,
//! protocol [`crate::Protocol::Qmgr`].
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
//! Queue operations for qctl (mailq, postsuper) are single request/reply,
//! except two that stream, so that a reply of any size fits the frame
//! limit and starts at once: [`QmgrRequest::List`] is answered by one or
//! more [`QmgrReply::Queue`] frames of bounded size (qmgr reads the queue
//! a page at a time), then [`QmgrReply::End`]; [`QmgrRequest::Show`] by
//! [`QmgrReply::Message`] (the envelope), the message in
//! [`QmgrReply::Body`] chunks, then [`QmgrReply::End`]. Either may end
//! early with a [`QmgrReply::Error`].

use postern_envelope::{EnhancedStatus, Notify, Orcpt, QueueId, Ret};
use serde::{Deserialize, Serialize};

pub use postern_envelope::ClientInfo;

/// A request to qmgr.
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
    Commit { envelope: Envelope },
    /// Discard the message in progress.
    Abort,
    /// The queue listing (mailq), streamed (see the module docs).
    List,
    /// Put a message on hold (postsuper -h).
    Hold { id: QueueId },
    /// Release a held message (postsuper -H).
    Release { id: QueueId },
    /// Delete a message (postsuper -d).
    Delete { id: QueueId },
    /// Retry deferred mail now (postqueue -f); `id` limits it to one message.
    Flush { id: Option<QueueId> },
    /// The envelope and the message (postcat -q).
    Show { id: QueueId },
    /// Delete every message (postsuper -d ALL); answered with a
    /// [`QmgrReply::Count`].
    DeleteAll,
    /// Requeue one message or, with no `id`, every message (postsuper -r):
    /// active and due now, the deferral reasons cleared, held messages
    /// released. Answered with a [`QmgrReply::Count`].
    Requeue { id: Option<QueueId> },
}

/// qmgr's answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum QmgrReply {
    Started {
        id: QueueId,
    },
    Queued {
        id: QueueId,
    },
    /// The message was not kept (disk full, I/O error): a temporary failure.
    Failed {
        reason: String,
    },
    /// Some messages of a listing, in arrival order; End follows the last.
    Queue {
        messages: Vec<QueueEntry>,
    },
    Done {
        message: String,
    },
    Error {
        message: String,
    },
    /// How many messages a DeleteAll or Requeue changed.
    Count {
        count: u64,
    },
    /// The envelope of the message a Show asked for; the message follows.
    Message {
        message: Box<MessageInfo>,
    },
    /// Up to [`crate::BODY_CHUNK`] bytes of the shown message.
    Body {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    /// The end of the shown message or of the listing.
    End,
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
}

/// One envelope recipient with its DSN parameters.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct EnvelopeRecipient {
    pub address: String,
    pub orcpt: Option<Orcpt>,
    /// None when the client gave no NOTIFY ([`Notify::in_force`]).
    pub notify: Option<Notify>,
}

/// One message in the queue listing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct QueueEntry {
    pub id: QueueId,
    /// `active`, `deferred`, `hold`, `corrupt`.
    pub state: String,
    pub size: u64,
    pub arrival_unix: i64,
    pub sender: String,
    /// Recipients not yet done, each with the reason of its last failure.
    pub recipients: Vec<(String, Option<String>)>,
    /// The message's last delay reason.
    pub reason: Option<String>,
    pub next_try_unix: Option<i64>,
}

/// The envelope and queue state of one message, for `qctl show`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct MessageInfo {
    pub id: QueueId,
    /// `active`, `deferred`, `hold`, `corrupt`.
    pub state: String,
    pub size: u64,
    pub arrival_unix: i64,
    /// Empty for the null sender.
    pub sender: String,
    pub recipients: Vec<RecipientInfo>,
    /// The message's last delay reason.
    pub reason: Option<String>,
    pub next_try_unix: Option<i64>,
    pub attempts: u32,
    pub last_attempt_unix: Option<i64>,
    pub client: Option<ClientInfo>,
    pub envid: Option<String>,
    pub ret: Option<Ret>,
}

/// One recipient of a shown message.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct RecipientInfo {
    pub address: String,
    pub orcpt: Option<Orcpt>,
    /// `pending`, `sent`, `bounced`, `deferred`.
    pub state: String,
    /// The last reply or failure reason, if any.
    pub reason: Option<String>,
    /// The enhanced status code of a bounce.
    pub dsn: Option<EnhancedStatus>,
}
