//! One SMTP session: the state machine over any `AsyncRead + AsyncWrite`
//! stream, the command loop, error and junk counting, and the connect and
//! disconnect log lines. The verbs live in their own files (`ehlo.rs`,
//! `mail.rs`, `data.rs`); this file owns the I/O they share.
//!
//! Pipelining (RFC 2920): commands are read as they come, replies are
//! queued, and the queue is flushed only when no further input is
//! buffered, so a pipelined batch is answered in one write.

use crate::peername::NameStatus;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_daemon::Shutdown;
use postern_envelope::{ClientProtocol, EnhancedStatus};
use postern_milter::Milters;
use postern_smtp::{
    Address, BareNewlinePolicy, Command, ErrorKind, MailParams, RcptParams, Reply, parse_command,
};
use postern_tls::{MaybeTls, TlsSummary};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::actions::MessageActions;
use crate::auth::Login;
use crate::data::Bdat;
use crate::milter::Event;
use crate::policy::{Check, Stage};
use crate::queue::Queue;
use crate::settings::Settings;
use crate::tls::Level;
use crate::verify::SpfState;

/// Largest single read from the client.
const READ_SIZE: usize = 64 * 1024;

/// The longest a client's name lookup (PTR and forward) may take.
pub const PEERNAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Who is connected.
#[derive(Debug, Clone)]
pub struct Client {
    /// The verified host name, or `unknown` (see [`crate::peername`]).
    pub name: String,
    /// How the name was found, and the PTR name and its status.
    pub name_status: NameStatus,
    pub reverse_name: String,
    pub reverse_status: NameStatus,
    pub addr: IpAddr,
    /// The client's port (0 over a unix socket).
    pub port: u16,
    /// Our end of the connection, when it is TCP (milter's
    /// `{daemon_addr}` and `{daemon_port}`).
    pub local: Option<std::net::SocketAddr>,
}

impl Client {
    /// `name[addr]`, as every log line writes the client.
    pub fn namaddr(&self) -> String {
        format!("{}[{}]", self.name, self.addr)
    }
}

/// Why the conversation stopped in the middle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoError {
    /// `smtpd_timeout` passed while reading or writing.
    Timeout,
    /// The client went away (EOF, reset).
    Lost,
}

/// The client stream with its input buffer and queued replies.
#[derive(Debug)]
pub struct Io<S> {
    /// Plain until STARTTLS (or from the start in wrapper mode).
    stream: MaybeTls<S>,
    /// Input; the unread part is `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    /// Replies not yet written.
    out: Vec<u8>,
    timeout: Duration,
}

/// A command line, or the fact that it was too long to be one.
#[derive(Debug)]
pub enum Line {
    /// Without its line end; `bare_lf` when it ended in LF alone.
    Text {
        line: Vec<u8>,
        bare_lf: bool,
    },
    TooLong,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    fn new(stream: S, timeout: Duration) -> Io<S> {
        Io {
            stream: MaybeTls::Plain(stream),
            buf: Vec::new(),
            pos: 0,
            out: Vec::new(),
            timeout,
        }
    }

