//! qctl ↔ the queue manager over `$queue_directory/private/qmgr-admin`,
//! protocol [`crate::Protocol::QmgrAdmin`]: the queue operations of
//! Postfix's mailq (showq), postsuper, postqueue -f and postcat -q. The
//! socket is apart from the enqueueing one ([`crate::qmgr`]) so that each
//! protocol has its own request type: a submitter cannot ask for an
//! administrative operation, nor qctl start a message.
//!
//! Each request is answered by one reply, except two that stream, so that
//! a reply of any size fits the frame limit and starts at once:
//! [`AdminRequest::List`] is answered by one or more [`AdminReply::Queue`]
//! frames of bounded size (qmgr reads the queue a page at a time), then
//! [`AdminReply::End`]; [`AdminRequest::Show`] by [`AdminReply::Message`]
//! (the envelope), the message in [`AdminReply::Body`] chunks, then
//! [`AdminReply::End`]. Either may end early with an [`AdminReply::Error`].
//! One connection carries any number of requests, one after another.

use postern_envelope::{
    ClientInfo, EnhancedStatus, Orcpt, QueueId, QueueName, RecipientState, Ret,
};
use serde::{Deserialize, Serialize};

/// The socket, under `queue_directory` (master.toml's qmgr service lists
/// it second in `listen`).
pub const SOCKET: &str = "private/qmgr-admin";

/// The socket any local user may connect to (listed third), as Postfix's
/// public showq: it serves only [`AdminRequest::List`] (to
/// authorized_mailq_users) and [`AdminRequest::Flush`] (to
/// authorized_flush_users), for mailq and sendmail -q run by users.
pub const PUBLIC_SOCKET: &str = "public/showq";

/// A queue operation.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum AdminRequest {
    /// The queue listing (mailq), streamed (see the module docs).
    List,
    /// The envelope and the message (postcat -q), streamed.
    Show { id: QueueId },
    /// Put a message on hold (postsuper -h).
    Hold { id: QueueId },
    /// Release a held message (postsuper -H).
    Release { id: QueueId },
    /// Delete a message (postsuper -d).
    Delete { id: QueueId },
    /// Delete every message (postsuper -d ALL); answered with a
    /// [`AdminReply::Count`].
    DeleteAll,
    /// Retry deferred mail now (postqueue -f); `id` limits it to one message.
    Flush { id: Option<QueueId> },
    /// Requeue one message or, with no `id`, every message (postsuper -r):
    /// active and due now, the deferral reasons cleared, held messages
    /// released. Answered with a [`AdminReply::Count`].
    Requeue { id: Option<QueueId> },
}

/// qmgr's answer to a queue operation.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum AdminReply {
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
    /// Some messages of a listing, in arrival order; End follows the last.
    Queue {
        messages: Vec<QueueEntry>,
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

/// What the listing and `qctl show` say of every message (the fields of
/// `postqueue -j`, less the recipients).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct MessageSummary {
    pub id: QueueId,
    pub state: QueueName,
    pub size: u64,
    pub arrival_unix: i64,
    /// Empty for the null sender.
    pub sender: String,
    /// The message's last delay reason.
    pub reason: Option<String>,
    pub next_try_unix: Option<i64>,
}

/// One message in the queue listing.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct QueueEntry {
    pub summary: MessageSummary,
    /// Recipients not yet done, each with the reason of its last failure.
    pub recipients: Vec<(String, Option<String>)>,
}

/// The envelope and queue state of one message, for `qctl show`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct MessageInfo {
    pub summary: MessageSummary,
    pub recipients: Vec<RecipientInfo>,
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
    pub state: RecipientState,
    /// The last reply or failure reason, if any.
    pub reason: Option<String>,
    /// The enhanced status code of a bounce.
    pub dsn: Option<EnhancedStatus>,
}
