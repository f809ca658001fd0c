//! postern-envelope: the values that describe a message and its delivery,
//! defined once and used alike on the wire (postern-ipc), in the queue's
//! records (postern-queue), by the SMTP codec (postern-smtp) and by every
//! daemon, so no hop turns one into text for the next hop to parse back.
//!
//! - [`QueueId`] (and [`IdGen`], which hands them out).
//! - DSN parameters (RFC 3461): [`Ret`], [`Notify`], [`Orcpt`]; ENVID is a
//!   plain decoded string.
//! - [`ClientInfo`]: who handed the message over, and by which
//!   [`ClientProtocol`].
//! - [`QueueName`] and [`RecipientState`]: where a queued message and
//!   each of its recipients stand, as qctl shows them.
//! - [`EnhancedStatus`]: an RFC 3463 `class.subject.detail` code.
//! - [`DeliveryStatus`]: what happened to a recipient at an attempt (sent,
//!   deferred, bounced, expired, or handed back for the fallback route),
//!   and [`Relay`]: where it went.
//! - [`ContentFilter`]: the `transport:destination` a message is sent
//!   through after it is queued (`content_filter`, `FILTER`).
//!
//! All are serde types; their encoding is the business of the crates that
//! store or send them.

mod filter;
mod id;
mod names;
mod relay;
mod status;

pub use filter::{ContentFilter, ParseFilterError};
pub use id::{IdGen, ParseQueueIdError, QueueId};
pub use names::{ClientProtocol, QueueName, RecipientState};
pub use relay::Relay;
pub use status::{DeliveryStatus, EnhancedStatus, ParseStatusError};

use serde::{Deserialize, Serialize};

/// DSN `RET=` (RFC 3461): how much of the message a bounce returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ret {
    /// The whole message.
    Full,
    /// Headers only.
    Hdrs,
}

impl Ret {
    /// The keyword as written in `MAIL FROM` (`FULL`, `HDRS`).
    pub fn keyword(self) -> &'static str {
        match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        }
    }
}

/// DSN `NOTIFY=` (RFC 3461). All three false means `NEVER`; a recipient
/// without the parameter has none (`Option<Notify>`), which means
/// [`Notify::DEFAULT`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Notify {
    /// Report successful delivery.
    pub success: bool,
    /// Report failure.
    pub failure: bool,
    /// Report delay.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify {
        success: false,
        failure: false,
        delay: false,
    };
    /// What applies when NOTIFY was not given (Postfix: FAILURE,DELAY).
    pub const DEFAULT: Notify = Notify {
        success: false,
        failure: true,
        delay: true,
    };

    /// True for `NOTIFY=NEVER`.
    pub fn is_never(&self) -> bool {
        !(self.success || self.failure || self.delay)
    }

    /// The flags in force for a recipient whose NOTIFY is `given`.
    pub fn in_force(given: Option<Notify>) -> Notify {
        given.unwrap_or(Notify::DEFAULT)
    }

    /// The keywords as written in `RCPT TO` (`NEVER`, or some of
    /// `SUCCESS`, `FAILURE`, `DELAY` in that order).
    pub fn keywords(&self) -> Vec<&'static str> {
        if self.is_never() {
            return vec!["NEVER"];
        }
        [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, w)| w)
        .collect()
    }
}

/// DSN `ORCPT=addr-type;xtext` (RFC 3461), decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Orcpt {
    /// Address type, usually `rfc822` or `utf-8`.
    pub addr_type: String,
    /// The original recipient, xtext-decoded.
    pub addr: String,
}

impl Orcpt {
    /// An `rfc822` original recipient.
    pub fn rfc822(addr: impl Into<String>) -> Orcpt {
        Orcpt {
            addr_type: "rfc822".into(),
            addr: addr.into(),
        }
    }
}

/// `type;address`, as a DSN's Original-Recipient field writes it.
impl std::fmt::Display for Orcpt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{};{}", self.addr_type, self.addr)
    }
}

/// Who handed the message over, for the Received header and the log
/// (Postfix's `client_name`, `client_address`, `helo_name`, `protocol`,
/// `sasl_username` queue-file attributes).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClientInfo {
    /// `hostname` or `unknown`.
    pub name: String,
    pub addr: String,
    pub helo: String,
    pub protocol: ClientProtocol,
    pub sasl_username: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_keywords_and_default() {
        let n = Notify {
            success: true,
            failure: true,
            delay: false,
        };
        assert_eq!(n.keywords(), ["SUCCESS", "FAILURE"]);
        assert_eq!(Notify::NEVER.keywords(), ["NEVER"]);
        assert!(Notify::NEVER.is_never());
        let d = Notify::in_force(None);
        assert!(d.failure && d.delay && !d.success);
        assert_eq!(Notify::in_force(Some(Notify::NEVER)), Notify::NEVER);
    }

    #[test]
    fn orcpt_prints_as_a_dsn_field() {
        assert_eq!(Orcpt::rfc822("a@b").to_string(), "rfc822;a@b");
        assert_eq!(Ret::Hdrs.keyword(), "HDRS");
    }
}
