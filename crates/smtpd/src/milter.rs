//! smtpd's side of the milter protocol (postern-milter): the events of
//! each session go to `smtpd_milters` as Postfix's smtpd and cleanup send
//! them, and what the filters answer is applied here.
//!
//! - Connect, HELO, MAIL, RCPT (an accepted one) and DATA are sent as they
//!   happen; a refusal answers that command (a refusal at connect or HELO
//!   answers every later one too: the chain keeps giving it).
//! - The content goes at the end of the message, as cleanup sends the
//!   queue file: the message is kept whole in smtpd's memory while filters
//!   are in use (bounded by `message_size_limit`), our own Received header
//!   is hidden from them, as Postfix hides it, and the modifications they
//!   ask for are made before the message goes to qmgr.
//! - A filter that fails stands for its `milter_default_action`; the
//!   reason is logged once, naming the filter.
//!
//! Macros: `j`, `{daemon_name}`, `v`, `_`, `{daemon_addr}`,
//! `{daemon_port}`, `{client_addr}`, `{client_name}`, `{client_port}`,
//! `{client_ptr}`, `{tls_version}`, `{cipher}`, `{cipher_bits}`,
//! `i` (once the message has a queue ID:
//! Postern gives it at DATA, so `i` is not there at MAIL and RCPT as it is
//! in Postfix), `{auth_type}`, `{auth_authen}`, `{mail_addr}`,
//! `{mail_host}`, `{mail_mailer}`, `{rcpt_addr}`, `{rcpt_host}`,
//! `{rcpt_mailer}`.

use std::collections::HashMap;

