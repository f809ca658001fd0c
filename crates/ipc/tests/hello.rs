//! The hello exchange: success, and refusal with an error on both sides.

use std::time::Duration;

use postern_ipc::{Connection, Hello, HelloReply, IpcError, PROTOCOL_VERSION, Protocol};
use tokio::net::UnixStream;

const T: Duration = Duration::from_secs(5);

fn pair() -> (Connection<UnixStream>, Connection<UnixStream>) {
    let (a, b) = UnixStream::pair().unwrap();
    (Connection::new(a), Connection::new(b))
}

#[tokio::test]
async fn hello_ok_every_protocol() {
    for p in Protocol::ALL {
        let (mut client, mut server) = pair();
        let (c, s) = tokio::join!(client.client_hello(p, T), server.server_hello(p, T));
        c.unwrap();
        s.unwrap();
        // The connection carries ordinary traffic afterwards.
        client.send(&42u32).await.unwrap();
        assert_eq!(server.recv_timeout::<u32>(T).await.unwrap(), Some(42));
    }
}

#[tokio::test]
async fn wrong_protocol_name_refused_both_sides() {
    let (mut client, mut server) = pair();
    let (c, s) = tokio::join!(
        client.client_hello(Protocol::Qmgr, T),
        server.server_hello(Protocol::Control, T)
    );
    let (Err(IpcError::Protocol(c)), Err(IpcError::Protocol(s))) = (c, s) else {
        panic!("expected Protocol errors on both sides");
    };
    assert!(
        c.contains("postern-qmgr") && c.contains("postern-control"),
        "{c}"
    );
    assert!(s.contains("wrong protocol"), "{s}");
}

#[tokio::test]
async fn wrong_version_refused_both_sides() {
    let (mut client, mut server) = pair();
    let hello = Hello {
        protocol: Protocol::Control.name().into(),
        version: PROTOCOL_VERSION + 1,
    };
    let (c, s) = tokio::join!(
        client.request::<_, HelloReply>(&hello, T),
        server.server_hello(Protocol::Control, T)
    );
    match c.unwrap() {
        HelloReply::Refused { reason } => assert!(reason.contains("version"), "{reason}"),
        other => panic!("expected refusal, got {other:?}"),
    }
    assert!(matches!(s, Err(IpcError::Protocol(m)) if m.contains("version")));
}

#[tokio::test]
async fn client_rejects_server_with_other_version() {
    let (mut client, mut server) = pair();
    let fake = async {
        let _: Hello = server.recv_timeout(T).await.unwrap().unwrap();
        server
            .send(&HelloReply::Ok {
                version: PROTOCOL_VERSION + 7,
            })
            .await
            .unwrap();
    };
    let (c, ()) = tokio::join!(client.client_hello(Protocol::Tlsmgr, T), fake);
    assert!(matches!(c, Err(IpcError::Protocol(m)) if m.contains("version")));
}

#[tokio::test]
async fn server_refuses_a_first_frame_that_is_not_a_hello() {
    let (mut client, mut server) = pair();
    let (c, s) = tokio::join!(
        client.request::<_, HelloReply>(&[1u8, 2, 3, 4, 5, 6, 7, 8, 9], T),
        server.server_hello(Protocol::Control, T)
    );
    assert!(matches!(c.unwrap(), HelloReply::Refused { .. }));
    assert!(matches!(s, Err(IpcError::Protocol(_))));
}

#[tokio::test]
async fn hello_against_closed_or_silent_peer() {
    // Server that hangs up: the client is owed an answer, so Closed.
    let (mut client, server) = pair();
    drop(server);
    let c = client.client_hello(Protocol::Control, T).await;
    assert!(
        matches!(c, Err(IpcError::Closed | IpcError::Io(_))),
        "{c:?}"
    );

    // Client that connects and hangs up before its hello.
    let (client, mut server) = pair();
    drop(client);
    let s = server.server_hello(Protocol::Control, T).await;
    assert!(matches!(s, Err(IpcError::Closed)), "{s:?}");

    // Silent peers on either side time out.
    let short = Duration::from_millis(100);
    let (mut client, _server) = pair();
    let c = client.client_hello(Protocol::Control, short).await;
    assert!(matches!(c, Err(IpcError::Timeout)), "{c:?}");
    let (_client, mut server) = pair();
    let s = server.server_hello(Protocol::Control, short).await;
    assert!(matches!(s, Err(IpcError::Timeout)), "{s:?}");
}
