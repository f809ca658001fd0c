//! One qmgr connection: requests one after another, each a
//! `DeliveryMessage::Request`, the body in chunks up to `End`, answered by
//! one `DeliveryReply`.

use std::sync::Arc;
use std::time::Duration;

use postern_config::Params;
use postern_daemon::{Shutdown, Stream};
use postern_ipc::delivery::{
    DeliveryMessage, DeliveryReply, DeliveryRequest, DeliveryStatus, RecipientResult, SegmentBody,
};
use postern_ipc::{Connection, IpcError, Protocol, TakeFds};
use tokio::io::AsyncWriteExt;

use crate::deliver::{Agent, Spooled};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection until the peer closes it or shutdown begins
/// between requests.
pub async fn serve(
    stream: Stream,
    mut shutdown: Shutdown,
    agent: Arc<Agent>,
    params: impl Fn() -> Arc<Params>,
) {
    let mut conn = Connection::new(stream);
    if let Err(e) = conn.server_hello(Protocol::Delivery, HELLO_TIMEOUT).await {
        tracing::warn!("{}: {e}", Protocol::Delivery);
        return;
    }
    loop {
        let first = tokio::select! {
            f = conn.recv::<DeliveryMessage>() => f,
            _ = shutdown.triggered() => return,
        };
        let req = match first {
            Ok(Some(DeliveryMessage::Request(req))) => req,
            Ok(None) | Err(IpcError::Closed) => return,
            Ok(Some(other)) => {
                tracing::warn!(
                    "delivery protocol: expected a request, got {}",
                    kind(&other)
                );
                return;
            }
            Err(e) => {
                tracing::warn!("delivery protocol: {e}");
                return;
            }
        };
        let params = params();
        let timeout = params.time("ipc_timeout").max(Duration::from_secs(1));
        let spooled = match receive_body(&mut conn, &params, timeout).await {
            Ok(s) => s,
            Err(BodyError::Ipc(e)) => {
                tracing::warn!("{}: delivery protocol: {e}", req.queue_id);
                return;
            }
            Err(BodyError::Spool(e)) => {
                tracing::warn!("{}: cannot spool message: {e}", req.queue_id);
                let reply = all(&req, "4.3.0", &format!("cannot spool message: {e}"));
                if conn.send(&reply).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let results = agent.deliver(&params, &req, &spooled).await;
        drop(spooled);
        if let Err(e) = conn.send(&DeliveryReply { results }).await {
            tracing::warn!("{}: cannot send delivery reply: {e}", req.queue_id);
            return;
        }
    }
}

enum BodyError {
    /// The connection is broken: give up on it.
    Ipc(IpcError),
    /// The body was read but could not be kept: defer the request.
    Spool(std::io::Error),
}

/// Reads Body chunks until End into an unlinked file under
/// `$queue_directory/tmp-local/`, so messages of any size cost no memory.
async fn receive_body<S>(
    conn: &mut Connection<S>,
    params: &Params,
    timeout: Duration,
) -> Result<Spooled, BodyError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + TakeFds,
{
    let dir = params.path("queue_directory").join("tmp-local");
    let mut file = match open_spool(&dir).await {
        Ok(f) => Some(tokio::fs::File::from_std(f)),
        Err(e) => {
            tracing::warn!("{}: {e}", dir.display());
            None
        }
    };
    let mut failure: Option<std::io::Error> = None;
    loop {
        match conn.recv_timeout::<DeliveryMessage>(timeout).await {
            Ok(Some(DeliveryMessage::Body { data })) => {
                spool(&mut file, &mut failure, &data).await;
            }
            Ok(Some(DeliveryMessage::Segments { extents })) => {
                let mut body = match SegmentBody::take(extents, conn) {
                    Ok(body) => body,
                    Err(e) => {
                        failure.get_or_insert(e);
                        continue;
                    }
                };
                loop {
                    match body.next_piece() {
                        Ok(Some(data)) => spool(&mut file, &mut failure, &data).await,
                        Ok(None) => break,
                        Err(e) => {
                            failure.get_or_insert(e);
                            break;
                        }
                    }
                }
            }
            Ok(Some(DeliveryMessage::End)) => break,
            Ok(Some(DeliveryMessage::Request(_))) => {
                return Err(BodyError::Ipc(IpcError::Protocol(
                    "request before the previous body ended".into(),
                )));
            }
            Ok(None) => return Err(BodyError::Ipc(IpcError::Truncated)),
            Err(e) => return Err(BodyError::Ipc(e)),
        }
    }
    if let Some(e) = failure {
        return Err(BodyError::Spool(e));
    }
    let Some(mut file) = file else {
        return Err(BodyError::Spool(std::io::Error::other(format!(
            "cannot create a file in {}",
            dir.display()
        ))));
    };
    file.flush().await.map_err(BodyError::Spool)?;
    let mut spooled = Spooled {
        file: file.into_std().await,
        delivered_to: Vec::new(),
    };
    let limit = params.int("header_size_limit").max(1024) as usize;
    spooled.scan_headers(limit).map_err(BodyError::Spool)?;
    Ok(spooled)
}

async fn open_spool(dir: &std::path::Path) -> std::io::Result<std::fs::File> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        tempfile::tempfile_in(&dir)
    })
    .await
    .map_err(std::io::Error::other)?
}

fn all(req: &DeliveryRequest, dsn: &str, text: &str) -> DeliveryReply {
    DeliveryReply {
        results: req
            .recipients
            .iter()
            .map(|r| RecipientResult {
                index: r.index,
                status: DeliveryStatus::Deferred,
                dsn: dsn.into(),
                relay: "local".into(),
                detail: text.into(),
                connect_secs: 0.0,
                transmit_secs: 0.0,
            })
            .collect(),
    }
}

/// Appends to the spool file, unless an earlier write failed.
async fn spool(
    file: &mut Option<tokio::fs::File>,
    failure: &mut Option<std::io::Error>,
    data: &[u8],
) {
    if let Some(f) = file.as_mut()
        && failure.is_none()
        && let Err(e) = f.write_all(data).await
    {
        *failure = Some(e);
    }
}

fn kind(m: &DeliveryMessage) -> &'static str {
    match m {
        DeliveryMessage::Request(_) => "Request",
        DeliveryMessage::Body { .. } => "Body",
        DeliveryMessage::Segments { .. } => "Segments",
        DeliveryMessage::End => "End",
    }
}
