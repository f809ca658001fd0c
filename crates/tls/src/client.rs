//! smtp-client's [`ClientConfig`] for each `smtp_tls_security_level`.
//!
//! - `none`: no TLS, so no config.
//! - `may` and `encrypt`: TLS without authenticating the server, as Postfix
//!   does at these levels (opportunistic or mandatory *encryption*). The
//!   certificate is accepted whatever it says, but the handshake signature
//!   is still checked against the key in the certificate presented, so the
//!   peer is at least proven to hold that key; this protects against
//!   passive eavesdropping, not against an active man in the middle.
//!   (`may` falling back to plaintext when STARTTLS is absent or fails is
//!   the smtp-client's decision, not the config's.)
//! - `verify` (and `secure`): the chain must lead to a root in
//!   `smtp_tls_CAfile` or `smtp_tls_CApath` and name the host the caller
//!   passes as the [`ServerName`] (the MX or relay host).
//!
//! `smtp_tls_CApath` is read as OpenSSL's CA directory is used: every file
//! in it (the `c_rehash` links and the files they point to alike, each
//! certificate taken once). Files in it that hold no certificate (CRLs,
//! READMEs) are passed over, as OpenSSL never opens them; a broken
//! `smtp_tls_CAfile` is an error.
//!
//! rustls sends SNI whenever that server name is a DNS name.
//! Client certificates (`smtp_tls_cert_file`) are not offered.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postern_config::Params;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{TlsError, pem};

/// `smtp_tls_security_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityLevel {
    /// No TLS (also the empty default).
    None,
    /// TLS when offered, unauthenticated; plaintext otherwise.
    May,
    /// TLS required, unauthenticated.
    Encrypt,
    /// TLS required, the certificate verified against `smtp_tls_CAfile`.
    Verify,
}

impl SecurityLevel {
    /// Postfix's level names; `secure` is taken as `verify`, and the DANE
    /// and fingerprint levels are refused since nothing here implements them.
    pub fn parse(value: &str) -> Result<SecurityLevel, TlsError> {
        Ok(match value.trim().to_ascii_lowercase().as_str() {
            "" | "none" => SecurityLevel::None,
            "may" => SecurityLevel::May,
            "encrypt" => SecurityLevel::Encrypt,
            "verify" | "secure" => SecurityLevel::Verify,
            other => {
                return Err(TlsError::Config {
                    param: "smtp_tls_security_level".into(),
                    value: other.into(),
                    reason: "not supported (use none, may, encrypt or verify)".into(),
                });
            }
        })
    }

    /// Whether a session without TLS is a failure (the mail is deferred).
    pub fn requires_tls(self) -> bool {
        matches!(self, SecurityLevel::Encrypt | SecurityLevel::Verify)
    }
}

/// A level and the config it needs (`None` for [`SecurityLevel::None`]).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub level: SecurityLevel,
    pub config: Option<Arc<ClientConfig>>,
}

/// Where the trusted CA certificates are (`smtp_tls_CAfile`,
/// `smtp_tls_CApath`); both may be given.
#[derive(Debug, Clone, Default)]
pub struct CaLocations {
    pub file: Option<PathBuf>,
    pub dir: Option<PathBuf>,
}

