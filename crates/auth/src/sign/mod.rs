//! DKIM signing with opendkim's SigningTable and KeyTable.

/// Signs outgoing mail.
#[derive(Debug)]
pub struct DkimSigner {}

/// A signing configuration or signing error.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{0}")]
    Key(#[from] crate::KeyError),
}
