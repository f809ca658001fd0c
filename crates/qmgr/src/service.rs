//! The `private/qmgr` protocol: receiving messages into the queue (smtpd,
//! local-delivery) and the queue operations behind qctl (mailq, postsuper,
//! postqueue -f).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern_daemon::{Shutdown, Stream};
use postern_ipc::qmgr::{self as proto, QmgrReply, QmgrRequest, QueueEntry};
use postern_ipc::{Connection, IpcError, Protocol};
use postern_queue::{
    ClientInfo, Envelope, Incoming, QueueError, QueueId, QueueState, RcptState, Recipient, Ret,
};

use crate::logfmt;
use crate::route;
use crate::scheduler::{Qmgr, blocking, notify_flags};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The message being received on a connection.
enum Receiving {
    Idle,
    Open {
        incoming: Incoming,
        began: SystemTime,
    },
    /// A store write failed; the commit will answer Failed with this.
    Broken {
        reason: String,
    },
}

/// Serves one connection until the peer closes it, breaks the protocol,
/// or (between messages) shutdown begins.
pub async fn session(q: Arc<Qmgr>, stream: Stream, mut shutdown: Shutdown) {
    let mut conn = Connection::new(stream);
    if let Err(e) = conn.server_hello(Protocol::Qmgr, HELLO_TIMEOUT).await {
        tracing::warn!("{}: {e}", Protocol::Qmgr);
        return;
    }
    let mut rx = Receiving::Idle;
    loop {
        let idle = matches!(rx, Receiving::Idle);
        let frame = tokio::select! {
            f = conn.recv::<QmgrRequest>() => f,
            _ = shutdown.triggered(), if idle => return,
        };
        let request = match frame {
            Ok(Some(r)) => r,
            Ok(None) | Err(IpcError::Closed) => return,
            Err(e) => {
                // Garbled or oversized input: the connection is not
                // trustworthy any more; drop it (and any message in it).
                tracing::warn!("{}: {e}", Protocol::Qmgr);
                return;
            }
        };
        let reply = match request {
            QmgrRequest::Begin => {
                rx = Receiving::Idle; // an unfinished message is dropped
                let store = q.store.clone();
                match blocking(move || store.begin_message()).await {
                    Ok(incoming) => {
                        let id = incoming.id().to_string();
                        rx = Receiving::Open {
                            incoming,
                            began: SystemTime::now(),
                        };
                        Some(QmgrReply::Started { id })
                    }
                    Err(e) => {
                        tracing::warn!("cannot start a queue file: {e}");
                        Some(QmgrReply::Failed {
                            reason: e.to_string(),
                        })
                    }
                }
            }
            QmgrRequest::Body { data } => {
                match &mut rx {
                    Receiving::Open { incoming, .. } => {
                        // A sled insert: short, but blocking.
                        let result = tokio::task::block_in_place(|| incoming.append_body(&data));
                        if let Err(e) = result {
                            tracing::warn!("{}: cannot write body: {e}", incoming.id());
                            rx = Receiving::Broken {
                                reason: e.to_string(),
                            };
                        }
                    }
                    Receiving::Broken { .. } => {}
                    Receiving::Idle => {
                        tracing::warn!("{}: body without a message", Protocol::Qmgr);
                        return;
                    }
                }
                None
            }
            QmgrRequest::Commit { envelope } => {
                Some(commit(&q, std::mem::replace(&mut rx, Receiving::Idle), envelope).await)
            }
            QmgrRequest::Abort => {
                rx = Receiving::Idle;
                None
            }
            other => Some(admin(&q, other).await),
        };
        if let Some(reply) = reply
            && let Err(e) = conn.send(&reply).await
        {
            tracing::warn!("{}: {e}", Protocol::Qmgr);
            return;
        }
    }
}

/// Makes the message durable and answers Queued, or Failed with nothing
/// kept.
async fn commit(q: &Arc<Qmgr>, rx: Receiving, envelope: proto::Envelope) -> QmgrReply {
    let (incoming, began) = match rx {
        Receiving::Open { incoming, began } => (incoming, began),
        Receiving::Broken { reason } => return QmgrReply::Failed { reason },
        Receiving::Idle => {
            return QmgrReply::Failed {
                reason: "commit without a message".into(),
            };
        }
    };
    if envelope.recipients.is_empty() {
        return QmgrReply::Failed {
            reason: "message has no recipients".into(),
        };
    }
    let recipients: Vec<Recipient> = envelope
        .recipients
        .into_iter()
        .map(|r| Recipient {
            address: r.address,
            orcpt: r.orcpt,
            notify: notify_flags(&r.notify),
            state: RcptState::Pending,
        })
        .collect();
    // Cleanup's address rewriting happens before the durable write, so
    // the queue holds the final recipients; a table that cannot be read
    // keeps nothing and the client hears 451.
    let (sender, recipients) = match rewrite(q, envelope.sender, recipients).await {
        Ok(r) => r,
        Err(reason) => {
            tracing::warn!("{}: {reason}", incoming.id());
            return QmgrReply::Failed { reason };
        }
    };
    let stored = Envelope {
        sender,
        recipients,
        arrival_unix: logfmt::since_epoch(began).as_secs() as i64,
        size: 0,
        client: envelope.client.map(|c| ClientInfo {
            name: c.name,
            addr: c.addr,
            helo: c.helo,
            protocol: c.protocol,
            sasl_username: c.sasl_username,
        }),
        envid: envelope.envid,
        ret: match envelope
            .ret
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            Some("HDRS") => Some(Ret::Hdrs),
            Some("FULL") => Some(Ret::Full),
            _ => None,
        },
        smtputf8: envelope.smtputf8,
        body_8bit: envelope.body_8bit,
    };
    let id = incoming.id();
    match blocking(move || incoming.commit(stored)).await {
        Ok(id) => {
            q.note_arrival(id, began);
            q.schedule(id);
            QmgrReply::Queued { id: id.to_string() }
        }
        Err(e) => {
            tracing::warn!("{id}: queue file write error: {e}");
            q.check_store(&e);
            QmgrReply::Failed {
                reason: e.to_string(),
            }
        }
    }
}