    /// Input received and not yet consumed.
    pub fn input(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        if self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Drops everything received and not yet read: at STARTTLS, whatever
    /// the client sent in plaintext after it must never be executed.
    pub fn discard_input(&mut self) {
        if !self.input().is_empty() {
            tracing::debug!(
                "discarding {} octets of pipelined plaintext",
                self.input().len()
            );
        }
        self.buf.clear();
        self.pos = 0;
    }

    /// Ends a TLS session with close_notify, so the client knows it saw
    /// everything (best effort, briefly).
    pub async fn close_tls(&mut self) {
        if let MaybeTls::Tls(tls) = &mut self.stream {
            let _ = tokio::time::timeout(Duration::from_secs(2), tls.shutdown()).await;
        }
    }

    pub fn conn_mut(&mut self) -> &mut MaybeTls<S> {
        &mut self.stream
    }

    /// Queues a reply; it goes out at the next flush.
    pub fn reply(&mut self, reply: &Reply) {
        reply.write_wire(&mut self.out);
    }

    pub async fn flush(&mut self) -> Result<(), IoError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let write = async {
            self.stream.write_all(&out).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Err(_) => Err(IoError::Timeout),
            Ok(Err(_)) => Err(IoError::Lost),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Reads more input. Queued replies are flushed first: the client may
    /// be waiting for them before it sends anything else.
    pub async fn fill(&mut self) -> Result<(), IoError> {
        self.flush().await?;
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_SIZE);
        match tokio::time::timeout(self.timeout, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(IoError::Timeout),
            Ok(Err(_)) | Ok(Ok(0)) => Err(IoError::Lost),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// The next command line. A line longer than `limit` is read to its
    /// end and discarded.
    pub async fn read_line(&mut self, limit: usize) -> Result<Line, IoError> {
        let mut skipping = false;
        loop {
            let input = self.input();
            if let Some(i) = input.iter().position(|&b| b == b'\n') {
                let result = if skipping || i > limit + 1 {
                    Line::TooLong
                } else {
                    match input[..i].strip_suffix(b"\r") {
                        Some(line) => Line::Text {
                            line: line.to_vec(),
                            bare_lf: false,
                        },
                        None => Line::Text {
                            line: input[..i].to_vec(),
                            bare_lf: true,
                        },
                    }
                };
                self.consume(i + 1);
                return Ok(result);
            }
            if input.len() > limit + 1 {
                skipping = true;
                let n = input.len();
                self.consume(n);
            }
            self.fill().await?;
        }
    }

    /// Reads and drops `n` octets (a BDAT chunk nobody will keep).
    pub async fn discard(&mut self, mut n: u64) -> Result<(), IoError> {
        while n > 0 {
            if self.input().is_empty() {
                self.fill().await?;
            }
            let take = (self.input().len() as u64).min(n) as usize;
            self.consume(take);
            n -= take as u64;
        }
        Ok(())
    }
}

/// What a command did, for the error counter and the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Succeeded.
    Ok,
    /// Failed; counts toward `smtpd_hard_error_limit`.
    Err,
    /// Failed without counting (recipients over the limit, within the
    /// overshoot allowance).
    Soft,
    /// QUIT: succeeded, and the session ends.
    Quit,
    /// The session must end now (non-SMTP command, bare LF refused,
    /// unusable BDAT).
    Close,
}

/// Per-verb success and total counts for the disconnect line, in the
/// order Postfix prints them.
const VERBS: [&str; 14] = [
    "helo", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "bdat", "rset", "noop", "vrfy",
    "etrn", "quit", "unknown",
];

#[derive(Debug, Default)]
pub(crate) struct Counts {
    ok: [u32; VERBS.len()],
    total: [u32; VERBS.len()],
}

impl Counts {
    pub(crate) fn record(&mut self, verb: &str, ok: bool) {
        let i = VERBS
            .iter()
            .position(|v| *v == verb)
            .unwrap_or(VERBS.len() - 1);
        self.total[i] += 1;
        if ok {
            self.ok[i] += 1;
        }
    }

    /// ` ehlo=1 mail=1 rcpt=0/1 commands=2/3`.
    pub(crate) fn summary(&self) -> String {
        let pair = |ok: u32, total: u32| {
            if ok == total {
                format!("{ok}")
            } else {
                format!("{ok}/{total}")
            }
        };
        let mut s = String::new();
        for (i, verb) in VERBS.iter().enumerate() {
            if self.total[i] > 0 {
                s.push_str(&format!(" {verb}={}", pair(self.ok[i], self.total[i])));
            }
        }
        let ok: u32 = self.ok.iter().sum();
        let total: u32 = self.total.iter().sum();
        if total == 0 {
            s.push_str(" commands=0/0");
        } else {
            s.push_str(&format!(" commands={}", pair(ok, total)));
        }
        s
    }
}

/// The mail transaction between MAIL and the end of the message.
#[derive(Debug)]
pub struct Transaction {
    pub sender: Address,
    pub params: MailParams,
    pub recipients: Vec<(Address, RcptParams)>,
    /// RCPTs refused for the recipient limit.
    pub overshoot: u32,
    /// A message being received in BDAT chunks.
    pub bdat: Option<Bdat>,
    /// What access tables decided for the message.
    pub actions: MessageActions,
    /// The sender's SPF check, for a client whose mail is checked.
    pub spf: Option<SpfState>,
}

/// One SMTP session.
#[derive(Debug)]
pub struct Session<S, Q> {
    pub(crate) io: Io<S>,
    pub(crate) queue: Q,
    pub(crate) settings: Arc<Settings>,
    pub(crate) client: Client,
    shutdown: Option<Shutdown>,
    /// The HELO/EHLO argument.
    pub(crate) helo: Option<String>,
    /// EHLO rather than HELO: the protocol is ESMTP.
    pub(crate) esmtp: bool,
    pub(crate) tx: Option<Transaction>,
    errors: u32,
    junk: u32,
    counts: Counts,
    /// Set when the client was refused at connect (smtpd_delay_reject =
    /// no): every command but QUIT is refused.
    access_denied: Option<Reply>,
    /// The last command, for `timeout after DATA` style logs.
    pub(crate) last: &'static str,
    /// The server's TLS configuration; `None` when TLS is off.
    pub(crate) tls_config: Option<Arc<ServerConfig>>,
    /// Set once the handshake is done.
    pub(crate) tls: Option<TlsSummary>,
    /// Set by a successful AUTH; cleared by STARTTLS.
    pub(crate) sasl: Option<Login>,
    /// Actions from the connect and HELO restrictions (smtpd_delay_reject
    /// = no), for every transaction of the session.
    pub(crate) session_actions: MessageActions,
    /// The session's `smtpd_milters`, connected at the start.
    pub(crate) milters: Option<Milters>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    /// Reply with `text` and fail the command (it counts as an error).
    pub(crate) fn refuse(&mut self, text: &str) -> Step {
        self.io.reply(&reply(text));
        Step::Err
    }

    /// True while `smtpd_helo_required` wants a HELO/EHLO first.
    pub(crate) fn helo_missing(&self) -> bool {
        self.settings.helo_required && self.helo.is_none()
    }

    pub fn new(
        stream: S,
        client: Client,
        settings: Arc<Settings>,
        queue: Q,
        shutdown: Option<Shutdown>,
    ) -> Self {
        Session {
            io: Io::new(stream, settings.timeout),
            queue,
            settings,
            client,
            shutdown,
            helo: None,
            esmtp: false,
            tx: None,
            errors: 0,
            junk: 0,
            counts: Counts::default(),
            access_denied: None,
            last: "CONNECT",
            tls_config: None,
            tls: None,
            sasl: None,
            session_actions: MessageActions::default(),
            milters: None,
        }
    }

    /// Connects the filters and tells them of the client; a refusal then
    /// answers every command but QUIT, as Postfix's smtpd does.
    async fn start_milters(&mut self) {
        let settings = match &self.settings.milters {
            Ok(Some(m)) if !self.settings.overrides.no_milters => m.clone(),
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("smtpd_milters unusable: {e}");
                self.access_denied = Some(reply("451 4.3.5 Server configuration error"));
                return;
            }
        };
        self.milters = Some(Milters::new(&settings));
        let verdict = self.milter_event(Event::Connect).await;
        if let Some((refusal, _)) = self.milter_refusal("CONNECT", &verdict, None) {
            self.access_denied = Some(refusal);
        }
    }

    /// Offers STARTTLS (or, in wrapper mode, starts with the handshake)
    /// with `config`.
    pub fn with_tls(mut self, config: Option<Arc<ServerConfig>>) -> Self {
        self.tls_config = config;
        self
    }

    /// Runs the session to its end.
    pub async fn run(mut self) {
        if let Some(resolver) = self.settings.peername.as_ref()
            && self.client.local.is_some()
        {
            let names = crate::peername::lookup(resolver, self.client.addr, PEERNAME_TIMEOUT).await;
            self.client.name = names.name;
            self.client.name_status = names.name_status;
            self.client.reverse_name = names.reverse_name;
            self.client.reverse_status = names.reverse_status;
        }
        let namaddr = self.client.namaddr();
        tracing::info!("connect from {namaddr}");
        let reason = self.converse().await;
        self.milter_quit().await;
        match reason {
            Some(IoError::Timeout) => {
                let text = format!("{} Error: timeout exceeded", self.settings.hostname);
                self.final_reply(&Reply::new(421, Some(EnhancedStatus::of(4, 4, 2)), &text))
                    .await;
                tracing::info!("timeout after {} from {namaddr}", self.last);
            }
            // A client may hang up right after its message without QUIT.
            Some(IoError::Lost) if self.last != "END-OF-MESSAGE" => {
                tracing::info!("lost connection after {} from {namaddr}", self.last);
            }
            Some(IoError::Lost) | None => {}
        }
        self.reset_transaction().await;
        if reason.is_none() {
            self.io.close_tls().await;
        }
        tracing::info!("disconnect from {namaddr}{}", self.counts.summary());
    }

    /// Best effort, for replies right before hanging up.
    async fn final_reply(&mut self, reply: &Reply) {
        self.io.reply(reply);
        let _ = self.io.flush().await;
    }

    /// The greeting and the command loop; `Some` when the conversation
    /// broke off rather than ended.
    async fn converse(&mut self) -> Option<IoError> {
        // SMTPS: TLS from the first byte, before the greeting.
        if self.settings.wrappermode
            && let Err(e) = self.start_tls().await
        {
            self.last = "CONNECT";
            return Some(e);
        }
        if let Some(refusal) = self.connect_check().await {
            self.io.reply(&refusal);
            let text = format!("Error: access denied for {}", self.client.namaddr());
            self.access_denied = Some(Reply::new(503, Some(EnhancedStatus::of(5, 7, 0)), &text));
        } else {
            self.start_milters().await;
            self.io.reply(&Reply::new(220, None, &self.settings.banner));
        }
        loop {
            if self.errors >= self.settings.hard_error_limit {
                let text = format!("{} Error: too many errors", self.settings.hostname);
                self.final_reply(&Reply::new(421, Some(EnhancedStatus::of(4, 7, 0)), &text))
                    .await;
                tracing::info!(
                    "too many errors after {} from {}",
                    self.last,
                    self.client.namaddr()
                );
                return None;
            }
            // A stopping server lets a transaction finish, then says so.
            let idle = self.tx.is_none();
            if idle && self.shutdown.as_ref().is_some_and(Shutdown::is_triggered) {
                self.final_reply(&reply(
                    "421 4.3.2 Service shutting down, closing transmission channel",
                ))
                .await;
                return None;
            }
            // A client that pipelines without reading must not make the
            // reply queue grow without bound.
            if self.io.out.len() > READ_SIZE
                && let Err(e) = self.io.flush().await
            {
                return Some(e);
            }
            let limit = self.settings.line_length_limit;
            let read = match self.shutdown.as_mut().filter(|_| idle) {
                Some(shutdown) => tokio::select! {
                    r = self.io.read_line(limit) => Some(r),
                    _ = shutdown.triggered() => None,
                },
                None => Some(self.io.read_line(limit).await),
            };
            let line = match read {
                None => continue,
                Some(Err(e)) => return Some(e),
                Some(Ok(line)) => line,
            };
            let (verb, step) = match line {
                Line::TooLong => {
                    self.io.reply(&reply("500 5.5.2 Error: line too long"));
                    ("unknown", Step::Err)
                }
                Line::Text { line, .. } if self.sent_ahead(verb_of(&line)) => {
                    self.pipelining_refusal(&line);
                    (verb_of(&line), Step::Close)
                }
                Line::Text { line, bare_lf } => match self.command(&line, bare_lf).await {
                    Ok(done) => done,
                    Err(e) => {
                        self.counts.record(verb_of(&line), false);
                        return Some(e);
                    }
                },
            };
            self.counts
                .record(verb, matches!(step, Step::Ok | Step::Quit));
            if matches!(verb, "helo" | "ehlo" | "rset" | "noop" | "vrfy" | "etrn") {
                self.junk += 1;
                if self.junk > self.settings.junk_command_limit {
                    self.errors += 1;
                }
            }
            match step {
                Step::Ok | Step::Soft => {}
                Step::Err => {
                    self.errors += 1;
                    if self.errors > self.settings.soft_error_limit {
                        // Tarpit: the reply waits, and so does the client.
                        tokio::time::sleep(self.settings.error_sleep).await;
                    }
                }
                Step::Quit | Step::Close => {
                    let _ = self.io.flush().await;
                    return None;
                }
            }
        }
    }

    /// True when the client sent more after a command that must end its
    /// group (RFC 2920 3.1), or pipelined at all without being offered
    /// PIPELINING (it said HELO, or nothing), and that is forbidden.
    fn sent_ahead(&self, verb: &str) -> bool {
        let must_be_last = !self.esmtp
            || matches!(
                verb,
                "helo" | "ehlo" | "data" | "vrfy" | "noop" | "etrn" | "starttls" | "auth"
            );
        self.settings.forbid_unauth_pipelining && must_be_last && !self.io.input().is_empty()
    }

    /// `554 5.5.0` and hang up, logging what came too early.
    fn pipelining_refusal(&mut self, line: &[u8]) {
        self.last = last_name(verb_of(line));
        let early = self.io.input();
        let early: String = early[..early.len().min(100)]
            .iter()
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect();
        tracing::info!(
            "improper command pipelining after {} from {}: {early}",
            self.last,
            self.client.namaddr()
        );
        self.io
            .reply(&reply("554 5.5.0 Error: SMTP protocol synchronization"));
    }

    /// smtpd_client_restrictions at connect, when smtpd_delay_reject = no.
    async fn connect_check(&mut self) -> Option<Reply> {
        if self.settings.delay_reject {
            return None;
        }
        let refusal = self.policy_check(Stage::Connect, None).await?;
        tracing::info!(
            "NOQUEUE: reject: CONNECT from {}: {}; proto=SMTP",
            self.client.namaddr(),
            refusal
        );
        Some(refusal)
    }

    /// Runs the access policy for `stage`; the refusal reply, if any.
    /// Actions that fired are logged and kept for the transaction.
    pub(crate) async fn policy_check(
        &mut self,
        stage: Stage,
        recipient: Option<&Address>,
    ) -> Option<Reply> {
        let policy = match &self.settings.policy {
            Ok(p) => Arc::clone(p),
            Err(e) => {
                tracing::warn!("access policy unusable: {e}");
                return Some(reply("451 4.3.5 Server configuration error"));
            }
        };
        let check = Check {
            client_addr: self.client.addr,
            client_name: &self.client.name,
            reverse_name: &self.client.reverse_name,
            name_status: self.client.name_status,
            reverse_status: self.client.reverse_status,
            helo: self.helo.as_deref(),
            sender: self.tx.as_ref().map(|t| &t.sender),
            recipient,
            sasl_username: self.sasl.as_ref().map(|l| l.username.as_str()),
            spf: self
                .tx
                .as_ref()
                .and_then(|t| t.spf.as_ref())
                .and_then(SpfState::done),
        };
        let (result, fired) = policy.check_actions(stage, &check).await;
        let verb = match stage {
            Stage::Connect => "CONNECT",
            Stage::Helo if self.esmtp => "EHLO",
            Stage::Helo => "HELO",
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
        };
        for f in fired {
            if let Some(whatsup) = f.whatsup {
                self.log_whatsup(None, whatsup, verb, &f.text, recipient);
            }
            if let Some(action) = f.action {
                match self.tx.as_mut() {
                    Some(tx) => tx.actions.apply(action),
                    None => self.session_actions.apply(action),
                }
            }
        }
        let refusal = result.err()?;
        tracing::debug!(temporary = refusal.temporary, "policy refusal at {stage:?}");
        Some(refusal.reply)
    }

    /// The session's protocol (RFC 3848), for the Received header, the
    /// logs and the envelope.
    pub(crate) fn protocol(&self) -> ClientProtocol {
        ClientProtocol::of(self.esmtp, self.tls.is_some(), self.sasl.is_some())
    }

    /// Logs a refusal the way Postfix does.
    pub(crate) fn log_reject(&self, verb: &str, reply: &Reply, recipient: Option<&Address>) {
        self.log_whatsup(None, "reject", verb, &reply.to_string(), recipient);
    }

    /// Postfix's log_whatsup(): `ID: what: VERB from name[addr]: text;
    /// from=<...> to=<...> proto=... helo=<...>` (`NOQUEUE` before the
    /// message has a queue ID).
    pub(crate) fn log_whatsup(
        &self,
        id: Option<&str>,
        whatsup: &str,
        verb: &str,
        text: &str,
        recipient: Option<&Address>,
    ) {
        // A multi-line reply logs as one line.
        let text = text.trim_end().replace("\r\n", " ");
        let mut line = format!(
            "{}: {whatsup}: {verb} from {}: {text};",
            id.unwrap_or("NOQUEUE"),
            self.client.namaddr()
        );
        if let Some(tx) = &self.tx {
            line.push_str(&format!(" from={}", tx.sender.to_path()));
        }
        if let Some(rcpt) = recipient {
            line.push_str(&format!(" to={}", rcpt.to_path()));
        }
        line.push_str(&format!(" proto={}", self.protocol()));
        if let Some(helo) = &self.helo {
            line.push_str(&format!(" helo=<{helo}>"));
        }
        tracing::info!("{line}");
    }

    /// Drops the transaction and any message being received by BDAT.
    pub(crate) async fn reset_transaction(&mut self) {
        if let Some(tx) = self.tx.take() {
            if tx.bdat.is_some() {
                self.queue.abort().await;
            }
            self.milter_abort().await;
        }
    }

    /// Dispatches one command line; returns the verb (for the counts) and
    /// what happened.
    async fn command(
        &mut self,
        line: &[u8],
        bare_lf: bool,
    ) -> Result<(&'static str, Step), IoError> {
        let verb = verb_of(line);
        self.last = last_name(verb);
        if bare_lf && self.settings.bare_newline == BareNewlinePolicy::Reject {
            self.bare_newline_refusal();
            return Ok((verb, Step::Close));
        }
        let cmd = match parse_command(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                let step = match e.kind() {
                    ErrorKind::NonSmtp => {
                        tracing::warn!(
                            "non-SMTP command from {}: {}",
                            self.client.namaddr(),
                            String::from_utf8_lossy(&line[..line.len().min(100)])
                        );
                        Step::Close
                    }
                    ErrorKind::BdatSyntax(Some(n)) => {
                        self.io.discard(n).await?;
                        Step::Err
                    }
                    ErrorKind::Unrecognized if self.milters.is_some() => {
                        // Postfix asks the filters about a command it does
                        // not know; their refusal replaces its own.
                        let text = String::from_utf8_lossy(line);
                        let verdict = self.milter_event(Event::Unknown(text.trim_end())).await;
                        if let Some((refusal, step)) =
                            self.milter_refusal("UNKNOWN", &verdict, None)
                        {
                            self.io.reply(&refusal);
                            return Ok((verb, step));
                        }
                        Step::Err
                    }
                    _ if e.closes_session() => Step::Close,
                    _ => Step::Err,
                };
                self.io.reply(e.reply());
                return Ok((verb, step));
            }
        };
        if let Some(denied) = &self.access_denied
            && cmd != Command::Quit
        {
            self.io.reply(denied);
            return Ok((verb, Step::Err));
        }
        // smtpd_tls_security_level = encrypt: only what leads to TLS.
        if self.settings.tls_level == Level::Encrypt
            && self.tls.is_none()
            && !matches!(
                cmd,
                Command::Helo(_)
                    | Command::Ehlo(_)
                    | Command::Starttls
                    | Command::Rset
                    | Command::Noop
                    | Command::Quit
            )
        {
            self.io
                .reply(&reply("530 5.7.0 Must issue a STARTTLS command first"));
            return Ok((verb, Step::Err));
        }
        let step = match cmd {
            Command::Helo(name) => self.helo(name, false).await,
            Command::Ehlo(name) => self.helo(name, true).await,
            Command::Mail { from, params } => self.mail(from, params).await,
            Command::Rcpt { to, params } => self.rcpt(to, params).await,
            Command::Data => self.data(bare_lf).await?,
            Command::Bdat { size, last } => self.bdat(size, last).await?,
            Command::Rset => {
                self.reset_transaction().await;
                self.io.reply(&reply("250 2.0.0 Ok"));
                Step::Ok
            }
            Command::Noop => {
                self.io.reply(&reply("250 2.0.0 Ok"));
                Step::Ok
            }
            Command::Quit => {
                self.io.reply(&reply("221 2.0.0 Bye"));
                Step::Quit
            }
            Command::Vrfy(arg) => self.vrfy(&arg),
            Command::Etrn(arg) => self.etrn(&arg).await,
            Command::Expn(_) | Command::Help => {
                self.io
                    .reply(&reply("502 5.5.2 Error: command not recognized"));
                return Ok(("unknown", Step::Err));
            }
            Command::Starttls => self.starttls().await?,
            Command::Auth { mechanism, initial } => self.auth(&mechanism, initial).await?,
        };
        Ok((verb, step))
    }

