//! NAME
//!   pickup - Postern local mail pickup
//!
//! SYNOPSIS
//!   pickup [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   pickup queues the messages that sendmail(1) leaves in
//!   $queue_directory/maildrop/, as Postfix's pickup(8) with cleanup(8)
//!   behind it. It looks when it starts, when sendmail connects to
//!   public/pickup, on the master's wakeups (master.toml `wakeup`) and
//!   every minute; files left while the master was stopped are queued
//!   when it starts.
//!
//!   The submitting user is the file's owner, which the kernel sets:
//!   nothing in the file says who wrote it. A user not in
//!   authorized_submit_users (sendmail refuses them first) has the file
//!   removed with a warning. Files that are not what sendmail writes are
//!   never queued: a symbolic or hard link, a device, a file over
//!   message_size_limit or one left incomplete for a day is removed; one
//!   that does not decode goes to $queue_directory/corrupt/.
//!
//!   For each message, in order:
//!   - the envelope sender is `-f`'s, else the owner's login name (qmgr
//!     appends @$myorigin, and applies canonical maps and virtual aliases
//!     at commit, as for mail from SMTP);
//!   - Authentication-Results fields claiming our authserv-id
//!     (myhostname) are removed: a local user cannot vouch for a message;
//!   - `Received: by $myhostname ($mail_name, from userid UID) id ID;
//!     date` goes on top; Bcc, Resent-Bcc, Content-Length and Return-Path
//!     are removed; Message-Id:, Date: and From: (`Full Name <sender>`,
//!     the name from -F, NAME or the passwd file) are added when missing;
//!   - header_checks, mime_header_checks, nested_header_checks and
//!     body_checks apply (unless receive_override_options has
//!     no_header_body_checks), as cleanup applies them to local mail: a
//!     DISCARD drops it, HOLD and REJECT put it on hold (there is nobody
//!     to refuse it to), FILTER, REDIRECT and BCC change its route;
//!   - non_smtpd_milters judge it (unless receive_override_options has
//!     no_milters), in an emulated SMTP session from localhost: a discard
//!     drops it, a quarantine and a refusal put it on hold (the user has
//!     gone; the administrator decides), a tempfail leaves the file to be
//!     tried again;
//!   - it is DKIM-signed when dkim_signing_table has a key for its From:
//!     address, as smtpd signs mail from mynetworks;
//!   - content_filter applies, as for mail from SMTP.
//!
//!   The file is removed once qmgr has the message on disk. When qmgr
//!   cannot be reached, the files wait for the next look.
//!
//!   `sendmail -bv` files are not delivered: pickup mails the sender a
//!   report of where each recipient would go (the routing decision:
//!   transport, next hop, the address as delivered).
//!
//! LOGGING
//!   `ID: uid=UID from=<sender>` for each message queued, as Postfix's
//!   pickup; `warning: maildrop/NAME: REASON` for each file removed or
//!   moved to corrupt/.
//!
//! CONFIGURATION PARAMETERS
//!   queue_directory            where maildrop/ and corrupt/ are
//!   authorized_submit_users    who may submit (static:anyone)
//!   message_size_limit         the largest file accepted
//!   myhostname, mail_name      in the Received header and Message-Id
//!   non_smtpd_milters          and the milter_* parameters
//!   receive_override_options   no_milters, no_address_mappings,
//!                              no_header_body_checks
//!   header_checks, mime_header_checks, nested_header_checks, body_checks
//!   content_filter             after-queue filtering
//!   dkim_signing_table, dkim_key_table
//!
//! FILES
//!   $queue_directory/maildrop/       files from sendmail (mode 3733:
//!                                    anyone may add, nobody else may list)
//!   $queue_directory/public/pickup   the trigger socket
//!   $queue_directory/corrupt/        files that did not decode
//!
//! SEE ALSO
//!   sendmail(1), qmgr(8), master(8), pickup(8) and cleanup(8) in Postfix

mod cleanup;
mod maildrop;
mod verify;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use postern_config::{Params, ReceiveOverrides};
use postern_content::Verdict;
use postern_daemon::enqueue::Enqueue;
use postern_ipc::qmgr::{Envelope, EnvelopeRecipient};
use postern_milter::nonsmtp::{self, Judgement, Submission as Judged};
use postern_milter::settings::{MilterList, MilterSettings};
use tokio::sync::Notify;

