//! The administration socket, `private/qmgr-admin` (protocol
//! postern-qmgr-admin): qctl's queue operations (mailq, postsuper,
//! postqueue -f, postcat -q).

use std::sync::Arc;
use std::time::SystemTime;

use postern_daemon::ipc::IpcSession;
use postern_daemon::{Shutdown, Stream};
use postern_envelope::RecipientState;
use postern_ipc::Protocol;
use postern_ipc::qmgr_admin::{
    AdminReply, AdminRequest, MessageInfo, MessageSummary, QueueEntry, RecipientInfo,
};
use postern_queue::{QueueError, QueueId, QueueState, QueueStore, RcptState};

use crate::logfmt;
use crate::scheduler::{Qmgr, blocking};

/// How long a connection on the public socket may wait between requests.
const PUBLIC_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Which socket a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `private/qmgr-admin`: root and mail_owner, every operation.
    Full,
    /// `public/showq`: any local user; the listing and the flush only,
    /// for the users authorized_mailq_users and authorized_flush_users
    /// admit.
    Public,
}

/// Serves one qctl connection: requests one after another until it
/// closes, breaks the protocol or, between requests, shutdown begins.
pub async fn session(q: Arc<Qmgr>, stream: Stream, shutdown: Shutdown, access: Access) {
    let peer = match access {
        Access::Full => None,
        Access::Public => Some(peer_uid(&stream)),
    };
    let Some(mut session) = IpcSession::accept(stream, Protocol::QmgrAdmin, shutdown).await else {
        return;
    };
    loop {
        // Any user may connect to the public socket: an idle one is not
        // kept, so that nobody can hold every session.
        let request = match access {
            Access::Full => session.next::<AdminRequest>(true).await,
            Access::Public => tokio::time::timeout(PUBLIC_IDLE, session.next::<AdminRequest>(true))
                .await
                .ok()
                .flatten(),
        };
        let Some(request) = request else {
            return;
        };
        if let Some(uid) = peer
            && let Err(message) = permitted(&q, uid, &request)
        {
            if !session.reply(&AdminReply::Error { message }).await {
                return;
            }
            continue;
        }
        let reply = match request {
            AdminRequest::List => {
                if list(&q, &mut session).await {
                    continue;
                }
                return;
            }
            AdminRequest::Show { id } => {
                if show(&q, &mut session, id).await {
                    continue;
                }
                return;
            }
            AdminRequest::Hold { id } => hold(&q, id).await,
            AdminRequest::Release { id } => release(&q, id).await,
            AdminRequest::Delete { id } => delete(&q, id).await,
            AdminRequest::DeleteAll => {
                let store = q.store.clone();
                blocking(move || delete_all(&store)).await
            }
            AdminRequest::Flush { id } => flush(&q, id).await.map(|n| AdminReply::Done {
                message: format!("queue flush requested: {n} deferred message(s) rescheduled"),
            }),
            AdminRequest::Requeue { id } => requeue_now(&q, id).await,
        };
        let reply = reply.unwrap_or_else(|e| AdminReply::Error {
            message: e.to_string(),
        });
        if !session.reply(&reply).await {
            return;
        }
    }
}

/// The connecting user's uid, as the kernel reports it; None when it
/// cannot say (refused).
fn peer_uid(stream: &Stream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    match stream {
        Stream::Unix(s) => getsockopt(s.get_ref(), PeerCredentials)
            .ok()
            .map(|c| c.uid()),
        Stream::Tcp(_) => None,
    }
}

/// What the public socket serves, and to whom: root and mail_owner (this
/// process's own uid) always, others as the parameter says.
fn permitted(q: &Qmgr, uid: Option<u32>, request: &AdminRequest) -> Result<(), String> {
    let param = match request {
        AdminRequest::List => "authorized_mailq_users",
        AdminRequest::Flush { .. } => "authorized_flush_users",
        _ => {
            return Err(format!(
                "not served on {}: use qctl as root or mail_owner",
                postern_ipc::qmgr_admin::PUBLIC_SOCKET
            ));
        }
    };
    let Some(uid) = uid else {
        return Err("cannot tell who is asking".into());
    };
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    let name = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .ok_or_else(|| format!("no login name for user ID {uid}"))?;
    let what = if param == "authorized_mailq_users" {
        "view the mail queue"
    } else {
        "flush the mail queue"
    };
    match q.params().user_allowed(param, &name) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("User {name}({uid}) is not allowed to {what}")),
        Err(e) => Err(format!("{param}: {e}")),
    }
}

