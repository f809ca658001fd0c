//! Serving an IPC protocol on a unix service: every connection first
//! completes the versioned hello for the daemon's protocol, so a client of
//! the wrong protocol or version is refused with a clear error.

use std::time::Duration;

use postern_ipc::{Connection, IpcError, Protocol};

use crate::server::{Context, serve_sessions};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Sessions per process for internal services.
const MAX_IPC_SESSIONS: usize = 4096;

/// Accepts connections, completes the hello, then holds each connection
/// until the peer closes it. A frame this daemon does not serve ends the
/// connection with a logged error.
pub async fn serve(ctx: &mut Context, protocol: Protocol) {
    let drain = ctx.params().time("drain_timeout");
    serve_sessions(
        ctx,
        MAX_IPC_SESSIONS,
        drain,
        move |stream, _peer, mut shutdown| async move {
            let mut conn = Connection::new(stream);
            if let Err(e) = conn.server_hello(protocol, HELLO_TIMEOUT).await {
                tracing::warn!("{}: {e}", protocol.name());
                return;
            }
            let frame = tokio::select! {
                f = conn.recv::<()>() => f,
                _ = shutdown.triggered() => return,
            };
            match frame {
                Ok(None) | Err(IpcError::Closed) => {}
                Ok(Some(_)) => {
                    tracing::warn!("{}: request not served by this daemon", protocol.name())
                }
                Err(e) => tracing::warn!("{}: {e}", protocol.name()),
            }
        },
    )
    .await;
}
