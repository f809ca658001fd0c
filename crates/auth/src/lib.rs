//! Message authentication for Postern (issue 12): DKIM signing of mail
//! that leaves, and the inbound checks (SPF, DKIM, DMARC, ARC) of mail
//! that arrives, built on `mail-auth` so that no opendkim, opendmarc or
//! policyd-spf daemon is needed beside Postern.
//!
//! # Layout
//!
//! * [`keys`]: DKIM private keys read from PEM files (PKCS#8 or PKCS#1
//!   RSA, PKCS#8 Ed25519, as `openssl genpkey` and `openssl genrsa`
//!   write them), their public halves, and the DNS TXT record to publish.
//! * [`sign`]: `dkim_signing_table` and `dkim_key_table`, read with
//!   opendkim's SigningTable/KeyTable conventions, and [`DkimSigner`],
//!   which picks the key for a message's From: address and returns the
//!   `DKIM-Signature:` header to prepend.
//! * [`arc`]: ARC sealing of forwarded mail with `arc_sealing_key`.
//! * [`verify`]: the inbound checks on a hickory resolver asking
//!   `dns_servers` (SPF of MAIL FROM and HELO, every DKIM signature up to
//!   a cap, DMARC alignment and policy, ARC), their results as one
//!   `Authentication-Results:` header and a log line, and the removal of
//!   forged Authentication-Results headers naming our authserv-id.

pub mod arc;
pub mod keys;
pub mod sign;
pub mod verify;

pub use arc::ArcSealer;
pub use keys::{DkimKey, KeyAlgorithm, KeyError};
pub use sign::{DkimError, DkimSigner, KeyEntry, read_key_table, sign_or_warn};
pub use verify::remove_our_auth_results;

/// The start-up check of the signing, sealing and inbound parameters of
/// `[main]` and every service: file, line and key of what is refused.
pub fn check_config(config: &postern_config::Config) -> Result<(), postern_config::ConfigError> {
    sign::check_config(config)?;
    arc::check_config(config)?;
    verify::check_config(config)
}
