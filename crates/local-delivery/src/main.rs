//! NAME
//!   local-delivery - Postern local mail delivery
//!
//! SYNOPSIS
//!   local-delivery [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   local-delivery is Postern's local(8). It serves the Delivery protocol
//!   on its inherited socket (`private/local`): qmgr sends a request, the
//!   message body (in chunks, or as read-only descriptors of the queue's
//!   segment files) and an end mark; local-delivery spools the
//!   body to an unlinked file under `$queue_directory/tmp-local/`, delivers
//!   to each recipient, and answers with one result per recipient:
//!   `sent` (2.0.0, `delivered to mailbox`, `delivered to maildir`,
//!   `delivered to command: CMD`, `delivered to file: PATH`, `forwarded as
//!   ID`), `deferred` (4.X.X: a locked mailbox, a full disk, an I/O error,
//!   a command that exits 75) or `bounced` (5.X.X: an unknown user, a
//!   mailbox over its size limit, a forwarding loop). Relay is `local`.
//!
//!   Each recipient comes with the address class qmgr's router gave it
//!   (postern-routing; smtpd's RCPT checks use the same code). A
//!   recipient of the virtual mailbox class (a domain of
//!   virtual_mailbox_domains) is a virtual mailbox, as with Postfix's
//!   virtual(8):
//!   the full address (with, then without a recipient_delimiter
//!   extension), then `@domain`, is looked up in
//!   virtual_mailbox_maps; the result is a path under virtual_mailbox_base,
//!   a Maildir when it ends in `/`, else an mbox file. Virtual mailboxes
//!   are written as mail_owner, up to virtual_mailbox_limit bytes per file;
//!   an address not in the table bounces with 5.1.1 `unknown user:
//!   "user@domain"`.
//!
//!   Every other recipient is local: the domain is dropped and the local
//!   part lowercased. With a recipient_delimiter, `user+ext` is looked up
//!   in the aliases first as `user+ext`, then as `user`, and delivered to
//!   `user`; when only `user` matched, the extension is carried on to the
//!   addresses its alias or .forward names (`bob` becomes `bob+ext`), as
//!   propagate_unmatched_extensions says. A quoted local part
//!   (`"john doe"@...`) is unquoted first.
//!
//!   Aliases come from alias_maps, in aliases(5) format (`name: value`,
//!   comments, continuation lines). A value is a list separated by commas
//!   (double quotes protect commas and spaces) of: local names, expanded
//!   again; `user@domain`, the same when the domain is local (in
//!   mydestination, or this host's address literal, as the router decides),
//!   else forwarded; `|command`; `/file` (a Maildir when it ends in `/`);
//!   `:include:/path`, a file holding more of the same; and `\user`, that
//!   user's mailbox without further expansion. A name that appears in its
//!   own alias means its mailbox (`root: root, /var/log/mail-copy`).
//!   Expansion is recursive; an alias that leads back to itself is a loop
//!   and bounces with 5.4.6 when nothing else is left. Commands and files
//!   named in an alias run with the rights of the alias file's owner, or
//!   default_privs when root owns it. When an alias `name` has an
//!   `owner-name` entry too, everything its expansion writes or forwards
//!   carries the envelope sender `owner-name@$myorigin`, so that errors
//!   reach the list's owner (Postfix with expand_owner_alias = no).
//!
//!   A name without an alias must be a Unix account (else 5.1.1 `unknown
//!   user: "name"`; with fallback_transport set, the result is
//!   `fallback` instead, and qmgr sends the recipient to that transport).
//!   When the account has a `~/.forward` that it (or root)
//!   owns and that is not world-writable, its contents are expanded like an
//!   alias with the user's rights; otherwise mail goes to the mailbox:
//!   through mailbox_command when one is set (run like any command, as
//!   the user; `$EXTENSION` and the like are left to the shell), else to
//!   `~/$home_mailbox` (a Maildir when it ends in `/`, else an mbox file),
//!   or with an empty home_mailbox the mbox `$mail_spool_directory/USER`.
//!
//!   Forwarded mail (addresses in other domains) goes back into the queue
//!   through qmgr as a new message with the same sender, one message per
//!   recipient with all its remote addresses. It gets content_filter, but
//!   not non_smtpd_milters: as with Postfix, whose local(8) submits
//!   forwarded mail as internal mail that no milter sees
//!   (internal_mail_filter_classes has no class for it), the message passed smtpd_milters when
//!   it arrived, and a second pass would sign or score it twice.
//!
//!   Every copy written starts with `Return-Path: <sender>` and
//!   `Delivered-To: recipient`. A message that already carries
//!   `Delivered-To:` with the recipient's address has been here before:
//!   it bounces with 5.4.6 `mail forwarding loop for ADDRESS`.
//!
//!   mbox files get a `From sender  date` line, `>From ` quoting of body
//!   lines that begin with `From `, and an empty line at the end. They are
//!   locked with a `FILE.lock` dotlock (one older than stale_lock_time is
//!   left over from a crash and removed) and an fcntl lock, each tried
//!   deliver_lock_attempts times (else 4.2.0, deferred); after a failed
//!   write the file is truncated back to its old size. Symbolic links,
//!   FIFOs and files with more than one hard link are refused (5.2.0); a
//!   character device such as `/dev/null` in an alias is written as is.
//!   Maildir messages are written into
//!   `tmp/` under a unique name, fsynced and renamed into `new/`. Both
//!   fsync before success is reported.
//!
//!   Commands run as `/bin/sh -c command` with the message (after a `From `
//!   line) on standard input, in their own process group, with HOME, USER,
//!   LOGNAME, SHELL, SENDER, RECIPIENT, LOCAL, USER_PART, EXTENSION,
//!   DOMAIN and ORIGINAL_RECIPIENT set. Exit 0 is success; sendmail
//!   exit codes (sysexits.h) use Postfix's texts and status codes (75,
//!   EX_TEMPFAIL, defers); any other status bounces with `Command died with
//!   status N: "command". Command output: ...`; past command_time_limit the
//!   process group is killed and the message bounces.
//!
//!   When several destinations come from one recipient, any deferral
//!   defers the recipient (and the whole expansion is retried later, as
//!   with Postfix), else any bounce bounces it, else it is sent. The same
//!   mailbox, file or command is written once per request.
//!
//! DIFFERENCES FROM POSTFIX
//!   Where Postfix bounces a mailbox that cannot be created or written for
//!   reasons other than size (permissions, a missing directory), Postern
//!   defers with 4.2.0: such problems are the administrator's to fix and
//!   the mail should wait for it.
//!
//!   Only `~/.forward` is read (no forward_path). mailbox_command_maps,
//!   mailbox_transport, luser_relay, biff, expand_owner_alias and
//!   X-Original-To are not supported.
//!
//! SECURITY
//!   The service is privileged (it runs as root under a root master) so
//!   that it can write as each recipient. The daemon itself never changes
//!   its uid: every mailbox or file write runs in a child process, this
//!   binary started as `local-delivery --write-as` with the
//!   recipient's uid and gid (and no supplementary groups), reading one
//!   typed job and then the message on standard input and answering with
//!   one typed outcome (a helper that dies without one defers the
//!   recipient); commands are started the same way. A
//!   .forward or :include: file owned by another user is not trusted with
//!   that user's rights, and an :include: file is read only when the
//!   rights of the list naming it allow. Started by an ordinary user,
//!   everything runs as that user.
//!
//! STANDARDS
//!   RFC 5322 (message format); the mbox and Maildir conventions.
//!
//! DIAGNOSTICS
//!   The outcome of each recipient goes back to qmgr, which writes the
//!   Postfix `to=<ADDR>, relay=local, ..., status=sent (delivered to
//!   mailbox)` log line; local-delivery logs each outcome at debug level
//!   only. Problems with tables, users' files, helpers and forwarding are
//!   logged as warnings. Any internal failure defers the recipient with
//!   4.3.0; it never bounces mail.
//!
//! CONFIGURATION PARAMETERS
//!   Local addresses:
//!     mydestination, inet_interfaces, proxy_interfaces
//!                            local domains (for addresses aliases name)
//!     recipient_delimiter    separator of user and extension (`+`)
//!     alias_maps             aliases(5) tables (default hash:/etc/aliases)
//!     myorigin               domain of owner-name senders
//!     allow_mail_to_commands where `|command` may appear (alias, forward)
//!     allow_mail_to_files    where `/file` may appear (alias, forward)
//!     default_privs          rights of alias commands and files (nobody)
//!     propagate_unmatched_extensions
//!                            where `+ext` is carried on (alias, forward, include)
//!     fallback_transport     set: unknown users go back to qmgr for it
//!   Mailboxes:
//!     mailbox_command        command that delivers instead (procmail, an LDA)
//!     home_mailbox           mailbox in the home directory (`Maildir/`)
//!     mail_spool_directory   where mbox files live otherwise (/var/mail)
//!     mailbox_size_limit     largest mbox or Maildir file (0: no limit)
//!     command_time_limit     time limit for commands (1000s)
//!     deliver_lock_attempts  tries to lock an mbox file (20)
//!     deliver_lock_delay     pause between those tries (1s)
//!     stale_lock_time        age at which a dotlock is removed (500s)
//!   Virtual mailboxes:
//!     virtual_mailbox_maps, virtual_mailbox_base, virtual_mailbox_limit,
//!     mail_owner (virtual_mailbox_domains is qmgr's: the class says it)
//!   Forwarding:
//!     content_filter         the filter forwarded mail is queued for
//!     non_smtpd_milters      not applied to forwarded mail (see above)
//!   Process:
//!     queue_directory        tmp-local/ for spooled bodies, private/qmgr
//!     ipc_timeout            how long qmgr may take to send a body chunk
//!     header_size_limit      how much header is scanned for Delivered-To
//!     drain_timeout          how long open connections may finish after SIGTERM
//!
//! FILES
//!   $queue_directory/private/local   the service socket (from the master)
//!   $queue_directory/tmp-local/      spooled message bodies (unlinked)
//!   /etc/aliases                     the default alias table
//!   ~/.forward                       per-user forwarding
//!   /var/mail/USER                   the default mailbox
//!
//! SEE ALSO
//!   master(8), qmgr(8), aliases(5), postconf(5), Postfix local(8) and
//!   virtual(8)
//!
//! # Layout
//!
//! - `session`: the Delivery protocol on one connection, body spooling.
//! - `deliver`: one request: recipients, the system lookups, folding.
//! - `resolve`: alias, include and .forward expansion (pure).
//! - `mailbox`: mbox and Maildir writers; `copy`: the message transform.
//! - `helper`: the `--write-as` child that writes as the recipient.
//! - `command`: delivery to commands; `forward`: re-injection via qmgr.
//! - `outcome`: status, enhanced code and text of one delivery.

mod command;
mod copy;
mod deliver;
mod forward;
mod helper;
mod mailbox;
mod outcome;
mod resolve;
mod session;

use std::process::ExitCode;
use std::sync::Arc;

use postern_auth::ArcSealer;
use postern_routing::LocalDomains;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(helper::FLAG) {
        return helper::main(&args);
    }
    postern_daemon::run("local-delivery", |mut ctx| async move {
        let local = ctx
            .configured(|p, _| LocalDomains::from_params(p).map_err(|e| e.to_string()))
            .broken_when(Result::is_err);
        let sealer = ctx
            .configured(|p, _| {
                ArcSealer::from_params(p)
                    .map(|s| s.map(Arc::new))
                    .map_err(|e| e.to_string())
            })
            .broken_when(Result::is_err);
        let local = session::Local {
            agent: deliver::Agent::new(move || local.get(), move || sealer.get()),
            params: ctx.configured(|p, _| Arc::new(p.clone())),
        };
        postern_daemon::delivery::serve_delivery(&mut ctx, local).await;
        Ok(())
    })
}
