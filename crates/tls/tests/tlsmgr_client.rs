//! [`TlsmgrClient`] and the ticket-key refresh task against a small
//! stand-in tlsmgr on a Unix socket: requests, reconnection after a tlsmgr
//! restart, and keys following a rotation.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_ipc::tlsmgr::{TicketKey, TlsmgrReply, TlsmgrRequest};
use postern_ipc::{Connection, Protocol};
use postern_tls::tickets::generate_key;
use postern_tls::{TicketKeys, TlsError, TlsmgrClient, spawn_ticket_refresh};
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Fake {
    keys: Vec<TicketKey>,
    next_rotation_unix: i64,
    cache: Option<(String, Vec<u8>)>,
}

/// Serves `state` on `path`; aborting the handle ends every connection too.
fn fake_tlsmgr(path: &Path, state: Arc<Mutex<Fake>>) -> JoinHandle<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let state = state.clone();
            conns.spawn(async move {
                let mut conn = Connection::new(stream);
                conn.server_hello(Protocol::Tlsmgr, T).await.unwrap();
                while let Ok(Some(req)) = conn.recv::<TlsmgrRequest>().await {
                    let reply = {
                        let mut s = state.lock().unwrap();
                        match req {
                            TlsmgrRequest::TicketKeys => TlsmgrReply::TicketKeys {
                                keys: s.keys.clone(),
                                next_rotation_unix: s.next_rotation_unix,
                            },
                            TlsmgrRequest::CacheGet { key } => TlsmgrReply::Value(
                                s.cache.clone().filter(|(k, _)| *k == key).map(|(_, v)| v),
                            ),
                            TlsmgrRequest::CachePut { key, value, .. } if value.is_empty() => {
                                TlsmgrReply::Error {
                                    message: format!("empty value for {key}"),
                                }
                            }
                            TlsmgrRequest::CachePut { key, value, .. } => {
                                s.cache = Some((key, value));
                                TlsmgrReply::Done
                            }
                        }
                    };
                    if conn.send(&reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn requests_and_reconnection_after_a_tlsmgr_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tlsmgr");
    let k1 = generate_key(now(), now() + 60).unwrap();
    let state = Arc::new(Mutex::new(Fake {
        keys: vec![k1.clone()],
        next_rotation_unix: now() + 30,
        cache: None,
    }));
    let server = fake_tlsmgr(&path, state.clone());
    let client = TlsmgrClient::new(&path);
    assert_eq!(client.ticket_keys().await.unwrap().0, vec![k1]);
    assert_eq!(client.cache_get("smtp:a").await.unwrap(), None);
    client
        .cache_put("smtp:a", b"s".to_vec(), now() + 60)
        .await
        .unwrap();
    assert_eq!(
        client.cache_get("smtp:a").await.unwrap(),
        Some(b"s".to_vec())
    );
    let err = client.cache_put("smtp:a", vec![], 0).await.unwrap_err();
    assert!(
        matches!(err, TlsError::TlsmgrReply(ref m) if m.contains("empty")),
        "{err:?}"
    );

    // tlsmgr restarts with new keys: the kept connection is dead, the
    // client reconnects without reporting an error.
    server.abort();
    let _ = server.await;
    let k2 = generate_key(now(), now() + 60).unwrap();
    state.lock().unwrap().keys = vec![k2.clone()];
    let server = fake_tlsmgr(&path, state.clone());
    assert_eq!(client.ticket_keys().await.unwrap().0, vec![k2]);

    // tlsmgr gone: the error names the socket.
    server.abort();
    let _ = server.await;
    std::fs::remove_file(&path).unwrap();
    let err = client.ticket_keys().await.unwrap_err();
    assert!(matches!(err, TlsError::Tlsmgr { .. }), "{err:?}");
    assert!(err.to_string().contains("tlsmgr"), "{err}");
}

#[tokio::test]
async fn the_refresh_task_follows_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tlsmgr");
    let k1 = generate_key(now(), now() + 60).unwrap();
    let state = Arc::new(Mutex::new(Fake {
        keys: vec![k1.clone()],
        next_rotation_unix: now() + 1,
        cache: None,
    }));
    let _server = fake_tlsmgr(&path, state.clone());
    let keys = Arc::new(TicketKeys::new(60));
    let task = spawn_ticket_refresh(Arc::new(TlsmgrClient::new(&path)), keys.clone());
    let named = |k: &TicketKey| Some(<[u8; 16]>::try_from(k.name.as_slice()).unwrap());

    let wait = |want| {
        let keys = keys.clone();
        async move {
            for _ in 0..100 {
                if keys.current_name() == want {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        }
    };
    assert!(wait(named(&k1)).await);
    let k2 = generate_key(now() + 1, now() + 61).unwrap();
    {
        let mut s = state.lock().unwrap();
        s.keys = vec![k2.clone(), k1.clone()];
        s.next_rotation_unix = now() + 30;
    }
    assert!(wait(named(&k2)).await, "the rotated key was not fetched");
    assert_eq!(keys.len(), 2);
    task.abort();
}

/// The whole smtpd flow: two "smtpd processes", each with its own
/// TicketKeys kept by its own refresh task from the same tlsmgr; a client
/// resumes on the second the session it made with the first.
#[tokio::test]
async fn two_smtpd_processes_fed_by_one_tlsmgr_resume_each_others_sessions() {
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tlsmgr");
    let state = Arc::new(Mutex::new(Fake {
        keys: vec![generate_key(now(), now() + 120).unwrap()],
        next_rotation_unix: now() + 60,
        cache: None,
    }));
    let _server = fake_tlsmgr(&path, state);

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["mx.example".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let files = postern_tls::CertKeyFiles {
        cert: dir.path().join("c.pem"),
        key: dir.path().join("k.pem"),
    };
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];

    let mut smtpd = Vec::new();
    for _ in 0..2 {
        let tickets = Arc::new(TicketKeys::new(60));
        let client = Arc::new(TlsmgrClient::new(&path));
        postern_tls::tlsmgr_client::refresh_ticket_keys(&client, &tickets)
            .await
            .unwrap();
        spawn_ticket_refresh(client, tickets.clone());
        let tls =
            postern_tls::server_config(std::slice::from_ref(&files), &versions, Some(tickets))
                .unwrap();
        smtpd.push(tls.config);
    }

    let client = postern_tls::client_config(
        postern_tls::SecurityLevel::Encrypt,
        &Default::default(),
        &versions,
    )
    .unwrap()
    .unwrap();
    let mut kinds = Vec::new();
    for server in &smtpd {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server.clone());
        let serve = tokio::spawn(async move {
            let mut tls = acceptor.accept(s).await.unwrap();
            tls.write_all(b"220 ok\r\n").await.unwrap();
            tls.shutdown().await.unwrap();
        });
        let mut tls = tokio_rustls::TlsConnector::from(client.clone())
            .connect(ServerName::try_from("mx.example").unwrap(), c)
            .await
            .unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).await.unwrap();
        serve.await.unwrap();
        kinds.push(tls.get_ref().1.handshake_kind().unwrap());
    }
    assert_eq!(
        kinds,
        [rustls::HandshakeKind::Full, rustls::HandshakeKind::Resumed]
    );
}
