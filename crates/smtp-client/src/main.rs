//! NAME
//!   smtp-client - Postern SMTP client
//!
//! SYNOPSIS
//!   smtp-client [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   smtp-client delivers mail for qmgr to remote SMTP servers, like
//!   Postfix's smtp(8). It serves the delivery protocol on `private/smtp`:
//!   each request names a sender, recipients and a next hop, its message
//!   body follows in chunks, and the answer is one outcome per recipient:
//!   sent, deferred or bounced, with an enhanced status code, the relay
//!   (`host[ip]:port`) and Postfix's wording of what happened.
//!
//!   The next hop is a `domain` or `domain:port`, for which MX records are
//!   looked up, or `[host]` / `[host]:port` / `[192.0.2.1]`, which skip the
//!   MX lookup. MX hosts are tried by preference, equal preferences in
//!   random order so that gateways share the load; a domain without MX is
//!   its own mail exchanger; a null MX (`0 .`, RFC 7505) bounces. When this
//!   host is among the exchangers, only better ones are used, and none
//!   means "mail for X loops back to myself".
//!
//!   Addresses are tried in order, at most smtp_mx_address_limit of them
//!   and at most smtp_mx_session_limit SMTP sessions. A refused connection,
//!   a 4xx (or, as smtp_skip_5xx_greeting does, 5xx) greeting or another
//!   temporary failure before the body was sent moves the recipients it
//!   affected on to the next address.
//!
//!   The conversation: EHLO $smtp_helo_name, HELO when EHLO is refused with
//!   5xx; MAIL FROM with SIZE when offered (a message over the server's
//!   SIZE bounces with 5.3.4), BODY=8BITMIME for 8-bit mail when offered,
//!   RET/ENVID and NOTIFY/ORCPT when DSN is offered; one RCPT TO per
//!   recipient, whose reply decides that recipient (2xx goes on, 4xx
//!   defers, 5xx bounces); DATA with the body dot-stuffed as it streams
//!   in from qmgr; the reply to the final dot decides every accepted
//!   recipient. With PIPELINING, MAIL, RCPT and DATA go in one write
//!   (in batches of 4 KB for many recipients).
//!
//!   Connection cache: a session that ended its transaction cleanly waits
//!   up to smtp_connection_cache_time_limit for the next request to the
//!   same next hop, which then skips DNS, connect, greeting and EHLO and
//!   sends RSET first (a failed RSET just opens a new session). Idle
//!   sessions past the limit get QUIT.
//!
//! SECURITY
//!   smtp-client talks to untrusted servers. It runs as mail_owner, holds
//!   no queue (qmgr owns it), reads replies through a bounded parser, and
//!   puts a deadline on every stage of the conversation. Body lines are
//!   dot-stuffed and bare CR/LF become CRLF, so nothing relayed can end a
//!   message early at the next hop (SMTP smuggling).
//!
//! STANDARDS
//!   RFC 5321 (SMTP), RFC 1870 (SIZE), RFC 2920 (PIPELINING),
//!   RFC 6152 (8BITMIME), RFC 3461 (DSN), RFC 6531 (SMTPUTF8),
//!   RFC 3463 (enhanced status codes), RFC 7505 (null MX).
//!
//! DIAGNOSTICS
//!   Outcomes carry Postfix's texts: `host h[ip] said: <reply> (in reply
//!   to RCPT TO command)`, `host h[ip] refused to talk to me: <reply>`,
//!   `connect to h[ip]:port: Connection refused` (4.4.1), `lost connection
//!   with h[ip] while ...` and `conversation with h[ip] timed out while
//!   ...` (4.4.2), `Host or domain name not found. Name service error for
//!   name=X type=MX: Host not found` (5.4.4; `..., try again` 4.4.3),
//!   `Domain X does not accept mail (nullMX)` (5.1.0, as Postfix),
//!   `mail for X loops back to myself` (5.4.6). An internal failure
//!   defers with 4.3.0, never bounces. Failures that lead to the next MX
//!   host are logged at info level; qmgr logs the to=<...> line.
//!
//! CONFIGURATION PARAMETERS
//!   Name service:
//!   dns_servers                 resolvers (`ip` or `ip:port`); empty: /etc/resolv.conf
//!                               (read at start; restart to change)
//!   inet_protocols              address families to use (all, ipv4, ipv6)
//!
//!   Next hops and sessions:
//!   smtp_mx_address_limit (5)   addresses tried per delivery; 0: no limit
//!   smtp_mx_session_limit (2)   SMTP sessions per delivery; 0: no limit
//!   smtp_bind_address           IPv4 source address of connections
//!   smtp_bind_address6          IPv6 source address of connections
//!   smtp_helo_name ($myhostname) the EHLO/HELO argument
//!   inet_interfaces, proxy_interfaces
//!                               this system's addresses, for loop detection
//!                               (addresses only; `all` lists the interfaces)
//!
//!   Connection cache:
//!   smtp_connection_cache_on_demand (yes)  keep sessions for reuse
//!   smtp_connection_cache_time_limit (2s)  how long an idle one waits
//!
//!   Timeouts:
//!   smtp_connect_timeout (30s)  TCP connection
//!   smtp_helo_timeout (300s)    greeting, EHLO/HELO
//!   smtp_mail_timeout (300s)    MAIL FROM
//!   smtp_rcpt_timeout (300s)    each RCPT TO
//!   smtp_data_init_timeout (120s) DATA
//!   smtp_data_xfer_timeout (180s) each write of the body
//!   smtp_data_done_timeout (600s) the reply to the final dot
//!   smtp_quit_timeout (300s)    QUIT
//!
//!   Process:
//!   drain_timeout               how long deliveries may finish after SIGTERM
//!
//! DIFFERENCES FROM POSTFIX
//!   No TLS or SASL yet. The body is streamed from qmgr, never re-read:
//!   once it went to one server, recipients that server deferred are not
//!   offered to the next MX host in the same delivery (qmgr retries them
//!   later), where Postfix re-reads its queue file and tries them there.
//!   8-bit mail to a server without 8BITMIME is sent unchanged (Postfix
//!   with `disable_mime_output_conversion = yes`). Host names in
//!   inet_interfaces are not resolved for loop detection. Connection cache
//!   reuse limits (smtp_connection_reuse_count_limit,
//!   smtp_connection_reuse_time_limit) are not implemented.
//!
//! FILES
//!   $queue_directory/private/smtp   the delivery socket (from the master)
//!
//! SEE ALSO
//!   qmgr(8), master(8), Postfix smtp(8), postconf(5)