impl CaLocations {
    /// Only a CA file.
    pub fn file(path: &Path) -> CaLocations {
        CaLocations {
            file: Some(path.to_path_buf()),
            dir: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.file.is_none() && self.dir.is_none()
    }
}

/// The config for `level`; CA certificates are required for `verify`.
/// Sessions are resumed from an in-process cache shared by every
/// connection made with the returned config (rustls' default of 256
/// entries).
pub fn client_config(
    level: SecurityLevel,
    ca: &CaLocations,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Option<Arc<ClientConfig>>, TlsError> {
    let provider = crate::provider();
    let builder =
        || ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions);
    let config = match level {
        SecurityLevel::None => return Ok(None),
        SecurityLevel::May | SecurityLevel::Encrypt => builder()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(&provider)))
            .with_no_client_auth(),
        SecurityLevel::Verify => {
            if ca.is_empty() {
                return Err(TlsError::Config {
                    param: "smtp_tls_security_level".into(),
                    value: "verify".into(),
                    reason: "needs smtp_tls_CAfile or smtp_tls_CApath naming the trusted CA \
                             certificates"
                        .into(),
                });
            }
            builder()?
                .with_root_certificates(load_roots(ca)?)
                .with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// [`client_config`] from smtp-client's parameters
/// (`smtp_tls_security_level`, `smtp_tls_CAfile`, `smtp_tls_CApath`, and
/// `smtp_tls_mandatory_protocols` for encrypt and verify,
/// `smtp_tls_protocols` for may).
pub fn client_config_from_params(params: &Params) -> Result<ClientTls, TlsError> {
    let level = SecurityLevel::parse(&params.get("smtp_tls_security_level"))?;
    let param = if level.requires_tls() {
        "smtp_tls_mandatory_protocols"
    } else {
        "smtp_tls_protocols"
    };
    let versions = crate::protocol_versions(params.tls_protocols(param));
    let set = |name: &str| Some(params.path(name)).filter(|_| !params.get(name).is_empty());
    let ca = CaLocations {
        file: set("smtp_tls_CAfile"),
        dir: set("smtp_tls_CApath"),
    };
    let config = client_config(level, &ca, &versions)?;
    Ok(ClientTls { level, config })
}

/// Every certificate of the CA file and the CA directory as a trust
/// anchor, each once; none at all is an error.
pub fn load_roots(ca: &CaLocations) -> Result<RootCertStore, TlsError> {
    let mut certs = Vec::new();
    if let Some(file) = &ca.file {
        certs.extend(pem::certificates(file, &pem::read(file)?)?);
    }
    if let Some(dir) = &ca.dir {
        certs.extend(directory_certificates(dir)?);
    }
    let mut seen = HashSet::new();
    let mut roots = RootCertStore::empty();
    for cert in certs {
        if !seen.insert(cert.as_ref().to_vec()) {
            continue;
        }
        roots.add(cert).map_err(|e| TlsError::BadCertificate {
            path: ca.file.clone().or(ca.dir.clone()).unwrap_or_default(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate {
            path: ca.dir.clone().or(ca.file.clone()).unwrap_or_default(),
        });
    }
    Ok(roots)
}

/// The certificates of every file in `dir` (links followed) that holds
/// any, in name order.
fn directory_certificates(dir: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    let mut certs = Vec::new();
    for file in files {
        if let Ok(bytes) = pem::read(&file)
            && let Ok(found) = pem::certificates(&file, &bytes)
        {
            certs.extend(found);
        }
    }
    Ok(certs)
}

/// Accepts any server certificate but verifies handshake signatures with
/// the provider's algorithms (see the module doc for what that buys).
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl AcceptAnyCertificate {
    pub fn new(provider: &CryptoProvider) -> Self {
        AcceptAnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(SecurityLevel::parse("").unwrap(), SecurityLevel::None);
        assert_eq!(SecurityLevel::parse("May").unwrap(), SecurityLevel::May);
        assert_eq!(
            SecurityLevel::parse("secure").unwrap(),
            SecurityLevel::Verify
        );
        assert!(SecurityLevel::parse("dane-only").is_err());
        assert!(SecurityLevel::Encrypt.requires_tls());
        assert!(!SecurityLevel::May.requires_tls());
    }

    #[test]
    fn verify_needs_a_ca_file() {
        let all = [&rustls::version::TLS13, &rustls::version::TLS12];
        let none = CaLocations::default();
        let e = client_config(SecurityLevel::Verify, &none, &all).unwrap_err();
        assert!(e.to_string().contains("smtp_tls_CAfile"), "{e}");
        assert!(
            client_config(SecurityLevel::None, &none, &all)
                .unwrap()
                .is_none()
        );
        assert!(
            client_config(SecurityLevel::May, &none, &all)
                .unwrap()
                .is_some()
        );
    }
}
