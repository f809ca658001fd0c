//! qmgr ↔ delivery agents (local-delivery on `private/local`, smtp-client on
//! `private/smtp`), protocol [`crate::Protocol::Delivery`], like Postfix's
//! deliver_request.
//!
//! qmgr sends [`DeliveryMessage::Request`], the body as
//! [`DeliveryMessage::Body`] chunks and [`DeliveryMessage::End`]; the agent
//! answers one [`DeliveryReply`] with an outcome for every recipient. A
//! connection carries any number of requests, one after another. An agent
//! that fails internally defers (4.3.0), it never bounces.

use serde::{Deserialize, Serialize};

/// One frame from qmgr to an agent.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum DeliveryMessage {
    Request(DeliveryRequest),
    /// Up to [`crate::BODY_CHUNK`] bytes of the queued message.
    Body {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    },
    End,
}

/// What to deliver and where.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct DeliveryRequest {
    pub queue_id: String,
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
    pub envid: Option<String>,
    pub ret: Option<String>,
    pub smtputf8: bool,
    pub body_8bit: bool,
}

/// One recipient of a request; `index` is its position in the queued
/// envelope, echoed back in the result.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct DeliveryRecipient {
    pub index: usize,
    pub address: String,
    pub orcpt: Option<String>,
    pub notify: Vec<String>,
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
    pub status: DeliveryStatus,
    /// Enhanced status code, e.g. `2.0.0`, `4.4.1`, `5.1.1`.
    pub dsn: String,
    /// Where it went: `local`, `mail.example.com[192.0.2.1]:25`, `none`.
    pub relay: String,
    /// The text for the log line and the DSN, e.g. `delivered to maildir`
    /// or the remote server's reply.
    pub detail: String,
    /// Seconds spent connecting and transmitting (the `c` and `d` of
    /// Postfix's delays=a/b/c/d).
    pub connect_secs: f64,
    pub transmit_secs: f64,
}

/// Sent, deferred or bounced, as Postfix's status= field; or handed
/// back to qmgr for another route.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Sent,
    Deferred,
    Bounced,
    /// Local delivery found no such local user and `fallback_transport`
    /// is set: nothing was delivered, and qmgr sends the recipient to the
    /// fallback route instead (Postfix's local(8) does that hand-over
    /// itself; here qmgr owns routing). `dsn` and `detail` say why.
    Fallback,
}
