//! The end of an attempt: the outcomes logged and written to the queue,
//! the message deferred with its backoff or removed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use postern_config::Params;
use postern_envelope::Notify as DsnNotify;
use postern_ipc::delivery::DeliveryStatus;
use postern_queue::{
    AttemptEnd, QueueError, QueueId, QueueState, RcptState, Recipient, StoredMessage,
};

use crate::logfmt;

use super::notices::double_bounce_sender;
use super::{Outcome, Qmgr, lock, on_disk, unix};

impl Qmgr {
    /// Logs the outcomes, queues bounces, and records the attempt.
    pub(super) async fn finish(
        self: &Arc<Self>,
        params: &Params,
        msg: &StoredMessage,
        active_at: SystemTime,
        mut outcomes: Vec<Outcome>,
    ) {
        let id = msg.id;
        let env = &msg.envelope;
        let now = SystemTime::now();
        let arrival = lock(&self.arrivals).get(&id).copied().unwrap_or_else(|| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(env.arrival_unix.max(0) as u64)
        });
        for o in &outcomes {
            log_delivery(id, &env.recipients[o.index], o, arrival, active_at, now);
        }

        // A message past its lifetime that is still deferred is returned.
        let lifetime = if env.sender.is_empty() {
            params.time("bounce_queue_lifetime")
        } else {
            params.time("maximal_queue_lifetime")
        };
        let expired = logfmt::between(arrival, now) >= lifetime;
        let mut expired_any = false;
        if expired {
            for o in outcomes
                .iter_mut()
                .filter(|o| o.status == DeliveryStatus::Deferred)
            {
                // Keeps the 4.x.x code: RFC 3463 says the failure was temporary.
                o.status = DeliveryStatus::Expired;
                expired_any = true;
            }
        }
        if expired_any {
            tracing::info!(
                "{id}: from=<{}>, status=expired, returned to sender",
                env.sender
            );
        }

        // Bounces are queued before the recipients are marked bounced: a
        // crash in between repeats the bounce instead of losing it.
        let bounced: Vec<&Outcome> = outcomes.iter().filter(|o| o.status.is_returned()).collect();
        let bounce_ok = if bounced.is_empty() {
            true
        } else {
            self.return_to_sender(params, msg, &bounced).await
        };

        // Delay warnings: once per recipient still deferred after
        // delay_warning_time, when its NOTIFY allows, never to <>.
        let warn_after = params.time("delay_warning_time");
        let double_bounce = double_bounce_sender(params);
        let mut warned: HashSet<usize> = HashSet::new();
        if !warn_after.is_zero()
            && !env.sender.is_empty()
            && !env.sender.eq_ignore_ascii_case(&double_bounce)
            && logfmt::between(arrival, now) >= warn_after
        {
            let due: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| o.status == DeliveryStatus::Deferred)
                .filter(|o| {
                    let r = &env.recipients[o.index];
                    !matches!(r.state, RcptState::DelayNotified { .. })
                        && DsnNotify::in_force(r.notify).delay
                })
                .collect();
            if !due.is_empty() && self.warn_sender(params, msg, &due, warn_after).await {
                warned = due.iter().map(|o| o.index).collect();
            }
        }

        let mut records = Vec::new();
        let mut first_reason = None;
        let at = unix(now);
        for o in &outcomes {
            let state = match o.status {
                DeliveryStatus::Sent => RcptState::Sent {
                    at,
                    reply: o.detail.clone(),
                },
                DeliveryStatus::Bounced | DeliveryStatus::Expired if bounce_ok => {
                    RcptState::Bounced {
                        at,
                        reply: o.detail.clone(),
                        dsn: o.dsn,
                    }
                }
                DeliveryStatus::Bounced
                | DeliveryStatus::Expired
                | DeliveryStatus::Deferred
                | DeliveryStatus::Fallback => {
                    first_reason.get_or_insert_with(|| o.detail.clone());
                    let reason = o.detail.clone();
                    let before = &env.recipients[o.index].state;
                    if warned.contains(&o.index)
                        || matches!(before, RcptState::DelayNotified { .. })
                    {
                        RcptState::DelayNotified { reason }
                    } else {
                        RcptState::Deferred { reason }
                    }
                }
            };
            records.push((o.index, state));
        }
        if !bounce_ok && first_reason.is_some() {
            first_reason = Some("cannot queue the non-delivery notification; will retry".into());
        }
        let next = QueueState::Deferred {
            next_try_unix: at + backoff(params, msg.attempts).as_secs() as i64,
            reason: first_reason.unwrap_or_default(),
        };
        // Requeued meanwhile (qctl requeue): active and due again.
        let requeued = lock(&self.requeued).remove(&id);
        let next = if requeued { QueueState::Active } else { next };
        // Written to sled here; a message that stays queued is answered
        // once the group commit has it on disk.
        let (done, result) = on_disk();
        let end = AttemptEnd {
            id,
            outcomes: &records,
            next: &next,
            now_unix: at,
        };
        self.store.finish_attempt_then(&end, done);
        match result.await {
            Ok(true) => {
                lock(&self.arrivals).remove(&id);
                tracing::info!("{id}: removed");
            }
            Ok(false) => {
                if requeued {
                    // A scan once this attempt is out of the in-flight
                    // set (InFlight's drop) tries it again.
                    self.skipped.store(true, Ordering::Relaxed);
                }
            }
            // Deleted during the attempt (qctl delete).
            Err(QueueError::NotFound(_)) => {
                lock(&self.arrivals).remove(&id);
            }
            Err(e) => {
                tracing::warn!("{id}: cannot record delivery status: {e}");
                self.check_store(&e);
            }
        }
    }
}

