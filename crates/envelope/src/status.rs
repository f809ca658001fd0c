//! Enhanced status codes and delivery outcomes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An RFC 3463 enhanced status code `class.subject.detail`, e.g. `5.1.1`.
/// The class is 2 (success), 4 (persistent transient failure) or 5
/// (permanent failure); subject and detail have at most three digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "(u8, u16, u16)", into = "(u8, u16, u16)")]
pub struct EnhancedStatus {
    class: u8,
    subject: u16,
    detail: u16,
}

/// Why a string or triple is not an enhanced status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code: {0:?} (expected 2, 4 or 5 . 0-999 . 0-999)")]
pub struct ParseStatusError(pub String);

impl EnhancedStatus {
    /// `2.0.0`: delivered.
    pub const OK: EnhancedStatus = EnhancedStatus::known(2, 0, 0);
    /// `4.3.0`: other or undefined mail system status (a delivery agent's
    /// internal failure).
    pub const TEMP_SYSTEM: EnhancedStatus = EnhancedStatus::known(4, 3, 0);
    /// `5.0.0`: other undefined status, permanent.
    pub const PERM_UNDEFINED: EnhancedStatus = EnhancedStatus::known(5, 0, 0);
    /// `5.3.0`: the same, permanent.
    pub const PERM_SYSTEM: EnhancedStatus = EnhancedStatus::known(5, 3, 0);

    /// A code from parts known to be valid (a constant in the source).
    const fn known(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
        EnhancedStatus {
            class,
            subject,
            detail,
        }
    }

    /// A code written in the source, e.g. `EnhancedStatus::of(4, 4, 1)`.
    /// Invalid parts are a programming error: they panic (in a const, at
    /// compile time).
    pub const fn of(class: u8, subject: u16, detail: u16) -> EnhancedStatus {
        assert!(
            (class == 2 || class == 4 || class == 5) && subject <= 999 && detail <= 999,
            "invalid enhanced status code"
        );
        EnhancedStatus::known(class, subject, detail)
    }

    /// Checks the parts.
    pub fn new(class: u8, subject: u16, detail: u16) -> Result<EnhancedStatus, ParseStatusError> {
        if matches!(class, 2 | 4 | 5) && subject <= 999 && detail <= 999 {
            Ok(EnhancedStatus::known(class, subject, detail))
        } else {
            Err(ParseStatusError(format!("{class}.{subject}.{detail}")))
        }
    }

    pub fn class(self) -> u8 {
        self.class
    }

    pub fn subject(self) -> u16 {
        self.subject
    }

    pub fn detail(self) -> u16 {
        self.detail
    }

    /// The same subject and detail as a temporary failure (4.x.x), e.g.
    /// for a permanent reply that must not bounce.
    pub fn temporary(self) -> EnhancedStatus {
        EnhancedStatus::known(4, self.subject, self.detail)
    }

    /// The same subject and detail in another class; `None` unless the
    /// class is 2, 4 or 5 (an SMTP reply's code decides it, RFC 3463).
    pub fn with_class(self, class: u8) -> Option<EnhancedStatus> {
        matches!(class, 2 | 4 | 5).then_some(EnhancedStatus::known(
            class,
            self.subject,
            self.detail,
        ))
    }

    /// True for class 5.
    pub fn is_permanent(self) -> bool {
        self.class == 5
    }

    /// True for class 4.
    pub fn is_transient(self) -> bool {
        self.class == 4
    }
}

impl TryFrom<(u8, u16, u16)> for EnhancedStatus {
    type Error = ParseStatusError;
    fn try_from((c, s, d): (u8, u16, u16)) -> Result<EnhancedStatus, ParseStatusError> {
        EnhancedStatus::new(c, s, d)
    }
}

impl From<EnhancedStatus> for (u8, u16, u16) {
    fn from(e: EnhancedStatus) -> (u8, u16, u16) {
        (e.class, e.subject, e.detail)
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl FromStr for EnhancedStatus {
    type Err = ParseStatusError;
    /// The textual form, as found in an SMTP reply or a configuration.
    fn from_str(s: &str) -> Result<EnhancedStatus, ParseStatusError> {
        let err = || ParseStatusError(s.to_string());
        let mut parts = s.split('.');
        let mut part = |max: usize| {
            parts
                .next()
                .filter(|p| {
                    !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
                })
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(err)
        };
        let class = part(1)?;
        let subject = part(3)?;
        let detail = part(3)?;
        if parts.next().is_some() {
            return Err(err());
        }
        EnhancedStatus::new(class as u8, subject, detail).map_err(|_| err())
    }
}

/// Compares with the textual form (`status == "5.1.1"`).
impl PartialEq<&str> for EnhancedStatus {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<str> for EnhancedStatus {
    fn eq(&self, other: &str) -> bool {
        other.parse::<EnhancedStatus>().is_ok_and(|o| o == *self)
    }
}

/// What happened to one recipient at one delivery attempt, as Postfix's
/// `status=` field says it; the agents report the first three and
/// `Fallback`, qmgr decides `Expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Sent,
    /// A temporary failure: tried again later.
    Deferred,
    /// A permanent failure: returned to the sender.
    Bounced,
    /// Deferred past its queue lifetime (maximal_queue_lifetime or
    /// bounce_queue_lifetime): returned to the sender like a bounce,
    /// keeping its 4.x.x code, since the failure itself was temporary.
    Expired,
    /// Local delivery found no such local user and `fallback_transport`
    /// is set: nothing was delivered, and qmgr sends the recipient to the
    /// fallback route instead (Postfix's local(8) does that hand-over
    /// itself; here qmgr owns routing).
    Fallback,
}

impl DeliveryStatus {
    /// The word of the log's `status=` field.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Bounced => "bounced",
            DeliveryStatus::Expired => "expired",
            // Replaced by the fallback route's outcome before logging.
            DeliveryStatus::Fallback => "deferred",
        }
    }

    /// Bounced or expired: the sender gets a non-delivery notice.
    pub fn is_returned(self) -> bool {
        matches!(self, DeliveryStatus::Bounced | DeliveryStatus::Expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enhanced_status_parses_prints_and_refuses() {
        let s: EnhancedStatus = "5.1.1".parse().unwrap();
        assert_eq!(s.to_string(), "5.1.1");
        assert!(s.is_permanent() && !s.is_transient());
        assert_eq!(s, "5.1.1");
        assert_eq!("4.7.999".parse::<EnhancedStatus>().unwrap().detail(), 999);
        for bad in [
            "", "5", "5.1", "5.1.1.1", "3.1.1", "5.1000.1", "5.a.1", "55.1.1", "5..1", "+5.1.1",
        ] {
            assert!(bad.parse::<EnhancedStatus>().is_err(), "{bad}");
        }
        assert!(EnhancedStatus::new(6, 0, 0).is_err());
        assert_eq!(s.temporary().to_string(), "4.1.1");
        assert_eq!(s.with_class(2), Some(EnhancedStatus::of(2, 1, 1)));
        assert_eq!(s.with_class(3), None);
        assert_eq!(EnhancedStatus::of(4, 4, 1), "4.4.1");
    }

    #[test]
    fn a_bad_code_on_the_wire_does_not_decode() {
        let t: (u8, u16, u16) = EnhancedStatus::OK.into();
        assert_eq!(t, (2, 0, 0));
        assert!(EnhancedStatus::try_from((7u8, 0u16, 0u16)).is_err());
    }
}
