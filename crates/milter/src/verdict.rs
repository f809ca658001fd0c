//! What filters decide, as values: [`Verdict`] for each event,
//! [`Modification`] at end of message, [`MilterError`] when a filter
//! fails, and [`DefaultAction`] for what a failed filter stands for.

use std::fmt;

use postern_smtp::Reply;

/// The answer to one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (`SMFIR_CONTINUE`, or no filter had anything to say).
    Continue,
    /// `SMFIR_ACCEPT` from one filter: it wants no more events of this
    /// session (at connect or HELO) or of this message. A chain never
    /// answers it; it asks the next filter instead.
    Accept,
    /// `SMFIR_REJECT`: 550 5.7.1 Command rejected.
    Reject,
    /// `SMFIR_TEMPFAIL`: 451 4.7.1 Service unavailable - try again later.
    Tempfail,
    /// `SMFIR_REPLYCODE`: the filter's own 4xx or 5xx reply, maybe
    /// multi-line; also the reply a failed filter stands for.
    Reply(Reply),
    /// `SMFIR_DISCARD`: accept the message and throw it away.
    Discard,
    /// Accept the message but hold it (`SMFIR_QUARANTINE`, or the
    /// `quarantine` default action), with the reason.
    Quarantine(String),
    /// `SMFIR_SHUTDOWN`: 421 and close the session.
    Shutdown,
}

/// Postfix's texts for the verdicts without text of their own.
pub const REJECT_TEXT: &str = "550 5.7.1 Command rejected";
pub const TEMPFAIL_TEXT: &str = "451 4.7.1 Service unavailable - try again later";
pub const SHUTDOWN_TEXT: &str = "421 4.7.0 Server closing connection";

impl Verdict {
    /// The SMTP reply the client gets, for the verdicts that refuse the
    /// command: None for Continue, Accept, Discard and Quarantine (the
    /// command succeeds as it would without filters).
    pub fn reply(&self) -> Option<Reply> {
        let literal = |text| Reply::parse_line(text);
        match self {
            Verdict::Reject => literal(REJECT_TEXT),
            Verdict::Tempfail => literal(TEMPFAIL_TEXT),
            Verdict::Shutdown => literal(SHUTDOWN_TEXT),
            Verdict::Reply(r) => Some(r.clone()),
            Verdict::Continue | Verdict::Accept | Verdict::Discard | Verdict::Quarantine(_) => None,
        }
    }

    /// Whether this verdict lets the next filter of a chain see the event.
    pub fn goes_on(&self) -> bool {
        matches!(self, Verdict::Continue | Verdict::Accept)
    }
}

/// A change a filter asks for at end of message, in the order it asked.
/// Header values are what follows the colon, leading space included
/// (the client adds the space libmilter strips unless the filter asked
/// for `SMFIP_HDR_LEADSPC`), with folded lines separated by `\n`.
#[derive(Clone, PartialEq, Eq)]
pub enum Modification {
    /// `SMFIR_ADDHEADER`: append a header.
    AddHeader { name: String, value: String },
    /// `SMFIR_INSHEADER`: insert a header at `index` (0 is the top),
    /// counted in the headers the filters were shown.
    InsertHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// `SMFIR_CHGHEADER`: replace the `index`th (from 1) header named
    /// `name` (any case); an empty value deletes it.
    ChangeHeader {
        index: u32,
        name: String,
        value: String,
    },
    /// `SMFIR_REPLBODY`: the new body, its chunks concatenated, CRLF
    /// line ends as the filter sent them.
    ReplaceBody(Vec<u8>),
    /// `SMFIR_CHGFROM`: a new sender (`<address>`), with ESMTP parameters.
    ChangeSender {
        sender: String,
        args: Option<String>,
    },
    /// `SMFIR_ADDRCPT` / `SMFIR_ADDRCPT_PAR`: one more recipient.
    AddRecipient {
        recipient: String,
        args: Option<String>,
    },
    /// `SMFIR_DELRCPT`: remove a recipient, as given at RCPT.
    DeleteRecipient(String),
}

impl fmt::Debug for Modification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Modification::AddHeader { name, value } => write!(f, "AddHeader({name}:{value:?})"),
            Modification::InsertHeader { index, name, value } => {
                write!(f, "InsertHeader({index}, {name}:{value:?})")
            }
            Modification::ChangeHeader { index, name, value } => {
                write!(f, "ChangeHeader({index}, {name}:{value:?})")
            }
            // A body may be megabytes: show its size only.
            Modification::ReplaceBody(b) => write!(f, "ReplaceBody({} bytes)", b.len()),
            Modification::ChangeSender { sender, args } => {
                write!(f, "ChangeSender({sender}, {args:?})")
            }
            Modification::AddRecipient { recipient, args } => {
                write!(f, "AddRecipient({recipient}, {args:?})")
            }
            Modification::DeleteRecipient(r) => write!(f, "DeleteRecipient({r})"),
        }
    }
}

/// `milter_default_action`: what a filter that failed stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultAction {
    /// Go on as if the filter were not configured.
    Accept,
    /// 550 5.5.0 Service unavailable.
    Reject,
    /// 451 4.7.1 Service unavailable - try again later (the default).
    Tempfail,
    /// Accept the message and hold it ("default_action").
    Quarantine,
}

