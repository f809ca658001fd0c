//! Handing messages to qmgr: the [`Queue`] a session writes to, and
//! [`Qmgr`], the real one over `$queue_directory/private/qmgr`.
//!
//! The trait exists so the session can be tested without a qmgr: tests
//! give it an in-memory queue.

use std::future::Future;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use postern_ipc::qmgr::{Envelope, QmgrReply, QmgrRequest};
use postern_ipc::{Connection, IdleConnections, IpcError, Protocol};
use tokio::net::UnixStream;

/// Connecting and the hello must be quick; a qmgr that does not answer
/// is as good as absent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Begin and Flush are answered at once; Commit waits for the disk (group
/// commit), which may take a while under load.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(100);
/// Idle qmgr connections kept for later sessions of this process.
const IDLE_CONNECTIONS: usize = 64;

type QmgrConn = Connection<UnixStream>;

/// qmgr connections left by ended sessions between messages, by socket
/// path: the next session starts on one instead of connecting and
/// exchanging hellos again.
static IDLE: LazyLock<IdleConnections> = LazyLock::new(|| IdleConnections::new(IDLE_CONNECTIONS));

/// Why a message could not be queued; the client gets a 4xx either way.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("qmgr: {0}")]
    Ipc(#[from] IpcError),
    /// qmgr answered, but not with what was asked.
    #[error("qmgr: unexpected reply {0}")]
    Unexpected(String),
    /// qmgr tried and could not keep the message.
    #[error("qmgr: {0}")]
    Failed(String),
}

/// Where a session puts messages: one message at a time, streamed.
pub trait Queue: Send {
    /// Starts a message; returns its queue ID.
    fn begin(&mut self) -> impl Future<Output = Result<String, QueueError>> + Send;
    /// Appends up to [`postern_ipc::BODY_CHUNK`] bytes of content.
    fn body(&mut self, data: Vec<u8>) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Commits the message with its envelope; returns the queue ID once it
    /// is on stable storage.
    fn commit(
        &mut self,
        envelope: Envelope,
    ) -> impl Future<Output = Result<String, QueueError>> + Send;
    /// Drops the message in progress, if any.
    fn abort(&mut self) -> impl Future<Output = ()> + Send;
    /// Asks for deferred mail to be retried now (ETRN).
    fn flush(&mut self) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The qmgr client: one connection per session, opened at the first
/// message and reused for the next ones; dropped after any error so the
/// next message starts on a fresh connection. A session that ends between
/// messages leaves its connection to the next session.
#[derive(Debug)]
pub struct Qmgr {
    path: PathBuf,
    conn: Option<QmgrConn>,
    /// A message was begun and neither committed nor aborted.
    open: bool,
}

impl Drop for Qmgr {
    fn drop(&mut self) {
        if self.open {
            return; // closing the connection drops the unfinished message
        }
        if let Some(conn) = self.conn.take() {
            IDLE.put(&self.path, conn);
        }
    }
}

impl Qmgr {
    pub fn new(path: PathBuf) -> Qmgr {
        Qmgr {
            path,
            conn: None,
            open: false,
        }
    }

    async fn connection(&mut self) -> Result<&mut QmgrConn, QueueError> {
        if self.conn.is_none() {
            self.conn = IDLE.take(&self.path);
        }
        if self.conn.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(&self.path))
                .await
                .map_err(|_| IpcError::Timeout)?
                .map_err(|source| QueueError::Connect {
                    path: self.path.clone(),
                    source,
                })?;
            let mut conn = Connection::new(stream);
            conn.client_hello(Protocol::Qmgr, CONNECT_TIMEOUT).await?;
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Runs one exchange; any failure drops the connection.
    async fn exchange(
        &mut self,
        req: &QmgrRequest,
        timeout: Duration,
    ) -> Result<QmgrReply, QueueError> {
        let result = match self.connection().await {
            Ok(conn) => conn.request(req, timeout).await.map_err(QueueError::from),
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

impl Queue for Qmgr {
    async fn begin(&mut self) -> Result<String, QueueError> {
        // From here until the commit's answer the connection carries a
        // message: not to be handed to another session.
        self.open = true;
        match self.exchange(&QmgrRequest::Begin, REQUEST_TIMEOUT).await? {
            QmgrReply::Started { id } => Ok(id.to_string()),
            QmgrReply::Failed { reason } => Err(QueueError::Failed(reason)),
            other => {
                self.conn = None;
                Err(QueueError::Unexpected(format!("{other:?}")))
            }
        }
    }

    async fn body(&mut self, data: Vec<u8>) -> Result<(), QueueError> {
        let conn = self.connection().await?;
        // Written with the next chunk or the commit: a small message's
        // body and commit cost one write.
        let sent = conn.feed(&QmgrRequest::Body { data }).await;
        if sent.is_err() {
            self.conn = None;
        }
        Ok(sent?)
    }

    async fn commit(&mut self, envelope: Envelope) -> Result<String, QueueError> {
        let reply = self
            .exchange(
                &QmgrRequest::Commit {
                    envelope: Box::new(envelope),
                },
                COMMIT_TIMEOUT,
            )
            .await?;
        // Answered (Queued or Failed): the message is over on both sides.
        self.open = false;
        match reply {
            QmgrReply::Queued { id } => Ok(id.to_string()),
            QmgrReply::Failed { reason } => Err(QueueError::Failed(reason)),
            other => {
                self.conn = None;
                Err(QueueError::Unexpected(format!("{other:?}")))
            }
        }
    }

    async fn abort(&mut self) {
        // Closing the connection aborts too, and leaves no doubt about
        // whether qmgr owes an answer to the Abort.
        if let Some(mut conn) = self.conn.take() {
            let _ = conn.send(&QmgrRequest::Abort).await;
        }
        self.open = false;
    }

    async fn flush(&mut self) -> Result<(), QueueError> {
        match self.exchange(&QmgrRequest::Flush, REQUEST_TIMEOUT).await? {
            QmgrReply::Flushed { .. } => Ok(()),
            QmgrReply::Failed { reason } => Err(QueueError::Failed(reason)),
            other => Err(QueueError::Unexpected(format!("{other:?}"))),
        }
    }
}
