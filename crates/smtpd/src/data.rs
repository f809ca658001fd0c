//! DATA and BDAT: receiving the message and handing it to the queue.
//!
//! The queue ID comes from qmgr at the first DATA or BDAT. Content is
//! streamed to qmgr in chunks as it arrives; nothing waits for the whole
//! message. Whatever goes wrong after that (size, hops, a queue error, a
//! refused bare LF) the rest of the message is still read, so the client
//! and this server agree on where the next command starts, and qmgr is told
//! to drop what it got.

use std::net::IpAddr;

use postern_daemon::date::{self, Tm};
use postern_envelope::EnhancedStatus;
use postern_ipc::BODY_CHUNK;
use postern_ipc::qmgr::{ClientInfo, Envelope, EnvelopeRecipient};
use postern_smtp::{Address, BareNewlinePolicy, Body, DataDecoder, Reply, data_start_reply};
use tokio::io::{AsyncRead, AsyncWrite};

use postern_content::{Inspector, LogContext, Verdict};

use crate::message::{Message, MessageSetup, ReceivedHeader};
use crate::milter::{Event, Judged, change_envelope};
use crate::policy::Stage;
use crate::queue::{Queue, QueueError};
use crate::session::{IoError, Session, Step, Transaction};

/// A message arriving in BDAT chunks.
#[derive(Debug)]
pub struct Bdat {
    id: String,
    msg: Message,
    /// The first queue error; the rest of the message is read and dropped.
    failed: Option<QueueError>,
}

