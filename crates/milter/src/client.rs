//! [`Milter`]: one filter for one SMTP session, as Postfix's milter8.c
//! runs it: a socket opened at the connect event, negotiated, told each
//! event, and closed at QUIT.
//!
//! States follow milter8.c. A filter that accepts at connect or HELO is
//! told nothing more this session; one that accepts later, nothing more
//! of this message. A reject, tempfail or reply code at connect or HELO
//! answers every later command of the session. A filter that fails (see
//! [`MilterError`]) stands for its default action for the rest of the
//! session: every later event gets that verdict, without a new error.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use postern_smtp::{Reply, ReplyParser};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::macros::{MacroLists, MacroSource, Stage};
use crate::negotiate::Negotiated;
use crate::settings::{Endpoint, MilterSpec};
use crate::verdict::{ErrorKind, MessageOutcome, MilterError, Modification, Outcome, Verdict};
use crate::wire::{
    self, BODY_CHUNK, Command, MAX_REPLY_PACKET, Packet, Response, smfia, smfif, smfip, smfir,
};

/// The most modification data (body replacement included) one filter may
/// send for one message; more is a protocol error rather than memory use
/// without bound.
pub const MAX_MODIFICATION_BYTES: usize = 256 << 20;

/// The SMTP client, as `SMFIC_CONNECT` tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The verified client host name, or `unknown` (then `[address]` is
    /// sent, as Postfix does).
    pub name: String,
    pub addr: ClientAddr,
}

/// Where the client connected from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAddr {
    Inet(std::net::SocketAddr),
    /// A local socket, by path.
    Unix(String),
    Unknown,
}

/// One header as the filters see it: the value is what follows the
/// colon, leading space included, folded lines separated by `\n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    pub fn new(name: &str, value: &str) -> Header {
        Header {
            name: name.to_string(),
            value: value.to_string(),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket: before the connect event, or after QUIT.
    Closed,
    /// Negotiated, waiting for the connect event.
    Ready,
    /// In the SMTP envelope (between messages too).
    Envelope,
    /// Sending the message content.
    Message,
    /// Accepted the session: no more events.
    AcceptConnection,
    /// Accepted this message: no more events until the next one.
    AcceptMessage,
    /// Refused the session: its verdict answers every event.
    RejectConnection,
    /// Failed: its default verdict answers every event.
    Error,
}

/// What went wrong inside one event, before it becomes a [`MilterError`].
struct Failure {
    kind: ErrorKind,
    reason: String,
}

fn failure(kind: ErrorKind, reason: impl Into<String>) -> Failure {
    Failure {
        kind,
        reason: reason.into(),
    }
}

/// An I/O error as Postfix's `%m` prints it, without Rust's
/// " (os error N)".
fn errno_text(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        return "unexpected end of file".into();
    }
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

const TIMED_OUT: &str = "Connection timed out";

/// One filter of one session.
pub struct Milter {
    spec: Arc<MilterSpec>,
    /// The configured lists, with the filter's SETSYMLIST lists in place
    /// once negotiated.
    macros: MacroLists,
    conn: Option<Box<dyn Stream>>,
    negotiated: Option<Negotiated>,
    state: State,
    /// The verdict of every later event (Postfix's def_reply): after a
    /// failure or a refusal of the session.
    sticky: Option<Verdict>,
    /// Events of this type are skipped after SMFIR_SKIP, until another
    /// type comes.
    skipping: Option<Command>,
}

impl std::fmt::Debug for Milter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Milter")
            .field("name", &self.spec.name)
            .field("state", &self.state)
            .field("negotiated", &self.negotiated)
            .finish()
    }
}

/// Per-event facts: the `SMFIP_NO*` flag that skips it and the
/// `SMFIP_NR_*` flag that makes it unanswered.
struct EventInfo {
    no: u32,
    no_reply: u32,
    stage: Option<Stage>,
}

