//! The versioned hello that opens every connection.
//!
//! `Hello` and `HelloReply` are the one part of the wire format that must
//! never change shape between versions: they are how a mismatch is reported
//! in words instead of as a decode error.

use serde::{Deserialize, Serialize};

/// The protocols spoken between Postern processes, one per kind of socket.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Child → master status over the inherited socketpair ([`crate::status`]).
    MasterStatus,
    /// qctl ↔ master over `private/master` ([`crate::control`]).
    Control,
    /// Submitters ↔ qmgr over `private/qmgr`, enqueueing ([`crate::qmgr`]).
    Qmgr,
    /// qctl ↔ qmgr over `private/qmgr-admin`, queue operations
    /// ([`crate::qmgr_admin`]).
    QmgrAdmin,
    /// qmgr ↔ delivery agents.
    Delivery,
    /// smtpd/smtp ↔ tlsmgr.
    Tlsmgr,
}

impl Protocol {
    /// Every protocol, for iteration in tools and tests.
    pub const ALL: [Protocol; 6] = [
        Protocol::MasterStatus,
        Protocol::Control,
        Protocol::Qmgr,
        Protocol::QmgrAdmin,
        Protocol::Delivery,
        Protocol::Tlsmgr,
    ];

    /// The name carried in [`Hello::protocol`]; a string rather than the enum
    /// so a peer built from another release can still say what it speaks.
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::MasterStatus => "postern-master-status",
            Protocol::Control => "postern-control",
            Protocol::Qmgr => "postern-qmgr",
            Protocol::QmgrAdmin => "postern-qmgr-admin",
            Protocol::Delivery => "postern-delivery",
            Protocol::Tlsmgr => "postern-tlsmgr",
        }
    }

    /// The protocol with this [`name`](Self::name), if any.
    pub fn from_name(name: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// First frame from the client side of every connection.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
pub struct Hello {
    /// A [`Protocol::name`].
    pub protocol: String,
    /// The client's [`crate::PROTOCOL_VERSION`].
    pub version: u32,
}

/// The server's answer to [`Hello`].
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
pub enum HelloReply {
    /// Accepted; the server's version.
    Ok { version: u32 },
    /// Refused; the server closes the connection after sending this.
    Refused { reason: String },
}
