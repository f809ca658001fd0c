//! Non-delivery notifications (RFC 3464 delivery status notifications) as
//! Postfix's bounce(8) writes them: a multipart/report with a human part
//! from the default bounce template, a message/delivery-status part and the
//! returned message (or its headers).
//!
//! Differences from Postfix: qmgr writes the notification itself instead of
//! asking a bounce daemon, and the returned message is cut to its headers
//! when it is larger than [`RETURN_SIZE_LIMIT`] (Postfix's
//! `bounce_size_limit` default), instead of being truncated.

use std::fmt::Write as _;

use postern_daemon::date::Tm;
use postern_envelope::{EnhancedStatus, Orcpt, Relay};

/// Largest original message returned whole (Postfix's bounce_size_limit).
pub const RETURN_SIZE_LIMIT: usize = 50_000;

/// Who receives the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The original sender (a bounce).
    Sender,
    /// The postmaster, for mail whose bounce cannot go anywhere (a failed
    /// bounce: 2bounce_notice_recipient).
    Postmaster,
}

/// A delay notification (delay_warning_time) instead of a failure report.
#[derive(Debug, Clone, Copy)]
pub struct Delay {
    /// How long the message has been undelivered.
    pub after: std::time::Duration,
    /// How long it will be retried in all (maximal_queue_lifetime).
    pub lifetime: std::time::Duration,
}

/// One recipient the notification reports.
#[derive(Debug, Clone)]
pub struct Failed {
    pub address: String,
    pub orcpt: Option<Orcpt>,
    pub dsn: EnhancedStatus,
    /// Where delivery was tried (a remote MTA gives `Remote-MTA:`).
    pub relay: Relay,
    /// The agent's text, e.g. `host ... said: 550 5.1.1 ... (in reply to
    /// RCPT TO command)` (`Diagnostic-Code: X-Postfix;` when no reply).
    pub detail: String,
    /// The remote server's reply (`Diagnostic-Code: smtp;`).
    pub remote_reply: Option<String>,
    /// Expired in the queue rather than refused.
    pub expired: bool,
}

/// What the notification is about.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub queue_id: &'a str,
    pub myhostname: &'a str,
    /// Envelope sender of the failed message ("" for `<>`).
    pub original_sender: &'a str,
    /// The notification's To: header.
    pub to: &'a str,
    pub arrival_unix: i64,
    pub now_unix: i64,
    pub envid: Option<&'a str>,
    /// RET=HDRS: return only the headers.
    pub headers_only: bool,
    pub audience: Audience,
    /// Set for a delay notification: the recipients are still being
    /// retried (Action: delayed, only the headers returned).
    pub delay: Option<Delay>,
    pub recipients: &'a [Failed],
    /// The failed message as queued (CRLF lines).
    pub original: &'a [u8],
}