fn info(command: Command) -> EventInfo {
    let (no, no_reply, stage) = match command {
        Command::Connect => (smfip::NOCONNECT, smfip::NR_CONN, Some(Stage::Connect)),
        Command::Helo => (smfip::NOHELO, smfip::NR_HELO, Some(Stage::Helo)),
        Command::Mail => (smfip::NOMAIL, smfip::NR_MAIL, Some(Stage::Mail)),
        Command::Rcpt => (smfip::NORCPT, smfip::NR_RCPT, Some(Stage::Rcpt)),
        Command::Data => (smfip::NODATA, smfip::NR_DATA, Some(Stage::Data)),
        Command::Unknown => (smfip::NOUNKNOWN, smfip::NR_UNKN, Some(Stage::Unknown)),
        Command::Header => (smfip::NOHDRS, smfip::NR_HDR, Some(Stage::EndOfHeader)),
        Command::Eoh => (smfip::NOEOH, smfip::NR_EOH, Some(Stage::EndOfHeader)),
        Command::Body => (smfip::NOBODY, smfip::NR_BODY, Some(Stage::EndOfData)),
        Command::BodyEob => (0, 0, Some(Stage::EndOfData)),
        Command::Abort | Command::Quit | Command::Macro | Command::OptNeg => (0, 0, None),
    };
    EventInfo {
        no,
        no_reply,
        stage,
    }
}

impl Milter {
    /// A filter not yet connected; `macros` are the configured lists.
    pub fn new(spec: Arc<MilterSpec>, macros: MacroLists) -> Milter {
        Milter {
            spec,
            macros,
            conn: None,
            negotiated: None,
            state: State::Closed,
            sticky: None,
            skipping: None,
        }
    }

    /// The filter as configured, for logging.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// What was negotiated, once connected.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Whether the filter asked to see rejected recipients too
    /// (`SMFIP_RCPT_REJ`); see [`crate::Milters::rejected_rcpt`].
    pub fn wants_rejected_recipients(&self) -> bool {
        self.negotiated
            .as_ref()
            .is_some_and(|n| n.has(smfip::RCPT_REJ))
    }

    /// Whether the filter failed this session.
    pub fn has_failed(&self) -> bool {
        self.state == State::Error
    }

    fn sticky_or_continue(&self) -> Outcome {
        Outcome::of(self.sticky.clone().unwrap_or(Verdict::Continue))
    }

    /// The client connected: open the socket, negotiate, report it.
    pub async fn connect(&mut self, client: &ClientInfo, macros: &dyn MacroSource) -> Outcome {
        match self.state {
            State::Closed => {
                if let Err(f) = self.open().await {
                    return self.fail(f);
                }
            }
            State::Ready => {}
            _ => return self.sticky_or_continue(),
        }
        self.state = State::Envelope;
        let addr_text = match &client.addr {
            ClientAddr::Inet(sa) => sa.ip().to_string(),
            ClientAddr::Unix(path) => path.clone(),
            ClientAddr::Unknown => "unknown".to_string(),
        };
        let name = if client.name != "unknown" || addr_text == "unknown" {
            client.name.clone()
        } else {
            format!("[{addr_text}]")
        };
        let packet = Packet::new(Command::Connect).string(&name);
        let packet = match &client.addr {
            ClientAddr::Inet(sa) => packet
                .octet(if sa.is_ipv4() {
                    smfia::INET
                } else {
                    smfia::INET6
                })
                .short(sa.port())
                .string(&addr_text),
            ClientAddr::Unix(path) => packet.octet(smfia::UNIX).short(0).string(path),
            ClientAddr::Unknown => packet.octet(smfia::UNKNOWN),
        };
        self.event(Command::Connect, packet, macros).await
    }

    /// HELO or EHLO.
    pub async fn helo(&mut self, helo_name: &str, macros: &dyn MacroSource) -> Outcome {
        match self.state {
            State::Envelope | State::AcceptMessage => {}
            _ => return self.sticky_or_continue(),
        }
        let packet = Packet::new(Command::Helo).string(helo_name);
        self.event(Command::Helo, packet, macros).await
    }

