//! DKIM private keys read from PEM files, and the public halves that go
//! into DNS.
//!
//! A key file holds one PEM block, as OpenSSL writes them:
//!
//! * `-----BEGIN PRIVATE KEY-----` (PKCS#8): RSA from `openssl genpkey
//!   -algorithm rsa`, Ed25519 from `openssl genpkey -algorithm ed25519`
//!   (PKCS#8 v1, without the public key, which is computed from the seed);
//! * `-----BEGIN RSA PRIVATE KEY-----` (PKCS#1): RSA from `openssl genrsa`
//!   and opendkim-genkey.
//!
//! The DNS record carries the RSA public key as a SubjectPublicKeyInfo
//! (what opendkim-genkey publishes and every verifier reads) and the
//! Ed25519 key as its raw 32 bytes (RFC 8463 section 4.2).

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use mail_auth::common::crypto::{DkimKey as SecretKey, Ed25519Key, RsaKey, Sha256};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// A DKIM signing algorithm: the key type and the `a=` tag it signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// `a=rsa-sha256`, DNS `k=rsa`.
    Rsa,
    /// `a=ed25519-sha256`, DNS `k=ed25519` (RFC 8463).
    Ed25519,
}

impl KeyAlgorithm {
    /// The DNS record's `k=` value.
    pub fn dns_name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dns_name())
    }
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no PEM private key (PKCS#8 or PKCS#1) in the file: {0}")]
    Pem(String),
    #[error("not an RSA or Ed25519 private key: {0}")]
    Key(String),
    #[error("unsupported private key format (only PKCS#8 and PKCS#1 RSA, PKCS#8 Ed25519)")]
    Format,
}

/// A private key ready to sign, with the public key to publish.
pub struct DkimKey {
    algorithm: KeyAlgorithm,
    secret: SecretKey,
    /// RSA: the SubjectPublicKeyInfo DER; Ed25519: the 32 key bytes.
    public: Vec<u8>,
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl DkimKey {
    /// Reads the PEM file at `path`.
    pub fn from_pem_file(path: &Path) -> Result<DkimKey, KeyError> {
        DkimKey::from_pem(&std::fs::read(path)?)
    }

    /// Reads one PEM private key.
    pub fn from_pem(pem: &[u8]) -> Result<DkimKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        match der {
            PrivateKeyDer::Pkcs1(der) => DkimKey::rsa(PrivateKeyDer::Pkcs1(der)),
            PrivateKeyDer::Pkcs8(der) => {
                // PKCS#8 names its algorithm; asking each backend is simpler
                // than parsing the AlgorithmIdentifier here.
                let bytes = der.secret_pkcs8_der().to_vec();
                match DkimKey::rsa(PrivateKeyDer::Pkcs8(der)) {
                    Ok(key) => Ok(key),
                    Err(rsa_err) => match Ed25519Key::from_pkcs8_maybe_unchecked_der(&bytes) {
                        Ok(key) => Ok(DkimKey {
                            algorithm: KeyAlgorithm::Ed25519,
                            public: key.public_key(),
                            secret: SecretKey::Ed25519(key),
                        }),
                        Err(_) => Err(rsa_err),
                    },
                }
            }
            _ => Err(KeyError::Format),
        }
    }

    fn rsa(der: PrivateKeyDer<'_>) -> Result<DkimKey, KeyError> {
        let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| KeyError::Key(e.to_string()))?;
        Ok(DkimKey {
            algorithm: KeyAlgorithm::Rsa,
            public: rsa_spki(&key.public_key()),
            secret: SecretKey::Rsa(key),
        })
    }

    /// A new Ed25519 key and its PEM text: PKCS#8 v1, the seed alone, as
    /// `openssl genpkey -algorithm ed25519` writes it (OpenSSL 3.0 cannot
    /// read ring's v2, which adds the public key).
    pub fn generate_ed25519() -> Result<(DkimKey, String), KeyError> {
        use ring::rand::SecureRandom as _;
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING {
        // OCTET STRING seed } }
        const PREFIX: &[u8] = &[
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Key("no random bytes".into()))?;
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let pem = pem_encode("PRIVATE KEY", &der);
        let key = DkimKey::from_pem(pem.as_bytes())?;
        Ok((key, pem))
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The signing half, for mail-auth's signer.
    pub(crate) fn into_secret(self) -> SecretKey {
        self.secret
    }

    /// The public key as the DNS record's `p=` value (base64).
    pub fn public_key_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.public)
    }

    /// The TXT record's text: `v=DKIM1; k=rsa; p=...`.
    pub fn dns_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm.dns_name(),
            self.public_key_base64()
        )
    }

    /// The zone-file line to publish, the text split into strings of at
    /// most 255 bytes (a TXT record's character-string limit):
    /// `SELECTOR._domainkey.DOMAIN. IN TXT ( "v=DKIM1; ..." "..." )`.
    pub fn zone_record(&self, domain: &str, selector: &str) -> String {
        let text = self.dns_record();
        let strings: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!(
            "{selector}._domainkey.{}. IN TXT {}",
            domain.trim_end_matches('.'),
            strings.join(" ")
        )
    }
}

/// PEM text of a DER object, 64 base64 characters a line as OpenSSL writes.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo with the
/// rsaEncryption AlgorithmIdentifier.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const RSA_ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(pkcs1);
    let mut body = RSA_ALGORITHM.to_vec();
    body.extend(der_tlv(0x03, &bits));
    der_tlv(0x30, &body)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
pub(crate) mod tests;
