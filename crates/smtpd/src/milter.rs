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

use postern_milter::{ClientAddr, ClientInfo, EnvelopeChanges, MacroValues, Split, Verdict};
use postern_smtp::{Address, MailParams, RcptParams, Reply};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::queue::Queue;
use crate::session::{Session, Step, Transaction};

/// Sets the address macros `{NAME_addr}`, `{NAME_host}` and
/// `{NAME_mailer}` of the sender or a recipient.
fn set_address(m: &mut MacroValues, which: Which, addr: &Address) {
    let (a, h, t) = match which {
        Which::Mail => ("mail_addr", "mail_host", "mail_mailer"),
        Which::Rcpt => ("rcpt_addr", "rcpt_host", "rcpt_mailer"),
    };
    m.set(a, addr.to_string());
    let domain = addr.domain().unwrap_or_default().to_string();
    // Postfix names the transport; smtpd does not route, so it says
    // what trivial-rewrite would for a remote address.
    m.set(t, if domain.is_empty() { "local" } else { "smtp" });
    m.set(h, domain);
}

/// Whose address macros (`set_address`).
#[derive(Debug, Clone, Copy)]
pub enum Which {
    Mail,
    Rcpt,
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

/// Makes the filters' envelope changes to the transaction.
pub fn change_envelope(changes: EnvelopeChanges, tx: &mut Transaction) {
    if !changes.delete.is_empty() {
        tx.recipients
            .retain(|(r, _)| !changes.deletes(&r.to_string()));
    }
    if let Some(s) = changes.sender {
        tx.sender = s;
    }
    for a in changes.add {
        tx.recipients.push((a, RcptParams::default()));
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
    fn milter_macros(&self, rcpt: Option<&Address>, id: Option<&str>) -> MacroValues {
        let mut m = MacroValues::default();
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
            set_address(&mut m, Which::Mail, &tx.sender);
        }
        if let Some(r) = rcpt {
            set_address(&mut m, Which::Rcpt, r);
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
        if outcome.modifications.is_empty() {
            return Judged::Accept {
                content,
                changes: EnvelopeChanges::default(),
                hold,
            };
        }
        let changes = split.edit(&outcome.modifications);
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
