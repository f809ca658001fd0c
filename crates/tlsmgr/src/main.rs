//! NAME
//!   tlsmgr - Postern TLS session-ticket key and session cache manager
//!
//! SYNOPSIS
//!   tlsmgr [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   tlsmgr is the one holder of the TLS session-ticket keys. Every smtpd
//!   process asks it for them (protocol postern-tlsmgr on
//!   `private/tlsmgr`) and seals its session tickets with them, so a client
//!   resumes its TLS session with any smtpd process, and after an smtpd
//!   restart, as long as the key that sealed its ticket is still offered.
//!
//!   At start tlsmgr makes a key from the operating system's random
//!   generator. When a request finds that smtpd_tls_session_cache_timeout
//!   has passed since the current key was made, a new current key is made
//!   and the old one kept as the previous key: new tickets are sealed with
//!   the current key, and tickets sealed with either key are accepted. A key
//!   is offered for twice the timeout, so every ticket lives at least one
//!   timeout. Each answer says when the next rotation is due, and smtpd
//!   asks again then.
//!
//!   tlsmgr also keeps the smtp-client's TLS session cache: opaque values
//!   per destination, each with an expiry capped at
//!   smtp_tls_session_cache_timeout, at most 10000 entries and 16 MiB (the
//!   entries closest to expiry are dropped first).
//!
//!   Certificates are not tlsmgr's business here: each smtpd loads its own
//!   and reports them to `qctl status`.
//!
//! SECURITY
//!   tlsmgr runs as mail_owner and serves only its socket in the private
//!   directory (mode 0700), which is what keeps the ticket keys from other
//!   local users. Keys are never written to disk and never logged. The
//!   request size is bounded by the IPC frame limit; cache keys and values
//!   have their own, smaller limits.
//!
//! STANDARDS
//!   RFC 5077 (TLS session resumption without server-side state), RFC 8446
//!   (TLS 1.3, section 4.6.1: NewSessionTicket).
//!
//! DIAGNOSTICS
//!   Problems go to the mail log with `warning:`; a failed random generator
//!   is fatal.
//!
//!   Differences from Postfix: Postfix's tlsmgr also keeps smtpd's
//!   server-side session cache and feeds OpenSSL's PRNG; here smtpd needs
//!   no server-side cache (tickets carry the state) and ring reads the OS
//!   generator directly. The keys live in memory only, so restarting
//!   tlsmgr makes every outstanding ticket useless (one full handshake per
//!   client), and so does `qctl stop`.
//!
//! CONFIGURATION PARAMETERS
//!   Session tickets:
//!   smtpd_tls_session_cache_timeout   key rotation interval (default 3600s)
//!
//!   Client session cache:
//!   smtp_tls_session_cache_timeout    longest life of a cached session
//!
//!   Process:
//!   queue_directory                   where private/tlsmgr lives
//!   drain_timeout                     how long open connections may finish
//!                                     after SIGTERM
//!
//! FILES
//!   $queue_directory/private/tlsmgr   the service socket (from the master)
//!
//! SEE ALSO
//!   master(8), smtpd(8), smtp-client(8), postern-tls (the library that
//!   uses the keys), postern-ipc's tlsmgr module (the protocol)

mod cache;
mod keys;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use postern_config::Params;
use postern_daemon::ipc::IpcSession;
use postern_daemon::{Configured, Shutdown, Stream, serve_sessions};
use postern_ipc::Protocol;
use postern_ipc::tlsmgr::{MAX_CACHE_KEY, MAX_CACHE_VALUE, TlsmgrReply, TlsmgrRequest};

use crate::cache::SessionCache;
use crate::keys::{KeyRing, unix};

/// smtpd and smtp-client processes keep one connection each.
const MAX_SESSIONS: usize = 4096;

/// What every connection shares.
struct State {
    keys: Mutex<KeyRing>,
    cache: Mutex<SessionCache>,
    /// The parameters in force: lifetimes are read from them per request.
    params: Configured<Arc<Params>>,
}

fn main() -> ExitCode {
    postern_daemon::run("tlsmgr", |mut ctx| async move {
        let lifetime = ctx.params().time("smtpd_tls_session_cache_timeout");
        let state = Arc::new(State {
            keys: Mutex::new(KeyRing::new(SystemTime::now(), lifetime)?),
            cache: Mutex::new(SessionCache::default()),
            params: ctx.configured(|p, _| Arc::new(p.clone())),
        });
        let drain = ctx.params().time("drain_timeout");
        serve_sessions(
            &mut ctx,
            MAX_SESSIONS,
            drain,
            move |stream, _peer, shutdown| serve(state.clone(), stream, shutdown),
        )
        .await;
        Ok(())
    })
}

/// One client: the hello, then requests until it hangs up.
async fn serve(state: Arc<State>, stream: Stream, shutdown: Shutdown) {
    let Some(mut session) = IpcSession::accept(stream, Protocol::Tlsmgr, shutdown).await else {
        return;
    };
    while let Some(req) = session.next::<TlsmgrRequest>(true).await {
        if !session.reply(&answer(&state, req)).await {
            return;
        }
    }
}

fn answer(state: &State, req: TlsmgrRequest) -> TlsmgrReply {
    let params = state.params.get();
    let now = SystemTime::now();
    match req {
        TlsmgrRequest::TicketKeys => {
            let lifetime = params.time("smtpd_tls_session_cache_timeout");
            let mut ring = state.keys.lock().unwrap_or_else(|p| p.into_inner());
            match ring.keys(now, lifetime) {
                Ok((keys, next_rotation_unix)) => TlsmgrReply::TicketKeys {
                    keys,
                    next_rotation_unix,
                },
                Err(e) => {
                    tracing::warn!("cannot make a session ticket key: {e:#}");
                    TlsmgrReply::Error {
                        message: "cannot make a session ticket key".into(),
                    }
                }
            }
        }
        TlsmgrRequest::CacheGet { key } => {
            let mut cache = state.cache.lock().unwrap_or_else(|p| p.into_inner());
            TlsmgrReply::Value(cache.get(&key, unix(now)))
        }
        TlsmgrRequest::CachePut {
            key,
            value,
            expires_unix,
        } => {
            if key.len() > MAX_CACHE_KEY || value.len() > MAX_CACHE_VALUE {
                return TlsmgrReply::Error {
                    message: format!(
                        "cache entry too large ({} byte key, {} byte value; limits {MAX_CACHE_KEY} and {MAX_CACHE_VALUE})",
                        key.len(),
                        value.len()
                    ),
                };
            }
            let now = unix(now);
            let longest = params.time("smtp_tls_session_cache_timeout").as_secs() as i64;
            let expires = expires_unix.min(now.saturating_add(longest));
            let mut cache = state.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.put(key, value, expires, now);
            TlsmgrReply::Done
        }
    }
}
