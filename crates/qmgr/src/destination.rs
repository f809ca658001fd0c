//! Per-destination concurrency with Postfix's feedback (qmgr(8)
//! "STRATEGIES"): a destination (transport, next hop) starts with
//! initial_destination_concurrency parallel requests, gains one with each
//! request that was not a connection-level failure, up to
//! default_destination_concurrency_limit, and loses one with each failure
//! down to 1. Once destination_concurrency_failed_cohort_limit failures in a
//! row happen at concurrency 1, the destination is dead: requests for it are
//! refused at once (the caller defers them with "delivery temporarily
//! suspended: REASON") until minimal_backoff_time has passed or a flush
//! revives it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_config::Params;
use postern_envelope::EnhancedStatus;
use tokio::sync::Notify;

use crate::route::Route;

/// The limits in force, read from the parameters for each request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub initial: usize,
    pub limit: usize,
    pub cohort_limit: u32,
    pub dead_for: Duration,
}

impl Limits {
    pub fn from_params(params: &Params) -> Limits {
        let int = |name: &str| usize::try_from(params.int(name)).unwrap_or(1).max(1);
        let limit = int("default_destination_concurrency_limit");
        Limits {
            initial: int("initial_destination_concurrency").min(limit),
            limit,
            cohort_limit: u32::try_from(params.int("destination_concurrency_failed_cohort_limit"))
                .unwrap_or(1)
                .max(1),
            dead_for: params
                .time("minimal_backoff_time")
                .max(Duration::from_secs(1)),
        }
    }
}

/// How a request to a destination went, for the feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feedback {
    /// The destination was reached (whatever it said about recipients).
    Reached,
    /// Connection or handshake failure: enhanced status code and text.
    Failed { dsn: EnhancedStatus, reason: String },
    /// Says nothing about the destination (the agent itself failed).
    Neutral,
}

/// Why a request was refused without trying: the destination is dead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dead {
    pub dsn: EnhancedStatus,
    pub reason: String,
}

#[derive(Debug)]
struct Dest {
    active: usize,
    waiting: usize,
    window: usize,
    /// Failures in a row at concurrency 1.
    failures: u32,
    dead_until: Option<Instant>,
    last: Dead,
    wake: Arc<Notify>,
}

impl Dest {
    fn new(window: usize) -> Dest {
        Dest {
            active: 0,
            waiting: 0,
            window,
            failures: 0,
            dead_until: None,
            last: Dead {
                dsn: EnhancedStatus::TEMP_SYSTEM,
                reason: String::new(),
            },
            wake: Arc::new(Notify::new()),
        }
    }

    /// Nothing to remember: the entry may go.
    fn idle(&self, initial: usize) -> bool {
        self.active == 0 && self.waiting == 0 && self.dead_until.is_none() && self.window >= initial
    }
}

/// Every destination with requests running, waiting, or state to keep.
#[derive(Debug, Default)]
pub struct Destinations {
    map: Mutex<HashMap<Route, Dest>>,
}

/// A running request's slot; give it back with [`Destinations::release`].
#[derive(Debug)]
pub struct Slot {
    route: Route,
}