use crate::maildrop::{Dropped, Entry};

/// How often pickup looks without being asked, as Postfix's pickup
/// service wakes every 60 seconds.
const LOOK_INTERVAL: Duration = Duration::from_secs(60);
/// The least time between two looks.
const LOOK_PAUSE: Duration = Duration::from_millis(100);
/// Each step with qmgr (a commit waits for the disk).
const QMGR_TIMEOUT: Duration = Duration::from_secs(100);
/// The envelope frame may add this much to message_size_limit.
const ENVELOPE_ROOM: u64 = postern_ipc::MAX_FRAME as u64 + 4;

fn main() -> ExitCode {
    postern_daemon::run("pickup", |mut ctx| async move {
        let look = Arc::new(Notify::new());
        let trigger = look.clone();
        // A connection to public/pickup only says "look now".
        let sessions = postern_daemon::accept_sessions(&mut ctx, 64, move |stream, _, _| {
            let trigger = trigger.clone();
            async move {
                drop(stream);
                trigger.notify_one();
            }
        });
        ctx.ready();
        let mut shutdown = ctx.shutdown.clone();
        let mut master_wakeups = true;
        let mut unremovable = HashSet::new();
        loop {
            look_once(&ctx.params(), &shutdown, &mut unremovable).await;
            // Any user may trigger a look: at most a few a second.
            tokio::time::sleep(LOOK_PAUSE).await;
            tokio::select! {
                _ = shutdown.triggered() => break,
                _ = look.notified() => {}
                w = ctx.wakeup(), if master_wakeups => master_wakeups = w.is_some(),
                _ = tokio::time::sleep(LOOK_INTERVAL) => {}
            }
        }
        sessions.drain(ctx.params().time("drain_timeout")).await;
        Ok(())
    })
}

/// Queues every ready file; stops early at shutdown or when qmgr cannot
/// be reached (the rest waits for the next look). A message that cannot
/// be queued now (a milter's tempfail, qmgr's refusal) waits without
/// holding up the others. `unremovable` holds the files queued that could
/// not be removed: they are not queued again.
async fn look_once(
    params: &Params,
    shutdown: &postern_daemon::Shutdown,
    unremovable: &mut HashSet<PathBuf>,
) {
    let queue_directory = params.path("queue_directory");
    let dir = queue_directory.join(postern_ipc::maildrop::DIR);
    let corrupt = queue_directory.join("corrupt");
    let names = match maildrop::list(&dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", dir.display());
            return;
        }
    };
    let limit = params.size("message_size_limit");
    let max_size = if limit == 0 {
        maildrop::HARD_LIMIT
    } else {
        limit + ENVELOPE_ROOM
    };
    for path in names {
        if shutdown.is_triggered() {
            return;
        }
        if unremovable.contains(&path) {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let entry = {
            let (path, corrupt) = (path.clone(), corrupt.clone());
            tokio::task::spawn_blocking(move || maildrop::read(&path, max_size, &corrupt))
                .await
                .unwrap_or(Entry::NotYet)
        };
        match entry {
            Entry::NotYet => {}
            Entry::Removed(why) => tracing::warn!("maildrop/{name}: removed: {why}"),
            Entry::Corrupt(why) => tracing::warn!("maildrop/{name}: {why}"),
            Entry::Unreadable(why) => tracing::warn!("maildrop/{name}: {why}; left in place"),
            Entry::Ready(dropped) => match pick_up(params, &dropped, &corrupt).await {
                Ok(()) => {
                    if let Err(e) = maildrop::done(&dropped.path) {
                        tracing::warn!("maildrop/{name}: queued, but cannot remove it: {e}");
                        unremovable.insert(dropped.path.clone());
                    }
                }
                Err(Later::Skip(why)) => {
                    tracing::warn!("maildrop/{name}: {why}; trying again later");
                }
                Err(Later::Stop(why)) => {
                    tracing::warn!("maildrop/{name}: {why}; trying again later");
                    return;
                }
            },
        }
    }
}

