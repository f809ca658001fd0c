//! One delivery request from start to reply: the next hop, a cached
//! session to it or its addresses, sessions with them in order until every
//! recipient has a final outcome.
//!
//! As in Postfix, a soft failure (connection refused, 4xx greeting, 4xx to
//! MAIL, RCPT or DATA, a lost connection) leaves the recipients it touched
//! for the next address, unless this was the last server to try
//! (`smtp_mx_session_limit` sessions, or the end of the list) or the body
//! was already on its way. A hard failure is final at once.

use std::time::Instant;

use postern_envelope::{EnhancedStatus, Relay};
use postern_ipc::TakeFds;
use postern_ipc::delivery::{DeliveryReply, DeliveryRequest, RecipientResult};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::cache::Cache;
use crate::nexthop::{self, Nexthop};
use crate::outcome::Outcome;
use crate::protocol;
use crate::resolve::Dns;
use crate::session::{self, Session};
use crate::settings::Settings;
use postern_daemon::delivery::{BodyError, BodySource};

/// Delivers `req`, reading its body from `body`. Err only when qmgr's
/// connection broke (then no reply can be sent anyway).
pub async fn deliver<S>(
    dns: &Dns,
    cache: &Cache,
    s: &Settings,
    req: &DeliveryRequest,
    body: &mut BodySource<'_, S>,
) -> Result<DeliveryReply, BodyError>
where
    S: AsyncRead + AsyncWrite + Unpin + TakeFds,
{
    let mut d = Delivery {
        req,
        start: Instant::now(),
        pending: (0..req.recipients.len()).collect(),
        tentative: vec![None; req.recipients.len()],
        results: vec![None; req.recipients.len()],
    };
    let fallback_domain = req
        .recipients
        .first()
        .and_then(|r| r.address.rsplit_once('@'))
        .map(|(_, domain)| domain.to_string())
        .unwrap_or_default();
    match nexthop::parse(&req.nexthop, &fallback_domain) {
        Err(e) => {
            tracing::warn!("{}: {e}", req.queue_id);
            let o = Outcome::deferred(
                EnhancedStatus::of(4, 3, 0),
                format!("mail transport unavailable: {e}"),
            );
            d.fail_pending(&o);
        }
        Ok(hop) => d.run(dns, cache, s, &hop, body).await?,
    }
    Ok(d.reply())
}

/// The state of one request.
struct Delivery<'r> {
    req: &'r DeliveryRequest,
    start: Instant,
    /// Positions (in req.recipients) still without a final outcome.
    pending: Vec<usize>,
    /// The soft outcome each pending recipient got last, in case no later
    /// server does better.
    tentative: Vec<Option<RecipientResult>>,
    results: Vec<Option<RecipientResult>>,
}

