//! smtpd and smtp-client ↔ the TLS manager over
//! `$queue_directory/private/tlsmgr`, protocol [`crate::Protocol::Tlsmgr`],
//! like Postfix's tlsmgr(8) protocol.
//!
//! Every exchange is one [`TlsmgrRequest`] answered by one [`TlsmgrReply`];
//! a connection carries any number of them, one after another.
//!
//! - [`TlsmgrRequest::TicketKeys`] → [`TlsmgrReply::TicketKeys`]: the
//!   session-ticket keys every smtpd process shares, newest first. The first
//!   key encrypts new tickets; every key listed still decrypts. smtpd asks
//!   again at `next_rotation_unix` (and now and then in between, in case
//!   tlsmgr restarted with new keys).
//! - [`TlsmgrRequest::CacheGet`] → [`TlsmgrReply::Value`]: the smtp-client's
//!   cached session for a destination, `None` if absent or expired.
//! - [`TlsmgrRequest::CachePut`] → [`TlsmgrReply::Done`]: stores one;
//!   tlsmgr bounds the cache's size and may drop entries early.
//!
//! A request tlsmgr cannot serve gets [`TlsmgrReply::Error`].

use serde::{Deserialize, Serialize};

/// Length of a [`TicketKey::name`]: the prefix of every ticket, telling
/// which key sealed it.
pub const TICKET_KEY_NAME_LEN: usize = 16;
/// Length of a [`TicketKey::key`] (a 256-bit AEAD key).
pub const TICKET_KEY_LEN: usize = 32;
/// Largest cache key (a destination name) tlsmgr accepts.
pub const MAX_CACHE_KEY: usize = 1024;
/// Largest cached value tlsmgr accepts.
pub const MAX_CACHE_VALUE: usize = 16 * 1024;

/// A request to tlsmgr.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum TlsmgrRequest {
    /// The current and previous session-ticket keys (smtpd).
    TicketKeys,
    /// The cached value for `key`, e.g. `smtp:[mx.example.net]:25` (smtp-client).
    CacheGet { key: String },
    /// Cache `value` under `key` until `expires_unix` (smtp-client).
    CachePut {
        key: String,
        value: Vec<u8>,
        expires_unix: i64,
    },
}

/// tlsmgr's answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum TlsmgrReply {
    /// Newest first: `keys[0]` seals new tickets, all of them open tickets.
    TicketKeys {
        keys: Vec<TicketKey>,
        /// When tlsmgr will make a new current key; ask again then.
        next_rotation_unix: i64,
    },
    /// The answer to `CacheGet`.
    Value(Option<Vec<u8>>),
    /// The answer to `CachePut`.
    Done,
    /// The request was refused (too large, malformed).
    Error { message: String },
}

/// One session-ticket key. Secret: only smtpd processes ever receive it,
/// over the mode-0700 `private/` directory.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq)]
pub struct TicketKey {
    /// [`TICKET_KEY_NAME_LEN`] random bytes naming the key; no secret.
    pub name: Vec<u8>,
    /// [`TICKET_KEY_LEN`] random bytes of AEAD key.
    pub key: Vec<u8>,
    pub created_unix: i64,
    /// After this, tickets sealed with the key are no longer accepted.
    pub expires_unix: i64,
}

/// Never prints the key itself, so a stray `{:?}` cannot leak it to a log.
impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketKey")
            .field("name", &self.name)
            .field("key", &"<secret>")
            .field("created_unix", &self.created_unix)
            .field("expires_unix", &self.expires_unix)
            .finish()
    }
}
