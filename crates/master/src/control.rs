//! The control socket `private/master` that qctl talks to: one request and
//! one reply per connection, after the versioned hello.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_ipc::control::{ControlReply, ControlRequest};
use postern_ipc::{Connection, Protocol};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::supervisor::Event;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A restart waits for the new processes to become ready.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

pub fn socket_path(queue_directory: &Path) -> PathBuf {
    queue_directory.join("private").join("master")
}

/// Serves qctl until the listener is dropped with the task.
pub async fn serve(listener: UnixListener, events: mpsc::UnboundedSender<Event>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let events = events.clone();
        tokio::spawn(async move {
            let mut conn = Connection::new(stream);
            if let Err(e) = conn.server_hello(Protocol::Control, IO_TIMEOUT).await {
                tracing::warn!("control connection: {e}");
                return;
            }
            let request = match conn.recv_timeout::<ControlRequest>(IO_TIMEOUT).await {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("control connection: {e}");
                    return;
                }
            };
            let (tx, rx) = oneshot::channel();
            if events.send(Event::Control { request, reply: tx }).is_err() {
                return;
            }
            let reply = match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
                Ok(Ok(reply)) => reply,
                _ => ControlReply::Error {
                    message: "the master did not answer".into(),
                },
            };
            let _ = conn.send(&reply).await;
        });
    }
}
