//! The client side of the delivery protocol: one request to a delivery
//! agent (smtp-client on `private/smtp`, local-delivery on `private/local`),
//! with the body streamed from the queue in chunks, or, when the queue
//! keeps it in segment files, handed over as read-only descriptors of
//! those files (the agent reads it itself; the segments are kept as they
//! are until the agent has answered). Connections are kept after a
//! complete exchange and reused for the next request to the same agent
//! (the agents serve requests one after another on a connection).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use postern_ipc::delivery::{DeliveryMessage, DeliveryReply, DeliveryRequest, SegmentExtent};
use postern_ipc::{Connection, IdleConnections, Protocol};
use postern_queue::{QueueId, QueueStore};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Body chunks read ahead of the socket.
const READ_AHEAD: usize = 4;
/// Bodies up to this size are read from sled right here (a few cached
/// chunks: cheaper than a blocking task and a channel); bigger ones stream
/// from a blocking reader.
const INLINE_BODY: u64 = 256 * 1024;
/// Idle connections kept per agent socket.
const IDLE_PER_AGENT: usize = 64;

type AgentConn = Connection<UnixStream>;

/// Idle connections to agents, by socket path.
static IDLE: LazyLock<IdleConnections> = LazyLock::new(|| IdleConnections::new(IDLE_PER_AGENT));

/// Why a request produced no reply; every case defers the recipients.
#[derive(Debug)]
pub enum AgentError {
    /// The agent's socket could not be reached (the text after
    /// `connect to transport private/NAME: `).
    Connect(String),
    /// The agent broke the exchange or never answered.
    Transport(String),
    /// The queued message could not be read.
    Queue(String),
}

/// Delivers one request to the agent listening on `socket`; `timeout`
/// bounds the whole exchange (a remote delivery may take long, but an agent
/// that stops reading or answering must not hold the message forever).
pub async fn deliver(
    socket: &Path,
    request: DeliveryRequest,
    store: &QueueStore,
    id: QueueId,
    timeout: Duration,
) -> Result<DeliveryReply, AgentError> {
    tokio::time::timeout(timeout, exchange(socket, request, store, id))
        .await
        .unwrap_or_else(|_| {
            Err(AgentError::Transport(
                "timed out waiting for the agent".into(),
            ))
        })
}

async fn exchange(
    socket: &Path,
    request: DeliveryRequest,
    store: &QueueStore,
    id: QueueId,
) -> Result<DeliveryReply, AgentError> {
    if let Some(conn) = IDLE.take(socket) {
        match attempt(conn, socket, request.clone(), store, id).await {
            // The agent dropped the kept connection (it exited or was
            // restarted meanwhile): once more on a new one. If it had
            // delivered before it went, that delivery is repeated — as for
            // any delivery in flight when an agent dies.
            Err(AgentError::Transport(_)) => {}
            other => return other,
        }
    }
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| AgentError::Connect(io_text(&e)))?;
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::Delivery, HELLO_TIMEOUT)
        .await
        .map_err(|e| AgentError::Transport(e.to_string()))?;
    attempt(conn, socket, request, store, id).await
}

/// One request on an open connection; the connection is kept for the
/// next request once the reply arrived.
async fn attempt(
    mut conn: AgentConn,
    socket: &Path,
    request: DeliveryRequest,
    store: &QueueStore,
    id: QueueId,
) -> Result<DeliveryReply, AgentError> {
    let reply = send_request(&mut conn, request, store, id).await?;
    IDLE.put(socket, conn);
    Ok(reply)
}

async fn send_request(
    conn: &mut AgentConn,
    request: DeliveryRequest,
    store: &QueueStore,
    id: QueueId,
) -> Result<DeliveryReply, AgentError> {
    let size = request.size;
    // Request, body and End of a small message go out in one write.
    conn.feed(&DeliveryMessage::Request(request))
        .await
        .map_err(|e| AgentError::Transport(e.to_string()))?;

    let body = store
        .body_reader(id)
        .map_err(|e| AgentError::Queue(e.to_string()))?;
    if let Some(segments) = body.segment_extents()
        && segments.files.len() <= postern_ipc::MAX_FDS
    {
        let extents = segments
            .extents
            .into_iter()
            .map(|(file, offset, len)| SegmentExtent {
                file: file as u8,
                offset,
                len,
            })
            .collect();
        let fds: Vec<BorrowedFd<'_>> = segments.files.iter().map(|f| f.as_fd()).collect();
        conn.send_with_fds(&DeliveryMessage::Segments { extents }, &fds)
            .await
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        let reply = finish_exchange(conn).await;
        // Only now may the segments be written over.
        drop(body);
        return reply;
    }
    if size <= INLINE_BODY {
        for chunk in body {
            let chunk = chunk.map_err(|e| AgentError::Queue(e.to_string()))?;
            for piece in chunk.chunks(postern_ipc::BODY_CHUNK) {
                conn.feed(&DeliveryMessage::Body {
                    data: piece.to_vec(),
                })
                .await
                .map_err(|e| AgentError::Transport(e.to_string()))?;
            }
        }
        return finish_exchange(conn).await;
    }

    // sled reads block: a blocking task reads ahead while we write.
    let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, String>>(READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || {
        for chunk in body {
            let item = chunk.map(|c| c.into_vec()).map_err(|e| e.to_string());
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        let data = chunk.map_err(AgentError::Queue)?;
        if data.len() <= postern_ipc::BODY_CHUNK {
            conn.send(&DeliveryMessage::Body { data })
                .await
                .map_err(|e| AgentError::Transport(e.to_string()))?;
            continue;
        }
        for piece in data.chunks(postern_ipc::BODY_CHUNK) {
            conn.send(&DeliveryMessage::Body {
                data: piece.to_vec(),
            })
            .await
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        }
    }
    let _ = reader.await;
    finish_exchange(conn).await
}

/// The end of the body, then the agent's reply.
async fn finish_exchange(conn: &mut AgentConn) -> Result<DeliveryReply, AgentError> {
    conn.send(&DeliveryMessage::End)
        .await
        .map_err(|e| AgentError::Transport(e.to_string()))?;
    match conn.recv::<DeliveryReply>().await {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(AgentError::Transport("connection closed by agent".into())),
        Err(e) => Err(AgentError::Transport(e.to_string())),
    }
}

/// `Connection refused`, as Postfix prints errno text, without Rust's
/// ` (os error 111)` suffix.
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
