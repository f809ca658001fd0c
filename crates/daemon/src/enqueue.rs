//! Putting one message into the queue through qmgr's `private/qmgr`
//! (postern-ipc's [`postern_ipc::qmgr`] protocol), for the daemons that
//! make mail of their own: local-delivery forwarding, pickup. smtpd keeps
//! connections across sessions and has a client of its own.
//!
//! [`Enqueue::begin`] gives the queue ID first, so the content may name
//! it (a Received header); [`Enqueue::commit`] returns once qmgr has the
//! message on stable storage. Every failure is a reason to try again
//! later, as text for the log.

use std::path::Path;
use std::time::Duration;

use postern_envelope::QueueId;
use postern_ipc::qmgr::{Envelope, QmgrReply, QmgrRequest};
use postern_ipc::{BODY_CHUNK, Connection, IpcError, Protocol};
use tokio::net::UnixStream;

/// One message on its way into the queue.
#[derive(Debug)]
pub struct Enqueue {
    conn: Connection<UnixStream>,
    timeout: Duration,
}

fn ipc(e: IpcError) -> String {
    format!("qmgr: {e}")
}

impl Enqueue {
    /// Connects to qmgr at `socket` and begins a message; `timeout`
    /// bounds each step (a commit may wait this long for the disk).
    pub async fn begin(socket: &Path, timeout: Duration) -> Result<(Enqueue, QueueId), String> {
        let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
            .await
            .map_err(|_| format!("connect to {}: timed out", socket.display()))?
            .map_err(|e| format!("connect to {}: {e}", socket.display()))?;
        let mut conn = Connection::new(stream);
        conn.client_hello(Protocol::Qmgr, timeout)
            .await
            .map_err(ipc)?;
        match conn
            .request(&QmgrRequest::Begin, timeout)
            .await
            .map_err(ipc)?
        {
            QmgrReply::Started { id } => Ok((Enqueue { conn, timeout }, id)),
            other => Err(format!("qmgr: unexpected answer to Begin: {other:?}")),
        }
    }

    /// Sends content, in chunks of at most [`BODY_CHUNK`].
    pub async fn body(&mut self, content: &[u8]) -> Result<(), String> {
        for chunk in content.chunks(BODY_CHUNK) {
            let request = QmgrRequest::Body {
                data: chunk.to_vec(),
            };
            tokio::time::timeout(self.timeout, self.conn.send(&request))
                .await
                .map_err(|_| "qmgr: timed out sending the message".to_string())?
                .map_err(ipc)?;
        }
        Ok(())
    }

    /// Commits the message with its envelope.
    pub async fn commit(mut self, envelope: Envelope) -> Result<QueueId, String> {
        let request = QmgrRequest::Commit {
            envelope: Box::new(envelope),
        };
        match self
            .conn
            .request(&request, self.timeout)
            .await
            .map_err(ipc)?
        {
            QmgrReply::Queued { id } => Ok(id),
            QmgrReply::Failed { reason } => Err(format!("qmgr: {reason}")),
            other => Err(format!("qmgr: unexpected answer to Commit: {other:?}")),
        }
    }
}
