//! Forwarding: an alias or .forward that names another domain puts a new
//! message into the queue through qmgr (`private/qmgr`, protocol Qmgr),
//! with the same sender and a `Delivered-To:` header on top so that a copy
//! coming back is recognised as a loop. With `arc_sealing_key` set, mail
//! that smtpd checked on arrival is sealed with ARC on the way out.

use std::path::Path;
use std::time::Duration;

use postern_auth::ArcSealer;
use postern_daemon::enqueue::Enqueue;
use postern_envelope::{ContentFilter, QueueId};
use postern_ipc::BODY_CHUNK;
use postern_ipc::delivery::DeliveryRequest;
use postern_ipc::qmgr::{Envelope, EnvelopeRecipient};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Where and how a forwarded message is queued.
#[derive(Debug)]
pub struct Hop<'a> {
    /// `$queue_directory/private/qmgr`.
    pub qmgr: &'a Path,
    /// The `Delivered-To:` address put on top.
    pub delivered_to: &'a str,
    /// `content_filter`.
    pub filter: Option<ContentFilter>,
    pub timeout: Duration,
    /// The ARC sealer and our authserv-id (myhostname).
    pub seal: Option<(&'a ArcSealer, &'a str)>,
}

/// Queues the message read from `message` for `recipients`; Ok is the new
/// queue id, Err the reason to defer.
pub async fn forward(
    hop: &Hop<'_>,
    req: &DeliveryRequest,
    recipients: &[String],
    message: std::fs::File,
) -> Result<QueueId, String> {
    let (qmgr, delivered_to, timeout) = (hop.qmgr, hop.delivered_to, hop.timeout);
    let (mut conn, _) = Enqueue::begin(qmgr, timeout).await?;
    let mut first = format!("Delivered-To: {delivered_to}\r\n").into_bytes();
    let mut file: Box<dyn AsyncRead + Unpin + Send> = match hop.seal {
        // The whole message, to be signed before it is sent.
        Some((sealer, authserv_id)) => {
            let mut whole = Vec::new();
            tokio::fs::File::from_std(message)
                .read_to_end(&mut whole)
                .await
                .map_err(|e| format!("read queued message: {e}"))?;
            match sealer.seal(&whole, authserv_id) {
                Ok(Some(set)) => {
                    tracing::info!(
                        "{}: ARC-Seal field added (s={}, d={})",
                        req.queue_id,
                        sealer.selector(),
                        sealer.domain()
                    );
                    first = [set.into_bytes(), first].concat();
                }
                Ok(None) => {}
                Err(e) => tracing::warn!("{}: ARC sealing failed: {e}", req.queue_id),
            }
            Box::new(std::io::Cursor::new(whole))
        }
        None => Box::new(tokio::fs::File::from_std(message)),
    };
    let mut data = std::mem::take(&mut first);
    loop {
        let start = data.len();
        data.resize(start + BODY_CHUNK - start.min(BODY_CHUNK), 0);
        let n = read_full(&mut file, &mut data[start..])
            .await
            .map_err(|e| format!("read queued message: {e}"))?;
        data.truncate(start + n);
        conn.body(&data).await?;
        if data.len() < BODY_CHUNK {
            break;
        }
        data.clear();
    }
    let envelope = Envelope {
        sender: req.sender.clone(),
        recipients: recipients
            .iter()
            .map(|r| EnvelopeRecipient {
                address: r.clone(),
                ..Default::default()
            })
            .collect(),
        client: None,
        envid: req.envid.clone(),
        ret: req.ret,
        smtputf8: req.smtputf8,
        body_8bit: req.body_8bit,
        filter: hop.filter.clone(),
        hold: false,
        no_address_mappings: false,
    };
    conn.commit(envelope).await
}

/// Reads until `buf` is full or EOF.
async fn read_full(
    file: &mut (impl AsyncRead + Unpin + ?Sized),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = file.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_ipc::qmgr::{QmgrReply, QmgrRequest};
    use postern_ipc::{Connection, Protocol};
    use std::time::Duration;

    /// A qmgr stand-in that accepts one message and returns what it got.
    async fn fake_qmgr(listener: tokio::net::UnixListener) -> (Vec<u8>, Envelope) {
        let (s, _) = listener.accept().await.unwrap();
        let mut c = Connection::new(s);
        c.server_hello(Protocol::Qmgr, Duration::from_secs(5))
            .await
            .unwrap();
        let mut body = Vec::new();
        loop {
            match c.recv::<QmgrRequest>().await.unwrap().unwrap() {
                QmgrRequest::Begin => c
                    .send(&QmgrReply::Started {
                        id: "7A9".parse().unwrap(),
                    })
                    .await
                    .unwrap(),
                QmgrRequest::Body { data } => body.extend(data),
                QmgrRequest::Commit { envelope } => {
                    c.send(&QmgrReply::Queued {
                        id: "4ABCDEF".parse().unwrap(),
                    })
                    .await
                    .unwrap();
                    return (body, *envelope);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn forwarding_queues_a_copy_with_delivered_to() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmgr");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(fake_qmgr(listener));
        let msg = dir.path().join("m");
        let big = "x".repeat(BODY_CHUNK * 2);
        std::fs::write(&msg, format!("Subject: s\r\n\r\n{big}\r\n")).unwrap();
        let req = DeliveryRequest {
            sender: "s@example.org".into(),
            ..Default::default()
        };
        let hop = Hop {
            qmgr: &sock,
            delivered_to: "alias@example.local",
            filter: Some("smtp:[127.0.0.1]:10025".parse().unwrap()),
            timeout: Duration::from_secs(5),
            seal: None,
        };
        let id = forward(
            &hop,
            &req,
            &["far@example.net".into()],
            std::fs::File::open(&msg).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(id, "4ABCDEF");
        let (body, env) = server.await.unwrap();
        let expected = format!("Delivered-To: alias@example.local\r\nSubject: s\r\n\r\n{big}\r\n");
        assert_eq!(body, expected.as_bytes());
        assert_eq!(env.sender, "s@example.org");
        assert_eq!(env.recipients[0].address, "far@example.net");
        assert_eq!(env.filter, hop.filter);
    }

    #[tokio::test]
    async fn no_qmgr_is_an_error_to_defer_on() {
        let dir = tempfile::tempdir().unwrap();
        let msg = dir.path().join("m");
        std::fs::write(&msg, "x\r\n").unwrap();
        let absent = dir.path().join("absent");
        let hop = Hop {
            qmgr: &absent,
            delivered_to: "c@d",
            filter: None,
            timeout: Duration::from_secs(1),
            seal: None,
        };
        let err = forward(
            &hop,
            &DeliveryRequest::default(),
            &["a@b".into()],
            std::fs::File::open(&msg).unwrap(),
        )
        .await
        .unwrap_err();
        assert!(err.starts_with("connect to"), "{err}");
    }
}