/// postsuper -h.
async fn hold(q: &Arc<Qmgr>, id: QueueId) -> Result<AdminReply, QueueError> {
    let store = q.store.clone();
    blocking(move || store.hold(id)).await?;
    tracing::info!("{id}: placed on hold");
    Ok(AdminReply::Done {
        message: format!("{id}: placed on hold"),
    })
}

/// postsuper -H: the message is due again at once.
async fn release(q: &Arc<Qmgr>, id: QueueId) -> Result<AdminReply, QueueError> {
    let store = q.store.clone();
    if !blocking(move || store.release(id)).await? {
        return Ok(AdminReply::Error {
            message: format!("{id}: not on hold"),
        });
    }
    tracing::info!("{id}: released from hold");
    q.schedule(id);
    Ok(AdminReply::Done {
        message: format!("{id}: released from hold"),
    })
}

/// postsuper -d.
async fn delete(q: &Arc<Qmgr>, id: QueueId) -> Result<AdminReply, QueueError> {
    let store = q.store.clone();
    if !blocking(move || store.remove(id)).await? {
        return Ok(not_queued(id));
    }
    tracing::info!("{id}: removed");
    Ok(AdminReply::Done {
        message: format!("{id}: removed"),
    })
}

/// postsuper -r, of one message or all: each requeued one is scheduled.
async fn requeue_now(q: &Arc<Qmgr>, only: Option<QueueId>) -> Result<AdminReply, QueueError> {
    let store = q.store.clone();
    let ids = blocking(move || requeue(&store, only)).await?;
    if let Some(id) = only
        && ids.is_empty()
    {
        return Ok(not_queued(id));
    }
    for &id in &ids {
        // An attempt running now would otherwise defer it again when it
        // ends.
        q.note_requeue(id);
        q.schedule(id);
    }
    Ok(AdminReply::Count {
        count: ids.len() as u64,
    })
}

/// postqueue -f and ETRN: deferred mail (or just `only`) becomes due now
/// and dead destinations are alive again; the number of messages made due.
pub async fn flush(q: &Arc<Qmgr>, only: Option<QueueId>) -> Result<usize, QueueError> {
    q.revive_destinations();
    q.note_flush(only);
    let store = q.store.clone();
    let flushed = blocking(move || flush_deferred(&store, only)).await;
    if flushed.is_ok() {
        q.rescan.notify_one();
    }
    flushed
}

fn not_queued(id: QueueId) -> AdminReply {
    AdminReply::Error {
        message: format!("{id}: no such message in the queue"),
    }
}

/// Deletes every message (postsuper -d ALL); the number deleted.
fn delete_all(store: &QueueStore) -> Result<AdminReply, QueueError> {
    let mut count = 0u64;
    for s in store.list()? {
        if store.remove(s.id)? {
            tracing::info!("{}: removed", s.id);
            count += 1;
        }
    }
    Ok(AdminReply::Count { count })
}