/// The notification message, CRLF line endings, ready to queue.
pub fn build(r: &Report<'_>) -> Vec<u8> {
    let boundary = format!("{}.{}/{}", r.queue_id, r.now_unix, r.myhostname);
    let subject = match (r.audience, r.delay) {
        (_, Some(_)) => "Delayed Mail (still being retried)",
        (Audience::Sender, None) => "Undelivered Mail Returned to Sender",
        (Audience::Postmaster, None) => "Postmaster Copy: Undelivered Mail",
    };
    let mut m = String::new();
    let mut line = |s: &str| {
        m.push_str(s);
        m.push_str("\r\n");
    };
    line(&format!(
        "From: MAILER-DAEMON@{} (Mail Delivery System)",
        r.myhostname
    ));
    line(&format!("Subject: {subject}"));
    line(&format!("To: {}", r.to));
    line("Auto-Submitted: auto-replied");
    line("MIME-Version: 1.0");
    line("Content-Type: multipart/report; report-type=delivery-status;");
    line(&format!("\tboundary=\"{boundary}\""));
    line("Content-Transfer-Encoding: 8bit");
    line(&format!(
        "Message-Id: <{}.{}@{}>",
        Tm::local(r.now_unix).compact(),
        r.queue_id,
        r.myhostname
    ));
    line(&format!("Date: {}", Tm::local(r.now_unix).rfc5322()));
    line("");
    line("This is a MIME-encapsulated message.");
    line("");

    // The human-readable part: Postfix's default failure template.
    line(&format!("--{boundary}"));
    line("Content-Description: Notification");
    line("Content-Type: text/plain; charset=us-ascii");
    line("");
    line(&format!(
        "This is the mail system at host {}.",
        r.myhostname
    ));
    line("");
    if let Some(d) = r.delay {
        line("This is only a warning: there is no need to send your message");
        line("again. It could not be delivered yet to the recipients below");
        line(&format!(
            "for {}, and will be tried again until it is {} old.",
            span(d.after),
            span(d.lifetime)
        ));
    } else {
        line("I'm sorry to have to inform you that your message could not");
        line("be delivered to one or more recipients. It's attached below.");
    }
    line("");
    line("For further assistance, please send mail to postmaster.");
    line("");
    line("If you do so, please include this problem report. You can");
    line("delete your own text from the attached returned message.");
    line("");
    line("                   The mail system");
    line("");
    for f in r.recipients {
        if f.expired {
            line(&format!(
                "<{}>: message has been in the queue too long; last error: {}",
                f.address, f.detail
            ));
        } else {
            line(&format!("<{}>: {}", f.address, f.detail));
        }
    }
    line("");

    // The machine-readable part (RFC 3464).
    line(&format!("--{boundary}"));
    line("Content-Description: Delivery report");
    line("Content-Type: message/delivery-status");
    line("");
    line(&format!("Reporting-MTA: dns; {}", r.myhostname));
    line(&format!("X-Postfix-Queue-ID: {}", r.queue_id));
    line(&format!("X-Postfix-Sender: rfc822; {}", r.original_sender));
    if let Some(envid) = r.envid {
        line(&format!("Original-Envelope-Id: {envid}"));
    }
    line(&format!(
        "Arrival-Date: {}",
        Tm::local(r.arrival_unix).rfc5322()
    ));
    for f in r.recipients {
        line("");
        line(&format!("Final-Recipient: rfc822; {}", f.address));
        if let Some(orcpt) = &f.orcpt {
            line(&format!("Original-Recipient: {orcpt}"));
        }
        line(if r.delay.is_some() {
            "Action: delayed"
        } else {
            "Action: failed"
        });
        line(&format!("Status: {}", f.dsn));
        if let Some(host) = f.relay.remote_host() {
            line(&format!("Remote-MTA: dns; {host}"));
        }
        match &f.remote_reply {
            Some(reply) => line(&format!("Diagnostic-Code: smtp; {reply}")),
            None => line(&format!("Diagnostic-Code: X-Postfix; {}", f.detail)),
        }
    }
    line("");

    // The returned message.
    let whole = !r.headers_only && r.delay.is_none() && r.original.len() <= RETURN_SIZE_LIMIT;
    line(&format!("--{boundary}"));
    if whole {
        line("Content-Description: Undelivered Message");
        line("Content-Type: message/rfc822");
    } else if r.delay.is_some() {
        line("Content-Description: Delayed Message Headers");
        line("Content-Type: text/rfc822-headers");
    } else {
        line("Content-Description: Undelivered Message Headers");
        line("Content-Type: text/rfc822-headers");
    }
    line("Content-Transfer-Encoding: 8bit");
    line("");
    let mut out = m.into_bytes();
    let returned = if whole {
        r.original
    } else {
        headers_of(r.original)
    };
    out.extend_from_slice(returned);
    if !returned.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    let mut tail = String::new();
    let _ = write!(tail, "\r\n--{boundary}--\r\n");
    out.extend_from_slice(tail.as_bytes());
    out
}

