//! NAME
//!   smtpd - Postern SMTP server
//!
//! SYNOPSIS
//!   smtpd [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   smtpd accepts SMTP sessions on the sockets of its service (`smtp`,
//!   `submission`, `smtps`), inherited from the master, and hands the mail
//!   it accepts to qmgr over `$queue_directory/private/qmgr`. Many
//!   sessions run in one process; the master starts `process_limit` of
//!   them. Each session reads its parameters when it starts, so a reload
//!   (SIGHUP) applies to the next session and never to one in progress.
//!
//!   The session speaks SMTP and ESMTP (RFC 5321): HELO, EHLO, MAIL, RCPT,
//!   DATA, BDAT, RSET, NOOP, QUIT, VRFY, ETRN. EHLO announces PIPELINING,
//!   SIZE, VRFY (only when enabled), ETRN, ENHANCEDSTATUSCODES, 8BITMIME,
//!   DSN, SMTPUTF8 and CHUNKING. Replies and their enhanced status codes
//!   are Postfix's, word for word, so that scripts and people who know
//!   Postfix read them unchanged.
//!
//!   Commands may be pipelined: they are read as they come and the replies
//!   are written together once the client has nothing more buffered. A
//!   client that sends ahead where RFC 2920 says it must wait (after EHLO,
//!   DATA, VRFY, NOOP, ETRN, or at all after HELO) gets `554 5.5.0 Error:
//!   SMTP protocol synchronization` and is disconnected, as Postfix 3.9
//!   does with smtpd_forbid_unauth_pipelining = yes.
//!
//!   At RCPT the access policy (smtpd_relay_restrictions, then
//!   smtpd_recipient_restrictions; with smtpd_delay_reject = no also the
//!   client, HELO and sender lists at their own stage) decides; a refused
//!   recipient gets the policy's reply and is logged as Postfix does.
//!
//!   At the first DATA or BDAT, smtpd asks qmgr for a queue ID, then
//!   streams the message to it in chunks as it arrives: our Received
//!   header first, then the content, with Message-ID and Date added at the
//!   end of the header section when the client sent none. `250 2.0.0 Ok:
//!   queued as ID` is said only after qmgr reports the message on stable
//!   storage. A message that is too large, has too many Received headers
//!   (hopcount_limit), or that qmgr cannot keep, is read to its end and
//!   then refused; qmgr drops what it got.
//!
//!   The end of DATA is `<CR><LF>.<CR><LF>` only: a bare LF never ends the
//!   message, so a second message cannot be smuggled inside the first
//!   (CVE-2023-51764). What a bare LF means otherwise is
//!   smtpd_forbid_bare_newline.
//!
//! DIFFERENCES FROM POSTFIX
//!   VRFY is off unless `disable_vrfy_command = no` is set explicitly;
//!   Postfix answers VRFY by default. Address harvesting is the only use
//!   VRFY sees on the Internet.
//!
//!   No reverse DNS lookup is made: the client name is always `unknown`,
//!   whatever smtpd_peername_lookup says.
//!
//!   A command line longer than line_length_limit is refused with `500
//!   5.5.2 Error: line too long` instead of being cut and then obeyed.
//!
//!   Message-ID and Date are added when missing (Postfix's cleanup does
//!   this); beyond header_size_limit the header section is not examined
//!   and nothing is added. Dates are written in UTC.
//!
//!   The queue ID is assigned by qmgr at DATA or BDAT (Postfix opens its
//!   queue file at the first accepted RCPT), so `ID: client=NAME[ADDR]`
//!   is logged then.
//!
//!   STARTTLS and AUTH are not offered yet (`502`/`503` replies).
//!
//! SECURITY
//!   smtpd talks to anyone on the network. It runs as mail_owner, holds no
//!   mail of its own and keeps at most one chunk of a message in memory.
//!   Every read and write has the smtpd_timeout deadline; command lines are
//!   bounded by line_length_limit; a client making too many errors is
//!   slowed down and then disconnected.
//!
//! STANDARDS
//!   RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 1985 (ETRN), RFC 2034
//!   (enhanced status codes), RFC 2920 (PIPELINING), RFC 3030 (CHUNKING),
//!   RFC 3461 (DSN), RFC 5322 (message format), RFC 6152 (8BITMIME),
//!   RFC 6531 (SMTPUTF8).
//!
//! DIAGNOSTICS
//!   Log lines follow Postfix: `connect from NAME[ADDR]`, `ID:
//!   client=NAME[ADDR]`, `NOQUEUE: reject: RCPT from NAME[ADDR]: 554 5.7.1
//!   <rcpt>: Relay access denied; from=<s> to=<r> proto=ESMTP helo=<h>`,
//!   `timeout after CMD from ...`, `lost connection after CMD from ...`,
//!   `too many errors after CMD from ...`, and `disconnect from NAME[ADDR]
//!   ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5` (`ok/total` where some
//!   failed). Problems reaching qmgr are logged as warnings and the client
//!   gets `451 4.3.0 Error: queue file write error`.
//!
//! CONFIGURATION PARAMETERS
//!   Greeting and identity
//!     smtpd_banner          text after `220 ` ($myhostname ESMTP $mail_name)
//!     myhostname            in EHLO, Received, Message-ID and 421 replies
//!     mail_name             in the Received header (Postern)
//!     myorigin              domain added to unqualified envelope addresses
//!
//!   Resource and rate controls
//!     smtpd_timeout         limit for each read and write (300s)
//!     message_size_limit    largest message in bytes, 0 for none (10240000)
//!     smtpd_recipient_limit recipients per message (1000)
//!     smtpd_recipient_overshoot_limit  excess RCPTs before they count as
//!                           errors (1000)
//!     line_length_limit     longest command line (2048)
//!     header_size_limit     header bytes examined (102400)
//!     hopcount_limit        Received headers before `554 5.4.0` (50)
//!     smtpd_max_sessions    sessions per process (Postern; 1000)
//!     drain_timeout         how long sessions may finish after SIGTERM
//!
//!   Tarpit controls
//!     smtpd_soft_error_limit  errors before each reply is delayed (10)
//!     smtpd_error_sleep_time  that delay (1s)
//!     smtpd_hard_error_limit  errors before the session ends (20)
//!     smtpd_junk_command_limit  NOOP/RSET/VRFY/ETRN/HELO before they count
//!                           as errors (100)
//!
//!   Protocol controls
//!     smtpd_helo_required   MAIL and ETRN need HELO/EHLO first (no)
//!     smtpd_forbid_unauth_pipelining  disconnect clients that send ahead
//!                           when they must wait (yes)
//!     disable_vrfy_command  see DIFFERENCES (VRFY off unless set to no)
//!     smtpd_forbid_bare_newline  normalize (default): a bare LF ends a
//!                           line; reject: answer
//!                           smtpd_forbid_bare_newline_reject_code (521) and
//!                           disconnect; no: keep it as is
//!
//!   Access policy
//!     smtpd_delay_reject, smtpd_client_restrictions,
//!     smtpd_helo_restrictions, smtpd_sender_restrictions,
//!     smtpd_relay_restrictions, smtpd_recipient_restrictions,
//!     smtpd_data_restrictions, mynetworks, relay_domains, mydestination
//!
//! FILES
//!   $queue_directory/private/qmgr   where messages are handed over
//!
//! SEE ALSO
//!   master(8), qmgr(8), postconf(5)
//!
//! # Layout
//!
//! - `session`: the state machine, I/O, counting and logging.
//! - `ehlo`: HELO/EHLO, VRFY, ETRN. `mail`: MAIL, RCPT. `data`: DATA, BDAT.
//! - `message`: the outgoing content (Received, header scan, chunks).
//! - `queue`: the qmgr client behind the `Queue` trait.
//! - `settings`: the parameters of one session. `policy`: access policy.

