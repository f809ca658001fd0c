//! Sample values covering every message type and variant.

#![allow(dead_code)] // each test binary uses a different subset

use postern_ipc::control::{
    ControlReply, ControlRequest, MasterStatus, ProcessStatus, ServiceStatus,
};
use postern_ipc::status::{CertificateInfo, ChildStatus, MasterToChild};
use postern_ipc::{Hello, HelloReply, PROTOCOL_VERSION, Protocol};

pub fn cert() -> CertificateInfo {
    CertificateInfo {
        file: "/etc/postern/smtpd.pem".into(),
        subject: "CN=mail.example.org".into(),
        not_after_unix: 1_900_000_000,
    }
}

pub fn master_status() -> MasterStatus {
    MasterStatus {
        pid: 4242,
        started_unix: 1_700_000_000,
        config_file: "/etc/postern/main.cf".into(),
        queue_directory: "/var/spool/postern".into(),
        services: vec![
            ServiceStatus {
                name: "smtp".into(),
                kind: "inet".into(),
                listen: "0.0.0.0:25".into(),
                command: "smtpd".into(),
                process_limit: 100,
                processes: vec![
                    ProcessStatus {
                        pid: 5000,
                        started_unix: 1_700_000_010,
                        ready: true,
                        sessions: 3,
                        draining: false,
                    },
                    ProcessStatus {
                        pid: 5001,
                        started_unix: -1,
                        ready: false,
                        sessions: 0,
                        draining: true,
                    },
                ],
                restarts: 2,
                last_exit: Some("killed by signal 9".into()),
                throttled_until_unix: Some(1_700_000_100),
                certificates: vec![cert()],
            },
            ServiceStatus {
                name: "qmgr".into(),
                kind: "unix".into(),
                listen: "private/qmgr".into(),
                command: "qmgr".into(),
                process_limit: 1,
                processes: vec![],
                restarts: 0,
                last_exit: None,
                throttled_until_unix: None,
                certificates: vec![],
            },
        ],
    }
}

pub fn child_status() -> Vec<ChildStatus> {
    vec![
        ChildStatus::Ready {
            pid: 1,
            exclusive: true,
        },
        ChildStatus::Ready {
            pid: u32::MAX,
            exclusive: false,
        },
        ChildStatus::Heartbeat { sessions: 0 },
        ChildStatus::Heartbeat { sessions: 77 },
        ChildStatus::Draining { sessions: 5 },
        ChildStatus::Info {
            certificates: vec![],
        },
        ChildStatus::Info {
            certificates: vec![
                cert(),
                CertificateInfo {
                    file: "ünïcödé.pem".into(),
                    subject: String::new(),
                    not_after_unix: i64::MIN,
                },
            ],
        },
    ]
}

pub fn certificate_info() -> Vec<CertificateInfo> {
    vec![
        cert(),
        CertificateInfo {
            file: String::new(),
            subject: "x".repeat(1000),
            not_after_unix: i64::MAX,
        },
    ]
}

pub fn master_to_child() -> Vec<MasterToChild> {
    vec![MasterToChild::Wakeup]
}

pub fn control_request() -> Vec<ControlRequest> {
    vec![
        ControlRequest::Status,
        ControlRequest::Restart {
            service: "smtp".into(),
        },
        ControlRequest::Reload,
        ControlRequest::Stop,
        ControlRequest::Flush,
    ]
}

pub fn control_reply() -> Vec<ControlReply> {
    let mut empty = master_status();
    empty.services.clear();
    vec![
        ControlReply::Status(master_status()),
        ControlReply::Status(empty),
        ControlReply::Done {
            message: "smtp restarted".into(),
        },
        ControlReply::Error {
            message: "no such service: smtpx".into(),
        },
    ]
}

pub fn service_status() -> Vec<ServiceStatus> {
    master_status().services
}

pub fn process_status() -> Vec<ProcessStatus> {
    master_status().services[0].processes.clone()
}

pub fn protocols() -> Vec<Protocol> {
    Protocol::ALL.to_vec()
}

pub fn hellos() -> Vec<Hello> {
    Protocol::ALL
        .iter()
        .map(|p| Hello {
            protocol: p.name().into(),
            version: PROTOCOL_VERSION,
        })
        .collect()
}

pub fn hello_replies() -> Vec<HelloReply> {
    vec![
        HelloReply::Ok {
            version: PROTOCOL_VERSION,
        },
        HelloReply::Refused {
            reason: "wrong protocol".into(),
        },
    ]
}

/// Deterministic xorshift64* generator, so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