/// `3 hour(s)`, `2 day(s)`, `5 second(s)`: the largest whole unit.
fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 && s.is_multiple_of(86_400) {
        format!("{} day(s)", s / 86_400)
    } else if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} hour(s)", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} minute(s)", s / 60)
    } else {
        format!("{s} second(s)")
    }
}

/// The header section of a message, up to and including its last header
/// line.
fn headers_of(msg: &[u8]) -> &[u8] {
    if msg.starts_with(b"\r\n") {
        return &[];
    }
    match msg.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &msg[..i + 2],
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(recipients: &'a [Failed], original: &'a [u8], headers_only: bool) -> Report<'a> {
        Report {
            queue_id: "0123456789AB",
            myhostname: "mail.example.local",
            original_sender: "alice@example.org",
            to: "alice@example.org",
            arrival_unix: 1_700_000_000,
            now_unix: 1_700_000_100,
            envid: None,
            headers_only,
            audience: Audience::Sender,
            delay: None,
            recipients,
            original,
        }
    }

    fn failed() -> Failed {
        Failed {
            address: "bob@example.com".into(),
            orcpt: Some(Orcpt::rfc822("bob@example.com")),
            dsn: "5.1.1".parse().unwrap(),
            relay: Relay::Remote {
                host: "mx.example.com".into(),
                ip: "192.0.2.1".parse().unwrap(),
                port: 25,
            },
            detail: "host mx.example.com[192.0.2.1] said: 550 5.1.1 <bob@example.com>: User unknown (in reply to RCPT TO command)".into(),
            remote_reply: Some("550 5.1.1 <bob@example.com>: User unknown".into()),
            expired: false,
        }
    }

    #[test]
    fn a_bounce_is_a_delivery_status_report() {
        let rcpts = [failed()];
        let original = b"Subject: hi\r\nFrom: alice@example.org\r\n\r\nbody text\r\n";
        let text = String::from_utf8(build(&report(&rcpts, original, false))).unwrap();
        for want in [
            "From: MAILER-DAEMON@mail.example.local (Mail Delivery System)\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;\r\n",
            "This is the mail system at host mail.example.local.\r\n",
            "Reporting-MTA: dns; mail.example.local\r\n",
            "Final-Recipient: rfc822; bob@example.com\r\n",
            "Original-Recipient: rfc822;bob@example.com\r\n",
            "Action: failed\r\nStatus: 5.1.1\r\n",
            "Remote-MTA: dns; mx.example.com\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: User unknown\r\n",
            "Content-Type: message/rfc822\r\n",
            "body text\r\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(text.ends_with("--\r\n"));
    }

    #[test]
    fn ret_hdrs_returns_only_the_headers() {
        let rcpts = [failed()];
        let original = b"Subject: hi\r\n\r\nsecret body\r\n";
        let text = String::from_utf8(build(&report(&rcpts, original, true))).unwrap();
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n"));
        assert!(text.contains("Subject: hi\r\n"));
        assert!(!text.contains("secret body"));
    }

    #[test]
    fn a_delay_notice_says_delayed_and_returns_headers() {
        let mut f = failed();
        f.dsn = "4.4.1".parse().unwrap();
        f.detail = "connect to mx.example.com[192.0.2.1]:25: Connection refused".into();
        f.remote_reply = None;
        let rcpts = [f];
        let original = b"Subject: hi\r\n\r\nsecret body\r\n";
        let mut r = report(&rcpts, original, false);
        r.delay = Some(Delay {
            after: std::time::Duration::from_secs(4 * 3600),
            lifetime: std::time::Duration::from_secs(5 * 86_400),
        });
        let text = String::from_utf8(build(&r)).unwrap();
        for want in [
            "Subject: Delayed Mail (still being retried)\r\n",
            "for 4 hour(s), and will be tried again until it is 5 day(s) old.\r\n",
            "Action: delayed\r\nStatus: 4.4.1\r\n",
            "Diagnostic-Code: X-Postfix; connect to mx.example.com",
            "Content-Type: text/rfc822-headers\r\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("secret body"));
    }
}
