//! Every message type and variant survives encode→decode, the sync frame
//! functions, and a real Unix socket through `Connection`.

mod common;

use std::fmt::Debug;
use std::time::Duration;

use postern_ipc::{
    Connection, Hello, decode, encode, read_frame, read_frame_sync, write_frame, write_frame_sync,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

const T: Duration = Duration::from_secs(5);

trait Msg: Serialize + DeserializeOwned + PartialEq + Debug + Clone + Send + Sync + 'static {}
impl<M: Serialize + DeserializeOwned + PartialEq + Debug + Clone + Send + Sync + 'static> Msg
    for M
{
}

fn check_body<M: Msg>(values: &[M]) {
    for v in values {
        let a = encode(v).unwrap();
        let b = encode(&v.clone()).unwrap();
        assert_eq!(a, b, "encoding of {v:?} is not deterministic");
        let back: M = decode(&a).unwrap();
        assert_eq!(&back, v);
    }
}

fn check_sync<M: Msg>(values: &[M]) {
    let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    for v in values {
        write_frame_sync(&mut a, v).unwrap();
    }
    drop(a);
    for v in values {
        let got: M = read_frame_sync(&mut b).unwrap().unwrap();
        assert_eq!(&got, v);
    }
    assert!(read_frame_sync::<_, M>(&mut b).unwrap().is_none());
}

async fn check_conn<M: Msg>(values: Vec<M>) {
    let (a, b) = UnixStream::pair().unwrap();
    let expected = values.clone();
    let sender = tokio::spawn(async move {
        let mut c = Connection::new(a);
        for v in &values {
            c.send(v).await.unwrap();
        }
    });
    let mut c = Connection::new(b);
    for v in &expected {
        let got: M = c.recv_timeout(T).await.unwrap().unwrap();
        assert_eq!(&got, v);
    }
    sender.await.unwrap();
    assert!(c.recv_timeout::<M>(T).await.unwrap().is_none());
}

async fn check_free_fns<M: Msg>(values: Vec<M>) {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let expected = values.clone();
    let sender = tokio::spawn(async move {
        for v in &values {
            write_frame(&mut a, v).await.unwrap();
        }
    });
    for v in &expected {
        let got: M = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!(&got, v);
    }
    sender.await.unwrap();
    assert!(read_frame::<_, M>(&mut b).await.unwrap().is_none());
}

async fn check_all<M: Msg>(values: Vec<M>) {
    assert!(!values.is_empty());
    check_body(&values);
    check_sync(&values);
    check_conn(values.clone()).await;
    check_free_fns(values).await;
}

#[tokio::test]
async fn child_status() {
    check_all(common::child_status()).await;
}

#[tokio::test]
async fn certificate_info() {
    check_all(common::certificate_info()).await;
}

#[tokio::test]
async fn master_to_child() {
    check_all(common::master_to_child()).await;
}

#[tokio::test]
async fn control_request() {
    check_all(common::control_request()).await;
}

#[tokio::test]
async fn control_reply() {
    check_all(common::control_reply()).await;
}

#[tokio::test]
async fn master_service_process_status() {
    check_all(vec![common::master_status()]).await;
    check_all(common::service_status()).await;
    check_all(common::process_status()).await;
}

#[tokio::test]
async fn hello_types_and_protocol() {
    check_all(common::protocols()).await;
    check_all(common::hellos()).await;
    check_all(common::hello_replies()).await;
}

#[test]
fn protocol_names() {
    let names: Vec<_> = postern_ipc::Protocol::ALL
        .iter()
        .map(|p| p.name())
        .collect();
    assert_eq!(
        names,
        [
            "postern-master-status",
            "postern-control",
            "postern-qmgr",
            "postern-qmgr-admin",
            "postern-delivery",
            "postern-tlsmgr"
        ]
    );
    for p in postern_ipc::Protocol::ALL {
        assert_eq!(postern_ipc::Protocol::from_name(p.name()), Some(p));
    }
    assert_eq!(postern_ipc::Protocol::from_name("postern-bogus"), None);
}

/// Pins the wire format: a change here breaks compatibility between
/// processes of different builds and needs a PROTOCOL_VERSION bump.
#[test]
fn golden_bytes() {
    let hello = Hello {
        protocol: "postern-control".into(),
        version: 1,
    };
    let mut expected = vec![15u8];
    expected.extend_from_slice(b"postern-control");
    expected.push(1);
    assert_eq!(encode(&hello).unwrap(), expected);

    let mut framed = Vec::new();
    write_frame_sync(&mut framed, &hello).unwrap();
    assert_eq!(&framed[..4], &(expected.len() as u32).to_be_bytes());
    assert_eq!(&framed[4..], &expected[..]);

    assert_eq!(
        encode(&postern_ipc::status::MasterToChild::Wakeup).unwrap(),
        [0]
    );
    assert_eq!(
        encode(&postern_ipc::status::ChildStatus::Heartbeat { sessions: 300 }).unwrap(),
        [1, 251, 44, 1]
    );
}

#[tokio::test]
async fn request_reply() {
    use postern_ipc::control::{ControlReply, ControlRequest};
    let (a, b) = UnixStream::pair().unwrap();
    let server = tokio::spawn(async move {
        let mut c = Connection::new(b);
        while let Some(req) = c.recv::<ControlRequest>().await.unwrap() {
            let reply = match req {
                ControlRequest::Status => ControlReply::Status(common::master_status()),
                other => ControlReply::Done {
                    message: format!("{other:?}"),
                },
            };
            c.send(&reply).await.unwrap();
        }
    });
    let mut c = Connection::new(a);
    let r: ControlReply = c.request(&ControlRequest::Status, T).await.unwrap();
    assert_eq!(r, ControlReply::Status(common::master_status()));
    let r: ControlReply = c.request(&ControlRequest::Reload, T).await.unwrap();
    assert_eq!(
        r,
        ControlReply::Done {
            message: "Reload".into()
        }
    );
    drop(c);
    server.await.unwrap();
}

#[tokio::test]
async fn large_frames_and_pipelining() {
    // Frames near the limit and many small frames back to back exercise the
    // buffer's partial reads and frame splitting.
    use postern_ipc::status::ChildStatus;
    let big = ChildStatus::Info {
        certificates: (0..4000).map(|_| common::cert()).collect(),
    };
    let len = encode(&big).unwrap().len();
    assert!(len > 64 * 1024 && len <= postern_ipc::MAX_FRAME, "{len}");
    let mut values = vec![big.clone()];
    values.extend((0..2000).map(|i| ChildStatus::Heartbeat { sessions: i }));
    values.push(big);
    check_conn(values).await;
}

#[tokio::test]
async fn qmgr_protocol() {
    check_all(common::qmgr_requests()).await;
    check_all(common::qmgr_replies()).await;
    check_all(common::admin_requests()).await;
    check_all(common::admin_replies()).await;
    check_all(vec![
        common::envelope(),
        postern_ipc::qmgr::Envelope::default(),
    ])
    .await;
}

#[tokio::test]
async fn delivery_protocol() {
    check_all(common::delivery_messages()).await;
    check_all(common::delivery_replies()).await;
}

#[tokio::test]
async fn tlsmgr_protocol() {
    check_all(common::tlsmgr_requests()).await;
    check_all(common::tlsmgr_replies()).await;
    check_all(vec![common::ticket_key(0), common::ticket_key(255)]).await;
    // The key never reaches a log through Debug.
    let shown = format!("{:?}", common::ticket_key(7));
    assert!(
        shown.contains("<secret>") && !shown.contains("key: ["),
        "{shown}"
    );
}

/// Queue names, recipient states and client protocols travel as values:
/// each round-trips, prints as before, and a variant out of range is a
/// decode error.
#[test]
fn names_travel_typed() {
    use postern_envelope::{ClientProtocol, QueueName, RecipientState};
    fn check<T: Msg + std::fmt::Display>(all: &[T], words: &[&str]) {
        for (v, word) in all.iter().zip(words) {
            assert_eq!(decode::<T>(&encode(v).unwrap()).unwrap(), *v);
            assert_eq!(v.to_string(), *word);
        }
        assert!(decode::<T>(&encode(&(all.len() as u32)).unwrap()).is_err());
    }
    check(QueueName::ALL, &["active", "deferred", "hold", "corrupt"]);
    check(
        RecipientState::ALL,
        &["pending", "sent", "bounced", "deferred"],
    );
    check(
        ClientProtocol::ALL,
        &[
            "SMTP", "SMTPS", "SMTPA", "SMTPSA", "ESMTP", "ESMTPS", "ESMTPA", "ESMTPSA",
        ],
    );
}