    /// `smtpd_forbid_bare_newline = reject`: answer and hang up.
    pub(crate) fn bare_newline_refusal(&mut self) {
        let text = format!("{} Error: bare <LF> received", self.settings.hostname);
        self.io.reply(&Reply::new(
            self.settings.bare_newline_code,
            Some(EnhancedStatus::of(5, 5, 2)),
            &text,
        ));
        tracing::info!(
            "disconnect: bare <LF> received from {} after {}",
            self.client.namaddr(),
            self.last
        );
    }

    /// After a message is queued the client starts with a clean slate.
    pub(crate) fn forgive(&mut self) {
        self.errors = 0;
        self.junk = 0;
    }
}

/// A reply from Postfix-style literal text; the texts are constants here,
/// so a malformed one is a bug caught by the tests.
pub(crate) fn reply(text: &str) -> Reply {
    Reply::parse_line(text)
        .unwrap_or_else(|| Reply::new(451, Some(EnhancedStatus::of(4, 3, 0)), text))
}

/// The verb's name for the disconnect counts.
fn verb_of(line: &[u8]) -> &'static str {
    let word = line
        .split(|&b| b == b' ' || b == b'\t')
        .next()
        .unwrap_or(b"");
    VERBS[..VERBS.len() - 1]
        .iter()
        .find(|v| v.as_bytes().eq_ignore_ascii_case(word))
        .copied()
        .unwrap_or("unknown")
}

/// The command's name in `... after RCPT from` logs.
fn last_name(verb: &str) -> &'static str {
    match verb {
        "helo" => "HELO",
        "ehlo" => "EHLO",
        "starttls" => "STARTTLS",
        "auth" => "AUTH",
        "mail" => "MAIL",
        "rcpt" => "RCPT",
        "data" => "DATA",
        "bdat" => "BDAT",
        "rset" => "RSET",
        "noop" => "NOOP",
        "vrfy" => "VRFY",
        "etrn" => "ETRN",
        "quit" => "QUIT",
        _ => "UNKNOWN",
    }
}