/// Undoes the waiting count if an acquire is cancelled.
struct Waiting<'a> {
    d: &'a Destinations,
    route: &'a Route,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if let Some(d) = lock(&self.d.map).get_mut(self.route) {
            d.waiting = d.waiting.saturating_sub(1);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Destinations {
    /// Waits for a slot at `route`, or says it is dead.
    pub async fn acquire(&self, route: &Route, l: Limits) -> Result<Slot, Dead> {
        loop {
            let wake = {
                let mut map = lock(&self.map);
                let d = map
                    .entry(route.clone())
                    .or_insert_with(|| Dest::new(l.initial));
                if let Some(until) = d.dead_until {
                    if Instant::now() < until {
                        return Err(d.last.clone());
                    }
                    revive(route, d, l.initial);
                }
                if d.active < d.window.min(l.limit) {
                    d.active += 1;
                    return Ok(Slot {
                        route: route.clone(),
                    });
                }
                d.waiting += 1;
                d.wake.clone()
            };
            let _waiting = Waiting { d: self, route };
            // notify_one keeps a permit when nobody waits yet, so a release
            // between the unlock above and this wait is not lost.
            wake.notified().await;
        }
    }

    /// Ends a request and applies its feedback to the destination.
    pub fn release(&self, slot: Slot, feedback: Feedback, l: Limits) {
        let mut map = lock(&self.map);
        let Some(d) = map.get_mut(&slot.route) else {
            return;
        };
        d.active = d.active.saturating_sub(1);
        let mut freed = 1;
        match feedback {
            Feedback::Reached => {
                d.failures = 0;
                if d.window < l.limit {
                    d.window += 1;
                    freed += 1;
                }
            }
            Feedback::Failed { dsn, reason } => {
                d.last = Dead { dsn, reason };
                if d.window > 1 {
                    d.window -= 1;
                    freed = 0;
                } else {
                    d.failures += 1;
                    if d.failures >= l.cohort_limit && d.dead_until.is_none() {
                        d.dead_until = Some(Instant::now() + l.dead_for);
                        tracing::info!(
                            "{}:{}: destination is dead for {}s: {}",
                            slot.route.transport,
                            slot.route.nexthop,
                            l.dead_for.as_secs(),
                            d.last.reason
                        );
                        // Everyone waiting learns it now and gives up.
                        d.wake.notify_waiters();
                    }
                }
            }
            Feedback::Neutral => {}
        }
        for _ in 0..freed {
            d.wake.notify_one();
        }
        if d.idle(l.initial) {
            map.remove(&slot.route);
        }
    }

    /// Makes every dead destination alive again (`qctl flush`).
    pub fn revive_all(&self, initial: usize) {
        let mut map = lock(&self.map);
        for (route, d) in map.iter_mut() {
            if d.dead_until.is_some() {
                revive(route, d, initial);
            }
        }
        map.retain(|_, d| !d.idle(initial));
    }
}

fn revive(route: &Route, d: &mut Dest, initial: usize) {
    d.dead_until = None;
    d.failures = 0;
    d.window = initial;
    tracing::info!(
        "{}:{}: destination is alive again",
        route.transport,
        route.nexthop
    );
}

/// A reply is a connection-level failure when every recipient was deferred
/// with a network or routing status (RFC 3463 4.4.X), as smtp-client
/// reports a destination it could not connect to or talk with.
pub fn feedback_of(results: &[postern_ipc::delivery::RecipientResult]) -> Feedback {
    use postern_ipc::delivery::DeliveryStatus;
    match results.first() {
        Some(first)
            if results
                .iter()
                .all(|r| r.status == DeliveryStatus::Deferred && is_network(r.dsn)) =>
        {
            Feedback::Failed {
                dsn: first.dsn,
                reason: first.detail.clone(),
            }
        }
        Some(_) => Feedback::Reached,
        None => Feedback::Neutral,
    }
}

/// 4.4.X: a network or routing failure (RFC 3463).
fn is_network(dsn: EnhancedStatus) -> bool {
    dsn.is_transient() && dsn.subject() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            initial: 2,
            limit: 3,
            cohort_limit: 1,
            dead_for: Duration::from_secs(60),
        }
    }

    fn route() -> Route {
        Route {
            transport: "smtp".into(),
            nexthop: "example.com".into(),
        }
    }

    fn failed() -> Feedback {
        Feedback::Failed {
            dsn: "4.4.1".parse().unwrap(),
            reason: "connect to x: Connection refused".into(),
        }
    }

    #[tokio::test]
    async fn slow_start_grows_to_the_limit_and_failures_kill() {
        let d = Destinations::default();
        let (r, l) = (route(), limits());
        let a = d.acquire(&r, l).await.unwrap();
        let b = d.acquire(&r, l).await.unwrap();
        // Window 2: a third waits.
        let third = tokio::time::timeout(Duration::from_millis(50), d.acquire(&r, l)).await;
        assert!(third.is_err());
        d.release(a, Feedback::Reached, l); // window 3
        let c = d.acquire(&r, l).await.unwrap();
        let e = d.acquire(&r, l).await.unwrap();
        d.release(b, failed(), l); // window 2
        d.release(c, failed(), l); // window 1
        d.release(e, failed(), l); // at 1: dead
        let dead = d.acquire(&r, l).await.unwrap_err();
        assert_eq!(dead.dsn, "4.4.1");
        d.revive_all(l.initial);
        let f = d.acquire(&r, l).await.unwrap();
        d.release(f, Feedback::Reached, l);
    }
}
