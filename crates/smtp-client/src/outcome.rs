//! A recipient's outcome as a value: sent, deferred or bounced, with an
//! enhanced status code and Postfix's wording of what happened.

use postern_envelope::EnhancedStatus;
use postern_ipc::delivery::DeliveryStatus;
use postern_smtp::Reply;

/// What happened to one recipient (before relay and timings are added).
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: DeliveryStatus,
    pub dsn: EnhancedStatus,
    /// The text for the log and the DSN.
    pub detail: String,
    /// The server's reply this rests on, on one line (None when no reply
    /// decided it: a lost connection, a DNS failure).
    pub reply: Option<String>,
}

impl Outcome {
    pub fn deferred(dsn: EnhancedStatus, detail: impl Into<String>) -> Outcome {
        Outcome {
            status: DeliveryStatus::Deferred,
            dsn,
            detail: detail.into(),
            reply: None,
        }
    }

    pub fn bounced(dsn: EnhancedStatus, detail: impl Into<String>) -> Outcome {
        Outcome {
            status: DeliveryStatus::Bounced,
            dsn,
            detail: detail.into(),
            reply: None,
        }
    }

    /// Accepted: the detail is the server's reply, as Postfix logs
    /// `status=sent (250 2.0.0 Ok: queued as X)`.
    pub fn sent(reply: &Reply) -> Outcome {
        Outcome {
            status: DeliveryStatus::Sent,
            dsn: reply_dsn(reply),
            detail: one_line(reply),
            reply: Some(one_line(reply)),
        }
    }

    /// A 4xx or 5xx reply: `host h[ip] said: 550 5.1.1 ... (in reply to
    /// RCPT TO command)`. `soft` forces a deferral (a 5xx greeting).
    pub fn rejected(reply: &Reply, namaddr: &str, command: &str) -> Outcome {
        let detail = format!(
            "host {namaddr} said: {} (in reply to {command})",
            one_line(reply)
        );
        Outcome::from_code(reply, detail)
    }

    /// Deferred for 4xx (and anything not 5xx), bounced for 5xx.
    pub fn from_code(reply: &Reply, detail: String) -> Outcome {
        let dsn = reply_dsn(reply);
        let outcome = if reply.is_permanent() {
            Outcome::bounced(dsn, detail)
        } else {
            Outcome::deferred(dsn, detail)
        };
        Outcome {
            reply: Some(one_line(reply)),
            ..outcome
        }
    }

    pub fn is_soft(&self) -> bool {
        self.status == DeliveryStatus::Deferred
    }
}

/// The reply on one line, continuation lines joined with a space, as
/// Postfix prints it.
pub fn one_line(reply: &Reply) -> String {
    reply.to_string().replace('\n', " ")
}

/// The enhanced status code of a reply (whose class always agrees with
/// the reply code); `X.0.0` when the server sent none.
pub fn reply_dsn(reply: &Reply) -> EnhancedStatus {
    reply.enhanced().unwrap_or(match reply.code() / 100 {
        4 => EnhancedStatus::of(4, 0, 0),
        5 => EnhancedStatus::of(5, 0, 0),
        _ => EnhancedStatus::OK,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_codes() {
        let r = Reply::parse_line("550 5.1.1 <x@example.com>: User unknown").unwrap();
        let o = Outcome::rejected(&r, "mx.example.com[192.0.2.1]", "RCPT TO command");
        assert_eq!(o.status, DeliveryStatus::Bounced);
        assert_eq!(o.dsn, "5.1.1");
        assert_eq!(
            o.detail,
            "host mx.example.com[192.0.2.1] said: 550 5.1.1 <x@example.com>: User unknown \
             (in reply to RCPT TO command)"
        );
        // The reply goes along typed, for the DSN's Diagnostic-Code.
        assert_eq!(
            o.reply.as_deref(),
            Some("550 5.1.1 <x@example.com>: User unknown")
        );
        assert_eq!(
            Outcome::deferred(EnhancedStatus::of(4, 4, 1), "lost").reply,
            None
        );
        let r = Reply::parse_line("450 try later").unwrap();
        assert_eq!(reply_dsn(&r), "4.0.0");
        let r = Reply::new(550, Some(EnhancedStatus::of(4, 7, 1)), "mixed");
        assert_eq!(reply_dsn(&r), "5.7.1");
        let r = Reply::multiline(550, Some(EnhancedStatus::of(5, 7, 1)), ["one", "two"]);
        assert_eq!(one_line(&r), "550-5.7.1 one 550 5.7.1 two");
        let r = Reply::parse_line("250 2.0.0 Ok: queued as ABC").unwrap();
        assert_eq!(Outcome::sent(&r).detail, "250 2.0.0 Ok: queued as ABC");
    }
}
