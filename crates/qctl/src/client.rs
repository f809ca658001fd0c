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

/// A connection to qmgr's administration socket, after the hello.
pub(crate) async fn connect_qmgr(socket: &Path) -> anyhow::Result<Connection<UnixStream>> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        anyhow!(
            "the queue manager is not running: cannot connect to {}: {e}",
            socket.display()
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

pub(crate) fn qmgr_refuse(reply: AdminReply) -> anyhow::Result<()> {
    match reply {
        AdminReply::Error { message } => bail!("{message}"),
        other => bail!("unexpected reply from qmgr: {other:?}"),
    }
}

pub(crate) fn qmgr_done(reply: AdminReply, json: bool) -> anyhow::Result<()> {
    match reply {
        AdminReply::Done { message } => {
            print_done(&message, json);
            Ok(())
        }
        other => qmgr_refuse(other),
    }
}

/// A daemon's "done" message, as text or as `{"ok": true, "message": ...}`.
pub(crate) fn print_done(message: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
}

pub(crate) fn refuse(reply: ControlReply) -> anyhow::Result<()> {
    match reply {
        ControlReply::Error { message } => bail!("{message}"),
        other => bail!("unexpected reply from the master: {other:?}"),
    }
}

pub(crate) fn done(reply: ControlReply, json: bool) -> anyhow::Result<()> {
    match reply {
        ControlReply::Done { message } => {
            print_done(&message, json);
            Ok(())
        }
        other => refuse(other),
    }
}
