//! The client of tlsmgr(8) on `$queue_directory/private/tlsmgr`: ticket keys
//! for smtpd, the session cache for smtp-client. One connection is kept
//! and reopened when it breaks; a request is retried once on a fresh
//! connection, so a restarted tlsmgr costs no error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postern_config::Params;
use postern_ipc::tlsmgr::{TicketKey, TlsmgrReply, TlsmgrRequest};
use postern_ipc::{Connection, IpcError, Protocol};
use tokio::net::UnixStream;
use tokio::sync::Mutex;

use crate::{TicketKeys, TlsError};

/// Deadline for the hello and for each request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Ask for keys at least this often, to pick up a restarted tlsmgr's keys.
const MAX_REFRESH: Duration = Duration::from_secs(30);
/// After a failure, try again this soon.
const RETRY: Duration = Duration::from_secs(2);

/// A connection to tlsmgr, opened on first use.
#[derive(Debug)]
pub struct TlsmgrClient {
    path: PathBuf,
    conn: Mutex<Option<Connection<UnixStream>>>,
}

impl TlsmgrClient {
    pub fn new(path: impl Into<PathBuf>) -> TlsmgrClient {
        TlsmgrClient {
            path: path.into(),
            conn: Mutex::new(None),
        }
    }

    /// The client for `$queue_directory/private/tlsmgr`.
    pub fn from_params(params: &Params) -> TlsmgrClient {
        Self::new(params.path("queue_directory").join("private/tlsmgr"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One request and its reply; [`TlsmgrReply::Error`] becomes an error.
    pub async fn request(&self, req: &TlsmgrRequest) -> Result<TlsmgrReply, TlsError> {
        let mut slot = self.conn.lock().await;
        // A kept connection may have been closed by a tlsmgr restart: on
        // failure, try once more on a new one.
        let reused = slot.is_some();
        let result = self.request_on(&mut slot, req).await;
        let result = match result {
            Err(_) if reused => self.request_on(&mut slot, req).await,
            r => r,
        };
        match result {
            Ok(TlsmgrReply::Error { message }) => Err(TlsError::TlsmgrReply(message)),
            Ok(reply) => Ok(reply),
            Err(source) => Err(TlsError::Tlsmgr {
                path: self.path.clone(),
                source,
            }),
        }
    }

    async fn request_on(
        &self,
        slot: &mut Option<Connection<UnixStream>>,
        req: &TlsmgrRequest,
    ) -> Result<TlsmgrReply, IpcError> {
        if slot.is_none() {
            let stream = UnixStream::connect(&self.path).await?;
            let mut conn = Connection::new(stream);
            conn.client_hello(Protocol::Tlsmgr, REQUEST_TIMEOUT).await?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("connected above");
        let reply = conn.request(req, REQUEST_TIMEOUT).await;
        if reply.is_err() {
            // Not trustworthy any more (see IpcError).
            *slot = None;
        }
        reply
    }

    /// The ticket keys, newest first, and when tlsmgr rotates next.
    pub async fn ticket_keys(&self) -> Result<(Vec<TicketKey>, i64), TlsError> {
        match self.request(&TlsmgrRequest::TicketKeys).await? {
            TlsmgrReply::TicketKeys {
                keys,
                next_rotation_unix,
            } => Ok((keys, next_rotation_unix)),
            other => Err(unexpected(&other)),
        }
    }

    /// The cached value for `key`, if present and not expired.
    pub async fn cache_get(&self, key: &str) -> Result<Option<Vec<u8>>, TlsError> {
        let req = TlsmgrRequest::CacheGet { key: key.into() };
        match self.request(&req).await? {
            TlsmgrReply::Value(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    /// Caches `value` under `key` until `expires_unix`.
    pub async fn cache_put(
        &self,
        key: &str,
        value: Vec<u8>,
        expires_unix: i64,
    ) -> Result<(), TlsError> {
        let req = TlsmgrRequest::CachePut {
            key: key.into(),
            value,
            expires_unix,
        };
        match self.request(&req).await? {
            TlsmgrReply::Done => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &TlsmgrReply) -> TlsError {
    let kind = match reply {
        TlsmgrReply::TicketKeys { .. } => "TicketKeys",
        TlsmgrReply::Value(_) => "Value",
        TlsmgrReply::Done => "Done",
        TlsmgrReply::Error { .. } => "Error",
    };
    TlsError::TlsmgrReply(format!("unexpected {kind} reply"))
}

/// Fetches the keys once and installs them in `keys`; returns when tlsmgr
/// rotates next.
pub async fn refresh_ticket_keys(
    client: &TlsmgrClient,
    keys: &TicketKeys,
) -> Result<i64, TlsError> {
    let (list, next) = client.ticket_keys().await?;
    keys.install(&list)?;
    Ok(next)
}

/// Keeps `keys` equal to tlsmgr's: fetches them now, again just after each
/// rotation, and at least every 30 s. Failures are logged once per outage;
/// meanwhile the keys held keep working until they expire. Runs until the
/// returned task is aborted or the runtime stops.
pub fn spawn_ticket_refresh(
    client: Arc<TlsmgrClient>,
    keys: Arc<TicketKeys>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            let wait = match refresh_ticket_keys(&client, &keys).await {
                Ok(next) => {
                    if failing {
                        tracing::info!("tlsmgr reachable again; session ticket keys updated");
                        failing = false;
                    }
                    // A little after the rotation, so tlsmgr has made the key.
                    let until = (next - crate::now_unix()).max(0) as u64;
                    (Duration::from_secs(until) + Duration::from_millis(200)).min(MAX_REFRESH)
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!("cannot get session ticket keys: {e}");
                        failing = true;
                    }
                    RETRY
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}
