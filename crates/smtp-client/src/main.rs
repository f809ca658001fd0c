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
//!   body follows in chunks (or, for a body the queue keeps in segment
//!   files, as read-only descriptors of them, which smtp-client reads
//!   itself), and the answer is one outcome per recipient:
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
//!   same next hop, which then skips DNS, connect, greeting, EHLO, STARTTLS
//!   and AUTH and sends RSET first (a failed RSET just opens a new
//!   session). A cached TLS session stays TLS; a plaintext one is not used
//!   when the TLS level requires TLS. Idle sessions past the limit get QUIT.
//!
//! TLS
//!   After EHLO, when the server offers STARTTLS and smtp_tls_security_level
//!   is not `none`, smtp-client sends STARTTLS, does the TLS handshake
//!   (rustls, TLS 1.2 or 1.3) and sends EHLO again; what the server
//!   offered before TLS is forgotten, and so is anything it sent after its
//!   220 (the STARTTLS injection attack). The server name asked for (SNI)
//!   and, at `verify`, the name its certificate must carry is the host
//!   connected to: the MX host, or the host of a `[host]` next hop; an
//!   address literal (`[192.0.2.1]`) sends no SNI.
//!
//!   none      no TLS, even when offered.
//!   may       TLS when offered, the certificate not checked; plaintext
//!             when STARTTLS is not offered or is refused. When the
//!             handshake fails, the same server is tried once more over a
//!             new plaintext connection, as Postfix does, unless a SASL
//!             password exists for it.
//!   encrypt   TLS required, the certificate not checked. No STARTTLS:
//!             4.7.4 `TLS is required, but was not offered by host h[ip]`;
//!             STARTTLS refused: `TLS is required, but host h[ip] refused
//!             to start TLS: <reply>`; a failed handshake: 4.7.5 `Cannot
//!             start TLS: handshake failure`.
//!   verify    as encrypt, and the certificate chain must lead to a root in
//!             smtp_tls_CAfile or smtp_tls_CApath (4.7.5 `Server
//!             certificate not trusted`) and
//!             name the host (4.7.5 `Server certificate not verified`).
//!             `secure` is taken as `verify`.
//!
//!   These failures are failures of one server: the next MX host is tried.
//!   A session is logged as Postfix logs it: `Untrusted TLS connection
//!   established to h[ip]:port: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
//!   (256/256 bits)` (`Verified` at level verify). TLS sessions are
//!   resumed from an in-process cache shared by every delivery of the
//!   process, kept as long as the TLS parameters do not change.
//!
//! SASL AUTHENTICATION
//!   With smtp_sasl_auth_enable = yes, a server that offers AUTH is logged
//!   in to when smtp_sasl_password_maps has an entry for it, `key
//!   user:password`, the keys tried in order: `[host]:port` and `[host]`
//!   for a `[host]` next hop, the name of the host connected to, then
//!   `domain:port` and `domain` for an MX next hop. No entry: no AUTH, as
//!   Postfix's "talk to each other like strangers".
//!
//!   Mechanisms are PLAIN, else LOGIN, among those offered and allowed by
//!   smtp_sasl_mechanism_filter. Both reveal the password to anyone who
//!   can read the connection, so `noplaintext` in
//!   smtp_sasl_security_options (the default, `noplaintext, noanonymous`)
//!   forbids them without TLS: a plaintext relay host needs
//!   `smtp_sasl_security_options = noanonymous`. Over TLS
//!   smtp_sasl_tls_security_options applies (see DIFFERENCES).
//!
//!   With an entry, authentication is taken to be required: no usable
//!   mechanism defers with 4.7.0 `SASL authentication failed: server h[ip]
//!   offered no compatible authentication mechanisms for this type of
//!   connection security`, and a refusal defers with `SASL authentication
//!   failed; server h[ip] said: 535 5.7.8 ...` (a 5xx is deferred as 4xx,
//!   as Postfix's default smtp_sasl_auth_soft_bounce = yes does; 4.7.0 when
//!   the server gave no enhanced status code). Passwords are never logged.
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
//!   RFC 3463 (enhanced status codes), RFC 7505 (null MX),
//!   RFC 3207 (STARTTLS), RFC 6066 (SNI), RFC 4954 (AUTH),
//!   RFC 4616 (PLAIN).
//!
//! DIAGNOSTICS
//!   Outcomes carry Postfix's texts: `host h[ip] said: <reply> (in reply
//!   to RCPT TO command)`, `host h[ip] refused to talk to me: <reply>`,
//!   `connect to h[ip]:port: Connection refused` (4.4.1), `lost connection
//!   with h[ip] while ...` and `conversation with h[ip] timed out while
//!   ...` (4.4.2), `Host or domain name not found. Name service error for
//!   name=X type=MX: Host not found` (5.4.4; `..., try again` 4.4.3),
//!   `Domain X does not accept mail (nullMX)` (5.1.0, as Postfix),
//!   `mail for X loops back to myself` (5.4.6); the TLS and SASL texts
//!   above. An internal failure
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
//!                               (addresses only; `all` lists the interfaces):
//!                               postern-routing's list, the one that makes
//!                               address literals local
//!
//!   Connection cache:
//!   smtp_connection_cache_on_demand (yes)  keep sessions for reuse
//!   smtp_connection_cache_time_limit (2s)  how long an idle one waits
//!
//!   TLS:
//!   smtp_tls_security_level (empty: none)  none, may, encrypt, verify
//!   smtp_tls_CAfile             trusted roots for verify (PEM)
//!   smtp_tls_CApath             a directory of them (every file in it,
//!                               as /etc/ssl/certs), with or beside CAfile
//!   smtp_tls_protocols (>=TLSv1)          versions at may
//!   smtp_tls_mandatory_protocols (>=TLSv1) versions at encrypt, verify
//!                               (only TLSv1.2 and TLSv1.3 exist here)
//!   smtp_starttls_timeout (300s) STARTTLS reply and the handshake
//!   smtp_tls_loglevel (1)       1: log the summary of each handshake;
//!                               0: do not (2 to 4 are refused)
//!
//!   SASL authentication:
//!   smtp_sasl_auth_enable (no)  log in where a password is known
//!   smtp_sasl_password_maps     `key user:password` tables
//!   smtp_sasl_mechanism_filter  mechanisms that may be used; empty: any
//!   smtp_sasl_security_options (noplaintext, noanonymous)  without TLS
//!   smtp_sasl_tls_security_options (noanonymous)  over TLS
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
//!   ipc_timeout (3600s)         how long qmgr may take to send a body chunk
//!
//! DIFFERENCES FROM POSTFIX
//!   TLS: SNI is sent (the host name), as Postfix does with
//!   `smtp_tls_servername = hostname`; Postfix's default sends none.
//!   Per-destination policy (smtp_tls_policy_maps), DANE, fingerprint
//!   levels and client certificates are not implemented.
//!   At may and encrypt the log says `Untrusted` even for a certificate a
//!   CA file would trust (the chain is not examined there). TLS sessions
//!   are resumed from the process's own cache, not from tlsmgr (rustls
//!   cannot export a client session), and a TLS session stays in the
//!   connection cache, where Postfix does not cache TLS connections.
//!   An unknown TLS level is refused at load; an unusable TLS file (an
//!   unreadable CA file) is logged and defers mail that requires TLS;
//!   Postfix refuses to start.
//!   SASL: only PLAIN and LOGIN (no Cyrus library); the default of
//!   smtp_sasl_tls_security_options is `noanonymous`, so plaintext
//!   mechanisms are allowed over TLS (Postfix's default applies
//!   `noplaintext` there too and finds no mechanism); sender-dependent authentication
//!   and the 535 failure cache are not implemented.
//!   The body is streamed from qmgr, never re-read:
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

