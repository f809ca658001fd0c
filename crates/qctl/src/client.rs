//! Talking to the master and to qmgr: one connection, the hello, and the
//! answers every command shares (done, refused).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use postern_ipc::control::{ControlReply, ControlRequest};
use postern_ipc::qmgr_admin::{AdminReply, AdminRequest};
use postern_ipc::{Connection, Protocol};
use tokio::net::UnixStream;

pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One request, one reply, after the hello.
pub(crate) async fn ask(
    socket: &Path,
    request: ControlRequest,
    timeout: Duration,
) -> anyhow::Result<ControlReply> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        anyhow!(
            "the Postern mail system is not running: cannot connect to {}: {e}",
            socket.display()
        )
    })?;
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::Control, IO_TIMEOUT)
        .await
        .context("control hello")?;
    conn.request(&request, timeout)
        .await
        .context("control request")
}

/// A connection to qmgr's administration socket, after the hello. A user
/// the private directory keeps out (not root, not mail_owner) gets the
/// public one beside it, which lists the queue and flushes it for the
/// users authorized_mailq_users and authorized_flush_users admit.
pub(crate) async fn connect_qmgr(socket: &Path) -> anyhow::Result<Connection<UnixStream>> {
    let public = socket
        .parent()
        .and_then(Path::parent)
        .map(|q| q.join(postern_ipc::qmgr_admin::PUBLIC_SOCKET));
    let stream = match (UnixStream::connect(socket).await, public) {
        (Err(e), Some(public)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            UnixStream::connect(&public).await.map_err(|e| (public, e))
        }
        (connected, _) => connected.map_err(|e| (socket.to_path_buf(), e)),
    }
    .map_err(|(path, e)| {
        anyhow!(
            "the queue manager is not running: cannot connect to {}: {e}",
            path.display()
        )
    })?;
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::QmgrAdmin, IO_TIMEOUT)
        .await
        .context("qmgr hello")?;
    Ok(conn)
}

/// One request to qmgr, one reply, after the hello.
pub(crate) async fn ask_qmgr(socket: &Path, request: AdminRequest) -> anyhow::Result<AdminReply> {
    let mut conn = connect_qmgr(socket).await?;
    conn.request(&request, IO_TIMEOUT)
        .await
        .context("qmgr request")
}

/// A daemon's "done" message, as text or as `{"ok": true, "message": ...}`.
pub(crate) fn print_done(message: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
}

/// A reply of the master's or qmgr's protocol, seen as what qctl does
/// with it: a "done" message to print, an error to report, or anything else.
pub(crate) trait DaemonReply: std::fmt::Debug + Sized {
    /// Who answers, for the message about an unexpected reply.
    const FROM: &'static str;
    /// `Ok(Ok(done))`, `Ok(Err(error))`, or the reply itself.
    fn message(self) -> Result<Result<String, String>, Self>;
}

impl DaemonReply for ControlReply {
    const FROM: &'static str = "the master";
    fn message(self) -> Result<Result<String, String>, Self> {
        match self {
            ControlReply::Done { message } => Ok(Ok(message)),
            ControlReply::Error { message } => Ok(Err(message)),
            other => Err(other),
        }
    }
}

impl DaemonReply for AdminReply {
    const FROM: &'static str = "qmgr";
    fn message(self) -> Result<Result<String, String>, Self> {
        match self {
            AdminReply::Done { message } => Ok(Ok(message)),
            AdminReply::Error { message } => Ok(Err(message)),
            other => Err(other),
        }
    }
}

/// A reply that is not the one asked for: its error, or a complaint.
pub(crate) fn refuse<R: DaemonReply>(reply: R) -> anyhow::Result<()> {
    let shown = format!("{reply:?}");
    match reply.message() {
        Ok(Err(message)) => bail!("{message}"),
        _ => bail!("unexpected reply from {}: {shown}", R::FROM),
    }
}

/// A "done" reply, printed; anything else is refused.
pub(crate) fn done<R: DaemonReply>(reply: R, json: bool) -> anyhow::Result<()> {
    match reply.message() {
        Ok(Ok(message)) => {
            print_done(&message, json);
            Ok(())
        }
        Ok(Err(message)) => bail!("{message}"),
        Err(other) => refuse(other),
    }
}