    /// MAIL FROM: `sender` in angle brackets (`<>` for the null sender),
    /// then the ESMTP parameters as given (`SIZE=1024`, `BODY=8BITMIME`).
    pub async fn mail(
        &mut self,
        sender: &str,
        params: &[String],
        macros: &dyn MacroSource,
    ) -> Outcome {
        if self.state == State::AcceptMessage {
            // The caller did not abort the last message; do it for them.
            if let Some(e) = self.abort().await {
                let mut o = self.sticky_or_continue();
                o.errors.push(e);
                return o;
            }
        }
        if self.state != State::Envelope {
            return self.sticky_or_continue();
        }
        let packet = args_packet(Command::Mail, sender, params);
        self.event(Command::Mail, packet, macros).await
    }

    /// RCPT TO: as [`Milter::mail`].
    pub async fn rcpt(
        &mut self,
        recipient: &str,
        params: &[String],
        macros: &dyn MacroSource,
    ) -> Outcome {
        if self.state != State::Envelope {
            return self.sticky_or_continue();
        }
        let packet = args_packet(Command::Rcpt, recipient, params);
        self.event(Command::Rcpt, packet, macros).await
    }

    /// DATA (or the first BDAT).
    pub async fn data(&mut self, macros: &dyn MacroSource) -> Outcome {
        if self.state != State::Envelope {
            return self.sticky_or_continue();
        }
        self.event(Command::Data, Packet::new(Command::Data), macros)
            .await
    }

    /// A command smtpd does not know, as the client sent it.
    pub async fn unknown(&mut self, command: &str, macros: &dyn MacroSource) -> Outcome {
        if self.state != State::Envelope {
            return self.sticky_or_continue();
        }
        let packet = Packet::new(Command::Unknown).string(command);
        self.event(Command::Unknown, packet, macros).await
    }

    /// The message: each header, end of headers, the body in chunks of
    /// at most 64 KiB (`body` pieces concatenated, CRLF line ends, from
    /// after the empty line), end of message; then the verdict and the
    /// modifications asked for. A filter that fails mid-message has its
    /// modifications dropped.
    pub async fn message<B: AsRef<[u8]>>(
        &mut self,
        headers: &[Header],
        body: &[B],
        macros: &dyn MacroSource,
    ) -> MessageOutcome {
        if self.state != State::Envelope {
            let o = self.sticky_or_continue();
            return MessageOutcome {
                verdict: o.verdict,
                modifications: Vec::new(),
                errors: o.errors,
            };
        }
        self.state = State::Message;
        let mut modifications = Vec::new();
        let outcome = self
            .content(headers, body, macros, &mut modifications)
            .await;
        if matches!(self.state, State::Message | State::AcceptMessage) {
            self.state = State::Envelope;
        }
        if !outcome.errors.is_empty() {
            modifications.clear();
        }
        MessageOutcome {
            verdict: outcome.verdict,
            modifications,
            errors: outcome.errors,
        }
    }

