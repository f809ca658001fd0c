//! The server side of a connection to an internal service (qmgr, tlsmgr,
//! a delivery agent): the versioned hello, so a client of the wrong
//! protocol or version is refused with a clear error, then requests one
//! after another until the client hangs up, breaks the protocol or, between
//! requests, shutdown begins.

use std::time::Duration;

use postern_ipc::{Connection, IpcError, Protocol};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::server::{Shutdown, Stream};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted connection of an internal service.
#[derive(Debug)]
pub struct IpcSession {
    pub conn: Connection<Stream>,
    protocol: Protocol,
    shutdown: Shutdown,
}

impl IpcSession {
    /// Completes the hello; None (logged) when it fails.
    pub async fn accept(stream: Stream, protocol: Protocol, shutdown: Shutdown) -> Option<Self> {
        let mut conn = Connection::new(stream);
        if let Err(e) = conn.server_hello(protocol, HELLO_TIMEOUT).await {
            tracing::warn!("{protocol}: {e}");
            return None;
        }
        Some(IpcSession {
            conn,
            protocol,
            shutdown,
        })
    }

    /// The next request; None when the client closed the connection, sent
    /// a frame that cannot be trusted (garbled or oversized, logged), or
    /// when shutdown began while `stoppable` (no work half done).
    pub async fn next<T: DeserializeOwned>(&mut self, stoppable: bool) -> Option<T> {
        let frame = tokio::select! {
            f = self.conn.recv::<T>() => f,
            _ = self.shutdown.triggered(), if stoppable => return None,
        };
        match frame {
            Ok(Some(request)) => Some(request),
            Ok(None) | Err(IpcError::Closed) => None,
            Err(e) => {
                tracing::warn!("{}: {e}", self.protocol);
                None
            }
        }
    }

    /// Sends a reply; false (logged) when the connection is broken.
    pub async fn reply<T: Serialize>(&mut self, reply: &T) -> bool {
        match self.conn.send(reply).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("{}: sending the reply: {e}", self.protocol);
                false
            }
        }
    }
}
