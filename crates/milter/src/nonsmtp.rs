//! Mail that does not arrive over SMTP (the sendmail command, pickup)
//! through `non_smtpd_milters`, as Postfix's cleanup emulates an SMTP
//! session for it (cleanup_milter.c): connect from `localhost`
//! [127.0.0.1] port 0, EHLO `localhost`, MAIL with the sender, RCPT
//! for each recipient, DATA, then the message whole. [`judge`] returns
//! what the filters made of it as plain values, and logs their actions
//! in Postfix's words (`ID: milter-reject: END-OF-MESSAGE from
//! localhost[127.0.0.1]: 5.7.1 text; from=<sender>`).
//!
//! As in Postfix, a filter may refuse the emulated connect, HELO, MAIL,
//! DATA or message, but not a recipient: a refused RCPT is a
//! configuration error that defers the message with 4.3.5.
//!
//! Macros, Postfix's for local submissions: `j`, `_`, `{client_addr}`,
//! `{client_name}`, `{client_port}`, `{client_ptr}`, `{daemon_addr}`,
//! `{daemon_port}`, `i`, `{mail_addr}`, `{rcpt_addr}`, and from the
//! settings `{daemon_name}` and `v`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use postern_smtp::Reply;

use crate::chain::Milters;
use crate::client::{ClientAddr, ClientInfo};
use crate::macros::MacroValues;
use crate::message::Split;
use crate::settings::MilterSettings;
use crate::verdict::{MilterError, Verdict};

/// The client name and address a local submission pretends to come from.
pub const CLIENT_NAME: &str = "localhost";
pub const CLIENT_ADDR: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// One message to judge.
#[derive(Debug)]
pub struct Submission<'a> {
    /// The queue ID (the `i` macro, and the log lines).
    pub queue_id: &'a str,
    /// `myhostname` (the `j` macro).
    pub hostname: &'a str,
    /// The envelope sender, empty for the null sender.
    pub sender: &'a str,
    pub recipients: &'a [String],
    /// The whole message, CRLF lines.
    pub content: &'a [u8],
}

/// What the filters made of a submission.
#[derive(Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Queue it as they left it: the content, the envelope, and the
    /// quarantine reason when one quarantined it (hold).
    Accept {
        content: Vec<u8>,
        sender: String,
        recipients: Vec<String>,
        hold: Option<String>,
    },
    /// Drop it as if delivered.
    Discard,
    /// Refuse it: a 4xx reply defers, a 5xx one rejects.
    Refuse(Reply),
}

/// How an event's verdict ends the emulated session, if it does.
enum Stop {
    Discard,
    Refuse(Reply),
}

/// Sends `msg` through the filters of `settings`.
pub async fn judge(settings: &MilterSettings, msg: &Submission<'_>) -> Judgement {
    let mut milters = Milters::new(settings);
    let judgement = session(&mut milters, msg).await;
    milters.quit().await;
    judgement
}

