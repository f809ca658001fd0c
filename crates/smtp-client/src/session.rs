//! One connection to a remote SMTP server: connecting from the
//! configured source address, and reading replies and writing commands
//! each within its stage's deadline, in plaintext or, after STARTTLS
//! ([`Session::start_tls`]), over TLS. A broken or silent connection
//! becomes an [`Outcome`] with Postfix's wording (`lost connection with
//! h[ip] while ...`, `conversation with h[ip] timed out while ...`).

use postern_envelope::EnhancedStatus;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use postern_smtp::{Capabilities, Reply, ReplyParser};
use postern_tls::MaybeTls;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

use crate::outcome::Outcome;
use crate::resolve::Target;
use crate::settings::Settings;

/// Where in the conversation we are, for the `while ...` of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Greeting,
    Ehlo,
    Helo,
    Mail,
    Rcpt,
    Data,
    Body,
    Dot,
    Rset,
    Quit,
    Starttls,
    Auth,
}

impl Stage {
    /// Postfix's phrase for the stage.
    pub fn doing(self) -> &'static str {
        match self {
            Stage::Greeting => "receiving the initial server greeting",
            Stage::Ehlo => "performing the EHLO handshake",
            Stage::Helo => "performing the HELO handshake",
            Stage::Mail => "sending MAIL FROM",
            Stage::Rcpt => "sending RCPT TO",
            Stage::Data => "sending DATA command",
            Stage::Body => "sending message body",
            Stage::Dot => "sending end of data -- message may be sent more than once",
            Stage::Rset => "sending RSET",
            Stage::Quit => "sending QUIT",
            Stage::Starttls => "receiving the STARTTLS response",
            Stage::Auth => "performing the AUTH handshake",
        }
    }
}

/// An open SMTP connection.
#[derive(Debug)]
pub struct Session {
    /// TCP, then TLS after STARTTLS.
    stream: MaybeTls<TcpStream>,
    parser: ReplyParser,
    pub target: Target,
    /// What the server announced; None until the EHLO/HELO handshake.
    pub caps: Option<Capabilities>,
    /// The server said 421: it is closing, the session is not reusable.
    pub closing: bool,
    /// Do not send STARTTLS: this is the plaintext retry after a failed
    /// handshake at `smtp_tls_security_level = may`.
    pub no_starttls: bool,
}

/// How a TLS handshake failed.
#[derive(Debug)]
pub enum TlsFailure {
    /// The certificate does not lead to a root in smtp_tls_CAfile.
    NotTrusted(String),
    /// The certificate does not name the host.
    NotMatched(String),
    /// Anything else: protocol error, timeout, a peer that hung up.
    Handshake(String),
}

/// Opens a TCP connection to `target` from `smtp_bind_address(6)` when set.
pub async fn connect(target: &Target, s: &Settings) -> Result<Session, Outcome> {
    let addr = SocketAddr::new(target.ip, target.port);
    let fail = |e: io::Error| {
        Outcome::deferred(
            EnhancedStatus::of(4, 4, 1),
            format!("connect to {}: {}", target.relay(), strerror(&e)),
        )
    };
    let (socket, bind) = match target.ip {
        IpAddr::V4(_) => (TcpSocket::new_v4(), s.bind4.map(IpAddr::V4)),
        IpAddr::V6(_) => (TcpSocket::new_v6(), s.bind6.map(IpAddr::V6)),
    };
    let socket = socket.map_err(fail)?;
    if let Some(ip) = bind {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
            // Postfix logs this and defers, not naming the remote host.
            Outcome::deferred(
                EnhancedStatus::of(4, 3, 0),
                format!("bind {ip} port 0: {}", strerror(&e)),
            )
        })?;
    }
    let stream = match tokio::time::timeout(s.connect_timeout, socket.connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(fail(e)),
        Err(_) => return Err(fail(io::Error::from(io::ErrorKind::TimedOut))),
    };
    // Commands are small and answered one by one (or pipelined in one
    // write): no reason to let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    Ok(Session {
        stream: MaybeTls::Plain(stream),
        parser: ReplyParser::new(),
        target: target.clone(),
        caps: None,
        closing: false,
        no_starttls: false,
    })
}