    async fn content<B: AsRef<[u8]>>(
        &mut self,
        headers: &[Header],
        body: &[B],
        macros: &dyn MacroSource,
        modifications: &mut Vec<Modification>,
    ) -> Outcome {
        let has = |m: &Milter, f| m.negotiated.as_ref().is_some_and(|n| n.has(f));
        // Stop at anything but Continue: Accept ends this filter's part
        // of the message (state AcceptMessage), the rest end the chain.
        macro_rules! step {
            ($e:expr) => {{
                let o = $e;
                if o.verdict != Verdict::Continue || self.state != State::Message {
                    return o;
                }
            }};
        }
        if !has(self, smfip::NOHDRS) {
            let leading_space = has(self, smfip::HDR_LEADSPC);
            for h in headers {
                let value = match h.value.strip_prefix(' ') {
                    Some(v) if !leading_space => v,
                    _ => &h.value,
                };
                let packet = Packet::new(Command::Header).string(&h.name).string(value);
                step!(self.event(Command::Header, packet, macros).await);
            }
        }
        if !has(self, smfip::NOEOH) {
            step!(
                self.event(Command::Eoh, Packet::new(Command::Eoh), macros)
                    .await
            );
        }
        if !has(self, smfip::NOBODY) {
            let mut chunk: Vec<u8> = Vec::with_capacity(BODY_CHUNK);
            for piece in body {
                let mut piece = piece.as_ref();
                while !piece.is_empty() {
                    let n = piece.len().min(BODY_CHUNK - chunk.len());
                    chunk.extend_from_slice(&piece[..n]);
                    piece = &piece[n..];
                    if chunk.len() == BODY_CHUNK {
                        let packet = Packet::new(Command::Body).raw(&chunk);
                        step!(self.event(Command::Body, packet, macros).await);
                        chunk.clear();
                    }
                }
            }
            if !chunk.is_empty() {
                let packet = Packet::new(Command::Body).raw(&chunk);
                step!(self.event(Command::Body, packet, macros).await);
            }
        }
        self.end_of_message(macros, modifications).await
    }

    /// Ends the message or envelope in progress (RSET, a new MAIL after
    /// a finished message, HELO after MAIL). No reply is read. Returns
    /// the failure, if the write failed.
    pub async fn abort(&mut self) -> Option<MilterError> {
        match self.state {
            State::Envelope | State::Message | State::AcceptMessage => {}
            _ => return None,
        }
        self.skipping = None;
        let packet = Packet::new(Command::Abort).finish();
        if let Err(f) = self.write(&packet, self.spec.command_timeout).await {
            return self.fail(f).errors.pop();
        }
        self.state = State::Envelope;
        None
    }

    /// The session ended: say QUIT and close. The filter may be used for
    /// a new session after this.
    pub async fn quit(&mut self) {
        if matches!(
            self.state,
            State::Ready | State::Envelope | State::Message | State::AcceptMessage
        ) {
            let packet = Packet::new(Command::Quit).finish();
            let _ = self.write(&packet, self.spec.command_timeout).await;
        }
        self.close();
        self.state = State::Closed;
        self.sticky = None;
        self.skipping = None;
    }

    fn close(&mut self) {
        // Dropping the stream closes the socket.
        self.conn = None;
    }

    /// Marks the filter failed: the socket is closed and its default
    /// verdict answers this event and every later one.
    fn fail(&mut self, f: Failure) -> Outcome {
        self.close();
        self.state = State::Error;
        let verdict = match f.kind {
            ErrorKind::Misbehaved => self.spec.default_action.after_misconfiguration(),
            _ => self.spec.default_action.after_failure(),
        };
        self.sticky = Some(verdict.clone());
        Outcome {
            verdict,
            errors: vec![MilterError {
                milter: self.spec.name.clone(),
                kind: f.kind,
                reason: f.reason,
            }],
        }
    }

