//! The scheduler: picks due messages, groups their pending recipients by
//! route, sends delivery requests within the concurrency limits, and turns
//! the agents' answers into queue state, log lines and bounces.
//!
//! This file holds the state ([`Qmgr`]: the store, the configuration in
//! force, the attempts in flight, the destinations) and starting and
//! stopping attempts; the rest by concern:
//! - [`scan`]: which messages are due;
//! - [`attempt`]: one delivery attempt, from routing to the agents' replies;
//! - [`finish`]: the outcomes logged and recorded, backoff or removal;
//! - [`notices`]: bounces, delay warnings and the notices qmgr queues.

mod attempt;
mod finish;
mod notices;
mod scan;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use postern_config::Params;
use postern_daemon::{Configured, Context};
use postern_envelope::{EnhancedStatus, Relay};
use postern_ipc::delivery::DeliveryStatus;
use postern_queue::{QueueError, QueueId, QueueStore};
use tokio::sync::{Notify, Semaphore};

use crate::destination::{Destinations, Limits};
use crate::logfmt;
use crate::route;

/// Messages with an attempt running at once (Postfix's
/// qmgr_message_active_limit default); the rest wait in the store, not in
/// memory, and a scan picks them up once attempts end.
const ACTIVE_LIMIT: usize = 20_000;

/// The queue manager's shared state, one per process.
#[derive(Debug)]
pub struct Qmgr {
    pub store: QueueStore,
    /// The routing rules of the configuration in force.
    router: Configured<route::Built>,
    params: Configured<Arc<Params>>,
    /// Messages with a delivery attempt running, so a scan never starts a
    /// second attempt of the same message.
    inflight: Mutex<HashSet<QueueId>>,
    /// Messages requeued or flushed (qctl requeue, flush) while an attempt
    /// ran: that attempt leaves them active instead of deferred.
    requeued: Mutex<HashSet<QueueId>>,
    /// Exact arrival times of messages received by this process, for the
    /// sub-second delays in the log (the store keeps whole seconds).
    arrivals: Mutex<HashMap<QueueId, SystemTime>>,
    /// Per-destination concurrency with slow start and dead destinations,
    /// per (transport, nexthop).
    destinations: Destinations,
    /// All requests at once, like the agents' process limit in Postfix.
    global: Arc<Semaphore>,
    /// Asks the scheduler loop for a scan now.
    pub rescan: Notify,
    /// A message was left for later because ACTIVE_LIMIT was reached.
    skipped: AtomicBool,
    /// Shutdown began: no new attempts.
    stopping: AtomicBool,
    /// The store can no longer promise durability (an fdatasync failed);
    /// the main loop exits so the master starts a qmgr that reopens it.
    pub broken: Notify,
}

/// Removes a message from the in-flight set when its attempt ends.
struct InFlight<'a> {
    q: &'a Qmgr,
    id: QueueId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        lock(&self.q.inflight).remove(&self.id);
        lock(&self.q.requeued).remove(&self.id);
        if self.q.skipped.swap(false, Ordering::Relaxed) {
            self.q.rescan.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix(t: SystemTime) -> i64 {
    logfmt::since_epoch(t).as_secs() as i64
}

/// Runs a blocking store call off the async workers.
pub async fn blocking<T, F>(f: F) -> Result<T, QueueError>
where
    F: FnOnce() -> Result<T, QueueError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(QueueError::Commit(format!("queue task failed: {e}"))))
}

/// The callback for a store write that reports when it is on disk
/// (`*_then`), and the result to await, so no thread waits for the disk.
pub fn on_disk<T: Send + 'static>() -> (
    impl FnOnce(Result<T, QueueError>) + Send + 'static,
    impl Future<Output = Result<T, QueueError>>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let done = move |r| {
        let _ = tx.send(r);
    };
    let result = async move {
        rx.await
            .unwrap_or_else(|_| Err(QueueError::Commit("queue commit was dropped".into())))
    };
    (done, result)
}

