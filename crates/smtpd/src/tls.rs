//! TLS in the session: the security level, the handshake on the
//! session's stream ([`MaybeTls`]), and STARTTLS itself.
//!
//! The handshake replaces the plain stream inside the session's `Io`; every
//! byte the client sent after the STARTTLS line and before the handshake is
//! thrown away first, so plaintext pipelined behind STARTTLS can never be
//! taken as a command of the encrypted session (CVE-2011-0411).

use std::sync::Arc;

use postern_config::Params;
use postern_tls::{MaybeTls, TlsSummary};
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::queue::Queue;
use crate::session::{IoError, Session, Step, reply};

/// `smtpd_tls_security_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// No STARTTLS.
    None,
    /// STARTTLS offered.
    May,
    /// STARTTLS required before mail (and AUTH).
    Encrypt,
}

impl Level {
    /// Postfix's values, validated at load; `dane`, `fingerprint`,
    /// `verify` and `secure` are client levels and mean `encrypt` here, as
    /// for Postfix's smtpd.
    pub fn from_params(params: &Params) -> Level {
        match params.choice("smtpd_tls_security_level").as_str() {
            "" | "none" => Level::None,
            "may" => Level::May,
            _ => Level::Encrypt,
        }
    }
}

/// Runs the server handshake on a plain stream within `timeout`; the
/// summary of the session, or why it failed (for the log).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut MaybeTls<S>,
    config: Arc<ServerConfig>,
    timeout: std::time::Duration,
) -> Result<TlsSummary, (IoError, String)> {
    let Some(plain) = conn.take_plain() else {
        return Err((IoError::Lost, "TLS already active".into()));
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(timeout, acceptor.accept(plain)).await {
        Err(_) => return Err((IoError::Timeout, "timeout".into())),
        Ok(Err(e)) => return Err((IoError::Lost, e.to_string())),
        Ok(Ok(tls)) => tls,
    };
    conn.set_tls(tls);
    conn.summary()
        .ok_or_else(|| (IoError::Lost, "no session after the handshake".to_string()))
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    /// The handshake (after STARTTLS or at connect in wrapper mode), with
    /// Postfix's log lines.
    pub(crate) async fn start_tls(&mut self) -> Result<(), IoError> {
        let Some(config) = self.tls_config.clone() else {
            return Err(IoError::Lost);
        };
        // CVE-2011-0411: nothing sent in plaintext survives the handshake.
        self.io.discard_input();
        let timeout = self.settings.timeout;
        match handshake(self.io.conn_mut(), config, timeout).await {
            Ok(summary) => {
                if self.settings.tls_log_summary {
                    tracing::info!(
                        "Anonymous TLS connection established from {}: {summary}",
                        self.client.namaddr()
                    );
                }
                self.tls = Some(summary);
                Ok(())
            }
            Err((e, why)) => {
                tracing::info!("SSL_accept error from {}: {why}", self.client.namaddr());
                Err(e)
            }
        }
    }

    /// STARTTLS (RFC 3207). After the handshake the session starts over:
    /// the client must say EHLO again, and nothing it said before counts.
    pub(crate) async fn starttls(&mut self) -> Result<Step, IoError> {
        if self.tls.is_some() {
            return Ok(self.refuse("554 5.5.1 Error: TLS already active"));
        }
        if self.tls_config.is_none() {
            return Ok(self.refuse("502 5.5.1 Error: command not implemented"));
        }
        if self.helo_missing() {
            return Ok(self.refuse("503 5.5.1 Error: send HELO/EHLO first"));
        }
        if self.tx.is_some() {
            return Ok(self.refuse("503 5.5.1 Error: MAIL transaction in progress"));
        }
        self.io.reply(&reply("220 2.0.0 Ready to start TLS"));
        self.io.flush().await?;
        self.start_tls().await?;
        self.reset_transaction().await;
        self.helo = None;
        self.esmtp = false;
        self.sasl = None;
        Ok(Step::Ok)
    }
}