mod data;
mod ehlo;
mod mail;
mod message;
mod policy;
mod queue;
mod session;
mod settings;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use postern_config::Config;
use postern_daemon::{Context, Peer, serve_sessions};

use crate::queue::Qmgr;
use crate::session::{Client, Session};
use crate::settings::Settings;

/// The settings built for one configuration (compared by pointer).
type Cached = (Arc<Config>, Arc<Settings>);

fn main() -> ExitCode {
    postern_daemon::run("smtpd", serve)
}

async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let params = ctx.params();
    let max = params.int("smtpd_max_sessions").max(1) as usize;
    let drain = params.time("drain_timeout");
    let watch = ctx.config_watch();
    let service = ctx.service.clone();
    // Settings (with the compiled policy) are built once per configuration,
    // not once per session.
    let cache: Arc<Mutex<Option<Cached>>> = Arc::new(Mutex::new(None));
    serve_sessions(&mut ctx, max, drain, move |stream, peer, shutdown| {
        let config = watch.borrow().clone();
        let settings = {
            let mut cached = cache.lock().unwrap_or_else(|e| e.into_inner());
            match cached.as_ref() {
                Some((c, s)) if Arc::ptr_eq(c, &config) => s.clone(),
                _ => {
                    let s = Arc::new(Settings::from_params(&config.params_for(&service)));
                    *cached = Some((config, s.clone()));
                    s
                }
            }
        };
        let client = match peer {
            Peer::Inet { remote, .. } => Client {
                name: "unknown".to_string(),
                addr: remote.ip().to_canonical(),
            },
            Peer::Unix => Client {
                name: "localhost".to_string(),
                addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            },
        };
        let queue = Qmgr::new(settings.qmgr_socket.clone());
        Session::new(stream, client, settings, queue, Some(shutdown)).run()
    })
    .await;
    Ok(())
}
