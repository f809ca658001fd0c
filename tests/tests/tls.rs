//! tlsmgr in a running Postern: the test plays smtpd and smtp-client on
//! `private/tlsmgr` (protocol postern-tlsmgr) and checks that every client
//! gets the same ticket keys, that keys rotate with the previous one still
//! offered, the client session cache, and `qctl restart tlsmgr`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern_ipc::tlsmgr::{TicketKey, TlsmgrReply, TlsmgrRequest};
use postern_ipc::{Connection, Protocol};
use postern_tests::Instance;
use tokio::net::UnixStream;

const T: Duration = Duration::from_secs(10);

/// A Postern running only tlsmgr under the real master: these tests need
/// no other daemon, so they do not depend on the others starting.
fn start(main_extra: &str) -> Instance {
    Instance::start_only("tlsmgr", main_extra)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn connect(inst: &Instance) -> Connection<UnixStream> {
    connect_path(&inst.queue_directory().join("private/tlsmgr")).await
}

async fn connect_path(path: &Path) -> Connection<UnixStream> {
    let stream = UnixStream::connect(path).await.unwrap();
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::Tlsmgr, T).await.unwrap();
    conn
}

async fn ask(conn: &mut Connection<UnixStream>, req: TlsmgrRequest) -> TlsmgrReply {
    conn.request(&req, T).await.unwrap()
}

async fn keys(conn: &mut Connection<UnixStream>) -> (Vec<TicketKey>, i64) {
    match ask(conn, TlsmgrRequest::TicketKeys).await {
        TlsmgrReply::TicketKeys {
            keys,
            next_rotation_unix,
        } => (keys, next_rotation_unix),
        other => panic!("expected ticket keys, got {other:?}"),
    }
}

async fn get(conn: &mut Connection<UnixStream>, key: &str) -> Option<Vec<u8>> {
    match ask(conn, TlsmgrRequest::CacheGet { key: key.into() }).await {
        TlsmgrReply::Value(v) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

async fn put(
    conn: &mut Connection<UnixStream>,
    key: &str,
    value: &[u8],
    expires_unix: i64,
) -> TlsmgrReply {
    let req = TlsmgrRequest::CachePut {
        key: key.into(),
        value: value.to_vec(),
        expires_unix,
    };
    ask(conn, req).await
}

/// Sleeps until the wall clock has passed `unix` (plus a margin).
async fn sleep_past(unix: i64) {
    let target = UNIX_EPOCH + Duration::from_secs(unix as u64) + Duration::from_millis(100);
    if let Ok(d) = target.duration_since(SystemTime::now()) {
        tokio::time::sleep(d).await;
    }
}

#[test]
fn every_smtpd_gets_the_same_ticket_keys() {
    let inst = start("");
    rt().block_on(async {
        // Two connections, as two smtpd processes would have.
        let mut a = connect(&inst).await;
        let mut b = connect(&inst).await;
        let (ka, next_a) = keys(&mut a).await;
        let (kb, next_b) = keys(&mut b).await;
        assert_eq!(ka.len(), 1, "{ka:?}");
        assert_eq!(ka, kb);
        assert_eq!(next_a, next_b);
        assert_eq!(ka[0].name.len(), 16);
        assert_eq!(ka[0].key.len(), 32);
        assert!(ka[0].key.iter().any(|&b| b != 0));
        // The default lifetime is smtpd_tls_session_cache_timeout = 3600s.
        let now = now_unix();
        assert!(
            (now + 3590..=now + 3601).contains(&next_a),
            "{next_a} vs {now}"
        );
        assert!(ka[0].expires_unix >= now + 7190, "{:?}", ka[0]);
        // Asking again on the same connection changes nothing.
        assert_eq!(keys(&mut a).await.0, ka);
    });
}

#[test]
fn keys_rotate_and_the_previous_key_stays_offered() {
    let inst = start("smtpd_tls_session_cache_timeout = \"2s\"");
    rt().block_on(async {
        let mut conn = connect(&inst).await;
        let (k1, next) = keys(&mut conn).await;
        assert_eq!(k1.len(), 1);
        assert!(next <= now_unix() + 3, "{next}");

        sleep_past(next).await;
        let (k2, next) = keys(&mut conn).await;
        assert_eq!(k2.len(), 2, "{k2:?}");
        assert_ne!(k2[0].name, k1[0].name, "no new key after the lifetime");
        assert_eq!(k2[1], k1[0], "the previous key is still offered");
        // Another client sees the same rotated ring.
        let mut other = connect(&inst).await;
        assert_eq!(keys(&mut other).await.0, k2);

        sleep_past(next).await;
        let (k3, _) = keys(&mut conn).await;
        assert_eq!(k3.len(), 2, "{k3:?}");
        assert_eq!(k3[1], k2[0]);
        assert!(
            k3.iter().all(|k| k.name != k1[0].name),
            "the oldest key is gone"
        );
    });
}

#[test]
fn session_cache_put_get_and_expiry() {
    let inst = start("smtp_tls_session_cache_timeout = \"2s\"");
    rt().block_on(async {
        let mut smtp1 = connect(&inst).await;
        let mut smtp2 = connect(&inst).await;
        let dest = "smtp:[mx.example.net]:25";
        assert_eq!(get(&mut smtp1, dest).await, None);
        // Asked to keep it an hour; smtp_tls_session_cache_timeout caps it at 2s.
        assert_eq!(
            put(&mut smtp1, dest, b"session-1", now_unix() + 3600).await,
            TlsmgrReply::Done
        );
        assert_eq!(get(&mut smtp2, dest).await, Some(b"session-1".to_vec()));
        // Replaced by a newer session.
        assert_eq!(
            put(&mut smtp2, dest, b"session-2", now_unix() + 3600).await,
            TlsmgrReply::Done
        );
        assert_eq!(get(&mut smtp1, dest).await, Some(b"session-2".to_vec()));
        // Already expired: not kept, and it removes the older entry.
        let other = "smtp:other.example";
        put(&mut smtp1, other, b"x", now_unix() + 60).await;
        assert_eq!(
            put(&mut smtp1, other, b"y", now_unix() - 1).await,
            TlsmgrReply::Done
        );
        assert_eq!(get(&mut smtp1, other).await, None);
        // Oversized entries are refused with an error, and the connection goes on.
        let big = vec![0u8; postern_ipc::tlsmgr::MAX_CACHE_VALUE + 1];
        assert!(matches!(
            put(&mut smtp1, "big", &big, now_unix() + 60).await,
            TlsmgrReply::Error { .. }
        ));
        assert_eq!(get(&mut smtp1, dest).await, Some(b"session-2".to_vec()));

        tokio::time::sleep(Duration::from_millis(3100)).await;
        assert_eq!(
            get(&mut smtp1, dest).await,
            None,
            "entry outlived the cache timeout"
        );
    });
}

#[test]
fn qctl_restart_tlsmgr() {
    let inst = start("");
    assert_eq!(inst.pids("tlsmgr").len(), 1);
    inst.restart_service("tlsmgr");
    rt().block_on(async {
        // The new process serves on the same socket, with a fresh key ring.
        let mut conn = connect(&inst).await;
        let (k, _) = keys(&mut conn).await;
        assert_eq!(k.len(), 1);
        let mut again = connect(&inst).await;
        assert_eq!(keys(&mut again).await.0, k);
    });
    assert_eq!(inst.service_status("tlsmgr").unwrap()["restarts"], 1);
}