/// A reason to leave a file for the next look.
enum Later {
    /// This message cannot be queued now (a milter's tempfail, qmgr's
    /// refusal, a table that cannot be read): the others go on.
    Skip(String),
    /// Nothing can be queued now (qmgr cannot be reached): the look ends.
    Stop(String),
}

/// Queues one submission; Ok when its file is to be removed (queued, or
/// dropped with a log line).
async fn pick_up(params: &Params, d: &Dropped, corrupt: &Path) -> Result<(), Later> {
    let name = d
        .path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let Some(user) = nix::unistd::User::from_uid(d.uid.into()).ok().flatten() else {
        let why = format!("uid={}: no login name for this user ID", d.uid);
        if let Entry::Corrupt(w) | Entry::Removed(w) =
            maildrop::move_to_corrupt(&d.path, corrupt, &why)
        {
            tracing::warn!("maildrop/{name}: {w}");
        }
        return Ok(());
    };
    match params.user_allowed("authorized_submit_users", &user.name) {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                "maildrop/{name}: uid={}: User {}({}) is not allowed to submit mail; removed",
                d.uid,
                user.name,
                d.uid
            );
            return Ok(());
        }
        Err(e) => return Err(Later::Skip(format!("authorized_submit_users: {e}"))),
    }
    let sender = d.submission.sender.clone().unwrap_or(user.name.clone());
    if d.submission.verify {
        return verify::report(params, d, &sender).await;
    }
    let (mut queue, id) = begin(params).await?;
    let id = id.to_string();
    let hostname = params.get("myhostname");
    let qualified = qualify(&sender, params);
    let date = now_rfc5322();
    // As Postfix: the passwd file's full name when -F and NAME gave none.
    let gecos = user
        .gecos
        .to_str()
        .ok()
        .and_then(|g| g.split(',').next())
        .map(str::trim)
        .filter(|g| !g.is_empty() && !g.chars().any(char::is_control))
        .map(str::to_string);
    let content = postern_auth::remove_our_auth_results(&d.content, &hostname);
    let content = cleanup::clean(
        &content,
        &cleanup::Local {
            queue_id: &id,
            hostname: &hostname,
            mail_name: &params.get("mail_name"),
            uid: d.uid,
            date: &date,
            sender: &qualified,
            full_name: d.submission.full_name.as_deref().or(gecos.as_deref()),
        },
    );
    let overrides = ReceiveOverrides::from_params(params);
    let mut filter = params.filter("content_filter");
    let mut recipients = d.submission.recipients.clone();
    let mut hold = false;
    let content = if overrides.no_header_body_checks {
        content
    } else {
        let checks = postern_content::ContentChecks::from_params(params)
            .map_err(|e| Later::Skip(format!("header/body checks: {e}")))?;
        match checks {
            None => content,
            Some(checks) => {
                let log = postern_content::LogContext {
                    queue_id: id.clone(),
                    client: "local".into(),
                    sender: Some(sender.clone()),
                    recipient: recipients.last().map(|r| r.address.clone()),
                    ..Default::default()
                };
                let mut inspector = postern_content::Inspector::new(&checks, log);
                let mut kept = Vec::with_capacity(content.len());
                inspector.push(&content, &mut kept);
                let outcome = inspector.finish(&mut kept);
                match outcome.verdict {
                    Verdict::Accept => {}
                    Verdict::Discard { .. } => {
                        return Ok(());
                    }
                    // The user has gone and cannot be told of a refusal:
                    // the administrator decides (logged by the checks).
                    Verdict::Hold { .. } | Verdict::Reject { .. } => hold = true,
                }
                filter = outcome.filter.or(filter);
                if let Some(to) = outcome.redirect {
                    recipients = vec![EnvelopeRecipient {
                        address: to,
                        ..Default::default()
                    }];
                }
                recipients.extend(outcome.bcc.into_iter().map(|address| EnvelopeRecipient {
                    address,
                    notify: Some(postern_envelope::Notify::NEVER),
                    orcpt: None,
                }));
                kept
            }
        }
    };
    let (content, sender, envelope_recipients, milter_hold) = if overrides.no_milters {
        (content, sender, recipients, false)
    } else {
        match judge(params, &id, &sender, &recipients, content).await? {
            Some(judged) => judged,
            None => {
                // Discarded by a milter (logged by it): as if delivered.
                return Ok(());
            }
        }
    };
    let content = postern_auth::sign_or_warn(params, content, &id);
    queue.body(&content).await.map_err(Later::Skip)?;
    let body_8bit = content.iter().any(|&b| b >= 0x80);
    let smtputf8 = !sender.is_ascii() || envelope_recipients.iter().any(|r| !r.address.is_ascii());
    let envelope = Envelope {
        sender: sender.clone(),
        recipients: envelope_recipients,
        client: None,
        envid: d.submission.envid.clone(),
        ret: d.submission.ret,
        smtputf8,
        body_8bit,
        filter,
        hold: hold || milter_hold,
        no_address_mappings: overrides.no_address_mappings,
    };
    let queued = queue.commit(envelope).await.map_err(Later::Skip)?;
    tracing::info!("{queued}: uid={} from=<{sender}>", d.uid);
    Ok(())
}