mod body;
mod cache;
mod deliver;
mod nexthop;
mod outcome;
mod protocol;
mod resolve;
mod session;
mod settings;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use postern_daemon::{Shutdown, Stream, serve_sessions};
use postern_ipc::delivery::DeliveryMessage;
use postern_ipc::{Connection, Protocol};

use crate::cache::Cache;
use crate::resolve::Dns;
use crate::settings::Settings;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// qmgr connections per process; each carries one delivery at a time.
const MAX_SESSIONS: usize = 4096;

fn main() -> ExitCode {
    postern_daemon::run("smtp-client", |mut ctx| async move {
        let params = ctx.params();
        let dns = Dns::new(&settings::dns_servers(&params))?;
        let config = ctx.config_watch();
        let service = ctx.service.clone();
        let drain = params.time("drain_timeout");
        let dns = Arc::new(dns);
        // Parameters as of each request, so a reload applies.
        let settings = move || Settings::from_params(&config.borrow().params_for(&service));
        let cache = Cache::start(settings.clone());
        serve_sessions(
            &mut ctx,
            MAX_SESSIONS,
            drain,
            move |stream, _peer, shutdown| {
                let (dns, cache, settings) = (dns.clone(), cache.clone(), settings.clone());
                async move { serve_qmgr(stream, shutdown, &dns, &cache, settings).await }
            },
        )
        .await;
        Ok(())
    })
}

/// One qmgr connection: the hello, then requests one after another.
async fn serve_qmgr(
    stream: Stream,
    mut shutdown: Shutdown,
    dns: &Dns,
    cache: &Cache,
    settings: impl Fn() -> Settings,
) {
    let mut conn = Connection::new(stream);
    if let Err(e) = conn.server_hello(Protocol::Delivery, HELLO_TIMEOUT).await {
        tracing::warn!("{}: {e}", Protocol::Delivery);
        return;
    }
    loop {
        // Between requests a stop is immediate; a delivery in progress
        // runs to its end (within drain_timeout).
        let frame = tokio::select! {
            f = conn.recv::<DeliveryMessage>() => f,
            _ = shutdown.triggered() => return,
        };
        let req = match frame {
            Ok(Some(DeliveryMessage::Request(req))) => req,
            Ok(None) => return,
            Ok(Some(_)) => {
                tracing::warn!("{}: body frame without a request", Protocol::Delivery);
                return;
            }
            Err(e) => {
                tracing::warn!("{}: {e}", Protocol::Delivery);
                return;
            }
        };
        let reply = match deliver::deliver(dns, cache, &settings(), &req, &mut conn).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::warn!("{}: {e}", req.queue_id);
                return;
            }
        };
        if let Err(e) = conn.send(&reply).await {
            tracing::warn!("{}: sending the delivery reply: {e}", req.queue_id);
            return;
        }
    }
}