/// Sends full chunks to the queue unless it already failed.
async fn send_chunks<Q: Queue>(
    queue: &mut Q,
    chunks: Vec<Vec<u8>>,
    failed: &mut Option<QueueError>,
) {
    for chunk in chunks {
        if failed.is_some() {
            return;
        }
        if let Err(e) = queue.body(chunk).await {
            *failed = Some(e);
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    /// The checks DATA and the first BDAT share; `Err` carries the step
    /// after the refusal reply has been queued.
    async fn data_allowed(&mut self, verb: &str) -> Result<(), Step> {
        match &self.tx {
            None => {
                return Err(self.refuse("503 5.5.1 Error: need RCPT command"));
            }
            Some(tx) if tx.recipients.is_empty() => {
                return Err(self.refuse("554 5.5.1 Error: no valid recipients"));
            }
            Some(_) => {}
        }
        if let Some(refusal) = self.policy_check(Stage::Data, None).await {
            self.log_reject(verb, &refusal, None);
            self.io.reply(&refusal);
            return Err(Step::Err);
        }
        Ok(())
    }

    /// DATA (or the first BDAT) for the filters.
    async fn data_milters(&mut self, verb: &str) -> Result<(), Step> {
        if self.milters.is_none() {
            return Ok(());
        }
        let verdict = self.milter_event(Event::Data).await;
        match self.milter_refusal(verb, &verdict, None) {
            Some((refusal, step)) => {
                self.io.reply(&refusal);
                Err(step)
            }
            None => Ok(()),
        }
    }

    /// Asks qmgr for a queue ID and prepares the message with our
    /// Received header.
    async fn start_message(&mut self) -> Result<(String, Message), Step> {
        let id = match self.queue.begin().await {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!("{}: queue file write error: {e}", self.client.namaddr());
                self.tx = None;
                return Err(self.refuse("451 4.3.0 Error: queue file write error"));
            }
        };
        match &self.sasl {
            Some(login) => tracing::info!(
                "{id}: client={}, sasl_method={}, sasl_username={}",
                self.client.namaddr(),
                login.method,
                login.username
            ),
            None => tracing::info!("{id}: client={}", self.client.namaddr()),
        }
        let tls = self
            .tls
            .as_ref()
            .filter(|_| self.settings.tls_received_header)
            .map(ToString::to_string);
        let date = Tm::local(date::unix_now()).rfc5322();
        let single = match self.tx.as_ref().map(|t| t.recipients.as_slice()) {
            Some([(rcpt, _)]) => Some(rcpt.to_string()),
            _ => None,
        };
        let s = &self.settings;
        // RFC 5321 address literal form, as Postfix writes it.
        let client_addr = match self.client.addr {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("IPv6:{a}"),
        };
        let received = ReceivedHeader {
            helo: self.helo.as_deref(),
            client_name: &self.client.name,
            client_addr: &client_addr,
            hostname: &s.hostname,
            mail_name: &s.mail_name,
            protocol: self.protocol(),
            tls: tls.as_deref(),
            id: &id,
            single_recipient: single.as_deref(),
            date: &date,
        };
        // PREPEND'ed headers come before our Received header, as
        // Postfix's smtpd writes them.
        let mut head = String::new();
        for h in self.tx.iter().flat_map(|t| &t.actions.prepend) {
            head.push_str(h);
            head.push_str("\r\n");
        }
        let received = head + &received.to_string();
        let inspector = match &s.content {
            _ if s.overrides.no_header_body_checks => None,
            Ok(checks) => checks
                .as_ref()
                .map(|c| Inspector::new(c, self.log_context(&id))),
            Err(e) => {
                tracing::warn!("{id}: header or body checks unusable: {e}");
                self.queue.abort().await;
                self.tx = None;
                return Err(self.refuse("451 4.3.5 Server configuration error"));
            }
        };
        let s = &self.settings;
        let msg = Message::new(MessageSetup {
            id: &id,
            hostname: &s.hostname,
            received,
            date: &date,
            size_limit: s.message_size_limit,
            line_limit: s.line_length_limit,
            header_limit: s.header_size_limit,
            inspector,
            hold_whole: self.milters.as_ref().is_some_and(|m| !m.is_empty())
                || self.signs_outgoing()
                || !self.in_mynetworks(),
        });
        Ok((id, msg))
    }

    /// Mail from mynetworks and authenticated clients is signed when a
    /// DKIM signing table is set (as opendkim signs for its InternalHosts
    /// and authenticated senders).
    fn signs_outgoing(&self) -> bool {
        self.trusted_client() && !matches!(self.settings.dkim, Ok(None))
    }

    /// A client in mynetworks or authenticated: its mail is signed, not
    /// checked.
    pub(crate) fn trusted_client(&self) -> bool {
        self.sasl.is_some() || self.in_mynetworks()
    }

    /// A client in mynetworks: this host's own domain of administration,
    /// whose Authentication-Results are kept (a content filter hands mail
    /// back from there with ours in it).
    pub(crate) fn in_mynetworks(&self) -> bool {
        self.settings
            .policy
            .as_ref()
            .is_ok_and(|p| p.in_mynetworks(self.client.addr))
    }

    /// The message with our DKIM-Signature on top, when one applies
    /// (logged as opendkim logs it); Err is the reply for a signer that
    /// cannot be used or a table that fails.
    fn dkim_sign(&self, id: &str, content: Vec<u8>) -> Result<Vec<u8>, &'static str> {
        if !self.signs_outgoing() {
            return Ok(content);
        }
        let signer = match &self.settings.dkim {
            Ok(Some(signer)) => signer,
            Ok(None) => return Ok(content),
            Err(e) => {
                tracing::warn!("{id}: DKIM signing unusable: {e}");
                return Err("451 4.3.5 Server configuration error");
            }
        };
        match signer.sign(&content) {
            Ok(Some(header)) => {
                let tag = |t: &str| {
                    header
                        .split(';')
                        .find_map(|p| p.trim().strip_prefix(t))
                        .unwrap_or("")
                        .to_string()
                };
                tracing::info!(
                    "{id}: DKIM-Signature field added (s={}, d={})",
                    tag("s="),
                    tag("d=")
                );
                let mut signed = header.into_bytes();
                signed.extend_from_slice(&content);
                Ok(signed)
            }
            Ok(None) => Ok(content),
            Err(e) => {
                tracing::warn!("{id}: DKIM signing failed: {e}");
                Err("451 4.3.5 Server configuration error")
            }
        }
    }

    /// Who and what the content checks name in their log lines.
    fn log_context(&self, id: &str) -> LogContext {
        let tx = self.tx.as_ref();
        LogContext {
            queue_id: id.to_string(),
            client: self.client.namaddr(),
            sender: tx.map(|t| t.sender.to_string()),
            recipient: tx
                .and_then(|t| t.recipients.last())
                .map(|(r, _)| r.to_string()),
            protocol: Some(self.protocol().to_string()),
            helo: self.helo.clone(),
        }
    }

    pub(crate) async fn data(&mut self, command_bare_lf: bool) -> Result<Step, IoError> {
        if self.tx.as_ref().is_some_and(|t| t.bdat.is_some()) {
            return Ok(self.refuse("503 5.5.1 Error: BDAT and DATA cannot be mixed"));
        }
        if let Err(step) = self.data_allowed("DATA").await {
            return Ok(step);
        }
        if let Err(step) = self.data_milters("DATA").await {
            return Ok(step);
        }
        let (id, mut msg) = match self.start_message().await {
            Ok(started) => started,
            Err(step) => return Ok(step),
        };
        self.io.reply(&data_start_reply());
        let mut decoder = DataDecoder::new(self.settings.bare_newline, 0);
        if command_bare_lf {
            decoder = decoder.after_bare_newline();
        }
        let mut decoded = Vec::new();
        let mut failed = None;
        let bare_lf = loop {
            if !self.io.input().is_empty() {
                let progress = decoder.feed(self.io.input(), &mut decoded);
                self.io.consume(progress.consumed);
                msg.push(&decoded);
                decoded.clear();
                send_chunks(&mut self.queue, msg.take_chunks(), &mut failed).await;
                if progress.done {
                    break progress.bare_newline_seen;
                }
            }
            if let Err(e) = self.io.fill().await {
                self.queue.abort().await;
                self.tx = None;
                return Err(e);
            }
        };
        Ok(self.finish_message(id, msg, failed, bare_lf).await)
    }

    pub(crate) async fn bdat(&mut self, size: u64, last: bool) -> Result<Step, IoError> {
        let in_progress = self.tx.as_mut().and_then(|t| t.bdat.take());
        let mut bdat = match in_progress {
            Some(bdat) => bdat,
            None => {
                let started = match self.data_allowed("BDAT").await {
                    Ok(()) => match self.data_milters("BDAT").await {
                        Ok(()) => self.start_message().await,
                        Err(step) => Err(step),
                    },
                    Err(step) => Err(step),
                };
                match started {
                    Ok((id, msg)) => Bdat {
                        id,
                        msg,
                        failed: None,
                    },
                    Err(step) => {
                        self.io.discard(size).await?;
                        return Ok(step);
                    }
                }
            }
        };
        let mut left = size;
        while left > 0 {
            if self.io.input().is_empty()
                && let Err(e) = self.io.fill().await
            {
                self.queue.abort().await;
                self.tx = None;
                return Err(e);
            }
            let input = self.io.input();
            let take = (input.len() as u64).min(left) as usize;
            bdat.msg.push(&input[..take]);
            self.io.consume(take);
            left -= take as u64;
            send_chunks(&mut self.queue, bdat.msg.take_chunks(), &mut bdat.failed).await;
        }
        if last || bdat.msg.too_big() || bdat.failed.is_some() {
            // RFC 3030: after a failed chunk the client sends no more.
            return Ok(self
                .finish_message(bdat.id, bdat.msg, bdat.failed, false)
                .await);
        }
        self.io.reply(&Reply::new(
            250,
            Some(EnhancedStatus::OK),
            &format!("Ok: {size} bytes"),
        ));
        if let Some(tx) = self.tx.as_mut() {
            tx.bdat = Some(bdat);
        }
        Ok(Step::Ok)
    }

    /// The end of the content: refuse, or commit and say `queued as`.
    /// The transaction ends here either way.
    async fn finish_message(
        &mut self,
        id: String,
        msg: Message,
        failed: Option<QueueError>,
        bare_lf: bool,
    ) -> Step {
        let step = self.end_of_message(id, msg, failed, bare_lf).await;
        // The filters' message is over, whatever became of it.
        self.milter_abort().await;
        step
    }

    async fn end_of_message(
        &mut self,
        id: String,
        mut msg: Message,
        mut failed: Option<QueueError>,
        bare_lf: bool,
    ) -> Step {
        self.last = "END-OF-MESSAGE";
        let mut rest = msg.finish();
        if !msg.held_whole() {
            send_chunks(&mut self.queue, std::mem::take(&mut rest), &mut failed).await;
        }
        let tx = self.tx.take();
        let refusal = if bare_lf && self.settings.bare_newline == BareNewlinePolicy::Reject {
            self.queue.abort().await;
            self.bare_newline_refusal();
            return Step::Close;
        } else if msg.too_big() {
            Some("552 5.3.4 Message size exceeds fixed limit")
        } else if msg.hops() >= self.settings.hopcount_limit {
            Some("554 5.4.0 Error: too many hops")
        } else if let Some(e) = &failed {
            tracing::warn!("{id}: queue file write error: {e}");
            Some("451 4.3.0 Error: queue file write error")
        } else {
            None
        };
        if let Some(text) = refusal {
            self.queue.abort().await;
            return self.refuse(text);
        }
        let Some(tx) = tx else {
            // Unreachable: a message is only started inside a transaction.
            self.queue.abort().await;
            return self.refuse("451 4.3.0 Error: queue file write error");
        };
        let mut tx = tx;
        if let Some(outcome) = msg.inspection() {
            match &outcome.verdict {
                Verdict::Reject { code, text } => {
                    // The inspector logged it.
                    self.queue.abort().await;
                    let reply = format!("{code} {text}");
                    return self.refuse(&reply);
                }
                Verdict::Discard { .. } => tx.actions.discard = true,
                Verdict::Hold { .. } => tx.actions.hold = true,
                Verdict::Accept => {}
            }
            if let Some(f) = &outcome.filter {
                tx.actions.filter = Some(f.clone());
            }
            if let Some(r) = &outcome.redirect {
                tx.actions.redirect = Some(r.clone());
            }
            tx.actions.bcc.extend(outcome.bcc.iter().cloned());
        }
        if msg.held_whole() {
            // The filters judge the whole message; what they leave goes
            // to qmgr now.
            let content = rest.concat();
            // The macros name the sender and recipients.
            self.tx = Some(tx);
            let content = match self.authenticate(&id, content, msg.own_header()).await {
                Ok(content) => content,
                Err(step) => {
                    self.queue.abort().await;
                    self.tx = None;
                    return step;
                }
            };
            let judged = self.milter_message(&id, content, msg.own_header()).await;
            let Some(t) = self.tx.take() else {
                self.queue.abort().await;
                return self.refuse("451 4.3.0 Error: queue file write error");
            };
            tx = t;
            let content = match judged {
                Judged::Refuse(reply, step) => {
                    self.queue.abort().await;
                    self.io.reply(&reply);
                    return step;
                }
                Judged::Discard => {
                    tx.actions.discard = true;
                    Vec::new()
                }
                Judged::Accept {
                    content,
                    changes,
                    hold,
                } => {
                    tx.actions.hold |= hold;
                    change_envelope(changes, &mut tx);
                    content
                }
            };
            let content = self.arc_seal(&id, content, &tx);
            let content = match self.dkim_sign(&id, content) {
                Ok(content) => content,
                Err(text) => {
                    self.queue.abort().await;
                    return self.refuse(text);
                }
            };
            if !tx.actions.discard {
                let chunks = content.chunks(BODY_CHUNK).map(<[u8]>::to_vec).collect();
                send_chunks(&mut self.queue, chunks, &mut failed).await;
                if let Some(e) = &failed {
                    tracing::warn!("{id}: queue file write error: {e}");
                    self.queue.abort().await;
                    return self.refuse("451 4.3.0 Error: queue file write error");
                }
            }
            if tx.recipients.is_empty() {
                // The filters deleted every recipient: nothing to deliver.
                tx.actions.discard = true;
            }
        }
        if tx.actions.discard {
            // Accepted and dropped (DISCARD): the client is told it was
            // queued, as Postfix does.
            self.queue.abort().await;
            self.io.reply(&Reply::new(
                250,
                Some(EnhancedStatus::OK),
                &format!("Ok: queued as {id}"),
            ));
            self.forgive();
            return Step::Ok;
        }
        let envelope = self.envelope(tx);
        match self.queue.commit(envelope).await {
            Ok(queued) => {
                self.io.reply(&Reply::new(
                    250,
                    Some(EnhancedStatus::OK),
                    &format!("Ok: queued as {queued}"),
                ));
                self.forgive();
                Step::Ok
            }
            Err(e) => {
                tracing::warn!("{id}: queue file write error: {e}");
                self.queue.abort().await;
                self.refuse("451 4.3.0 Error: queue file write error")
            }
        }
    }

    fn envelope(&self, tx: Transaction) -> Envelope {
        let qualify = |a: &Address| {
            if a.is_null() || a.domain().is_some() {
                a.to_string()
            } else {
                format!("{a}@{}", self.settings.myorigin)
            }
        };
        let recipients = tx
            .recipients
            .iter()
            .map(|(addr, p)| EnvelopeRecipient {
                address: qualify(addr),
                orcpt: p.orcpt.clone(),
                notify: p.notify,
            })
            .collect();
        let envelope = Envelope {
            sender: qualify(&tx.sender),
            recipients,
            client: Some(ClientInfo {
                name: self.client.name.clone(),
                addr: self.client.addr.to_string(),
                helo: self.helo.clone().unwrap_or_default(),
                protocol: self.protocol(),
                sasl_username: self.sasl.as_ref().map(|l| l.username.clone()),
            }),
            envid: tx.params.envid.clone(),
            ret: tx.params.ret,
            smtputf8: tx.params.smtputf8,
            body_8bit: matches!(tx.params.body, Some(Body::EightBitMime | Body::BinaryMime)),
            filter: None,
            hold: false,
            no_address_mappings: self.settings.overrides.no_address_mappings,
        };
        tx.actions
            .envelope(envelope, self.settings.content_filter.as_ref())
    }
}
