//! NAME
//!   qmgr - Postern queue manager
//!
//! SYNOPSIS
//!   qmgr [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   qmgr owns the mail queue: it is the only process that opens the
//!   store in `$queue_directory/queue` (sled, and the append-only segment
//!   files under `bodies/` that hold bodies over 32 KiB while they are in
//!   flight; a deferred or held body moves into sled). The master treats
//!   it as exclusive:
//!   a restart stops the old qmgr before the new one opens the queue (the
//!   new one waits for the old one's lock).
//!
//!   Sockets. qmgr listens on the sockets of its master.toml service, in
//!   the order of `listen = ["qmgr", "qmgr-admin", "public/showq"]`:
//!   `private/qmgr` for enqueueing (protocol postern-qmgr; Postfix's
//!   cleanup and qmgr sockets), `private/qmgr-admin` for qctl's queue
//!   operations (protocol postern-qmgr-admin; Postfix's showq, and what
//!   postsuper does to the queue files) and, optionally,
//!   `public/showq`, where any local user's mailq and sendmail -q are
//!   served: the listing for the users authorized_mailq_users admits,
//!   the flush for authorized_flush_users (root and mail_owner always),
//!   the user being the peer's uid as the kernel reports it
//!   (SO_PEERCRED); nothing else is served there. Each socket accepts
//!   only its protocol's hello, so neither kind of client can send the
//!   other's requests. A service that lists only the first socket (a
//!   configuration from before the split) still receives mail, with a
//!   warning at start that qctl cannot reach the queue.
//!
//!   Receiving. On `private/qmgr` smtpd and local-delivery hand over
//!   messages: Begin starts an incoming message, body chunks are written
//!   to the store as they arrive, and Commit is answered Queued only after
//!   envelope and body are on stable storage (concurrent commits share one
//!   disk sync), or Failed with nothing kept. A connection that closes or
//!   sends garbage loses only its unfinished message. smtpd's ETRN asks
//!   here for a flush (see below).
//!
//!   Address rewriting. Before the durable write qmgr does what Postfix's
//!   cleanup(8) does to the envelope: the sender goes through the
//!   canonical form (`user` gets `@$myorigin`), sender_canonical_maps and
//!   canonical_maps; each recipient through the canonical form,
//!   recipient_canonical_maps, canonical_maps, then virtual_alias_maps,
//!   where one address may become several (`@region.example
//!   @gov.example` rewrites a whole domain). A recipient whose address
//!   changed keeps the client's address as its ORCPT when the client gave
//!   none, so DSNs and the log (`orig_to=<...>`) still show it; duplicate
//!   results are dropped. A table that cannot be read answers Failed (the
//!   client hears 451) and keeps nothing. Notifications qmgr writes itself
//!   are rewritten the same way. A submitter may ask for none of the
//!   table lookups (receive_override_options = no_address_mappings in
//!   front of a content filter): the addresses then get only their
//!   canonical form, and the tables apply when the filter hands the mail
//!   back.
//!
//!   Hold and content filters. A message the submitter marks for hold (an
//!   access or header_checks HOLD, a milter's quarantine) is committed
//!   straight into the hold queue and waits for `qctl release`; it is
//!   never active, so a crash cannot let it out. A message with a content
//!   filter (content_filter, or a FILTER action) has every recipient
//!   routed to the filter's transport and next hop instead of its own
//!   route (an empty next hop means the recipient's domain), as
//!   FILTER_README describes; the recipients keep their envelope
//!   addresses.
//!
//!   Notices qmgr writes (non-delivery and delay notices to the sender,
//!   the "bounce" class; postmaster copies, "notify") go through
//!   non_smtpd_milters before they are queued when
//!   internal_mail_filter_classes names their class, as Postfix's bounce
//!   daemon sends them through cleanup's filters: a signing milter signs
//!   bounces too. A filter's refusal leaves the notice to be written again
//!   at the next attempt, a discard drops it, a quarantine holds it. Such
//!   a notice is then DKIM-signed when dkim_signing_table has a key for
//!   its From: address (MAILER-DAEMON@$myhostname), as smtpd signs mail
//!   from mynetworks.
//!
//!   Scheduling. At start (everything committed is scheduled again after a
//!   crash), after each commit, on the master's wakeups and every
//!   queue_run_delay, qmgr attempts the messages that are due: active ones
//!   and deferred ones whose next try has come. The pending recipients of
//!   a message are routed as Postfix's trivial-rewrite(8) does (the
//!   postern-routing crate): the address class (local: mydestination and
//!   this host's addresses; virtual alias; virtual mailbox; relay:
//!   relay_domains; default), its transport (local_transport,
//!   virtual_transport, relay_transport, default_transport) and next hop
//!   (the recipient domain, or relayhost for relay and default), then
//!   transport_maps overrides (`domain`, `.parent`, `transport:nexthop`,
//!   an empty transport keeping the class default, `[host]:port` without
//!   MX lookup). Recipients are grouped by (transport, next hop) and sent
//!   to the agent listening on `private/TRANSPORT` (so `smtp` and `relay`
//!   are both smtp-client services in master.toml, as in master.cf) in
//!   requests of at most default_destination_recipient_limit recipients,
//!   with default_process_limit requests in all.
//!
//!   Destinations. Each destination (transport, next hop) starts with
//!   initial_destination_concurrency parallel requests (slow start); each
//!   request that reached the destination adds one, up to
//!   default_destination_concurrency_limit, and each connection-level
//!   failure (the agent deferred every recipient with a 4.4.X network or
//!   routing status, as smtp-client does for a refused connection, a lost
//!   session or a DNS failure) takes one away, down to 1. After
//!   destination_concurrency_failed_cohort_limit such failures in a row at
//!   concurrency 1 the destination is dead (logged `smtp:example.com:
//!   destination is dead for Ns: REASON`): for minimal_backoff_time, or
//!   until `qctl flush`, its mail is deferred at once without asking the
//!   agent (`relay=none, ... status=deferred (delivery temporarily
//!   suspended: REASON)`), so an unreachable domain takes no delivery
//!   slots from the others. A request answered by an agent that cannot be
//!   reached counts neither way.
//!
//!   Delay warnings. With delay_warning_time set (0, the default, turns
//!   them off), a recipient still deferred when its message has been
//!   queued that long gets the sender one RFC 3464 notification (`Delayed
//!   Mail (still being retried)`, `Action: delayed`, the last reason, the
//!   returned headers only; logged `ID: sender delay notification:
//!   NEWID`), unless its NOTIFY excludes DELAY, and never for the null
//!   sender. The recipient's stored state remembers that it was warned, so
//!   later attempts and a restarted qmgr do not warn again.
//!
//!   Three transports need no agent: `error:TEXT` bounces (dsn 5.0.0, or
//!   a leading 5.X.X code in TEXT; an unknown user of a virtual alias
//!   domain gets 5.1.1), `retry:TEXT` defers (4.0.0), `discard:TEXT` is
//!   logged `status=sent (TEXT)`; all with `relay=none`.
//!
//!   The Router is built once per configuration and again after a reload
//!   (SIGHUP, `qctl reload`); its tables re-read their files when they
//!   change, so an edited transport table applies to the next delivery
//!   without a reload. A table whose file is missing fails only the
//!   lookups in it: mail whose recipients it must route is refused at
//!   enqueue (the client hears 451), and queued mail is deferred. A
//!   configuration the Router refuses (a table file with a syntax error)
//!   defers every delivery with 4.3.0 until it is fixed.
//!
//!   Fallback. When local-delivery answers `fallback` for a recipient (no
//!   such local user, and fallback_transport is set), qmgr routes it to
//!   fallback_transport (`smtp:[hub]`; no next hop: the recipient domain)
//!   and delivers it there in the same attempt.
//!
//!   Outcomes. Each recipient is logged as Postfix does (`to=<...>,
//!   relay=..., delay=..., delays=a/b/c/d, dsn=..., status=sent|deferred|
//!   bounced (...)`). A message with deferred recipients moves to the
//!   deferred queue with the reason and a next try after an exponential
//!   backoff (minimal_backoff_time doubling per attempt up to
//!   maximal_backoff_time). An agent that cannot be reached or breaks the
//!   exchange defers with 4.3.0, never bounces. A message whose recipients
//!   are all delivered or bounced is removed (`ID: removed`).
//!
//!   Bounces. Bounced recipients, and recipients still deferred after
//!   maximal_queue_lifetime (bounce_queue_lifetime for the null sender;
//!   logged `status=expired, returned to sender`), are reported to the
//!   sender in an RFC 3464 notification that qmgr writes and queues itself
//!   with the null sender (`ID: sender non-delivery notification: NEWID`),
//!   unless the recipient asked NOTIFY=NEVER. A failed message with the
//!   null sender is never bounced: 2bounce_notice_recipient gets a
//!   postmaster copy from double-bounce@$myorigin, and if that fails too it
//!   is discarded with a log line.
//!
//!   Queue operations for qctl, on `private/qmgr-admin`: the listing
//!   (mailq, read from the queue a page at a time and streamed in
//!   bounded frames), hold, release,
//!   delete (one message, or all: postsuper -d ALL, each logged `ID:
//!   removed`), flush (deferred mail becomes due now and
//!   dead destinations are alive again), requeue (one
//!   message or all, postsuper -r: active and due at once, held ones
//!   released, the deferral reasons of the message and its recipients
//!   cleared except for recipients already sent a delay warning, logged `ID: requeued`; an attempt running at that moment
//!   leaves the message active rather than deferred), and show (postcat
//!   -q: the envelope with each recipient's state and last reply or
//!   reason, then the message in chunks). Deleting a message whose
//!   delivery attempt is running drops the attempt's outcome.
//!
//!   Mail log. qmgr writes the queue lines of Postfix's format that
//!   pflogsumm reads: `ID: from=<...>, size=N, nrcpt=N (queue active)`,
//!   per recipient `ID: to=<...>, [orig_to=<...>, ]relay=..., delay=...,
//!   delays=a/b/c/d, dsn=X.Y.Z, status=sent|deferred|bounced (...)`, and
//!   `ID: removed`. Debian's pflogsumm 1.1.5 reads them with
//!   `--syslog-name=postern`, but only from lines whose timestamp has
//!   whole seconds (`Nov 23 16:11:27 host`), not the microsecond stamps
//!   maillog_file writes.
//!
//! SECURITY
//!   qmgr runs as mail_owner and talks only to local processes through
//!   sockets in the private directory. It does not interpret message
//!   content except to copy the headers into a notification.
//!
//! STANDARDS
//!   RFC 3461 (DSN: NOTIFY, ORCPT, RET, ENVID), RFC 3463 (enhanced status
//!   codes), RFC 3464 (delivery status notifications), RFC 5322 (message
//!   format of the notifications).
//!
//! DIAGNOSTICS
//!   Problems go to the mail log with `warning:`. A queue that cannot be
//!   opened (locked longer than the wait, unreadable) is fatal; the master
//!   restarts qmgr with backoff. A failed write answers the client Failed
//!   (it says 451 4.3.0) and keeps nothing; after a failed fdatasync the
//!   store can promise nothing more, so qmgr exits and the master starts
//!   one that reopens it. A client of the other protocol is refused at the
//!   hello (`wrong protocol: this socket speaks postern-qmgr, client asked
//!   for postern-qmgr-admin`); a garbled frame on either socket ends that
//!   connection only. Routing tables that cannot be opened (a missing
//!   transport_maps file) defer the mail and are tried again every 5
//!   seconds.
//!
//!   Differences from Postfix: no separate bounce daemon (qmgr writes the
//!   notifications; the returned message is cut to its headers above
//!   50000 bytes); no success notifications (NOTIFY=SUCCESS) yet. The
//!   listing is served by qmgr on a private socket, not by a showq daemon
//!   on a public one: the same socket holds, deletes and requeues (what
//!   postsuper does to the queue files), so `qctl list` needs mail_owner
//!   or root where Postfix's mailq is open to every user. The
//!   concurrency feedback is Postfix's default (+1 per success, -1 per
//!   failure) without its cohort arithmetic, a connection-level failure
//!   is recognised by the 4.4.X status of the reply, and delay warnings
//!   are tracked per recipient rather than per message. Address rewriting happens in
//!   qmgr at commit (there is no cleanup daemon), so header addresses are
//!   not rewritten, only the envelope. fallback_transport is carried out
//!   by qmgr on local-delivery's word rather than by local(8) itself.
//!   relocated_maps, address masquerading and luser_relay are not
//!   implemented (see postern-routing).
//!
//! CONFIGURATION PARAMETERS
//!   Queue and scheduling:
//!   queue_directory                  where the queue and sockets live
//!   sled_cache_capacity              page cache of the queue store
//!   queue_run_delay                  how often deferred mail is scanned
//!   minimal_backoff_time, maximal_backoff_time
//!                                    limits of the retry backoff
//!   initial_destination_concurrency  parallel requests to a new destination
//!   default_destination_concurrency_limit
//!                                    parallel requests per destination
//!   destination_concurrency_failed_cohort_limit
//!                                    failures at concurrency 1 before a
//!                                    destination is dead
//!   default_destination_recipient_limit
//!                                    recipients per delivery request
//!   default_process_limit            parallel requests in all
//!
//!   Address rewriting (at commit): myorigin, mydomain,
//!   append_at_myorigin, append_dot_mydomain, swap_bangpath,
//!   allow_percent_hack, canonical_maps, sender_canonical_maps,
//!   recipient_canonical_maps, virtual_alias_maps,
//!   virtual_alias_recursion_limit, virtual_alias_expansion_limit,
//!   propagate_unmatched_extensions, recipient_delimiter.
//!
//!   Routing (at delivery): mydestination, myhostname, inet_interfaces,
//!   proxy_interfaces, virtual_alias_domains, virtual_mailbox_domains,
//!   relay_domains, parent_domain_matches_subdomains, transport_maps,
//!   local_transport, virtual_transport, relay_transport,
//!   default_transport, relayhost, fallback_transport.
//!
//!   Bounces: maximal_queue_lifetime, bounce_queue_lifetime,
//!   2bounce_notice_recipient, myorigin, delay_warning_time,
//!   internal_mail_filter_classes (bounce, notify) with non_smtpd_milters
//!   and the milter_* settings, dkim_signing_table and dkim_key_table.
//!
//!   Process: drain_timeout (how long open connections may finish after
//!   SIGTERM).
//!
//! FILES
//!   $queue_directory/queue           the queue store (the master
//!                                    creates it for mail_owner)
//!   $queue_directory/queue/bodies    body segment files
//!   $queue_directory/private/qmgr    enqueueing (smtpd, local-delivery)
//!   $queue_directory/private/qmgr-admin
//!                                    queue operations (qctl); the
//!                                    private directory (0700, mail_owner)
//!                                    admits only mail_owner and root
//!   $queue_directory/public/showq    mailq and flush for any user
//!   $queue_directory/private/TRANSPORT
//!                                    delivery agents (local, smtp, relay,
//!                                    any transport master.toml defines)
//!
//! SEE ALSO
//!   master(8), smtpd(8), smtp-client(8), local-delivery(8), qctl(1)

