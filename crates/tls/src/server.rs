//! smtpd's [`ServerConfig`]: one or more certificate/key pairs (RSA, ECDSA,
//! Ed25519; the client's signature algorithms choose among them), TLS 1.2
//! and 1.3, and the session tickets shared through tlsmgr.
//!
//! Pairs come from `smtpd_tls_chain_files` (each file a private key
//! followed by its certificate chain, as in Postfix) or else from
//! `smtpd_tls_cert_file` with `smtpd_tls_key_file` (which defaults to the
//! certificate file, so one file holding both works).
//!
//! Resumption is by session ticket (sealed with tlsmgr's keys). A
//! server-side cache of sessions by ID, for clients that take no tickets,
//! exists only when `smtpd_tls_session_cache_database` names one, as in
//! Postfix; it is [`SessionCache`], kept in the smtpd process's memory.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_config::Params;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, SupportedProtocolVersion};

use crate::certinfo::{self, CertificateInfo};
use crate::{TicketKeys, TlsError, pem};

/// Warn this long before a certificate expires (Postfix does not; a
/// fortnight's notice is cheap and `qctl status` shows the date anyway).
const EXPIRY_NOTICE_SECS: i64 = 14 * 86_400;

/// Where one certificate chain and its private key live (may be one file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKeyFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A built server configuration and what to report about it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    /// One per pair, for `Context.status.certificates(..)`.
    pub certificates: Vec<CertificateInfo>,
    /// Expired or soon-expiring certificates, already logged.
    pub warnings: Vec<String>,
}

/// A chain and its key, checked to belong together.
#[derive(Debug)]
pub struct LoadedKey {
    pub certified: Arc<CertifiedKey>,
    pub info: CertificateInfo,
}

/// Loads and checks one pair: both files readable, a certificate, a key
/// the provider can use, and the key matching the certificate.
pub fn load_certified_key(
    files: &CertKeyFiles,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<LoadedKey, TlsError> {
    let cert_pem = pem::read(&files.cert)?;
    let chain = pem::certificates(&files.cert, &cert_pem)?;
    let key_pem = if files.key == files.cert {
        cert_pem
    } else {
        pem::read(&files.key)?
    };
    let key = pem::private_key(&files.key, &key_pem)?;
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            reason: e.to_string(),
        })?;
    let info = certinfo::certificate_info(&files.cert, &chain[0])?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // Unknown: the key type cannot report its public half; the
        // handshake would fail visibly, so do not refuse here.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            });
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: files.cert.clone(),
                reason: e.to_string(),
            });
        }
    }
    Ok(LoadedKey {
        certified: Arc::new(certified),
        info,
    })
}

/// Builds smtpd's configuration from `pairs` (at least one), offering
/// `versions`; with `tickets`, session tickets are sealed with the keys
/// tlsmgr hands out, so any smtpd process resumes any other's sessions.
/// No sessions are cached by ID.
pub fn server_config(
    pairs: &[CertKeyFiles],
    versions: &[&'static SupportedProtocolVersion],
    tickets: Option<Arc<TicketKeys>>,
) -> Result<ServerTls, TlsError> {
    build(
        pairs,
        versions,
        tickets,
        Arc::new(NoServerSessionStorage {}),
    )
}

fn build(
    pairs: &[CertKeyFiles],
    versions: &[&'static SupportedProtocolVersion],
    tickets: Option<Arc<TicketKeys>>,
    sessions: Arc<dyn StoresServerSessions>,
) -> Result<ServerTls, TlsError> {
    if pairs.is_empty() {
        return Err(TlsError::NoServerCertificate);
    }
    let provider = crate::provider();
    let now = crate::now_unix();
    let mut keys = Vec::new();
    let mut certificates = Vec::new();
    let mut warnings = Vec::new();
    for files in pairs {
        let loaded = load_certified_key(files, &provider)?;
        if let Some(w) = certinfo::expiry_warning(&loaded.info, now, EXPIRY_NOTICE_SECS) {
            tracing::warn!("{w}");
            warnings.push(w);
        }
        keys.push(loaded.certified);
        certificates.push(loaded.info);
    }
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ChooseByAlgorithm { keys }));
    config.session_storage = sessions;
    if let Some(tickets) = tickets {
        config.ticketer = tickets;
    }
    Ok(ServerTls {
        config: Arc::new(config),
        certificates,
        warnings,
    })
}

/// The pairs named by `smtpd_tls_chain_files`, or else by
/// `smtpd_tls_cert_file`/`smtpd_tls_key_file`; empty when none is set.
pub fn server_files(params: &Params) -> Vec<CertKeyFiles> {
    let chain_files = params.list("smtpd_tls_chain_files");
    if !chain_files.is_empty() {
        return chain_files
            .iter()
            .map(|f| {
                let path = params.base_dir().join(f);
                CertKeyFiles {
                    cert: path.clone(),
                    key: path,
                }
            })
            .collect();
    }
    let cert = params.path("smtpd_tls_cert_file");
    if cert.as_os_str().is_empty() {
        return Vec::new();
    }
    let key = params.path("smtpd_tls_key_file");
    let key = if key.as_os_str().is_empty() {
        cert.clone()
    } else {
        key
    };
    vec![CertKeyFiles { cert, key }]
}

