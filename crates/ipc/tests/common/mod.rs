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

pub fn envelope() -> postern_ipc::qmgr::Envelope {
    use postern_ipc::qmgr::{ClientInfo, Envelope, EnvelopeRecipient};
    Envelope {
        sender: "user1@hogehoge.local".into(),
        recipients: vec![
            EnvelopeRecipient {
                address: "user@example.local".into(),
                orcpt: None,
                notify: None,
            },
            EnvelopeRecipient {
                address: "ünï@example.jp".into(),
                orcpt: Some(postern_envelope::Orcpt::rfc822("u@example.jp")),
                notify: Some(postern_envelope::Notify {
                    success: true,
                    failure: true,
                    delay: false,
                }),
            },
        ],
        client: Some(ClientInfo {
            name: "unknown".into(),
            addr: "127.0.0.1".into(),
            helo: "localhost".into(),
            protocol: postern_envelope::ClientProtocol::Esmtp,
            sasl_username: Some("alice".into()),
        }),
        envid: Some("QQ314159".into()),
        ret: Some(postern_envelope::Ret::Hdrs),
        smtputf8: true,
        body_8bit: false,
        filter: Some(postern_envelope::ContentFilter {
            transport: "smtp".into(),
            nexthop: "[127.0.0.1]:10025".into(),
        }),
        hold: true,
        no_address_mappings: true,
    }
}

pub fn qmgr_requests() -> Vec<postern_ipc::qmgr::QmgrRequest> {
    use postern_ipc::qmgr::QmgrRequest as Q;
    vec![
        Q::Begin,
        Q::Body { data: vec![] },
        Q::Body {
            data: (0..=255u8).cycle().take(postern_ipc::BODY_CHUNK).collect(),
        },
        Q::Commit {
            envelope: Box::new(envelope()),
        },
        Q::Commit {
            envelope: Box::default(),
        },
        Q::Abort,
        Q::Flush,
    ]
}

pub fn admin_requests() -> Vec<postern_ipc::qmgr_admin::AdminRequest> {
    use postern_ipc::qmgr_admin::AdminRequest as Q;
    vec![
        Q::List,
        Q::Hold {
            id: "0A1B2C3D4E5F".parse().unwrap(),
        },
        Q::Release {
            id: "0A1B2C3D4E5F".parse().unwrap(),
        },
        Q::Delete {
            id: "0A1B2C3D4E5F".parse().unwrap(),
        },
        Q::Flush { id: None },
        Q::Flush {
            id: Some("0A1B2C3D4E5F".parse().unwrap()),
        },
        Q::Show {
            id: "0A1B2C3D4E5F".parse().unwrap(),
        },
        Q::DeleteAll,
        Q::Requeue { id: None },
        Q::Requeue {
            id: Some("0A1B2C3D4E5F".parse().unwrap()),
        },
    ]
}

pub fn qmgr_replies() -> Vec<postern_ipc::qmgr::QmgrReply> {
    use postern_ipc::qmgr::QmgrReply as R;
    vec![
        R::Started {
            id: "0A1B2C3D4E5F".parse().unwrap(),
        },
        R::Queued {
            id: "0A1B2C3D4E5F".parse().unwrap(),
        },
        R::Failed {
            reason: "No space left on device".into(),
        },
        R::Flushed { count: 0 },
        R::Flushed { count: 20_000 },
    ]
}

pub fn admin_replies() -> Vec<postern_ipc::qmgr_admin::AdminReply> {
    use postern_ipc::qmgr_admin::{AdminReply as R, QueueEntry};
    vec![
        R::Queue { messages: vec![] },
        R::Queue {
            messages: vec![QueueEntry {
                summary: postern_ipc::qmgr_admin::MessageSummary {
                    id: "0A1B2C3D4E5F".parse().unwrap(),
                    state: postern_envelope::QueueName::Deferred,
                    size: 1234,
                    arrival_unix: 1_700_000_000,
                    sender: String::new(),
                    reason: Some("host b said: 451 try later".into()),
                    next_try_unix: Some(1_700_000_300),
                },
                recipients: vec![
                    (
                        "a@b".into(),
                        Some("connect to b[192.0.2.1]:25: Connection refused".into()),
                    ),
                    ("c@d".into(), None),
                ],
            }],
        },
        R::Done {
            message: "held".into(),
        },
        R::Error {
            message: "no such message".into(),
        },
        R::Count { count: 0 },
        R::Count { count: 20_000 },
        R::Message {
            message: Box::default(),
        },
        R::Message {
            message: Box::new(postern_ipc::qmgr_admin::MessageInfo {
                summary: postern_ipc::qmgr_admin::MessageSummary {
                    id: "0A1B2C3D4E5F".parse().unwrap(),
                    state: postern_envelope::QueueName::Deferred,
                    size: 1234,
                    arrival_unix: 1_700_000_000,
                    sender: "a@b".into(),
                    reason: Some("connect to d[192.0.2.1]:25: Connection refused".into()),
                    next_try_unix: Some(1_700_000_300),
                },
                recipients: vec![
                    postern_ipc::qmgr_admin::RecipientInfo {
                        address: "c@d".into(),
                        orcpt: Some(postern_envelope::Orcpt::rfc822("C@d")),
                        state: postern_envelope::RecipientState::Deferred,
                        reason: Some("connect to d[192.0.2.1]:25: Connection refused".into()),
                        dsn: None,
                    },
                    postern_ipc::qmgr_admin::RecipientInfo {
                        address: "e@f".into(),
                        orcpt: None,
                        state: postern_envelope::RecipientState::Bounced,
                        reason: Some("host f said: 550 no".into()),
                        dsn: Some("5.1.1".parse().unwrap()),
                    },
                ],
                attempts: 2,
                last_attempt_unix: Some(1_700_000_100),
                client: Some(postern_ipc::qmgr::ClientInfo {
                    name: "unknown".into(),
                    addr: "192.0.2.9".into(),
                    helo: "x".into(),
                    protocol: postern_envelope::ClientProtocol::Esmtp,
                    sasl_username: None,
                }),
                envid: Some("E1".into()),
                ret: Some(postern_envelope::Ret::Hdrs),
            }),
        },
        R::Body { data: vec![] },
        R::Body {
            data: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        },
        R::End,
    ]
}

