//! DKIM private keys from PEM files.

/// A DKIM key's algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa,
    Ed25519,
}

/// A private key read from a PEM file.
#[derive(Debug)]
pub struct DkimKey {
    pub algorithm: KeyAlgorithm,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