/// One recipient's outcome of this attempt, with what the log line needs.
#[derive(Debug, Clone)]
struct Outcome {
    index: usize,
    status: DeliveryStatus,
    dsn: EnhancedStatus,
    relay: Relay,
    detail: String,
    /// The remote server's reply the outcome rests on.
    remote_reply: Option<String>,
    /// When the request went to the agent (None: no agent was reached).
    handoff: Option<SystemTime>,
    connect: Duration,
    transmit: Duration,
}

impl Outcome {
    /// An outcome qmgr decided without an agent (`relay=none`).
    fn internal(
        index: usize,
        status: DeliveryStatus,
        dsn: EnhancedStatus,
        detail: String,
    ) -> Outcome {
        Outcome {
            index,
            status,
            dsn,
            relay: Relay::None,
            detail,
            remote_reply: None,
            handoff: None,
            connect: Duration::ZERO,
            transmit: Duration::ZERO,
        }
    }
}

impl Qmgr {
    pub fn new(store: QueueStore, ctx: &Context, global_limit: usize) -> Qmgr {
        Qmgr {
            store,
            router: ctx
                .configured(|p, _| route::build_router(p))
                .broken_when(Result::is_err),
            params: ctx.configured(|p, _| Arc::new(p.clone())),
            inflight: Mutex::new(HashSet::new()),
            requeued: Mutex::new(HashSet::new()),
            arrivals: Mutex::new(HashMap::new()),
            destinations: Destinations::default(),
            global: Arc::new(Semaphore::new(global_limit.max(1))),
            rescan: Notify::new(),
            skipped: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            broken: Notify::new(),
        }
    }

    /// The parameters now in force (built once per configuration).
    pub fn params(&self) -> Arc<Params> {
        self.params.get()
    }

    /// The Router of the configuration now in force (rebuilt after a
    /// reload), or why there is none.
    pub fn router(&self) -> route::Built {
        self.router.get()
    }

    /// Remembers the exact arrival of a message just committed.
    pub fn note_arrival(&self, id: QueueId, at: SystemTime) {
        lock(&self.arrivals).insert(id, at);
    }

    /// Marks a requeued message whose attempt, if one is running, must
    /// leave it active and due.
    pub fn note_requeue(&self, id: QueueId) {
        if lock(&self.inflight).contains(&id) {
            lock(&self.requeued).insert(id);
        }
    }

    /// Marks the messages in an attempt now (or just `only`) to stay due
    /// when the attempt defers them: a flush asks for one more try of mail
    /// whose deferral it could not see yet.
    pub fn note_flush(&self, only: Option<QueueId>) {
        let inflight = lock(&self.inflight);
        let mut requeued = lock(&self.requeued);
        requeued.extend(
            inflight
                .iter()
                .filter(|id| only.is_none_or(|o| o == **id))
                .copied(),
        );
    }

    /// Starts an attempt for `id` unless one is running.
    pub fn schedule(self: &Arc<Self>, id: QueueId) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut inflight = lock(&self.inflight);
            if inflight.len() >= ACTIVE_LIMIT {
                self.skipped.store(true, Ordering::Relaxed);
                return;
            }
            if !inflight.insert(id) {
                return;
            }
        }
        let q = self.clone();
        tokio::spawn(async move {
            let _guard = InFlight { q: &q, id };
            q.attempt(id).await;
        });
    }

    /// Stops starting attempts and waits up to `limit` for the running ones
    /// (an attempt cut short is repeated by the next qmgr: a duplicate,
    /// never a loss).
    pub async fn stop(&self, limit: Duration) {
        self.stopping.store(true, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + limit;
        while !lock(&self.inflight).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// After a failed durable write: if durability is lost (an fdatasync
    /// failed), every later commit fails too, so ask the main loop to exit
    /// and let the master restart qmgr, whose recovery sees what really is
    /// on disk.
    pub fn check_store(&self, e: &QueueError) {
        if let QueueError::DurabilityLost(text) = e {
            tracing::error!("queue store cannot guarantee durability any more: {text}");
            self.stopping.store(true, Ordering::Relaxed);
            self.broken.notify_one();
        }
    }

    /// Makes dead destinations alive again (`qctl flush`).
    pub fn revive_destinations(&self) {
        let initial = Limits::from_params(&self.params()).initial;
        self.destinations.revive_all(initial);
    }
}
