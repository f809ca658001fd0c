//! [`TlsError`]: why a TLS configuration could not be built or tlsmgr could
//! not be asked. Every variant about a file names it, so that the daemon's
//! fatal startup message tells the administrator what to fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: malformed PEM: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("{}: no certificate found (expected a PEM \"CERTIFICATE\" block)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: unusable private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: cannot parse certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("private key in {} does not match the certificate in {}", key.display(), cert.display())]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "no server certificate: set smtpd_tls_cert_file (and smtpd_tls_key_file) or smtpd_tls_chain_files"
    )]
    NoServerCertificate,
    /// A parameter whose value cannot be used.
    #[error("{param} = {value:?}: {reason}")]
    Config {
        param: String,
        value: String,
        reason: String,
    },
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("ticket key: {0}")]
    TicketKey(String),
    #[error("tlsmgr ({}): {source}", path.display())]
    Tlsmgr {
        path: PathBuf,
        source: postern_ipc::IpcError,
    },
    /// tlsmgr answered, but not what was asked for.
    #[error("tlsmgr: {0}")]
    TlsmgrReply(String),
}