/// postsuper -r: the message (or every message but corrupt ones) becomes
/// active and due now, held ones included, with the deferral reasons of
/// the message and its recipients cleared. The IDs requeued.
fn requeue(store: &QueueStore, only: Option<QueueId>) -> Result<Vec<QueueId>, QueueError> {
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
async fn show(q: &Arc<Qmgr>, session: &mut IpcSession, id: QueueId) -> bool {
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
        Ok(None) => return session.reply(&not_queued(id)).await,
        Err(e) => {
            let message = format!("{id}: {e}");
            return session.reply(&AdminReply::Error { message }).await;
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
        summary: MessageSummary {
            id,
            state: m.state.queue_name(),
            size: env.size,
            arrival_unix: env.arrival_unix,
            sender: env.sender,
            reason,
            next_try_unix,
        },
        recipients: env
            .recipients
            .into_iter()
            .map(|r| {
                let (state, reason, dsn) = match r.state {
                    RcptState::Pending => (RecipientState::Pending, None, None),
                    RcptState::Sent { reply, .. } => (RecipientState::Sent, Some(reply), None),
                    RcptState::Bounced { reply, dsn, .. } => {
                        (RecipientState::Bounced, Some(reply), Some(dsn))
                    }
                    RcptState::Deferred { reason } | RcptState::DelayNotified { reason } => {
                        (RecipientState::Deferred, Some(reason), None)
                    }
                };
                RecipientInfo {
                    address: r.address,
                    orcpt: r.orcpt,
                    state,
                    reason,
                    dsn,
                }
            })
            .collect(),
        attempts: m.attempts,
        last_attempt_unix: m.last_attempt_unix,
        client: env.client,
        envid: env.envid,
        ret: env.ret,
    };
    let message = Box::new(info);
    if !session.reply(&AdminReply::Message { message }).await {
        return false;
    }
    for chunk in body.chunks(postern_ipc::BODY_CHUNK) {
        let data = chunk.to_vec();
        if !session.reply(&AdminReply::Body { data }).await {
            return false;
        }
    }
    session.reply(&AdminReply::End).await
}

/// Makes deferred mail due now, keeping its last reason for the listing.
fn flush_deferred(store: &QueueStore, only: Option<QueueId>) -> Result<usize, QueueError> {
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
/// [`AdminReply::Queue`] frames as it is read, then [`AdminReply::End`]; so
/// neither side ever holds more than a page, whatever the queue's length.
/// False when the connection broke.
async fn list(q: &Arc<Qmgr>, session: &mut IpcSession) -> bool {
    let mut after = None;
    let mut sent_any = false;
    loop {
        let store = q.store.clone();
        let page = blocking(move || list_page(&store, after)).await;
        let entries = match page {
            Ok(entries) => entries,
            Err(e) => {
                let message = e.to_string();
                return session.reply(&AdminReply::Error { message }).await;
            }
        };
        let Some(last) = entries.last() else {
            break;
        };
        after = Some(last.summary.id);
        let mut frame = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            bytes += entry_bytes(&entry);
            frame.push(entry);
            if bytes >= LIST_FRAME_BYTES {
                let messages = std::mem::take(&mut frame);
                bytes = 0;
                if !session.reply(&AdminReply::Queue { messages }).await {
                    return false;
                }
                sent_any = true;
            }
        }
        if !frame.is_empty() {
            if !session.reply(&AdminReply::Queue { messages: frame }).await {
                return false;
            }
            sent_any = true;
        }
    }
    // Every listing has at least one Queue frame, an empty queue an empty one.
    if !sent_any {
        let messages = Vec::new();
        if !session.reply(&AdminReply::Queue { messages }).await {
            return false;
        }
    }
    session.reply(&AdminReply::End).await
}

/// The text an entry carries, to keep frames under the limit.
fn entry_bytes(e: &QueueEntry) -> usize {
    let rcpts: usize = e
        .recipients
        .iter()
        .map(|(a, r)| a.len() + r.as_ref().map_or(0, String::len) + 8)
        .sum();
    64 + e.summary.sender.len() + e.summary.reason.as_ref().map_or(0, String::len) + rcpts
}

/// One page of the listing, with each recipient's last failure.
fn list_page(store: &QueueStore, after: Option<QueueId>) -> Result<Vec<QueueEntry>, QueueError> {
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
            summary: MessageSummary {
                id: s.id,
                state: s.state.queue_name(),
                size: s.size,
                arrival_unix: s.arrival_unix,
                sender: s.sender,
                reason: s.reason,
                next_try_unix,
            },
            recipients,
        });
    }
    Ok(messages)
}
