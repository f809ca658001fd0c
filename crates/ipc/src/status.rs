//! Child process ↔ master over the inherited socketpair (Postfix's status
//! pipe), protocol [`crate::Protocol::MasterStatus`].
//!
//! The child sends [`ChildStatus`] frames; the master sends
//! [`MasterToChild`] frames back over the same socket.

use serde::{Deserialize, Serialize};

/// What a child process reports to the master.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum ChildStatus {
    /// Initialised and accepting work. `exclusive`: this process holds a
    /// resource only one process may hold (qmgr's queue), so the master
    /// stops it before starting a replacement.
    Ready { pid: u32, exclusive: bool },
    /// Periodic liveness report with the number of sessions in progress.
    Heartbeat { sessions: u32 },
    /// No longer accepting; exits once `sessions` reaches zero.
    Draining { sessions: u32 },
    /// Facts for `qctl status`, e.g. the certificates the child loaded.
    Info { certificates: Vec<CertificateInfo> },
}

/// One certificate a child has loaded, for expiry reporting.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CertificateInfo {
    pub file: String,
    pub subject: String,
    pub not_after_unix: i64,
}

/// What the master sends a child.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum MasterToChild {
    /// master(5) wakeup timer fired.
    Wakeup,
}