mod admin;
mod agent;
mod bounce;
mod destination;
mod enqueue;
mod logfmt;
mod route;
mod scheduler;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use postern_daemon::Context;
use postern_queue::QueueStore;

use crate::scheduler::Qmgr;

/// How long a new qmgr waits for the previous one to let go of the queue.
const LOCK_WAIT: Duration = Duration::from_secs(60);
/// Submitters' connections served at once; more wait in the kernel
/// backlog.
const MAX_SESSIONS: usize = 4096;
/// qctl connections served at once, apart from the submitters' so that
/// neither kind can starve the other.
const MAX_ADMIN_SESSIONS: usize = 64;

fn main() -> ExitCode {
    postern_daemon::run("qmgr", |ctx| async move { serve(ctx).await })
}

/// Where the sled store lives: `$queue_directory/queue`, which the master
/// prepares for mail_owner; created here when qmgr runs without a master
/// that did (an unprivileged development setup).
fn store_directory(queue_directory: &Path) -> anyhow::Result<PathBuf> {
    let dir = queue_directory.join("queue");
    match std::fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
        Err(e) => Err(e).with_context(|| format!("create {}", dir.display())),
    }
}

async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    ctx.set_exclusive();
    let params = ctx.params();
    let dir = store_directory(&params.path("queue_directory"))?;
    let cache = params.size("sled_cache_capacity");
    let store =
        tokio::task::spawn_blocking(move || QueueStore::open_with_retry(&dir, cache, LOCK_WAIT))
            .await?
            .context("open the queue")?;
    let global = usize::try_from(params.int("default_process_limit")).unwrap_or(100);
    let q = Arc::new(Qmgr::new(store, &ctx, global));

    // Recovery: whatever was committed before is due again.
    q.scan().await;

    // The service's sockets, in master.toml's order: enqueueing, then
    // administration.
    // administration. A configuration from before the split has only the
    // first: mail still flows, and qctl's queue commands cannot connect.
    let mut listeners = std::mem::take(&mut ctx.listeners);
    let wanted = "listen = [\"qmgr\", \"qmgr-admin\", \"public/showq\"]";
    match listeners.len() {
        2 | 3 => {}
        1 => tracing::warn!(
            "service {} has no administration socket ({wanted}): qctl cannot reach the queue",
            ctx.service
        ),
        n => anyhow::bail!(
            "service {} has {n} sockets; qmgr listens on two or three, for enqueueing, \
             administration and users' queue listings ({wanted})",
            ctx.service
        ),
    }
    let mut admin_listeners = listeners.split_off(1.min(listeners.len()));
    let public_listeners = admin_listeners.split_off(1.min(admin_listeners.len()));
    ctx.listeners = listeners;
    let sessions = {
        let q_enqueue = q.clone();
        let mut sessions = postern_daemon::accept_sessions(
            &mut ctx,
            MAX_SESSIONS,
            move |stream, _peer, shutdown| enqueue::session(q_enqueue.clone(), stream, shutdown),
        );
        for (listeners, access) in [
            (admin_listeners, admin::Access::Full),
            (public_listeners, admin::Access::Public),
        ] {
            let q_admin = q.clone();
            sessions.accept_on(
                &ctx,
                listeners,
                MAX_ADMIN_SESSIONS,
                move |stream, _peer, shutdown| {
                    admin::session(q_admin.clone(), stream, shutdown, access)
                },
            );
        }
        sessions
    };
    ctx.ready();

    let mut shutdown = ctx.shutdown.clone();
    let mut master_wakeups = true;
    let run_delay = || {
        q.params()
            .time("queue_run_delay")
            .max(Duration::from_secs(1))
    };
    let mut next_run = tokio::time::Instant::now() + run_delay();
    loop {
        tokio::select! {
            _ = shutdown.triggered() => break,
            w = ctx.wakeup(), if master_wakeups => {
                if w.is_none() {
                    master_wakeups = false;
                    continue;
                }
            }
            _ = q.rescan.notified() => {}
            _ = q.broken.notified() => {
                anyhow::bail!("queue store failed; restarting to reopen it");
            }
            _ = tokio::time::sleep_until(next_run) => {
                next_run = tokio::time::Instant::now() + run_delay();
            }
        }
        q.scan().await;
    }

    // Stop accepting; let open connections (a message being received) and
    // running delivery attempts finish within drain_timeout. Whatever is
    // cut stays queued, and the next qmgr repeats it.
    let left = sessions.drain(q.params().time("drain_timeout")).await;
    q.stop(left).await;
    Ok(())
}