use postern_milter::{ClientAddr, ClientInfo, Header, Modification, Verdict};
use postern_smtp::{Address, MailParams, RcptParams, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::queue::Queue;
use crate::session::{Session, Step, Transaction};

/// The macro values known at one stage.
#[derive(Debug, Default)]
pub struct Macros(HashMap<&'static str, String>);

impl Macros {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.insert(name, value.into());
    }

    /// Sets the address macros `{NAME_addr}`, `{NAME_host}` and
    /// `{NAME_mailer}` of the sender or a recipient.
    pub fn address(&mut self, which: Which, addr: &Address) {
        let (a, h, m) = match which {
            Which::Mail => ("mail_addr", "mail_host", "mail_mailer"),
            Which::Rcpt => ("rcpt_addr", "rcpt_host", "rcpt_mailer"),
        };
        self.set(a, addr.to_string());
        let domain = addr.domain().unwrap_or_default().to_string();
        // Postfix names the transport; smtpd does not route, so it says
        // what trivial-rewrite would for a remote address.
        self.set(m, if domain.is_empty() { "local" } else { "smtp" });
        self.set(h, domain);
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Whose address macros ([`Macros::address`]).
#[derive(Debug, Clone, Copy)]
pub enum Which {
    Mail,
    Rcpt,
}

/// A message split for the filters: what they must not see (our
/// Received header and anything PREPENDed before it stays first), the
/// headers they see, and the body.
#[derive(Debug)]
pub struct Split {
    pub hidden: Vec<u8>,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl Split {
    /// Splits `content` (CRLF lines) after its first `hidden` bytes.
    pub fn new(content: &[u8], hidden: usize) -> Split {
        let hidden_len = hidden.min(content.len());
        let rest = &content[hidden_len..];
        let mut headers: Vec<Header> = Vec::new();
        let mut at = 0;
        while at < rest.len() {
            let end = rest[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| at + i + 1);
            let line = &rest[at..end];
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.is_empty() {
                at = end;
                break;
            }
            let text = String::from_utf8_lossy(text);
            match (text.starts_with([' ', '\t']), headers.last_mut()) {
                (true, Some(last)) => {
                    last.value.push('\n');
                    last.value.push_str(&text);
                }
                _ => match text.split_once(':') {
                    Some((name, value)) => headers.push(Header::new(name.trim_end(), value)),
                    // Not a header: the body starts here (smtpd added the
                    // empty line before it).
                    None => break,
                },
            }
            at = end;
        }
        Split {
            hidden: content[..hidden_len].to_vec(),
            headers,
            body: rest[at.min(rest.len())..].to_vec(),
        }
    }

    /// Makes the header and body changes, in the order the filters asked.
    pub fn apply(&mut self, m: &Modification) {
        match m {
            Modification::AddHeader { name, value } => {
                self.headers.push(Header::new(name, value));
            }
            Modification::InsertHeader { index, name, value } => {
                let at = (*index as usize).min(self.headers.len());
                self.headers.insert(at, Header::new(name, value));
            }
            Modification::ChangeHeader { index, name, value } => {
                let found = self
                    .headers
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.name.eq_ignore_ascii_case(name))
                    .nth((*index as usize).max(1) - 1)
                    .map(|(i, _)| i);
                match (found, value.is_empty()) {
                    (Some(i), true) => {
                        self.headers.remove(i);
                    }
                    (Some(i), false) => self.headers[i].value = value.clone(),
                    // libmilter: changing a header that is not there adds it.
                    (None, false) => self.headers.push(Header::new(name, value)),
                    (None, true) => {}
                }
            }
            Modification::ReplaceBody(body) => self.body = crlf(body),
            _ => {}
        }
    }

    /// The message again, CRLF line ends.
    pub fn into_content(self) -> Vec<u8> {
        let mut out = self.hidden;
        for h in &self.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.push(b':');
            out.extend_from_slice(&crlf(h.value.as_bytes()));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// `bytes` with every bare LF made CRLF (filters fold headers with `\n`,
/// and may send a body with bare LFs).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"Received: ours\r\n\tfolded\r\nSubject: hi\r\nX-A: 1\r\n  two\r\nX-A: 2\r\n\r\nbody\r\n";

    #[test]
    fn filters_see_the_headers_without_ours_and_their_changes_are_made() {
        let hidden = b"Received: ours\r\n\tfolded\r\n".len();
        let mut s = Split::new(MSG, hidden);
        let names: Vec<_> = s.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Subject", "X-A", "X-A"]);
        assert_eq!(s.headers[1].value, " 1\n  two");
        assert_eq!(s.body, b"body\r\n");
        for m in [
            Modification::ChangeHeader {
                index: 2,
                name: "x-a".into(),
                value: " second".into(),
            },
            Modification::ChangeHeader {
                index: 1,
                name: "X-A".into(),
                value: String::new(),
            },
            Modification::InsertHeader {
                index: 0,
                name: "DKIM-Signature".into(),
                value: " v=1;\n\tb=x".into(),
            },
            Modification::AddHeader {
                name: "X-Spam-Status".into(),
                value: " No".into(),
            },
            Modification::ReplaceBody(b"new\nbody\n".to_vec()),
        ] {
            s.apply(&m);
        }
        assert_eq!(
            String::from_utf8(s.into_content()).unwrap(),
            "Received: ours\r\n\tfolded\r\nDKIM-Signature: v=1;\r\n\tb=x\r\nSubject: hi\r\n\
             X-A: second\r\nX-Spam-Status: No\r\n\r\nnew\r\nbody\r\n"
        );
    }
}

/// What the filters made of a message at its end.
#[derive(Debug)]
pub enum Judged {
    /// Queue it: the content as the filters left it, their envelope
    /// changes, and whether one quarantined it (hold).
    Accept {
        content: Vec<u8>,
        changes: EnvelopeChanges,
        hold: bool,
    },
    /// Say it was queued, and drop it.
    Discard,
    /// Refuse it with this reply; the step after it.
    Refuse(Reply, Step),
}

/// The envelope changes filters asked for: a new sender, recipients to
/// add and to delete.
#[derive(Debug, Default)]
pub struct EnvelopeChanges {
    sender: Option<Address>,
    add: Vec<Address>,
    delete: Vec<String>,
}

impl EnvelopeChanges {
    fn note(&mut self, m: &Modification) {
        let path = |text: &str| {
            let t = text.trim();
            match t.starts_with('<') {
                true => Address::parse_path(t),
                false => Address::parse(t),
            }
        };
        match m {
            Modification::ChangeSender { sender, .. } => match path(sender) {
                Ok(a) => self.sender = Some(a),
                Err(e) => tracing::warn!("milter: bad sender {sender}: {e}; not changed"),
            },
            Modification::AddRecipient { recipient, .. } => match path(recipient) {
                Ok(a) => self.add.push(a),
                Err(e) => tracing::warn!("milter: bad recipient {recipient}: {e}; not added"),
            },
            Modification::DeleteRecipient(r) => {
                let r = r.trim();
                let r = r
                    .strip_prefix('<')
                    .and_then(|r| r.strip_suffix('>'))
                    .unwrap_or(r);
                self.delete.push(r.to_ascii_lowercase());
            }
            _ => {}
        }
    }

    /// Makes the changes to the transaction's envelope.
    pub fn apply(self, tx: &mut Transaction) {
        if let Some(s) = self.sender {
            tx.sender = s;
        }
        if !self.delete.is_empty() {
            tx.recipients
                .retain(|(r, _)| !self.delete.contains(&r.to_string().to_ascii_lowercase()));
        }
        for a in self.add {
            tx.recipients.push((a, RcptParams::default()));
        }
    }
}

/// One event for the filters, with what it carries.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Connect,
    Helo(&'a str),
    Mail(&'a Address, &'a MailParams),
    Rcpt(&'a Address, &'a RcptParams),
    /// A RCPT smtpd refused, for the filters that asked to see those.
    RejectedRcpt(&'a Address, &'a RcptParams),
    Data,
    /// A command smtpd does not know, as the client sent it.
    Unknown(&'a str),
}

/// ESMTP parameters as the filters get them, one per argument.
fn args(params: &dyn std::fmt::Display) -> Vec<String> {
    params
        .to_string()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    /// The macros of the session and transaction now; `rcpt` is the
    /// recipient of a RCPT event, `id` the queue ID once there is one.
    fn milter_macros(&self, rcpt: Option<&Address>, id: Option<&str>) -> Macros {
        let mut m = Macros::default();
        let c = &self.client;
        m.set("j", self.settings.hostname.clone());
        m.set("_", format!("{} [{}]", c.name, c.addr));
        m.set("client_addr", c.addr.to_string());
        m.set("client_name", c.name.clone());
        m.set("client_ptr", c.name.clone());
        m.set("client_port", c.port.to_string());
        if let Some(local) = c.local {
            m.set("daemon_addr", local.ip().to_canonical().to_string());
            m.set("daemon_port", local.port().to_string());
        }
        if let Some(tls) = &self.tls {
            m.set("tls_version", tls.protocol);
            m.set("cipher", tls.cipher.clone());
            m.set("cipher_bits", tls.bits.to_string());
        }
        if let Some(login) = &self.sasl {
            m.set("auth_type", login.method);
            m.set("auth_authen", login.username.clone());
        }
        if let Some(tx) = &self.tx {
            m.address(Which::Mail, &tx.sender);
        }
        if let Some(r) = rcpt {
            m.address(Which::Rcpt, r);
        }
        if let Some(id) = id {
            m.set("i", id);
        }
        m
    }

    /// Sends one event to the filters; their verdict. Filter failures are
    /// logged here, once each.
    pub(crate) async fn milter_event(&mut self, event: Event<'_>) -> Verdict {
        let Some(mut milters) = self.milters.take() else {
            return Verdict::Continue;
        };
        let rcpt = match event {
            Event::Rcpt(r, _) | Event::RejectedRcpt(r, _) => Some(r),
            _ => None,
        };
        let macros = self.milter_macros(rcpt, None);
        let source = |name: &str| macros.get(name);
        let outcome = match event {
            Event::Connect => {
                let info = ClientInfo {
                    name: self.client.name.clone(),
                    addr: ClientAddr::Inet(std::net::SocketAddr::new(
                        self.client.addr,
                        self.client.port,
                    )),
                };
                milters.connect(&info, &source).await
            }
            Event::Helo(name) => milters.helo(name, &source).await,
            Event::Mail(from, p) => milters.mail(&from.to_path(), &args(p), &source).await,
            Event::Rcpt(to, p) => milters.rcpt(&to.to_path(), &args(p), &source).await,
            Event::RejectedRcpt(to, p) => {
                milters
                    .rejected_rcpt(&to.to_path(), &args(p), &source)
                    .await
            }
            Event::Data => milters.data(&source).await,
            Event::Unknown(command) => milters.unknown(command, &source).await,
        };
        self.milters = Some(milters);
        for e in &outcome.errors {
            tracing::warn!("{e}");
        }
        outcome.verdict
    }

    /// What a verdict at `verb` means for the command: the refusal to send
    /// (logged as Postfix logs `milter-reject`), or None to go on. A
    /// DISCARD before the end of the message drops the message later.
    pub(crate) fn milter_refusal(
        &mut self,
        verb: &str,
        verdict: &Verdict,
        rcpt: Option<&Address>,
    ) -> Option<(Reply, Step)> {
        if *verdict == Verdict::Discard {
            if let Some(tx) = self.tx.as_mut() {
                tx.actions.discard = true;
            }
            self.log_whatsup(
                None,
                "milter-discard",
                verb,
                "milter triggers DISCARD action",
                rcpt,
            );
            return None;
        }
        let reply = verdict.reply()?;
        self.log_whatsup(None, "milter-reject", verb, &reply.to_string(), rcpt);
        let step = match verdict {
            Verdict::Shutdown => Step::Close,
            _ => Step::Err,
        };
        Some((reply, step))
    }

    /// The whole message to the filters, and what they made of it.
    pub(crate) async fn milter_message(
        &mut self,
        id: &str,
        content: Vec<u8>,
        own: &[u8],
    ) -> Judged {
        let Some(mut milters) = self.milters.take() else {
            return Judged::Accept {
                content,
                changes: EnvelopeChanges::default(),
                hold: false,
            };
        };
        // Our own header is hidden only while it is still there as we
        // wrote it (a header_checks IGNORE may have taken it away).
        let hidden = if content.starts_with(own) {
            own.len()
        } else {
            0
        };
        let mut split = Split::new(&content, hidden);
        let macros = self.milter_macros(None, Some(id));
        let source = |name: &str| macros.get(name);
        let outcome = milters
            .message(&split.headers, &[split.body.as_slice()], &source)
            .await;
        self.milters = Some(milters);
        for e in &outcome.errors {
            tracing::warn!("{e}");
        }
        let verb = "END-OF-MESSAGE";
        let mut hold = false;
        match &outcome.verdict {
            Verdict::Discard => {
                self.log_whatsup(
                    Some(id),
                    "milter-discard",
                    verb,
                    "milter triggers DISCARD action",
                    None,
                );
                return Judged::Discard;
            }
            Verdict::Quarantine(reason) => {
                let text = if reason.is_empty() {
                    "milter triggers HOLD action"
                } else {
                    reason
                };
                self.log_whatsup(Some(id), "milter-hold", verb, text, None);
                hold = true;
            }
            v => {
                if let Some(reply) = v.reply() {
                    self.log_whatsup(Some(id), "milter-reject", verb, &reply.to_string(), None);
                    let step = match v {
                        Verdict::Shutdown => Step::Close,
                        _ => Step::Err,
                    };
                    return Judged::Refuse(reply, step);
                }
            }
        }
        let mut changes = EnvelopeChanges::default();
        if outcome.modifications.is_empty() {
            return Judged::Accept {
                content,
                changes,
                hold,
            };
        }
        for m in &outcome.modifications {
            split.apply(m);
            changes.note(m);
        }
        Judged::Accept {
            content: split.into_content(),
            changes,
            hold,
        }
    }

    /// The message (or transaction) is over for the filters.
    pub(crate) async fn milter_abort(&mut self) {
        if let Some(m) = self.milters.as_mut() {
            for e in m.abort().await {
                tracing::warn!("{e}");
            }
        }
    }

    /// The session is over: QUIT to each filter.
    pub(crate) async fn milter_quit(&mut self) {
        if let Some(mut m) = self.milters.take() {
            m.quit().await;
        }
    }
}