/// The `to=<...>, relay=..., delay=..., delays=a/b/c/d, dsn=..., status=...`
/// line.
fn log_delivery(
    id: QueueId,
    rcpt: &Recipient,
    o: &Outcome,
    arrival: SystemTime,
    active_at: SystemTime,
    now: SystemTime,
) {
    let status = o.status.name();
    let before_qmgr = logfmt::between(arrival, active_at);
    let (in_qmgr, setup, xfer) = match o.handoff {
        Some(h) => {
            let in_qmgr = logfmt::between(active_at, h);
            let total = logfmt::between(h, now);
            // The agent measures its own c and d; time it did not account
            // for (body streaming, IPC) counts as transmission.
            let xfer = o.transmit.max(total.saturating_sub(o.connect));
            (in_qmgr, o.connect, xfer)
        }
        None => (
            logfmt::between(active_at, now),
            Duration::ZERO,
            Duration::ZERO,
        ),
    };
    let orig_to = match &rcpt.orcpt {
        Some(o) if !o.addr.trim().eq_ignore_ascii_case(&rcpt.address) => {
            format!(", orig_to=<{}>", o.addr.trim())
        }
        _ => String::new(),
    };
    tracing::info!(
        "{id}: to=<{}>{orig_to}, relay={}, delay={}, delays={}/{}/{}/{}, dsn={}, status={status} ({})",
        rcpt.address,
        o.relay,
        logfmt::delay(logfmt::between(arrival, now)),
        logfmt::delay(before_qmgr),
        logfmt::delay(in_qmgr),
        logfmt::delay(setup),
        logfmt::delay(xfer),
        o.dsn,
        o.detail
    );
}

/// The wait before the next attempt: minimal_backoff_time, doubled for each
/// earlier attempt, at most maximal_backoff_time.
pub fn backoff(params: &Params, earlier_attempts: u32) -> Duration {
    let min = params
        .time("minimal_backoff_time")
        .max(Duration::from_secs(1));
    let max = params.time("maximal_backoff_time").max(min);
    let factor = 1u32
        .checked_shl(earlier_attempts.min(31))
        .unwrap_or(u32::MAX);
    min.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::Config;

    fn params(extra: &str) -> Params {
        let text = format!("[main]\nmyhostname = \"mail.example.local\"\n{extra}\n");
        Config::from_str(&text, std::path::Path::new("/tmp/master.toml"), &[])
            .unwrap()
            .main()
            .clone()
    }

    #[test]
    fn backoff_doubles_between_the_limits() {
        let p = params("minimal_backoff_time = \"300s\"\nmaximal_backoff_time = \"4000s\"");
        let secs: Vec<u64> = (0..6).map(|n| backoff(&p, n).as_secs()).collect();
        assert_eq!(secs, [300, 600, 1200, 2400, 4000, 4000]);
        assert_eq!(backoff(&p, 100).as_secs(), 4000);
    }
}
