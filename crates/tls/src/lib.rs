//! TLS for Postern, on rustls with the ring provider: the server side for
//! smtpd (certificates and keys from `smtpd_tls_*`, session tickets shared by
//! every smtpd process), the client side for smtp-client
//! (`smtp_tls_security_level`), certificate facts for `qctl status`, and the
//! client of tlsmgr(8), which holds the ticket keys and the client session
//! cache.
//!
//! Everything here builds its configs with `builder_with_provider(ring)`,
//! so no other crypto provider is linked or needed as a process default.
//!
//! # Layout
//! - `error` — [`TlsError`]: every failure names the file or parameter.
//! - `pem` — reading certificate chains and private keys from PEM files.
//! - [`certinfo`] — subject and expiry of a certificate ([`CertificateInfo`]).
//! - [`server`] — smtpd's [`ServerConfig`](rustls::ServerConfig): one or
//!   more certificate/key pairs, TLS 1.2 and 1.3, the shared ticketer.
//! - [`client`] — smtp-client's [`ClientConfig`](rustls::ClientConfig) per
//!   [`SecurityLevel`], and the verifier used when no verification is asked.
//! - [`tickets`] — [`TicketKeys`]: the key ring smtpd gets from tlsmgr, and
//!   the [`ProducesTickets`](rustls::server::ProducesTickets) that uses it.
//! - [`tlsmgr_client`] — [`TlsmgrClient`]: requests to `private/tlsmgr`, and
//!   the task that keeps a [`TicketKeys`] up to date.
//! - [`summary`](mod@summary) — "TLSv1.3 with cipher ..." for Received headers and logs.
//! - [`stream`] — [`MaybeTls`]: the plain-or-TLS stream under smtpd's and
//!   smtp-client's sessions.
//!
//! # Use
//! smtpd, once at start and again on reload:
//! ```text
//! let tickets = Arc::new(TicketKeys::new(lifetime_secs)); // smtpd_tls_session_cache_timeout
//! let tlsmgr = Arc::new(TlsmgrClient::from_params(&params));
//! let _ = tlsmgr_client::refresh_ticket_keys(&tlsmgr, &tickets).await; // keys before the first client
//! spawn_ticket_refresh(tlsmgr, tickets.clone());
//! let tls = server_config_from_params(&params, Some(tickets))?; // fatal error names the file
//! ctx.status.certificates(tls.certificates.clone());
//! // per session: MaybeTls::Plain(stream); at STARTTLS take_plain(), then
//! // tokio_rustls::TlsAcceptor::from(tls.config.clone()).accept(plain), set_tls(..)
//! // Received header: stream.summary() => "TLSv1.3 with cipher ..."
//! ```
//! smtp-client: `client_config_from_params(&params)?` once; per delivery
//! `TlsConnector::from(config)` with the MX host as the server name, and
//! `SecurityLevel::requires_tls` to decide between plaintext and deferral.
//!
//! # Differences from Postfix
//! - Only TLS 1.2 and 1.3 exist here; the `smtp(d)_tls_*protocols` lists
//!   can only narrow that down. Cipher lists (`*_tls_ciphers`) are not used:
//!   rustls offers only modern AEAD suites.
//! - rustls cannot export a client session, so the smtp-client resumes from
//!   its own in-process cache (shared by all its deliveries); tlsmgr's cache
//!   holds opaque bytes per destination for what can be serialized.

mod error;
mod pem;

pub mod certinfo;
pub mod client;
pub mod server;
pub mod stream;
pub mod summary;
pub mod tickets;
pub mod tlsmgr_client;

use std::sync::Arc;

pub use certinfo::{CertificateInfo, certificate_info};
pub use client::{CaLocations, ClientTls, SecurityLevel, client_config, client_config_from_params};
pub use error::TlsError;
pub use server::{CertKeyFiles, ServerTls, SessionCache, server_config, server_config_from_params};
pub use stream::MaybeTls;
pub use summary::{TlsSummary, summary};
pub use tickets::TicketKeys;
pub use tlsmgr_client::{TlsmgrClient, spawn_ticket_refresh};

/// The one crypto provider Postern uses: ring.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Seconds since the epoch, for key and cache expiry.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// rustls' versions for what a protocol list allows (the list's syntax
/// and its check that something is left belong to postern-config).
pub fn protocol_versions(
    allowed: postern_config::TlsProtocols,
) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut versions = Vec::new();
    if allowed.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if allowed.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    versions
}