async fn session(milters: &mut Milters, msg: &Submission<'_>) -> Judgement {
    let mut macros = MacroValues::default();
    macros.set("j", msg.hostname.to_string());
    macros.set("_", format!("{CLIENT_NAME} [{CLIENT_ADDR}]"));
    macros.set("client_addr", CLIENT_ADDR.to_string());
    macros.set("client_name", CLIENT_NAME.to_string());
    macros.set("client_port", "0".to_string());
    macros.set("client_ptr", CLIENT_NAME.to_string());
    macros.set("daemon_addr", CLIENT_ADDR.to_string());
    macros.set("daemon_port", "0".to_string());
    macros.set("i", msg.queue_id.to_string());
    macros.set("mail_addr", msg.sender.to_string());

    let client = ClientInfo {
        name: CLIENT_NAME.to_string(),
        addr: ClientAddr::Inet(SocketAddr::new(CLIENT_ADDR, 0)),
    };
    // A quarantine (the default action of a failed filter may ask for
    // one before the end) holds the message; it does not stop it.
    let mut hold = None;
    let o = milters.connect(&client, &macros).await;
    if let Some(stop) = stop(msg, &mut hold, "CONNECT", o.verdict, &o.errors) {
        return stop.into();
    }
    let o = milters.helo(CLIENT_NAME, &macros).await;
    if let Some(stop) = stop(msg, &mut hold, "EHLO", o.verdict, &o.errors) {
        return stop.into();
    }
    // Postfix sends the address bare, and the null sender as empty.
    let o = milters.mail(msg.sender, &[], &macros).await;
    if let Some(stop) = stop(msg, &mut hold, "MAIL", o.verdict, &o.errors) {
        return stop.into();
    }
    for rcpt in msg.recipients {
        macros.set("rcpt_addr", rcpt.clone());
        let o = milters.rcpt(rcpt, &[], &macros).await;
        log_errors(&o.errors);
        if o.verdict.reply().is_some() {
            tracing::warn!(
                "{}: milter configuration error: can't reject recipient in non-smtpd(8) submission",
                msg.queue_id
            );
            tracing::warn!("{}: message not accepted, try again later", msg.queue_id);
            return Judgement::Refuse(configuration_error());
        }
    }
    macros.remove("rcpt_addr");
    let o = milters.data(&macros).await;
    if let Some(stop) = stop(msg, &mut hold, "DATA", o.verdict, &o.errors) {
        return stop.into();
    }
    let mut split = Split::new(msg.content, 0);
    let o = milters
        .message(&split.headers, &[split.body.as_slice()], &macros)
        .await;
    if let Some(stop) = stop(msg, &mut hold, "END-OF-MESSAGE", o.verdict, &o.errors) {
        return stop.into();
    }
    if o.modifications.is_empty() {
        return Judgement::Accept {
            content: msg.content.to_vec(),
            sender: msg.sender.to_string(),
            recipients: msg.recipients.to_vec(),
            hold,
        };
    }
    let changes = split.edit(&o.modifications);
    let mut recipients: Vec<String> = msg
        .recipients
        .iter()
        .filter(|r| !changes.deletes(r))
        .cloned()
        .collect();
    recipients.extend(changes.add.iter().map(|a| a.to_string()));
    Judgement::Accept {
        content: split.into_content(),
        sender: changes
            .sender
            .map_or_else(|| msg.sender.to_string(), |s| s.to_string()),
        recipients,
        hold,
    }
}

impl From<Stop> for Judgement {
    fn from(stop: Stop) -> Judgement {
        match stop {
            Stop::Discard => Judgement::Discard,
            Stop::Refuse(reply) => Judgement::Refuse(reply),
        }
    }
}

/// Postfix's reason when a filter refuses a recipient of non-SMTP mail.
fn configuration_error() -> Reply {
    Reply::parse_line("451 4.3.5 Server configuration error").expect("a valid reply")
}

/// Logs the filters' failures and their action; the way `verdict` ends
/// the session, if it does. A quarantine is noted in `hold`.
fn stop(
    msg: &Submission<'_>,
    hold: &mut Option<String>,
    event: &str,
    verdict: Verdict,
    errors: &[MilterError],
) -> Option<Stop> {
    log_errors(errors);
    match verdict {
        Verdict::Quarantine(reason) => {
            let text = match reason.is_empty() {
                true => "milter triggers HOLD action",
                false => &reason,
            };
            log_action(msg, "milter-hold", event, text);
            *hold = Some(reason);
            None
        }
        Verdict::Discard => {
            log_action(
                msg,
                "milter-discard",
                event,
                "milter triggers DISCARD action",
            );
            Some(Stop::Discard)
        }
        v => {
            let reply = v.reply()?;
            let text = reply.to_string();
            // The log names the reply without its code, as Postfix's does.
            let text = text.get(4..).unwrap_or(&text);
            log_action(msg, "milter-reject", event, text);
            Some(Stop::Refuse(reply))
        }
    }
}

fn log_action(msg: &Submission<'_>, action: &str, event: &str, text: &str) {
    tracing::info!(
        "{}: {action}: {event} from {CLIENT_NAME}[{CLIENT_ADDR}]: {text}; from=<{}>",
        msg.queue_id,
        msg.sender
    );
}

fn log_errors(errors: &[MilterError]) {
    for e in errors {
        tracing::warn!("{e}");
    }
}