/// The envelope through the Router's rewriting and virtual alias
/// expansion (table lookups may read files: off the async workers).
async fn rewrite(
    q: &Arc<Qmgr>,
    sender: String,
    recipients: Vec<Recipient>,
) -> Result<(String, Vec<Recipient>), String> {
    let router = q.router()?;
    let result = tokio::task::spawn_blocking(move || {
        route::rewrite_envelope(&router, &sender, recipients).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("address rewriting failed: {e}")))?;
    if result.1.is_empty() {
        return Err("message has no recipients after address rewriting".into());
    }
    Ok(result)
}

/// qctl's requests: listing, hold, release, delete, flush.
async fn admin(q: &Arc<Qmgr>, request: QmgrRequest) -> QmgrReply {
    let store = q.store.clone();
    let parse = |id: &str| -> Result<QueueId, QmgrReply> {
        id.parse::<QueueId>().map_err(|e| QmgrReply::Error {
            message: e.to_string(),
        })
    };
    let result: Result<QmgrReply, QueueError> = match request {
        QmgrRequest::List => blocking(move || list(&store)).await,
        QmgrRequest::Hold { id } => {
            let id = match parse(&id) {
                Ok(id) => id,
                Err(r) => return r,
            };
            blocking(move || {
                store.hold(id)?;
                tracing::info!("{id}: placed on hold");
                Ok(QmgrReply::Done {
                    message: format!("{id}: placed on hold"),
                })
            })
            .await
        }
        QmgrRequest::Release { id } => {
            let id = match parse(&id) {
                Ok(id) => id,
                Err(r) => return r,
            };
            let released = blocking(move || store.release(id)).await;
            match released {
                Ok(true) => {
                    tracing::info!("{id}: released from hold");
                    q.schedule(id);
                    Ok(QmgrReply::Done {
                        message: format!("{id}: released from hold"),
                    })
                }
                Ok(false) => Ok(QmgrReply::Error {
                    message: format!("{id}: not on hold"),
                }),
                Err(e) => Err(e),
            }
        }
        QmgrRequest::Delete { id } => {
            let id = match parse(&id) {
                Ok(id) => id,
                Err(r) => return r,
            };
            blocking(move || {
                Ok(if store.remove(id)? {
                    tracing::info!("{id}: removed");
                    QmgrReply::Done {
                        message: format!("{id}: removed"),
                    }
                } else {
                    QmgrReply::Error {
                        message: format!("{id}: no such message in the queue"),
                    }
                })
            })
            .await
        }
        QmgrRequest::Flush { id } => {
            let only = match id.as_deref().map(parse).transpose() {
                Ok(only) => only,
                Err(r) => return r,
            };
            let flushed = blocking(move || flush(&store, only)).await;
            if flushed.is_ok() {
                q.rescan.notify_one();
            }
            flushed.map(|n| QmgrReply::Done {
                message: format!("queue flush requested: {n} deferred message(s) rescheduled"),
            })
        }
        QmgrRequest::Begin
        | QmgrRequest::Body { .. }
        | QmgrRequest::Commit { .. }
        | QmgrRequest::Abort => unreachable!("handled by the session"),
    };
    result.unwrap_or_else(|e| QmgrReply::Error {
        message: e.to_string(),
    })
}

/// Makes deferred mail due now, keeping its last reason for the listing.
fn flush(store: &postern_queue::QueueStore, only: Option<QueueId>) -> Result<usize, QueueError> {
    let now = logfmt::since_epoch(SystemTime::now()).as_secs() as i64;
    let mut n = 0;
    for s in store.list()? {
        if only.is_some_and(|id| id != s.id) {
            continue;
        }
        if let QueueState::Deferred { reason, .. } = s.state {
            store.set_state(
                s.id,
                QueueState::Deferred {
                    next_try_unix: now,
                    reason,
                },
            )?;
            n += 1;
        }
    }
    Ok(n)
}

/// The queue as mailq shows it, with each recipient's last failure.
fn list(store: &postern_queue::QueueStore) -> Result<QmgrReply, QueueError> {
    let mut messages = Vec::new();
    for s in store.list()? {
        let (recipients, next_try_unix) = match store.get(s.id) {
            Ok(Some(m)) => {
                let rcpts = m
                    .envelope
                    .recipients
                    .into_iter()
                    .filter(|r| !r.state.is_final())
                    .map(|r| {
                        let reason = match r.state {
                            RcptState::Deferred { reason } => Some(reason),
                            _ => None,
                        };
                        (r.address, reason)
                    })
                    .collect();
                let next = match m.state {
                    QueueState::Deferred { next_try_unix, .. } => Some(next_try_unix),
                    _ => None,
                };
                (rcpts, next)
            }
            _ => (s.recipients.into_iter().map(|r| (r, None)).collect(), None),
        };
        messages.push(QueueEntry {
            id: s.id.to_string(),
            state: s.state.name().to_string(),
            size: s.size,
            arrival_unix: s.arrival_unix,
            sender: s.sender,
            recipients,
            reason: s.reason,
            next_try_unix,
        });
    }
    Ok(QmgrReply::Queue { messages })
}