mod cache;
mod deliver;
mod nexthop;
mod outcome;
mod protocol;
mod resolve;
mod sasl;
mod session;
mod settings;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;

use postern_daemon::Configured;
use postern_daemon::Stream;
use postern_daemon::delivery::{BodyError, BodySource, DeliveryAgent, serve_delivery};
use postern_ipc::delivery::{DeliveryReply, DeliveryRequest};

use crate::cache::Cache;
use crate::resolve::Dns;
use crate::settings::Settings;

/// smtp-client's delivery hook and what its deliveries share.
struct Client {
    dns: Dns,
    cache: Arc<Cache>,
    settings: Arc<Configured<Arc<Settings>>>,
}

impl DeliveryAgent for Client {
    async fn deliver(
        &self,
        req: &DeliveryRequest,
        body: &mut BodySource<'_, Stream>,
    ) -> Result<DeliveryReply, BodyError> {
        deliver::deliver(&self.dns, &self.cache, &self.settings.get(), req, body).await
    }
}

fn main() -> ExitCode {
    postern_daemon::run("smtp-client", |mut ctx| async move {
        let dns = Dns::new(&ctx.params().resolvers("dns_servers"))?;
        // Built once per configuration, so a reload applies to the next
        // request.
        let settings = Arc::new(ctx.configured(|p, previous: Option<&Arc<Settings>>| {
            Arc::new(Settings::from_params(p, previous.map(|s| &**s)))
        }));
        let cache = Cache::start({
            let settings = settings.clone();
            move || settings.get()
        });
        let client = Client {
            dns,
            cache,
            settings,
        };
        serve_delivery(&mut ctx, client).await;
        Ok(())
    })
}
