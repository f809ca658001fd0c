//! qctl ↔ master over `$queue_directory/private/master`, protocol
//! [`crate::Protocol::Control`]: one [`ControlRequest`], one [`ControlReply`].

use serde::{Deserialize, Serialize};

use crate::status::CertificateInfo;

/// A command from qctl.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum ControlRequest {
    Status,
    /// Restart every process of one service (master.cf name).
    Restart {
        service: String,
    },
    /// Re-read configuration.
    Reload,
    Stop,
    /// Ask qmgr to retry deferred mail now.
    Flush,
}

/// The master's answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum ControlReply {
    Status(MasterStatus),
    Done { message: String },
    Error { message: String },
}

/// Snapshot of the master and its services.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MasterStatus {
    pub pid: u32,
    pub started_unix: i64,
    pub config_file: String,
    pub queue_directory: String,
    pub services: Vec<ServiceStatus>,
}

/// One master.cf service.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ServiceStatus {
    pub name: String,
    /// `inet` or `unix`.
    pub kind: String,
    pub listen: String,
    pub command: String,
    pub process_limit: u32,
    pub processes: Vec<ProcessStatus>,
    pub restarts: u32,
    /// How the last process ended: "exit status 1" / "killed by signal 9".
    pub last_exit: Option<String>,
    /// Set while the master holds off restarts after repeated failures.
    pub throttled_until_unix: Option<i64>,
    pub certificates: Vec<CertificateInfo>,
}

/// One running process of a service.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProcessStatus {
    pub pid: u32,
    pub started_unix: i64,
    pub ready: bool,
    pub sessions: u32,
    pub draining: bool,
}