impl Session {
    /// True once STARTTLS has succeeded; a cached session keeps its TLS.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// The TLS handshake after the server's 220 to STARTTLS, within `t`.
    /// `name` is what the server is asked for (SNI, for a DNS name) and
    /// what its certificate must match when `config` verifies. On failure
    /// the session is unusable: nothing more can be said on it.
    pub async fn start_tls(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        t: Duration,
    ) -> Result<(), TlsFailure> {
        let Some(tcp) = self.stream.take_plain() else {
            return Err(TlsFailure::Handshake("not a plaintext session".into()));
        };
        // Whatever the server sent after its 220 came before the
        // handshake, so it cannot be trusted as a reply over TLS
        // (the STARTTLS injection attack): forget it.
        self.parser = ReplyParser::new();
        let connect = TlsConnector::from(config).connect(name, tcp);
        match tokio::time::timeout(t, connect).await {
            Err(_) => Err(TlsFailure::Handshake("handshake timed out".into())),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(tls)) => {
                self.stream.set_tls(tls);
                Ok(())
            }
        }
    }

    /// The negotiated protocol and cipher, for the log.
    pub fn tls_summary(&self) -> Option<postern_tls::TlsSummary> {
        self.stream.summary()
    }

    /// Reads one reply within `t`.
    pub async fn read(&mut self, t: Duration, stage: Stage) -> Result<Reply, Outcome> {
        let deadline = tokio::time::Instant::now() + t;
        let mut buf = [0u8; 4096];
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    self.closing |= reply.code() == 421;
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Outcome::deferred(
                        EnhancedStatus::of(4, 5, 0),
                        format!(
                            "host {} sent a malformed reply while {}: {e}",
                            self.target.namaddr(),
                            stage.doing()
                        ),
                    ));
                }
            }
            let n = match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Err(_) => return Err(self.timed_out(stage)),
                Ok(Err(_)) | Ok(Ok(0)) => return Err(self.lost(stage)),
                Ok(Ok(n)) => n,
            };
            self.parser.push(&buf[..n]);
        }
    }

    /// Writes `bytes` within `t`.
    pub async fn write(&mut self, bytes: &[u8], t: Duration, stage: Stage) -> Result<(), Outcome> {
        // TLS buffers records; flush so the command actually leaves.
        let stream = &mut self.stream;
        let io = async move {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match tokio::time::timeout(t, io).await {
            Err(_) => Err(self.timed_out(stage)),
            Ok(Err(_)) => Err(self.lost(stage)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends one command line and reads its reply.
    pub async fn command(
        &mut self,
        line: &str,
        t: Duration,
        stage: Stage,
    ) -> Result<Reply, Outcome> {
        self.write(format!("{line}\r\n").as_bytes(), t, stage)
            .await?;
        self.read(t, stage).await
    }

    fn lost(&self, stage: Stage) -> Outcome {
        let what = format!("lost connection with {}", self.target.namaddr());
        broken_off(&what, stage)
    }

    fn timed_out(&self, stage: Stage) -> Outcome {
        let what = format!("conversation with {} timed out", self.target.namaddr());
        broken_off(&what, stage)
    }
}

/// Sorts a handshake error into Postfix's three complaints.
fn classify(e: &io::Error) -> TlsFailure {
    use rustls::CertificateError;
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::InvalidCertificate(
            c @ (CertificateError::NotValidForName
            | CertificateError::NotValidForNameContext { .. }),
        )) => TlsFailure::NotMatched(format!("{c:?}")),
        Some(rustls::Error::InvalidCertificate(c)) => TlsFailure::NotTrusted(format!("{c:?}")),
        Some(other) => TlsFailure::Handshake(other.to_string()),
        None => TlsFailure::Handshake(strerror(e)),
    }
}

/// The system's message for an error, without Rust's ` (os error N)`.
pub fn strerror(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::TimedOut && e.raw_os_error().is_none() {
        return "Connection timed out".into();
    }
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// A session broken off during `stage` (4.4.2): `<what> while <doing>`.
fn broken_off(what: &str, stage: Stage) -> Outcome {
    Outcome::deferred(
        EnhancedStatus::of(4, 4, 2),
        format!("{what} while {}", stage.doing()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strerror_reads_like_postfix() {
        let e = io::Error::from_raw_os_error(libc_econnrefused());
        assert_eq!(strerror(&e), "Connection refused");
        assert_eq!(
            strerror(&io::Error::from(io::ErrorKind::TimedOut)),
            "Connection timed out"
        );
    }

    fn libc_econnrefused() -> i32 {
        nix::errno::Errno::ECONNREFUSED as i32
    }
}
