//! The client side of the delivery protocol: one request to a delivery
//! agent (smtp-client on `private/smtp`, local-delivery on `private/local`),
//! with the body streamed from the queue in chunks.

use std::path::Path;
use std::time::Duration;

use postern_ipc::delivery::{DeliveryMessage, DeliveryReply, DeliveryRequest};
use postern_ipc::{Connection, Protocol};
use postern_queue::{QueueId, QueueStore};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Body chunks read ahead of the socket.
const READ_AHEAD: usize = 4;

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
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| AgentError::Connect(io_text(&e)))?;
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::Delivery, HELLO_TIMEOUT)
        .await
        .map_err(|e| AgentError::Transport(e.to_string()))?;
    conn.send(&DeliveryMessage::Request(request))
        .await
        .map_err(|e| AgentError::Transport(e.to_string()))?;

    // sled reads block: a blocking task reads ahead while we write.
    let (tx, mut rx) = mpsc::channel::<Result<Vec<u8>, String>>(READ_AHEAD);
    let store = store.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let body = match store.body_reader(id) {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.blocking_send(Err(e.to_string()));
                return;
            }
        };
        for chunk in body {
            let item = chunk.map(|c| c.to_vec()).map_err(|e| e.to_string());
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        let data = chunk.map_err(AgentError::Queue)?;
        for piece in data.chunks(postern_ipc::BODY_CHUNK) {
            conn.send(&DeliveryMessage::Body {
                data: piece.to_vec(),
            })
            .await
            .map_err(|e| AgentError::Transport(e.to_string()))?;
        }
    }
    let _ = reader.await;
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
