//! STARTTLS as Postfix's smtp(8) does it, per `smtp_tls_security_level`:
//!
//! - `none`: never, even when offered.
//! - `may`: when the server offers STARTTLS; plaintext when it does not or
//!   refuses the command; when the handshake fails, once more over a new
//!   plaintext connection to the same server (unless a SASL password
//!   exists for it: a password is not sent where TLS was expected to
//!   protect it).
//! - `encrypt`: TLS or nothing (4.7.4 `TLS is required, but was not
//!   offered by host X`, 4.7.5 `Cannot start TLS: handshake failure`);
//!   the certificate is not checked.
//! - `verify`: `encrypt`, and the certificate must lead to a root in
//!   `smtp_tls_CAfile` or `smtp_tls_CApath` (4.7.5 `Server certificate not trusted`) and name
//!   the host connected to: the MX host, or the host of a `[host]` next
//!   hop (4.7.5 `Server certificate not verified`).
//!
//! A failure to use TLS where it is required is a failure of that server
//! only: the next MX host may do better.
//!
//! The ClientConfig lives as long as the parameters it was built from, so
//! that its session cache lets later connections to a server resume their
//! TLS session (rustls keys the cache by server name).

use std::sync::Arc;

use postern_config::Params;
use postern_tls::SecurityLevel;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

/// What `smtp_tls_*` asks for.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub level: SecurityLevel,
    /// None for `none`, or when the configuration is unusable (`error`).
    pub config: Option<Arc<ClientConfig>>,
    /// Why no config could be made (bad level, missing CA file, ...):
    /// mail that requires TLS is deferred, `may` goes without.
    pub error: Option<String>,
    /// The values this was built from.
    key: String,
}

impl TlsSettings {
    /// From the parameters; `previous` is kept when they are the same, so
    /// requests share the config and its session cache.
    pub fn from_params(p: &Params, previous: Option<&TlsSettings>) -> TlsSettings {
        let key = [
            "smtp_tls_security_level",
            "smtp_tls_CAfile",
            "smtp_tls_CApath",
            "smtp_tls_protocols",
            "smtp_tls_mandatory_protocols",
        ]
        .map(|n| p.get(n))
        .join("\n");
        if let Some(previous) = previous
            && previous.key == key
        {
            return previous.clone();
        }
        match postern_tls::client_config_from_params(p) {
            Ok(c) => TlsSettings {
                level: c.level,
                config: c.config,
                error: None,
                key,
            },
            Err(e) => {
                // Postfix refuses to start; here every delivery that
                // needs TLS is deferred with the reason in the log.
                tracing::error!("TLS client configuration: {e}");
                TlsSettings {
                    level: SecurityLevel::parse(&p.get("smtp_tls_security_level"))
                        .unwrap_or(SecurityLevel::Encrypt),
                    config: None,
                    error: Some(e.to_string()),
                    key,
                }
            }
        }
    }

    /// Whether STARTTLS is to be sent when offered.
    pub fn wanted(&self) -> bool {
        self.level != SecurityLevel::None
    }
}

/// The name to ask for and to verify: the host name (SNI is sent for a
/// DNS name, not for an address literal).
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.trim_end_matches('.').to_string()).ok()
}

/// Postfix's word for how far the peer was checked.
pub fn trust_word(level: SecurityLevel) -> &'static str {
    match level {
        SecurityLevel::Verify => "Verified",
        // The may/encrypt verifier checks nothing about the chain.
        _ => "Untrusted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(matches!(
            server_name("mx.example.com."),
            Some(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.2"),
            Some(ServerName::IpAddress(_))
        ));
        assert_eq!(trust_word(SecurityLevel::May), "Untrusted");
    }
}
