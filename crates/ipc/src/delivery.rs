//! qmgr ↔ delivery agents (local-delivery on `private/local`, smtp-client on
//! `private/smtp`), protocol [`crate::Protocol::Delivery`], like Postfix's
//! deliver_request.
//!
//! qmgr sends [`DeliveryMessage::Request`], the body as
//! [`DeliveryMessage::Body`] chunks and [`DeliveryMessage::End`]; the agent
//! answers one [`DeliveryReply`] with an outcome for every recipient. A
//! connection carries any number of requests, one after another. An agent
//! that fails internally defers (4.3.0), it never bounces.
//!
//! A body that the queue keeps in segment files comes instead as one
//! [`DeliveryMessage::Segments`] frame carrying read-only descriptors of
//! those files, which the agent reads with [`SegmentBody`]: qmgr neither
//! reads nor copies it.

use std::fs::File;
use std::os::unix::fs::FileExt;

use postern_envelope::{EnhancedStatus, Notify, Orcpt, QueueId, Ret};
use serde::{Deserialize, Serialize};

use crate::TakeFds;

pub use postern_envelope::{DeliveryStatus, Relay};

/// One frame from qmgr to an agent.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum DeliveryMessage {
    Request(DeliveryRequest),
    /// Up to [`crate::BODY_CHUNK`] bytes of the queued message.
    Body {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    /// The whole body, in the files passed with this frame (see the
    /// module docs); End follows.
    Segments {
        extents: Vec<SegmentExtent>,
    },
    End,
}

/// `len` bytes at `offset` in the `file`-th descriptor passed with the
/// frame.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentExtent {
    pub file: u8,
    pub offset: u64,
    pub len: u32,
}

/// A body read from passed segment descriptors, in pieces of at most
/// [`crate::BODY_CHUNK`] bytes (reads hit the page cache: qmgr wrote the
/// body moments ago).
#[derive(Debug)]
pub struct SegmentBody {
    files: Vec<File>,
    extents: std::collections::VecDeque<SegmentExtent>,
}

impl SegmentBody {
    /// Claims the descriptors announced by `extents` from `stream`.
    pub fn take(extents: Vec<SegmentExtent>, stream: &mut impl TakeFds) -> std::io::Result<Self> {
        let count = extents
            .iter()
            .map(|e| usize::from(e.file) + 1)
            .max()
            .unwrap_or(0);
        let mut files = Vec::with_capacity(count);
        for _ in 0..count {
            let fd = stream.take_fd().ok_or_else(|| {
                std::io::Error::other("the body's segment descriptors did not arrive")
            })?;
            files.push(File::from(fd));
        }
        Ok(SegmentBody {
            files,
            extents: extents.into(),
        })
    }

    /// The next piece, or None at the end.
    pub fn next_piece(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let Some(e) = self.extents.front_mut() else {
            return Ok(None);
        };
        let n = (e.len as usize).min(crate::BODY_CHUNK);
        let file = self
            .files
            .get(usize::from(e.file))
            .ok_or_else(|| std::io::Error::other("extent names a missing descriptor"))?;
        let mut buf = vec![0; n];
        file.read_exact_at(&mut buf, e.offset)?;
        e.offset += n as u64;
        e.len -= n as u32;
        if e.len == 0 {
            self.extents.pop_front();
        }
        Ok(Some(buf))
    }
}

/// What to deliver and where.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct DeliveryRequest {
    pub queue_id: QueueId,
    /// Empty for the null sender.
    pub sender: String,
    pub recipients: Vec<DeliveryRecipient>,
    /// The transport name from routing (`local`, `smtp`, `relay`, ...).
    pub transport: String,
    /// The next hop (`example.com`, `[192.0.2.1]:25`); the recipient's
    /// domain for local delivery.
    pub nexthop: String,
    pub arrival_unix: i64,
    pub size: u64,
    /// DSN ENVID, decoded.
    pub envid: Option<String>,
    pub ret: Option<Ret>,
    pub smtputf8: bool,
    pub body_8bit: bool,
}

/// One recipient of a request; `index` is its position in the queued
/// envelope, echoed back in the result.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct DeliveryRecipient {
    pub index: usize,
    pub address: String,
    pub orcpt: Option<Orcpt>,
    /// None when the client gave no NOTIFY ([`Notify::in_force`]).
    pub notify: Option<Notify>,
    /// The class qmgr's router gave the recipient; local-delivery
    /// delivers a virtual mailbox or a local user by it.
    pub class: AddressClass,
}

/// The address classes of Postfix's ADDRESS_CLASS_README, as
/// postern-routing decides them (it re-exports this type).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AddressClass {
    /// A domain in `mydestination`, this host's address literal, or no
    /// domain at all.
    #[default]
    Local,
    /// A domain in `virtual_alias_domains`. A recipient that is still in
    /// such a domain after virtual alias expansion is unknown.
    VirtualAlias,
    /// A domain in `virtual_mailbox_domains`.
    VirtualMailbox,
    /// A domain in `relay_domains`: this host is its MX, mail goes on.
    Relay,
    /// Everything else: mail to the outside, allowed only to trusted
    /// clients.
    Default,
}

impl AddressClass {
    /// Postfix's RESOLVE_CLASS_FINAL: mail that ends here.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AddressClass::Local | AddressClass::VirtualAlias | AddressClass::VirtualMailbox
        )
    }
}

/// An agent's answer to one request.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct DeliveryReply {
    pub results: Vec<RecipientResult>,
}

/// The outcome for one recipient.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct RecipientResult {
    pub index: usize,
    /// Sent, deferred, bounced or fallback; agents never say expired.
    pub status: DeliveryStatus,
    /// Enhanced status code, e.g. `2.0.0`, `4.4.1`, `5.1.1`.
    pub dsn: EnhancedStatus,
    /// Where it went: `local`, `mail.example.com[192.0.2.1]:25`, `none`.
    pub relay: Relay,
    /// The text for the log line and the DSN, e.g. `delivered to maildir`
    /// or `host ... said: <reply> (in reply to RCPT TO command)`.
    pub detail: String,
    /// The remote server's reply the outcome rests on, on one line (a
    /// DSN's `Diagnostic-Code: smtp;`); None when no reply decided it.
    pub remote_reply: Option<String>,
    /// Seconds spent connecting and transmitting (the `c` and `d` of
    /// Postfix's delays=a/b/c/d).
    pub connect_secs: f64,
    pub transmit_secs: f64,
}
