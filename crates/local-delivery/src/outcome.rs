//! The result of one delivery attempt, before it becomes a
//! `RecipientResult`: a status, an enhanced status code and Postfix's text.

use postern_envelope::EnhancedStatus;
use postern_ipc::delivery::DeliveryStatus;

/// What happened to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: DeliveryStatus,
    pub dsn: EnhancedStatus,
    /// Postfix's wording: `delivered to mailbox`, `unknown user: "x"`.
    pub text: String,
}

impl Outcome {
    pub fn sent(text: impl Into<String>) -> Outcome {
        Outcome {
            status: DeliveryStatus::Sent,
            dsn: EnhancedStatus::of(2, 0, 0),
            text: text.into(),
        }
    }

    /// Deferred or bounced by the class of `dsn`; anything that is not a
    /// 5.x.x code defers, so a wrong class never loses mail.
    pub fn failed(dsn: EnhancedStatus, text: impl Into<String>) -> Outcome {
        let status = if dsn.is_permanent() {
            DeliveryStatus::Bounced
        } else {
            DeliveryStatus::Deferred
        };
        Outcome {
            status,
            dsn,
            text: text.into(),
        }
    }

    /// An internal failure: always a 4.3.0 deferral.
    pub fn internal(text: impl Into<String>) -> Outcome {
        Outcome::failed(EnhancedStatus::of(4, 3, 0), text)
    }
}

/// Postfix's `mbox_dsn()`: the status for a failed mailbox operation.
/// Where Postfix bounces with `def_dsn` (permissions, missing directories)
/// Postern defers with 4.2.0 instead, since those are the administrator's
/// to fix and mail should wait for it.
pub fn io_dsn(e: &std::io::Error) -> EnhancedStatus {
    use nix::libc;
    match e.raw_os_error() {
        Some(libc::EFBIG) | Some(libc::EDQUOT) => EnhancedStatus::of(5, 2, 2),
        Some(libc::ENOSPC) => EnhancedStatus::of(4, 3, 0),
        _ => EnhancedStatus::of(4, 2, 0),
    }
}