impl Delivery<'_> {
    async fn run<S>(
        &mut self,
        dns: &Dns,
        cache: &Cache,
        s: &Settings,
        hop: &Nexthop,
        body: &mut BodySource<'_, S>,
    ) -> Result<(), BodyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + TakeFds,
    {
        let key = hop.to_string();
        if !s.cache_time_limit.is_zero() {
            while let Some(mut sess) = cache.take(&key) {
                // A plaintext session from before a change to a level
                // that requires TLS must not carry mail.
                if s.tls.level.requires_tls() && !sess.is_tls() {
                    protocol::quit(sess, s).await;
                    continue;
                }
                if protocol::reset(&mut sess, s).await {
                    tracing::debug!(
                        "{}: reusing the session with {}",
                        self.req.queue_id,
                        sess.target.relay()
                    );
                    self.session(sess, false, hop, cache, s, body).await?;
                    break;
                }
            }
            if self.pending.is_empty() {
                return Ok(());
            }
        }

        let targets = match dns.targets(hop, s).await {
            Ok(t) => t,
            Err(o) => {
                self.fail_pending(&o);
                return Ok(());
            }
        };
        let mut sessions = 0;
        for (i, target) in targets.iter().enumerate() {
            if self.pending.is_empty() {
                break;
            }
            let sess = match session::connect(target, s).await {
                Ok(sess) => sess,
                Err(o) => {
                    tracing::info!("{}: {}", self.req.queue_id, o.detail);
                    for &p in &self.pending {
                        let r = self.result(&o, &Relay::None, None, p);
                        self.tentative[p] = Some(r);
                    }
                    continue;
                }
            };
            sessions += 1;
            let last = i + 1 == targets.len()
                || (s.mx_session_limit > 0 && sessions >= s.mx_session_limit);
            self.session(sess, last, hop, cache, s, body).await?;
            if last {
                break;
            }
        }
        Ok(())
    }

    /// One transaction on `sess` for the pending recipients; afterwards
    /// the session is cached or closed. A failed TLS handshake at level
    /// `may` is followed by a second try over a new plaintext connection
    /// to the same address, as Postfix does.
    async fn session<S>(
        &mut self,
        mut sess: Session,
        last: bool,
        hop: &Nexthop,
        cache: &Cache,
        s: &Settings,
        body: &mut BodySource<'_, S>,
    ) -> Result<(), BodyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + TakeFds,
    {
        let rcpts: Vec<_> = self
            .pending
            .iter()
            .map(|&p| &self.req.recipients[p])
            .collect();
        let mut report = protocol::deliver(&mut sess, s, hop, self.req, &rcpts, body).await?;
        if report.retry_plaintext {
            tracing::info!(
                "{}: TLS handshake with {} failed; trying again without TLS",
                self.req.queue_id,
                sess.target.relay()
            );
            match session::connect(&sess.target, s).await {
                Ok(plain) => {
                    sess = plain;
                    sess.no_starttls = true;
                    report = protocol::deliver(&mut sess, s, hop, self.req, &rcpts, body).await?;
                }
                Err(o) => tracing::info!("{}: {}", self.req.queue_id, o.detail),
            }
        }
        let relay = sess.target.relay();
        let mut still = Vec::new();
        for (k, o) in report.outcomes.iter().enumerate() {
            let p = self.pending[k];
            let r = self.result(o, &relay, report.handshake_done, p);
            if o.is_soft() && !last && !body.started() {
                tracing::info!("{}: {}", self.req.queue_id, o.detail);
                self.tentative[p] = Some(r);
                still.push(p);
            } else {
                self.results[p] = Some(r);
            }
        }
        self.pending = still;
        if report.reusable && !s.cache_time_limit.is_zero() {
            if let Some(old) = cache.put(
                hop.to_string(),
                sess,
                s.cache_time_limit,
                s.cache_per_destination,
            ) {
                protocol::quit(old, s).await;
            }
        } else if report.reusable {
            protocol::quit(sess, s).await;
        }
        Ok(())
    }

    /// Every pending recipient gets `o`.
    fn fail_pending(&mut self, o: &Outcome) {
        for p in std::mem::take(&mut self.pending) {
            self.results[p] = Some(self.result(o, &Relay::None, None, p));
        }
    }

    fn reply(mut self) -> DeliveryReply {
        for p in std::mem::take(&mut self.pending) {
            self.results[p] = self.tentative[p].take();
        }
        let fallback = Outcome::deferred(EnhancedStatus::of(4, 4, 1), "no server could be reached");
        let results = (0..self.results.len())
            .map(|p| {
                self.results[p]
                    .take()
                    .unwrap_or_else(|| self.result(&fallback, &Relay::None, None, p))
            })
            .collect();
        DeliveryReply { results }
    }

    /// The reply entry for recipient `p`; `connected` ends the connection
    /// setup time (DNS, TCP, greeting, EHLO), the rest is transmission.
    fn result(
        &self,
        o: &Outcome,
        relay: &Relay,
        connected: Option<Instant>,
        p: usize,
    ) -> RecipientResult {
        let now = Instant::now();
        let connected = connected.unwrap_or(now);
        RecipientResult {
            index: self.req.recipients[p].index,
            status: o.status,
            dsn: o.dsn,
            relay: relay.clone(),
            detail: o.detail.clone(),
            remote_reply: o.reply.clone(),
            connect_secs: connected.duration_since(self.start).as_secs_f64(),
            transmit_secs: now.duration_since(connected).as_secs_f64(),
        }
    }
}