    /// Connects and negotiates.
    async fn open(&mut self) -> Result<(), Failure> {
        let spec = self.spec.clone();
        let connect_error = |e: io::Error| failure(ErrorKind::Connect, errno_text(&e));
        let stream: Box<dyn Stream> = match &spec.endpoint {
            Endpoint::Inet { host, port } => {
                let s = timeout(
                    spec.connect_timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| failure(ErrorKind::Connect, TIMED_OUT))?
                .map_err(connect_error)?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Endpoint::Unix(path) => Box::new(
                timeout(spec.connect_timeout, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| failure(ErrorKind::Connect, TIMED_OUT))?
                    .map_err(connect_error)?,
            ),
        };
        self.conn = Some(stream);
        self.write(&spec.protocol.packet(), spec.command_timeout)
            .await?;
        let (code, data) = self
            .read_packet(Command::OptNeg, spec.command_timeout)
            .await?;
        if code != smfir::OPTNEG {
            return Err(failure(
                ErrorKind::Protocol,
                format!(
                    "unexpected reply \"{}\" in initial handshake",
                    (code as char).escape_default()
                ),
            ));
        }
        let reply = match wire::parse_response(code, &data) {
            Ok(Response::OptNeg(r)) => r,
            Ok(_) => unreachable!("an OPTNEG code decodes as OptNeg"),
            Err(e) => return Err(failure(ErrorKind::Protocol, e.to_string())),
        };
        let name = spec.name.clone();
        let negotiated = spec
            .protocol
            .accept(&reply, |w| tracing::warn!("milter {name}: {w}"))
            .map_err(|e| failure(ErrorKind::Protocol, e))?;
        for (stage, names) in &negotiated.macro_lists {
            self.macros.set(*stage, names.clone());
        }
        self.negotiated = Some(negotiated);
        self.state = State::Ready;
        self.sticky = None;
        self.skipping = None;
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8], limit: Duration) -> Result<(), Failure> {
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| failure(ErrorKind::Io, "error writing command: not connected"))?;
        match timeout(limit, conn.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failure(
                ErrorKind::Io,
                format!("error writing command: {}", errno_text(&e)),
            )),
            Err(_) => Err(failure(
                ErrorKind::Io,
                format!("error writing command: {TIMED_OUT}"),
            )),
        }
    }

    /// One reply packet: its code and data, the length checked first.
    async fn read_packet(
        &mut self,
        event: Command,
        limit: Duration,
    ) -> Result<(u8, Vec<u8>), Failure> {
        let conn = self.conn.as_mut().ok_or_else(|| {
            failure(
                ErrorKind::Io,
                format!("can't read {event} reply packet header: not connected"),
            )
        })?;
        let io_failure = |what: &str, r: Result<io::Result<usize>, _>| -> Result<(), Failure> {
            match r {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(failure(
                    ErrorKind::Io,
                    format!("{what}: {}", errno_text(&e)),
                )),
                Err(_) => Err(failure(ErrorKind::Io, format!("{what}: {TIMED_OUT}"))),
            }
        };
        let mut header = [0u8; 4];
        io_failure(
            &format!("can't read {event} reply packet header"),
            timeout(limit, conn.read_exact(&mut header)).await,
        )?;
        let len = wire::data_length(header, MAX_REPLY_PACKET)
            .map_err(|e| failure(ErrorKind::Protocol, e.to_string()))?;
        let mut code = [0u8; 1];
        io_failure(
            "EOF while reading command code",
            timeout(limit, conn.read_exact(&mut code)).await,
        )?;
        let mut data = vec![0u8; len];
        io_failure(
            "EOF while reading data",
            timeout(limit, conn.read_exact(&mut data)).await,
        )?;
        Ok((code[0], data))
    }

    /// Sends one event (its macros first) and reads the answer.
    async fn event(
        &mut self,
        command: Command,
        packet: Packet,
        macros: &dyn MacroSource,
    ) -> Outcome {
        let mut modifications = Vec::new();
        match self
            .exchange(command, packet, macros, &mut modifications)
            .await
        {
            Ok(verdict) => Outcome::of(verdict),
            Err(f) => self.fail(f),
        }
    }

    async fn end_of_message(
        &mut self,
        macros: &dyn MacroSource,
        modifications: &mut Vec<Modification>,
    ) -> Outcome {
        let packet = Packet::new(Command::BodyEob);
        match self
            .exchange(Command::BodyEob, packet, macros, modifications)
            .await
        {
            Ok(verdict) => Outcome::of(verdict),
            Err(f) => self.fail(f),
        }
    }

    async fn exchange(
        &mut self,
        command: Command,
        packet: Packet,
        macros: &dyn MacroSource,
        modifications: &mut Vec<Modification>,
    ) -> Result<Verdict, Failure> {
        let ev = info(command);
        let negotiated = self.negotiated.clone().unwrap_or(Negotiated {
            version: 0,
            actions: 0,
            protocol: 0,
            unsent: smfip::NOSEND_MASK,
            macro_lists: Vec::new(),
        });
        // Not in the filter's protocol version: not even the macros.
        if ev.no & negotiated.unsent != 0 {
            return Ok(Verdict::Continue);
        }
        match self.skipping {
            Some(skipped) if skipped == command => return Ok(Verdict::Continue),
            _ => self.skipping = None,
        }
        let content = matches!(
            command,
            Command::Header | Command::Eoh | Command::Body | Command::BodyEob
        );
        let limit = if content {
            self.spec.content_timeout
        } else {
            self.spec.command_timeout
        };
        // Macros go even when the filter wants no such event, as Postfix
        // sends them; command and macros leave in one write.
        let mut out = match ev.stage {
            Some(stage) => self.macros.packet(stage, command, macros),
            None => Vec::new(),
        };
        if ev.no & negotiated.protocol != 0 {
            self.write(&out, limit).await?;
            return Ok(Verdict::Continue);
        }
        out.extend_from_slice(&packet.finish());
        self.write(&out, limit).await?;
        if ev.no_reply & negotiated.protocol != 0 {
            return Ok(Verdict::Continue);
        }
        self.read_answer(command, &negotiated, limit, modifications)
            .await
    }

    /// Reads replies until one decides the event.
    async fn read_answer(
        &mut self,
        command: Command,
        negotiated: &Negotiated,
        limit: Duration,
        modifications: &mut Vec<Modification>,
    ) -> Result<Verdict, Failure> {
        let session_level = matches!(command, Command::Connect | Command::Helo);
        let mut quarantine: Option<String> = None;
        let mut edit_bytes = 0usize;
        loop {
            let (code, data) = self.read_packet(command, limit).await?;
            let unexpected = || {
                failure(
                    ErrorKind::Protocol,
                    format!(
                        "unexpected filter response {} after event {command}",
                        smfir::name(code)
                    ),
                )
            };
            let response = match wire::parse_response(code, &data) {
                Ok(r) => r,
                Err(wire::WireError::UnknownReply { .. }) => return Err(unexpected()),
                Err(e) => return Err(failure(ErrorKind::Protocol, e.to_string())),
            };
            // A refusal at connect or HELO holds for the whole session.
            let refuse_session = |m: &mut Milter, v: Verdict| {
                if session_level {
                    m.close();
                    m.state = State::RejectConnection;
                    m.sticky = Some(v.clone());
                }
                v
            };
            let verdict = match response {
                Response::Progress => continue,
                Response::Continue => Verdict::Continue,
                Response::Skip => {
                    self.skipping = Some(command);
                    Verdict::Continue
                }
                Response::Accept => {
                    if session_level {
                        self.close();
                        self.state = State::AcceptConnection;
                    } else {
                        self.state = State::AcceptMessage;
                    }
                    Verdict::Accept
                }
                Response::Discard if session_level => {
                    tracing::warn!(
                        "milter {}: DISCARD action is not allowed for connect or helo",
                        self.spec.name
                    );
                    Verdict::Continue
                }
                Response::Discard => {
                    self.state = State::AcceptMessage;
                    Verdict::Discard
                }
                Response::Reject => refuse_session(self, Verdict::Reject),
                Response::Tempfail => refuse_session(self, Verdict::Tempfail),
                Response::Shutdown => {
                    self.close();
                    self.state = State::RejectConnection;
                    self.sticky = Some(Verdict::Shutdown);
                    Verdict::Shutdown
                }
                Response::ReplyCode(text) => {
                    let reply = parse_reply_code(&text).ok_or_else(|| {
                        failure(
                            ErrorKind::Misbehaved,
                            format!(
                                "malformed reply: {}",
                                String::from_utf8_lossy(&text).trim_end_matches('\0')
                            ),
                        )
                    })?;
                    refuse_session(self, Verdict::Reply(reply))
                }
                Response::OptNeg(_) => return Err(unexpected()),
                edit if command == Command::BodyEob => {
                    edit_bytes += data.len();
                    if edit_bytes > MAX_MODIFICATION_BYTES {
                        return Err(failure(
                            ErrorKind::Protocol,
                            format!("modifications larger than {MAX_MODIFICATION_BYTES} bytes"),
                        ));
                    }
                    let leading_space = negotiated.has(smfip::HDR_LEADSPC);
                    if let Some(reason) =
                        self.edit(code, edit, negotiated, leading_space, modifications)?
                    {
                        quarantine = Some(reason);
                    }
                    continue;
                }
                _ => return Err(unexpected()),
            };
            // SMFIR_QUARANTINE holds the message unless the filter then
            // refused or discarded it.
            return Ok(match (quarantine, verdict) {
                (Some(reason), Verdict::Continue | Verdict::Accept) => Verdict::Quarantine(reason),
                (_, v) => v,
            });
        }
    }

    /// One modification request at end of message; Some(reason) for a
    /// quarantine.
    fn edit(
        &self,
        code: u8,
        edit: Response,
        negotiated: &Negotiated,
        leading_space: bool,
        modifications: &mut Vec<Modification>,
    ) -> Result<Option<String>, Failure> {
        let needs = match code {
            smfir::ADDHEADER | smfir::INSHEADER => smfif::ADDHDRS,
            smfir::CHGHEADER => smfif::CHGHDRS,
            smfir::REPLBODY => smfif::CHGBODY,
            smfir::ADDRCPT => smfif::ADDRCPT,
            smfir::ADDRCPT_PAR => smfif::ADDRCPT_PAR,
            smfir::DELRCPT => smfif::DELRCPT,
            smfir::CHGFROM => smfif::CHGFROM,
            smfir::QUARANTINE => smfif::QUARANTINE,
            _ => 0,
        };
        if needs == 0 || !negotiated.allows(needs) {
            return Err(failure(
                ErrorKind::Protocol,
                format!(
                    "unexpected filter response {} after event SMFIC_BODYEOB \
                     (action not negotiated)",
                    smfir::name(code)
                ),
            ));
        }
        let space = |v: String| if leading_space { v } else { format!(" {v}") };
        let named = |name: &str| {
            if name.is_empty() {
                Err(failure(ErrorKind::Misbehaved, "null change header name"))
            } else {
                Ok(())
            }
        };
        let m = match edit {
            Response::AddHeader { name, value } => {
                named(&name)?;
                Modification::AddHeader {
                    name,
                    value: space(value),
                }
            }
            Response::InsertHeader { index, name, value } => {
                named(&name)?;
                Modification::InsertHeader {
                    index,
                    name,
                    value: space(value),
                }
            }
            Response::ChangeHeader { index, name, value } => {
                named(&name)?;
                Modification::ChangeHeader {
                    // Sendmail counts from 1 but takes 0 for 1.
                    index: index.max(1),
                    name,
                    value: if value.is_empty() {
                        value
                    } else {
                        space(value)
                    },
                }
            }
            Response::ReplaceBody(chunk) => {
                // Chunks of one replacement arrive as consecutive replies.
                if let Some(Modification::ReplaceBody(body)) = modifications.last_mut() {
                    body.extend_from_slice(&chunk);
                    return Ok(None);
                }
                if modifications
                    .iter()
                    .any(|m| matches!(m, Modification::ReplaceBody(_)))
                {
                    // Postfix refuses body chunks mixed with other edits.
                    return Err(failure(
                        ErrorKind::Misbehaved,
                        "body replacement requests can't currently be mixed with other requests",
                    ));
                }
                Modification::ReplaceBody(chunk)
            }
            Response::ChangeFrom { sender, args } => Modification::ChangeSender { sender, args },
            Response::AddRcpt(recipient) => Modification::AddRecipient {
                recipient,
                args: None,
            },
            Response::AddRcptPar { rcpt, args } => Modification::AddRecipient {
                recipient: rcpt,
                args,
            },
            Response::DelRcpt(r) => Modification::DeleteRecipient(r),
            Response::Quarantine(reason) => return Ok(Some(reason)),
            _ => return Ok(None),
        };
        modifications.push(m);
        Ok(None)
    }
}