/// [`server_config`] from smtpd's parameters: the files above,
/// `smtpd_tls_mandatory_protocols` when `smtpd_tls_security_level` is
/// `encrypt`, `smtpd_tls_protocols` otherwise, and a [`SessionCache`]
/// when `smtpd_tls_session_cache_database` is set and
/// `smtpd_tls_session_cache_timeout` is not 0.
pub fn server_config_from_params(
    params: &Params,
    tickets: Option<Arc<TicketKeys>>,
) -> Result<ServerTls, TlsError> {
    let param = if params.get("smtpd_tls_security_level") == "encrypt" {
        "smtpd_tls_mandatory_protocols"
    } else {
        "smtpd_tls_protocols"
    };
    let versions = crate::protocol_versions(params.tls_protocols(param));
    let lifetime = params.time("smtpd_tls_session_cache_timeout");
    let sessions: Arc<dyn StoresServerSessions> =
        if params.get("smtpd_tls_session_cache_database").is_empty() || lifetime.is_zero() {
            Arc::new(NoServerSessionStorage {})
        } else {
            Arc::new(SessionCache::new(lifetime, SESSION_CACHE_ENTRIES))
        };
    build(&server_files(params), &versions, tickets, sessions)
}

/// Sessions one smtpd process keeps by ID (Postfix's database has no
/// bound; a bound keeps a flood of handshakes from growing the process).
pub const SESSION_CACHE_ENTRIES: usize = 10_000;

/// smtpd's server-side session cache: sessions by ID, each kept for
/// `lifetime` (`smtpd_tls_session_cache_timeout`), the oldest dropped
/// beyond `capacity`.
#[derive(Debug)]
pub struct SessionCache {
    lifetime: Duration,
    capacity: usize,
    entries: Mutex<CachedSessions>,
}

#[derive(Debug, Default)]
struct CachedSessions {
    by_id: HashMap<Vec<u8>, (Instant, Vec<u8>)>,
    /// IDs in the order they were stored, to drop the oldest.
    order: VecDeque<(Instant, Vec<u8>)>,
}

impl SessionCache {
    pub fn new(lifetime: Duration, capacity: usize) -> SessionCache {
        SessionCache {
            lifetime,
            capacity: capacity.max(1),
            entries: Mutex::default(),
        }
    }

    fn fresh(&self, stored: Instant) -> bool {
        stored.elapsed() < self.lifetime
    }

    fn lookup(&self, id: &[u8], remove: bool) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (stored, value) = if remove {
            entries.by_id.remove(id)?
        } else {
            entries.by_id.get(id).cloned()?
        };
        if self.fresh(stored) {
            Some(value)
        } else {
            entries.by_id.remove(id);
            None
        }
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, id: Vec<u8>, value: Vec<u8>) -> bool {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.order.push_back((now, id.clone()));
        entries.by_id.insert(id, (now, value));
        while entries.by_id.len() > self.capacity
            || entries.order.len() > 2 * self.capacity
            || entries.order.front().is_some_and(|(t, _)| !self.fresh(*t))
        {
            let Some((stored, id)) = entries.order.pop_front() else {
                break;
            };
            // Only the entry this stamp stored: a later put of the same
            // ID has its own place in the order.
            if entries.by_id.get(&id).is_some_and(|(t, _)| *t == stored) {
                entries.by_id.remove(&id);
            }
        }
        true
    }

    fn get(&self, id: &[u8]) -> Option<Vec<u8>> {
        self.lookup(id, false)
    }

    fn take(&self, id: &[u8]) -> Option<Vec<u8>> {
        self.lookup(id, true)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// Picks the first configured pair whose key can sign with one of the
/// algorithms the client offers (e.g. ECDSA for modern clients when an
/// ECDSA pair is listed first, RSA for the rest); the first pair if none can.
#[derive(Debug)]
struct ChooseByAlgorithm {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ChooseByAlgorithm {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.keys
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.keys.first())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cache_keeps_the_newest_for_their_lifetime() {
        let cache = SessionCache::new(Duration::from_secs(3600), 2);
        for id in [b"a", b"b", b"c"] {
            assert!(cache.put(id.to_vec(), id.to_vec()));
        }
        // The oldest went beyond the capacity.
        assert_eq!(cache.get(b"a"), None);
        assert_eq!(cache.get(b"b"), Some(b"b".to_vec()));
        // Storing an ID again keeps it, with its new value.
        assert!(cache.put(b"b".to_vec(), b"B".to_vec()));
        assert!(cache.put(b"d".to_vec(), b"d".to_vec()));
        assert_eq!(cache.get(b"b"), Some(b"B".to_vec()));
        assert_eq!(cache.get(b"c"), None);
        assert_eq!(cache.take(b"d"), Some(b"d".to_vec()));
        assert_eq!(cache.get(b"d"), None);

        let expired = SessionCache::new(Duration::ZERO, 10);
        expired.put(b"x".to_vec(), b"x".to_vec());
        assert_eq!(expired.get(b"x"), None);
    }
}