pub fn delivery_messages() -> Vec<postern_ipc::delivery::DeliveryMessage> {
    use postern_ipc::delivery::{DeliveryMessage as M, DeliveryRecipient, DeliveryRequest};
    vec![
        M::Request(DeliveryRequest {
            queue_id: "0A1B2C3D4E5F".parse().unwrap(),
            sender: "a@b".into(),
            recipients: vec![DeliveryRecipient {
                index: 3,
                address: "user@example.local".into(),
                orcpt: Some(postern_envelope::Orcpt::rfc822("user@example.local")),
                notify: Some(postern_envelope::Notify::NEVER),
                class: postern_ipc::delivery::AddressClass::Relay,
            }],
            transport: "smtp".into(),
            nexthop: "[127.0.0.2]:25".into(),
            arrival_unix: 1_700_000_000,
            size: 42,
            envid: None,
            ret: Some(postern_envelope::Ret::Full),
            smtputf8: false,
            body_8bit: true,
        }),
        M::Request(DeliveryRequest::default()),
        M::Body {
            data: b"Subject: hi\r\n\r\nbody\r\n".to_vec(),
        },
        M::End,
    ]
}

pub fn delivery_replies() -> Vec<postern_ipc::delivery::DeliveryReply> {
    use postern_ipc::delivery::{DeliveryReply, DeliveryStatus, RecipientResult};
    let result = |index, status, dsn: &str, detail: &str| RecipientResult {
        index,
        status,
        dsn: dsn.parse().unwrap(),
        relay: postern_ipc::delivery::Relay::Remote {
            host: "mx.example.net".into(),
            ip: "192.0.2.7".parse().unwrap(),
            port: 25,
        },
        detail: detail.into(),
        remote_reply: Some(detail.into()),
        connect_secs: 0.25,
        transmit_secs: 1.5,
    };
    vec![
        DeliveryReply::default(),
        DeliveryReply {
            results: vec![
                result(
                    0,
                    DeliveryStatus::Sent,
                    "2.0.0",
                    "250 2.0.0 Ok: queued as 4XyZ",
                ),
                result(
                    1,
                    DeliveryStatus::Deferred,
                    "4.4.1",
                    "connect to mx.example.net: Connection refused",
                ),
                result(
                    2,
                    DeliveryStatus::Bounced,
                    "5.1.1",
                    "550 5.1.1 <x@y>: User unknown",
                ),
                result(
                    3,
                    DeliveryStatus::Fallback,
                    "5.1.1",
                    "unknown user: \"nobody-here\"",
                ),
            ],
        },
    ]
}

pub fn ticket_key(seed: u8) -> postern_ipc::tlsmgr::TicketKey {
    postern_ipc::tlsmgr::TicketKey {
        name: vec![seed; postern_ipc::tlsmgr::TICKET_KEY_NAME_LEN],
        key: (0..postern_ipc::tlsmgr::TICKET_KEY_LEN as u8)
            .map(|i| i ^ seed)
            .collect(),
        created_unix: 1_700_000_000 + i64::from(seed),
        expires_unix: 1_700_007_200 + i64::from(seed),
    }
}

pub fn tlsmgr_requests() -> Vec<postern_ipc::tlsmgr::TlsmgrRequest> {
    use postern_ipc::tlsmgr::TlsmgrRequest as Q;
    vec![
        Q::TicketKeys,
        Q::CacheGet {
            key: "smtp:[mx.example.net]:25".into(),
        },
        Q::CacheGet { key: String::new() },
        Q::CachePut {
            key: "smtp:ünï.example.jp".into(),
            value: (0..=255u8).collect(),
            expires_unix: 1_700_003_600,
        },
        Q::CachePut {
            key: "k".into(),
            value: vec![],
            expires_unix: i64::MIN,
        },
    ]
}

pub fn tlsmgr_replies() -> Vec<postern_ipc::tlsmgr::TlsmgrReply> {
    use postern_ipc::tlsmgr::TlsmgrReply as R;
    vec![
        R::TicketKeys {
            keys: vec![ticket_key(2), ticket_key(1)],
            next_rotation_unix: 1_700_003_602,
        },
        R::TicketKeys {
            keys: vec![],
            next_rotation_unix: 0,
        },
        R::Value(None),
        R::Value(Some(vec![])),
        R::Value(Some(b"session".to_vec())),
        R::Done,
        R::Error {
            message: "cache key too long".into(),
        },
    ]
}