/// MAIL and RCPT: the address, then each ESMTP parameter, NUL-terminated.
fn args_packet(command: Command, address: &str, params: &[String]) -> Packet {
    params
        .iter()
        .fold(Packet::new(command).string(address), |p, a| p.string(a))
}

/// A `SMFIR_REPLYCODE` text as a reply, or None when malformed. The
/// checks are Postfix's milter8_valid_smtp_reply(): every line
/// `[45]dd[- ]`, `-` on all lines but the last, CRLF between lines and
/// none after the last, an enhanced code (if any) of the reply's class,
/// one code throughout; then `%%` becomes `%` and a lone `%` goes (the
/// text was a format string to Sendmail).
pub fn parse_reply_code(raw: &[u8]) -> Option<Reply> {
    let text = raw.strip_suffix(&[0]).unwrap_or(raw);
    if text.contains(&0) {
        return None;
    }
    let text = std::str::from_utf8(text).ok()?;
    let lines: Vec<&str> = text.split("\r\n").collect();
    let last = lines.len() - 1;
    for (i, line) in lines.iter().enumerate() {
        let b = line.as_bytes();
        if b.len() < 4
            || !matches!(b[0], b'4' | b'5')
            || !b[1].is_ascii_digit()
            || !b[2].is_ascii_digit()
            || b[3] != if i == last { b' ' } else { b'-' }
            || (b.len() > 4 && b[4].is_ascii_digit() && b[4] != b[0])
            || line.contains(['\r', '\n'])
            || b[..3] != lines[0].as_bytes()[..3]
        {
            return None;
        }
    }
    let mut unformatted = String::with_capacity(text.len() + 2);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            // `%x` is `x` (so `%%` is `%`); a `%` at the end goes.
            '%' => unformatted.extend(chars.next()),
            c => unformatted.push(c),
        }
    }
    unformatted.push_str("\r\n");
    let mut parser = ReplyParser::new();
    parser.push(unformatted.as_bytes());
    match parser.next_reply() {
        Ok(Some(reply)) if parser.buffered() == 0 => Some(reply),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_as_postfix_checks_them() {
        let r = parse_reply_code(b"554 5.7.1 No thanks\0").unwrap();
        assert_eq!(r.to_string(), "554 5.7.1 No thanks");
        let r = parse_reply_code(b"452-4.3.1 one\r\n452-4.3.1 two\r\n452 4.3.1 three\0").unwrap();
        assert_eq!(
            r.to_string(),
            "452-4.3.1 one\n452-4.3.1 two\n452 4.3.1 three"
        );
        let r = parse_reply_code(b"550 5.7.1 100%% sure, 5% not\0").unwrap();
        assert_eq!(r.lines(), ["100% sure, 5 not"]);
        for bad in [
            &b"250 2.0.0 Ok\0"[..],
            b"55 short\0",
            b"550-5.7.1 last line says more\0",
            b"550 5.7.1 a\r\n550 5.7.1 b\0",
            b"550-5.7.1 a\r\n451 4.7.1 b\0",
            b"550 4.7.1 class\0",
            b"550-5.7.1 a\n550 5.7.1 b\0",
            b"550 5.7.1 a\r\n\0",
            b"550 5.7.1 a\0b\0",
            b"",
        ] {
            assert!(
                parse_reply_code(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn errno_texts_are_short() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(errno_text(&e), "Connection refused");
        let e = io::Error::from(io::ErrorKind::UnexpectedEof);
        assert_eq!(errno_text(&e), "unexpected end of file");
    }
}
