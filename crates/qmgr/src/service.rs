//! The `private/qmgr` protocol: receiving messages into the queue (smtpd,
//! local-delivery) and the queue operations behind qctl (mailq, postsuper,
//! postqueue -f).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern_daemon::{Shutdown, Stream};
use postern_ipc::qmgr::{
    self as proto, MessageInfo, QmgrReply, QmgrRequest, QueueEntry, RecipientInfo,
};
use postern_ipc::{Connection, IpcError, Protocol};
use postern_queue::{Envelope, Incoming, QueueError, QueueId, QueueState, RcptState, Recipient};
use postern_routing::RoutingError;

use crate::logfmt;
use crate::route;
use crate::scheduler::{Qmgr, blocking};

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
                // One small sled insert (memory): done here, a thread
                // hand-off would cost more than the insert.
                match q.store.begin_message() {
                    Ok(incoming) => {
                        let id = incoming.id();
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
                        // sled inserts into memory: short. (block_in_place
                        // would move this worker's core to another thread
                        // for every frame.)
                        let result = incoming.append_body(&data);
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
            QmgrRequest::Show { id } => {
                if !show(&q, &mut conn, id).await {
                    return;
                }
                None
            }
            QmgrRequest::List => {
                if !list(&q, &mut conn).await {
                    return;
                }
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
            notify: r.notify,
            state: RcptState::Pending,
        })
        .collect();
    // Cleanup's address rewriting happens before the durable write, so
    // the queue holds the final recipients; a table that cannot be read
    // keeps nothing and the client hears 451.
    let (sender, recipients) = match rewrite(q, envelope.sender, recipients) {
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
        client: envelope.client,
        envid: envelope.envid,
        ret: envelope.ret,
        smtputf8: envelope.smtputf8,
        body_8bit: envelope.body_8bit,
    };
    let id = incoming.id();
    // The records go to sled here; the group committer completes the
    // channel once they are on disk (no thread parked per message).
    let (tx, done) = tokio::sync::oneshot::channel();
    incoming.commit_then(stored, move |r| {
        let _ = tx.send(r);
    });
    let committed = done
        .await
        .unwrap_or_else(|_| Err(QueueError::Commit("queue commit was dropped".into())));
    match committed {
        Ok(id) => {
            q.note_arrival(id, began);
            q.schedule(id);
            QmgrReply::Queued { id }
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
/// expansion (in place: see `resolve_all` in the scheduler).
fn rewrite(
    q: &Arc<Qmgr>,
    sender: String,
    recipients: Vec<Recipient>,
) -> Result<(String, Vec<Recipient>), String> {
    let router = q.router()?;
    let result =
        route::rewrite_envelope(&router, &sender, recipients).map_err(|e| e.to_string())?;
    if result.1.is_empty() {
        return Err("message has no recipients after address rewriting".into());
    }
    // A routing table that is not there (a surrogate) refuses the mail
    // now, as Postfix's smtpd does when trivial-rewrite cannot resolve a
    // recipient, rather than queueing what cannot be routed.
    for r in &result.1 {
        if let Err(e) = router.resolve(&r.address)
            && matches!(&e, RoutingError::Table { source, .. } if source.is_configuration_error())
        {
            return Err(e.to_string());
        }
    }
    Ok(result)
}

/// qctl's requests: listing, hold, release, delete, flush.
async fn admin(q: &Arc<Qmgr>, request: QmgrRequest) -> QmgrReply {
    let store = q.store.clone();
    let result: Result<QmgrReply, QueueError> = match request {
        QmgrRequest::Hold { id } => {
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
            let only = id;
            q.revive_destinations();
            q.note_flush(only);
            let flushed = blocking(move || flush(&store, only)).await;
            if flushed.is_ok() {
                q.rescan.notify_one();
            }
            flushed.map(|n| QmgrReply::Done {
                message: format!("queue flush requested: {n} deferred message(s) rescheduled"),
            })
        }
        QmgrRequest::DeleteAll => blocking(move || delete_all(&store)).await,
        QmgrRequest::Requeue { id } => {
            let only = id;
            let requeued = blocking(move || requeue(&store, only)).await;
            match requeued {
                Ok(ids) if ids.is_empty() && only.is_some() => Ok(QmgrReply::Error {
                    message: format!(
                        "{}: no such message in the queue",
                        only.map(|i| i.to_string()).unwrap_or_default()
                    ),
                }),
                Ok(ids) => {
                    for &id in &ids {
                        // An attempt running now would otherwise defer
                        // it again when it ends.
                        q.note_requeue(id);
                        q.schedule(id);
                    }
                    Ok(QmgrReply::Count {
                        count: ids.len() as u64,
                    })
                }
                Err(e) => Err(e),
            }
        }
        QmgrRequest::Begin
        | QmgrRequest::Body { .. }
        | QmgrRequest::Commit { .. }
        | QmgrRequest::Abort
        | QmgrRequest::Show { .. }
        | QmgrRequest::List => unreachable!("handled by the session"),
    };
    result.unwrap_or_else(|e| QmgrReply::Error {
        message: e.to_string(),
    })
}

/// Deletes every message (postsuper -d ALL); the number deleted.
fn delete_all(store: &postern_queue::QueueStore) -> Result<QmgrReply, QueueError> {
    let mut count = 0u64;
    for s in store.list()? {
        if store.remove(s.id)? {
            tracing::info!("{}: removed", s.id);
            count += 1;
        }
    }
    Ok(QmgrReply::Count { count })
}

/// postsuper -r: the message (or every message but corrupt ones) becomes
/// active and due now, held ones included, with the deferral reasons of
/// the message and its recipients cleared. The IDs requeued.
fn requeue(
    store: &postern_queue::QueueStore,
    only: Option<QueueId>,
) -> Result<Vec<QueueId>, QueueError> {
    let mut done = Vec::new();
    let ids: Vec<QueueId> = match only {
        Some(id) => vec![id],
        None => store.list()?.into_iter().map(|s| s.id).collect(),
    };
    for id in ids {
        let Some(m) = store.get(id)? else {
            continue;
        };
        if m.state == QueueState::Corrupt {
            continue;
        }
        let cleared: Vec<(usize, RcptState)> = m
            .envelope
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.state, RcptState::Deferred { .. }))
            .map(|(i, _)| (i, RcptState::Pending))
            .collect();
        if !cleared.is_empty() {
            store.record_outcomes(id, &cleared)?;
        }
        store.set_state(id, QueueState::Active)?;
        tracing::info!("{id}: requeued");
        done.push(id);
    }
    Ok(done)
}

/// postcat -q: the envelope, then the message in chunks, then End. False
/// when the connection broke.
async fn show(q: &Arc<Qmgr>, conn: &mut Connection<Stream>, id: QueueId) -> bool {
    let store = q.store.clone();
    let found = blocking(move || {
        let Some(m) = store.get(id)? else {
            return Ok(None);
        };
        let body = store.read_body(id)?;
        Ok(Some((m, body)))
    })
    .await;
    let (m, body) = match found {
        Ok(Some(found)) => found,
        Ok(None) => {
            return conn
                .send(&QmgrReply::Error {
                    message: format!("{id}: no such message in the queue"),
                })
                .await
                .is_ok();
        }
        Err(e) => {
            return conn
                .send(&QmgrReply::Error {
                    message: format!("{id}: {e}"),
                })
                .await
                .is_ok();
        }
    };
    let env = m.envelope;
    let (reason, next_try_unix) = match &m.state {
        QueueState::Deferred {
            next_try_unix,
            reason,
        } => (
            Some(reason.clone()).filter(|r| !r.is_empty()),
            Some(*next_try_unix),
        ),
        _ => (None, None),
    };
    let info = MessageInfo {
        id,
        state: m.state.name().to_string(),
        size: env.size,
        arrival_unix: env.arrival_unix,
        sender: env.sender,
        recipients: env
            .recipients
            .into_iter()
            .map(|r| {
                let (state, reason, dsn) = match r.state {
                    RcptState::Pending => ("pending", None, None),
                    RcptState::Sent { reply, .. } => ("sent", Some(reply), None),
                    RcptState::Bounced { reply, dsn, .. } => ("bounced", Some(reply), Some(dsn)),
                    RcptState::Deferred { reason } | RcptState::DelayNotified { reason } => {
                        ("deferred", Some(reason), None)
                    }
                };
                RecipientInfo {
                    address: r.address,
                    orcpt: r.orcpt,
                    state: state.into(),
                    reason,
                    dsn,
                }
            })
            .collect(),
        reason,
        next_try_unix,
        attempts: m.attempts,
        last_attempt_unix: m.last_attempt_unix,
        client: env.client,
        envid: env.envid,
        ret: env.ret,
    };
    if conn
        .send(&QmgrReply::Message {
            message: Box::new(info),
        })
        .await
        .is_err()
    {
        return false;
    }
    for chunk in body.chunks(postern_ipc::BODY_CHUNK) {
        if conn
            .send(&QmgrReply::Body {
                data: chunk.to_vec(),
            })
            .await
            .is_err()
        {
            return false;
        }
    }
    conn.send(&QmgrReply::End).await.is_ok()
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

/// Messages read from the store at a time for a listing.
const LIST_PAGE: usize = 256;
/// A listing frame is closed once its entries hold about this many bytes
/// of text, well under the frame limit.
const LIST_FRAME_BYTES: usize = postern_ipc::MAX_FRAME / 4;

/// mailq: the queue in pages read one after another, each sent in
/// [`QmgrReply::Queue`] frames as it is read, then [`QmgrReply::End`]; so
/// neither side ever holds more than a page, whatever the queue's length.
/// False when the connection broke.
async fn list(q: &Arc<Qmgr>, conn: &mut Connection<Stream>) -> bool {
    let mut after = None;
    let mut sent_any = false;
    loop {
        let store = q.store.clone();
        let page = blocking(move || list_page(&store, after)).await;
        let entries = match page {
            Ok(entries) => entries,
            Err(e) => {
                let message = e.to_string();
                return conn.send(&QmgrReply::Error { message }).await.is_ok();
            }
        };
        let Some(last) = entries.last() else {
            break;
        };
        after = Some(last.id);
        let mut frame = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            bytes += entry_bytes(&entry);
            frame.push(entry);
            if bytes >= LIST_FRAME_BYTES {
                let messages = std::mem::take(&mut frame);
                bytes = 0;
                if conn.send(&QmgrReply::Queue { messages }).await.is_err() {
                    return false;
                }
                sent_any = true;
            }
        }
        if !frame.is_empty() {
            if conn
                .send(&QmgrReply::Queue { messages: frame })
                .await
                .is_err()
            {
                return false;
            }
            sent_any = true;
        }
    }
    // Every listing has at least one Queue frame, an empty queue an empty one.
    if !sent_any
        && conn
            .send(&QmgrReply::Queue {
                messages: Vec::new(),
            })
            .await
            .is_err()
    {
        return false;
    }
    conn.send(&QmgrReply::End).await.is_ok()
}

/// The text an entry carries, to keep frames under the limit.
fn entry_bytes(e: &QueueEntry) -> usize {
    let rcpts: usize = e
        .recipients
        .iter()
        .map(|(a, r)| a.len() + r.as_ref().map_or(0, String::len) + 8)
        .sum();
    64 + e.sender.len() + e.reason.as_ref().map_or(0, String::len) + rcpts
}

/// One page of the listing, with each recipient's last failure.
fn list_page(
    store: &postern_queue::QueueStore,
    after: Option<QueueId>,
) -> Result<Vec<QueueEntry>, QueueError> {
    let mut messages = Vec::new();
    for s in store.list_page(after, LIST_PAGE)? {
        let (recipients, next_try_unix) = match store.get(s.id) {
            Ok(Some(m)) => {
                let rcpts = m
                    .envelope
                    .recipients
                    .into_iter()
                    .filter(|r| !r.state.is_final())
                    .map(|r| {
                        let reason = match r.state {
                            RcptState::Deferred { reason }
                            | RcptState::DelayNotified { reason } => Some(reason),
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
            id: s.id,
            state: s.state.name().to_string(),
            size: s.size,
            arrival_unix: s.arrival_unix,
            sender: s.sender,
            recipients,
            reason: s.reason,
            next_try_unix,
        });
    }
    Ok(messages)
}