impl DefaultAction {
    /// Parses the parameter's words (any case).
    pub fn parse(text: &str) -> Option<DefaultAction> {
        match text.trim().to_ascii_lowercase().as_str() {
            "accept" => Some(DefaultAction::Accept),
            "reject" => Some(DefaultAction::Reject),
            "tempfail" => Some(DefaultAction::Tempfail),
            "quarantine" => Some(DefaultAction::Quarantine),
            _ => None,
        }
    }

    /// The verdict after a communication failure (Postfix's
    /// milter8_comm_error()).
    pub fn after_failure(self) -> Verdict {
        match self {
            DefaultAction::Accept => Verdict::Continue,
            DefaultAction::Reject => literal("550 5.5.0 Service unavailable"),
            DefaultAction::Tempfail => Verdict::Tempfail,
            DefaultAction::Quarantine => Verdict::Quarantine("default_action".into()),
        }
    }

    /// The verdict after a filter misbehaved in a way that is a
    /// configuration problem, such as a malformed reply (Postfix's
    /// milter8_conf_error(): reject and tempfail both defer).
    pub fn after_misconfiguration(self) -> Verdict {
        match self {
            DefaultAction::Accept => Verdict::Continue,
            DefaultAction::Quarantine => Verdict::Quarantine("default_action".into()),
            DefaultAction::Reject | DefaultAction::Tempfail => {
                literal("451 4.3.5 Server configuration problem - try again later")
            }
        }
    }
}

fn literal(text: &str) -> Verdict {
    Reply::parse_line(text).map_or(Verdict::Tempfail, Verdict::Reply)
}

/// A filter failed: it could not be reached, timed out, broke the
/// protocol or misbehaved. Log it once as a warning; the filter then
/// stands for its default action for the rest of the session.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.log_text())]
pub struct MilterError {
    /// The filter as configured (`inet:127.0.0.1:8891`).
    pub milter: String,
    pub kind: ErrorKind,
    /// What went wrong, in Postfix's words.
    pub reason: String,
}

/// The broad class of a [`MilterError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The socket could not be connected.
    Connect,
    /// Reading or writing failed, or timed out, or the filter closed.
    Io,
    /// A packet that does not decode, or a reply not allowed here.
    Protocol,
    /// A reply that decodes but cannot be used (malformed reply code,
    /// bad header index): Postfix's configuration error.
    Misbehaved,
}

impl MilterError {
    /// The line as Postfix logs it after `warning: `.
    pub fn log_text(&self) -> String {
        match self.kind {
            ErrorKind::Connect => {
                format!("connect to Milter service {}: {}", self.milter, self.reason)
            }
            _ => format!("milter {}: {}", self.milter, self.reason),
        }
    }
}

/// The answer to one event from one filter or a chain: the verdict, and
/// the failures to log that happened while getting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    pub errors: Vec<MilterError>,
}

impl Outcome {
    pub(crate) fn of(verdict: Verdict) -> Outcome {
        Outcome {
            verdict,
            errors: Vec::new(),
        }
    }
}

/// The answer at end of message: the verdict, the modifications asked
/// for by the filters that saw the message (in chain order), and the
/// failures to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageOutcome {
    pub verdict: Verdict,
    pub modifications: Vec<Modification>,
    pub errors: Vec<MilterError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_postfix_texts() {
        assert_eq!(
            Verdict::Reject.reply().unwrap().to_string(),
            "550 5.7.1 Command rejected"
        );
        assert_eq!(
            Verdict::Tempfail.reply().unwrap().to_string(),
            "451 4.7.1 Service unavailable - try again later"
        );
        assert!(Verdict::Discard.reply().is_none());
        assert_eq!(
            DefaultAction::Reject
                .after_failure()
                .reply()
                .unwrap()
                .to_string(),
            "550 5.5.0 Service unavailable"
        );
        assert_eq!(
            DefaultAction::Reject
                .after_misconfiguration()
                .reply()
                .unwrap()
                .to_string(),
            "451 4.3.5 Server configuration problem - try again later"
        );
        assert_eq!(DefaultAction::Accept.after_failure(), Verdict::Continue);
        assert_eq!(
            DefaultAction::parse("TempFail"),
            Some(DefaultAction::Tempfail)
        );
        assert_eq!(DefaultAction::parse("shutdown"), None);
    }

    #[test]
    fn errors_log_as_postfix() {
        let e = MilterError {
            milter: "inet:127.0.0.1:8891".into(),
            kind: ErrorKind::Io,
            reason: "can't read SMFIC_DATA reply packet header: Connection reset by peer".into(),
        };
        assert_eq!(
            e.to_string(),
            "milter inet:127.0.0.1:8891: can't read SMFIC_DATA reply packet header: Connection reset by peer"
        );
        let e = MilterError {
            kind: ErrorKind::Connect,
            reason: "Connection refused".into(),
            ..e
        };
        assert_eq!(
            e.to_string(),
            "connect to Milter service inet:127.0.0.1:8891: Connection refused"
        );
    }
}
