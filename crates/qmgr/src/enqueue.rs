//! The enqueueing socket, `private/qmgr` (protocol postern-qmgr): smtpd
//! and local-delivery hand messages over (Begin, body chunks, Commit), and
//! smtpd's ETRN asks for a flush.

use std::sync::Arc;
use std::time::SystemTime;

use postern_daemon::ipc::IpcSession;
use postern_daemon::{Shutdown, Stream};
use postern_ipc::Protocol;
use postern_ipc::qmgr::{self as proto, QmgrReply, QmgrRequest};
use postern_queue::{Envelope, Incoming, RcptState, Recipient};
use postern_routing::RoutingError;

use crate::admin::flush;
use crate::logfmt;
use crate::route;
use crate::scheduler::{Qmgr, on_disk};

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

/// Serves one submitter's connection until it closes, breaks the protocol
/// (a garbled frame drops only the unfinished message), or (between
/// messages) shutdown begins.
pub async fn session(q: Arc<Qmgr>, stream: Stream, shutdown: Shutdown) {
    let Some(mut session) = IpcSession::accept(stream, Protocol::Qmgr, shutdown).await else {
        return;
    };
    let mut rx = Receiving::Idle;
    loop {
        let idle = matches!(rx, Receiving::Idle);
        let Some(request) = session.next::<QmgrRequest>(idle).await else {
            return;
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
                        QmgrReply::Started { id }
                    }
                    Err(e) => {
                        tracing::warn!("cannot start a queue file: {e}");
                        QmgrReply::Failed {
                            reason: e.to_string(),
                        }
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
                continue;
            }
            QmgrRequest::Commit { envelope } => {
                commit(&q, std::mem::replace(&mut rx, Receiving::Idle), *envelope).await
            }
            QmgrRequest::Abort => {
                rx = Receiving::Idle;
                continue;
            }
            QmgrRequest::Flush => match flush(&q, None).await {
                Ok(count) => QmgrReply::Flushed {
                    count: count as u64,
                },
                Err(e) => QmgrReply::Failed {
                    reason: e.to_string(),
                },
            },
        };
        if !session.reply(&reply).await {
            return;
        }
    }
}

/// Makes the message durable and answers Queued, or Failed with nothing
/// kept.
async fn commit(q: &Arc<Qmgr>, rx: Receiving, envelope: proto::Envelope) -> QmgrReply {
    let (mut incoming, began) = match rx {
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
    // Addresses go into SMTP commands and mailbox separators as they are:
    // a line break in one would smuggle commands or messages. Submitters
    // check them; this is the last line.
    let controls = |a: &str| a.chars().any(char::is_control);
    if controls(&envelope.sender) || envelope.recipients.iter().any(|r| controls(&r.address)) {
        return QmgrReply::Failed {
            reason: "an envelope address contains a control character".into(),
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
    let mappings = !envelope.no_address_mappings;
    let (sender, recipients) = match rewrite(q, envelope.sender, recipients, mappings) {
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
        filter: envelope.filter,
    };
    let id = incoming.id();
    if envelope.hold {
        incoming.hold();
    }
    // The records go to sled here; the group committer answers once they
    // are on disk.
    let (done, committed) = on_disk();
    incoming.commit_then(stored, done);
    let committed = committed.await;
    match committed {
        Ok(id) if envelope.hold => QmgrReply::Queued { id },
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
    mappings: bool,
) -> Result<(String, Vec<Recipient>), String> {
    let router = q.router()?;
    let result = route::rewrite_envelope(&router, &sender, recipients, mappings)
        .map_err(|e| e.to_string())?;
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