/// Connects to qmgr and begins a message: a qmgr that cannot be reached
/// ends the look.
async fn begin(params: &Params) -> Result<(Enqueue, postern_envelope::QueueId), Later> {
    let qmgr = params
        .path("queue_directory")
        .join(postern_ipc::qmgr::SOCKET);
    Enqueue::begin(&qmgr, QMGR_TIMEOUT)
        .await
        .map_err(Later::Stop)
}

/// The time now as a Date: header writes it.
fn now_rfc5322() -> String {
    postern_daemon::date::Tm::local(postern_daemon::date::unix_now()).rfc5322()
}

/// `user` gets `@$myorigin` for the From: header, as qmgr qualifies the
/// envelope (append_at_myorigin).
fn qualify(sender: &str, params: &Params) -> String {
    let myorigin = params.get("myorigin");
    if sender.is_empty()
        || sender.contains('@')
        || myorigin.is_empty()
        || !params.bool("append_at_myorigin")
    {
        sender.to_string()
    } else {
        format!("{sender}@{myorigin}")
    }
}

/// What the milters left of a message: content, sender, recipients,
/// hold.
type Judged_ = (Vec<u8>, String, Vec<EnvelopeRecipient>, bool);

/// non_smtpd_milters on the message (none set: as it is). Recipients the
/// filters keep keep their DSN parameters; those they add have none.
async fn judge(
    params: &Params,
    id: &str,
    sender: &str,
    recipients: &[EnvelopeRecipient],
    content: Vec<u8>,
) -> Result<Option<Judged_>, Later> {
    let settings = match MilterSettings::from_params(params, MilterList::NonSmtpd) {
        Ok(s) if !s.milters.is_empty() => s,
        Ok(_) => {
            return Ok(Some((
                content,
                sender.to_string(),
                recipients.to_vec(),
                false,
            )));
        }
        Err(e) => return Err(Later::Skip(format!("non_smtpd_milters: {e}"))),
    };
    let addresses: Vec<String> = recipients.iter().map(|r| r.address.clone()).collect();
    let hostname = params.get("myhostname");
    let submission = Judged {
        queue_id: id,
        hostname: &hostname,
        sender,
        recipients: &addresses,
        content: &content,
    };
    match nonsmtp::judge(&settings, &submission).await {
        Judgement::Accept {
            content,
            sender,
            recipients: now,
            hold,
        } => {
            let kept: Vec<EnvelopeRecipient> = now
                .into_iter()
                .map(|address| {
                    recipients
                        .iter()
                        .find(|r| r.address == address)
                        .cloned()
                        .unwrap_or(EnvelopeRecipient {
                            address,
                            ..Default::default()
                        })
                })
                .collect();
            if kept.is_empty() {
                tracing::info!("{id}: discarded: the milters removed every recipient");
                return Ok(None);
            }
            Ok(Some((content, sender, kept, hold.is_some())))
        }
        Judgement::Discard => Ok(None),
        Judgement::Refuse(reply) if reply.is_transient() => {
            Err(Later::Skip(format!("milter: {reply}")))
        }
        Judgement::Refuse(reply) => {
            // The submitter is gone and cannot be told: the message waits
            // on hold for the administrator.
            tracing::warn!("{id}: held: refused by a milter: {reply}");
            Ok(Some((
                content,
                sender.to_string(),
                recipients.to_vec(),
                true,
            )))
        }
    }
}
