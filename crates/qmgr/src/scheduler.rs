//! The scheduler: picks due messages, groups their pending recipients by
//! route, sends delivery requests within the concurrency limits, and turns
//! the agents' answers into queue state, log lines and bounces.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use postern_config::Params;
use postern_daemon::{Configured, Context};
use postern_envelope::{EnhancedStatus, Notify as DsnNotify};
use postern_ipc::delivery::{DeliveryRecipient, DeliveryReply, DeliveryRequest, DeliveryStatus};
use postern_queue::{
    Envelope, QueueError, QueueId, QueueState, QueueStore, RcptState, Recipient, Ret, StoredMessage,
};
use postern_routing::{AddressClass, Router};
use tokio::sync::{Notify, Semaphore};

use crate::agent::{self, AgentError};
use crate::bounce::{self, Audience, Failed};
use crate::destination::{self, Destinations, Feedback, Limits};
use crate::logfmt;
use crate::route::{self, Decision, Route};

/// How long an agent may take to answer one request; a remote delivery
/// has its own timeouts inside smtp-client, this only catches a hung agent.
const AGENT_REPLY_TIMEOUT: Duration = Duration::from_secs(3600);
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
    /// Messages requeued (qctl requeue) while an attempt ran: that attempt
    /// leaves them active instead of deferred.
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

/// One recipient's outcome of this attempt, with what the log line needs.
#[derive(Debug, Clone)]
struct Outcome {
    index: usize,
    status: DeliveryStatus,
    dsn: EnhancedStatus,
    relay: String,
    detail: String,
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
            relay: "none".into(),
            detail,
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

    /// Schedules every message that is due now.
    pub async fn scan(self: &Arc<Self>) {
        let store = self.store.clone();
        let now = unix(SystemTime::now());
        match blocking(move || store.due(now)).await {
            Ok(ids) => {
                for id in ids {
                    self.schedule(id);
                }
            }
            Err(e) => tracing::warn!("queue scan failed: {e}"),
        }
    }

    /// One delivery attempt of one message.
    async fn attempt(self: &Arc<Self>, id: QueueId) {
        // sled reads come from its page cache: no blocking task.
        let msg = match self.store.get(id) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("{id}: cannot read message: {e}");
                return;
            }
        };
        let now = SystemTime::now();
        match &msg.state {
            QueueState::Active => {}
            QueueState::Deferred { next_try_unix, .. } if *next_try_unix <= unix(now) => {}
            _ => return,
        }
        let params = self.params();
        let env = &msg.envelope;
        tracing::info!(
            "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
            env.sender,
            env.size,
            env.recipients.len()
        );
        let active_at = now;
        let pending: Vec<usize> = (0..env.recipients.len())
            .filter(|&i| !env.recipients[i].state.is_final())
            .collect();

        // Route each pending recipient (trivial-rewrite); error, retry
        // and discard are settled here, the rest go to agents.
        let router = self.router();
        let mut outcomes = Vec::new();
        let mut groups: Groups = BTreeMap::new();
        for (i, decision) in resolve_all(&router, env, &pending) {
            let address = &env.recipients[i].address;
            match decision {
                Ok((Decision::Agent(r), class)) => groups.entry(r).or_default().push((i, class)),
                Ok((Decision::Internal { status, dsn, text }, _)) => {
                    outcomes.push(Outcome::internal(i, status, dsn, text));
                }
                Err(e) => {
                    tracing::warn!("{id}: cannot route <{address}>: {e}");
                    outcomes.push(Outcome::internal(
                        i,
                        DeliveryStatus::Deferred,
                        EnhancedStatus::TEMP_SYSTEM,
                        format!("address resolver failure: {e}"),
                    ));
                }
            }
        }
        let msg = Arc::new(msg);
        let mut delivered = self.deliver_groups(&params, &msg, groups).await;

        // Local delivery handed back recipients it does not know: they go
        // to fallback_transport now, in the same attempt. What comes back
        // as fallback again (a fallback that is local itself) is deferred.
        let (fallback, done): (Vec<Outcome>, Vec<Outcome>) = delivered
            .into_iter()
            .partition(|o| o.status == DeliveryStatus::Fallback);
        delivered = done;
        if !fallback.is_empty() {
            let mut groups: Groups = BTreeMap::new();
            for o in fallback {
                let address = &msg.envelope.recipients[o.index].address;
                let fallback_route = router
                    .as_ref()
                    .ok()
                    .and_then(|r| r.fallback_route(address))
                    .map(|r| (route::decide(&r), r.class));
                match fallback_route {
                    Some((Decision::Agent(r), class)) => {
                        groups.entry(r).or_default().push((o.index, class))
                    }
                    Some((Decision::Internal { status, dsn, text }, _)) => {
                        outcomes.push(Outcome::internal(o.index, status, dsn, text));
                    }
                    None => outcomes.push(Outcome::internal(
                        o.index,
                        DeliveryStatus::Deferred,
                        EnhancedStatus::TEMP_SYSTEM,
                        format!("{} (fallback_transport is not set in qmgr)", o.detail),
                    )),
                }
            }
            for mut o in self.deliver_groups(&params, &msg, groups).await {
                if o.status == DeliveryStatus::Fallback {
                    o.status = DeliveryStatus::Deferred;
                    o.dsn = EnhancedStatus::TEMP_SYSTEM;
                    o.detail = format!("mail forwarding loop: fallback_transport: {}", o.detail);
                }
                delivered.push(o);
            }
        }
        outcomes.append(&mut delivered);
        outcomes.sort_by_key(|o| o.index);
        self.finish(&params, &msg, active_at, outcomes).await;
    }

    /// Sends the grouped recipients to their agents in requests of at
    /// most default_destination_recipient_limit recipients, all at once
    /// within the concurrency limits, and collects the outcomes.
    async fn deliver_groups(
        self: &Arc<Self>,
        params: &Params,
        msg: &Arc<StoredMessage>,
        groups: Groups,
    ) -> Vec<Outcome> {
        let per_request = usize::try_from(params.int("default_destination_recipient_limit"))
            .unwrap_or(1)
            .max(1);
        let mut requests = tokio::task::JoinSet::new();
        for (r, rcpts) in groups {
            for chunk in rcpts.chunks(per_request) {
                let q = self.clone();
                let msg = msg.clone();
                let r = r.clone();
                let chunk = chunk.to_vec();
                let queue_dir = params.path("queue_directory");
                let limits = Limits::from_params(params);
                requests.spawn(async move { q.request(&msg, r, chunk, queue_dir, limits).await });
            }
        }
        let mut outcomes = Vec::new();
        while let Some(done) = requests.join_next().await {
            match done {
                Ok(mut o) => outcomes.append(&mut o),
                Err(e) => tracing::warn!("{}: delivery task failed: {e}", msg.id),
            }
        }
        outcomes
    }

    /// Makes dead destinations alive again (`qctl flush`).
    pub fn revive_destinations(&self) {
        let initial = Limits::from_params(&self.params()).initial;
        self.destinations.revive_all(initial);
    }

    /// One delivery request for some recipients of one message.
    async fn request(
        &self,
        msg: &StoredMessage,
        r: Route,
        rcpts: Vec<(usize, AddressClass)>,
        queue_dir: PathBuf,
        limits: Limits,
    ) -> Vec<Outcome> {
        let idxs: Vec<usize> = rcpts.iter().map(|&(i, _)| i).collect();
        // Destination first: requests waiting for a busy destination must
        // not hold the global permits other destinations need. A dead
        // destination defers at once, without asking the agent.
        let slot = match self.destinations.acquire(&r, limits).await {
            Ok(slot) => slot,
            Err(dead) => {
                return idxs
                    .iter()
                    .map(|&index| {
                        Outcome::internal(
                            index,
                            DeliveryStatus::Deferred,
                            dead.dsn,
                            format!("delivery temporarily suspended: {}", dead.reason),
                        )
                    })
                    .collect();
            }
        };
        let global_permit = self.global.clone().acquire_owned().await;
        let env = &msg.envelope;
        let request = DeliveryRequest {
            queue_id: msg.id,
            sender: env.sender.clone(),
            recipients: rcpts
                .iter()
                .map(|&(i, class)| {
                    let rc = &env.recipients[i];
                    DeliveryRecipient {
                        index: i,
                        address: rc.address.clone(),
                        orcpt: rc.orcpt.clone(),
                        notify: rc.notify,
                        class,
                    }
                })
                .collect(),
            transport: r.transport.clone(),
            nexthop: r.nexthop.clone(),
            arrival_unix: env.arrival_unix,
            size: env.size,
            envid: env.envid.clone(),
            ret: env.ret,
            smtputf8: env.smtputf8,
            body_8bit: env.body_8bit,
        };
        let socket = queue_dir.join("private").join(&r.transport);
        let handoff = SystemTime::now();
        let result =
            agent::deliver(&socket, request, &self.store, msg.id, AGENT_REPLY_TIMEOUT).await;
        drop(global_permit);
        let feedback = match &result {
            Ok(reply) => destination::feedback_of(&reply.results),
            Err(_) => Feedback::Neutral,
        };
        self.destinations.release(slot, feedback, limits);
        let deferred = |detail: String, handoff: Option<SystemTime>| {
            idxs.iter()
                .map(|&index| Outcome {
                    index,
                    status: DeliveryStatus::Deferred,
                    dsn: EnhancedStatus::TEMP_SYSTEM,
                    relay: "none".into(),
                    detail: detail.clone(),
                    handoff,
                    connect: Duration::ZERO,
                    transmit: Duration::ZERO,
                })
                .collect::<Vec<_>>()
        };
        match result {
            Ok(reply) => outcomes_of(reply, &idxs, handoff),
            Err(AgentError::Connect(e)) => deferred(
                format!(
                    "delivery temporarily suspended: connect to transport private/{}: {e}",
                    r.transport
                ),
                None,
            ),
            Err(AgentError::Transport(e)) => {
                tracing::warn!("{}: transport {}: {e}", msg.id, r.transport);
                deferred(
                    "delivery temporarily suspended: unknown mail transport error".into(),
                    Some(handoff),
                )
            }
            Err(AgentError::Queue(e)) => {
                tracing::warn!("{}: cannot read queued message: {e}", msg.id);
                deferred("queue file read error".into(), Some(handoff))
            }
        }
    }

    /// Logs the outcomes, queues bounces, and records the attempt.
    async fn finish(
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
        let (tx, done) = tokio::sync::oneshot::channel();
        self.store
            .finish_attempt_then(id, &records, next, at, move |r| {
                let _ = tx.send(r);
            });
        let result = done
            .await
            .unwrap_or_else(|_| Err(QueueError::Commit("queue commit was dropped".into())));
        match result {
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

    /// Queues the non-delivery notification for the bounced recipients;
    /// false if it could not be queued (the recipients stay deferred).
    async fn return_to_sender(
        self: &Arc<Self>,
        params: &Params,
        msg: &StoredMessage,
        bounced: &[&Outcome],
    ) -> bool {
        let env = &msg.envelope;
        let id = msg.id;
        let myhostname = params.get("myhostname");
        let double_bounce = double_bounce_sender(params);
        if env.sender.eq_ignore_ascii_case(&double_bounce) {
            tracing::info!("{id}: undeliverable postmaster notification discarded");
            return true;
        }
        let failed: Vec<Failed> = bounced
            .iter()
            .map(|o| (o, &env.recipients[o.index]))
            .filter(|(_, r)| DsnNotify::in_force(r.notify).failure)
            .map(|(o, r)| Failed::of(r, o.dsn, &o.relay, &o.detail, o.status))
            .collect();
        // A bounce of a bounce goes to the postmaster, never to <>.
        let (audience, to, sender) = if env.sender.is_empty() {
            let pm = params.get("2bounce_notice_recipient");
            (Audience::Postmaster, pm, double_bounce)
        } else if failed.is_empty() {
            return true; // NOTIFY=NEVER for every bounced recipient
        } else {
            (Audience::Sender, env.sender.clone(), String::new())
        };
        // The postmaster copy reports every failure regardless of NOTIFY.
        let failed = if audience == Audience::Postmaster {
            bounced
                .iter()
                .map(|o| {
                    let r = &env.recipients[o.index];
                    Failed::of(r, o.dsn, &o.relay, &o.detail, o.status)
                })
                .collect()
        } else {
            failed
        };
        let store = self.store.clone();
        let original = match blocking(move || store.read_body(id)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{id}: cannot read message for the bounce: {e}");
                return false;
            }
        };
        let now = unix(SystemTime::now());
        let text = bounce::build(&bounce::Report {
            queue_id: &id.to_string(),
            myhostname: &myhostname,
            original_sender: &env.sender,
            to: &to,
            arrival_unix: env.arrival_unix,
            now_unix: now,
            envid: env.envid.as_deref(),
            headers_only: env.ret == Some(Ret::Hdrs),
            audience,
            delay: None,
            recipients: &failed,
            original: &original,
        });
        match self.enqueue(sender, vec![Recipient::new(to)], text).await {
            Ok(new) => {
                let what = match audience {
                    Audience::Sender => "sender",
                    Audience::Postmaster => "postmaster",
                };
                tracing::info!("{id}: {what} non-delivery notification: {new}");
                true
            }
            Err(e) => {
                tracing::warn!("{id}: cannot queue non-delivery notification: {e}");
                false
            }
        }
    }

    /// Queues the delay notification for the `delayed` recipients; false
    /// if it could not be queued (it is tried again at the next attempt).
    async fn warn_sender(
        self: &Arc<Self>,
        params: &Params,
        msg: &StoredMessage,
        delayed: &[&Outcome],
        after: Duration,
    ) -> bool {
        let env = &msg.envelope;
        let id = msg.id;
        let recipients: Vec<Failed> = delayed
            .iter()
            .map(|o| {
                let r = &env.recipients[o.index];
                Failed::of(r, o.dsn, &o.relay, &o.detail, o.status)
            })
            .collect();
        let store = self.store.clone();
        let original = match blocking(move || store.read_body(id)).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{id}: cannot read message for the delay notification: {e}");
                return false;
            }
        };
        let text = bounce::build(&bounce::Report {
            queue_id: &id.to_string(),
            myhostname: &params.get("myhostname"),
            original_sender: &env.sender,
            to: &env.sender,
            arrival_unix: env.arrival_unix,
            now_unix: unix(SystemTime::now()),
            envid: env.envid.as_deref(),
            headers_only: true,
            audience: Audience::Sender,
            delay: Some(bounce::Delay {
                after,
                lifetime: params.time("maximal_queue_lifetime"),
            }),
            recipients: &recipients,
            original: &original,
        });
        let to = vec![Recipient::new(env.sender.clone())];
        match self.enqueue(String::new(), to, text).await {
            Ok(new) => {
                tracing::info!("{id}: sender delay notification: {new}");
                true
            }
            Err(e) => {
                tracing::warn!("{id}: cannot queue delay notification: {e}");
                false
            }
        }
    }

    /// Queues a message qmgr itself wrote (a notification) and schedules it.
    pub async fn enqueue(
        self: &Arc<Self>,
        sender: String,
        recipients: Vec<Recipient>,
        body: Vec<u8>,
    ) -> Result<QueueId, QueueError> {
        // Notifications go through the same rewriting as received mail
        // (virtual aliases may redirect the sender's address); if the
        // tables cannot be read, the addresses are used as they are.
        let (sender, recipients) = match self.router() {
            Ok(router) => route::rewrite_envelope(&router, &sender, recipients.clone())
                .ok()
                .filter(|(_, r)| !r.is_empty())
                .unwrap_or((sender, recipients)),
            Err(_) => (sender, recipients),
        };
        let store = self.store.clone();
        let arrived = SystemTime::now();
        let envelope = Envelope {
            sender,
            recipients,
            arrival_unix: unix(arrived),
            ..Envelope::default()
        };
        let id = blocking(move || {
            let mut incoming = store.begin_message()?;
            incoming.append_body(&body)?;
            incoming.commit(envelope)
        })
        .await?;
        self.note_arrival(id, arrived);
        self.schedule(id);
        Ok(id)
    }
}

/// Recipients (envelope index and address class) by the route that
/// delivers them.
type Groups = BTreeMap<Route, Vec<(usize, AddressClass)>>;

/// One recipient's routing decision and class, or why routing failed.
type Resolved = Result<(Decision, AddressClass), String>;

/// The routing decision and address class of each of the `pending`
/// recipients. Tables live in memory and are re-read only after their
/// file changed (a rare short read, as trivial-rewrite does), so this
/// runs in place.
fn resolve_all(
    router: &Result<Arc<Router>, String>,
    env: &Envelope,
    pending: &[usize],
) -> Vec<(usize, Resolved)> {
    pending
        .iter()
        .map(|&i| {
            let decision = match router {
                Ok(router) => router
                    .resolve(&env.recipients[i].address)
                    .map(|r| (route::decide(&r), r.class))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.clone()),
            };
            (i, decision)
        })
        .collect()
}

/// The agent's results in our shape; a recipient it did not answer for is
/// deferred.
fn outcomes_of(reply: DeliveryReply, idxs: &[usize], handoff: SystemTime) -> Vec<Outcome> {
    let mut by_index: HashMap<usize, _> = reply
        .results
        .into_iter()
        .filter(|r| idxs.contains(&r.index))
        .map(|r| (r.index, r))
        .collect();
    idxs.iter()
        .map(|&index| match by_index.remove(&index) {
            Some(r) => Outcome {
                index,
                status: r.status,
                dsn: r.dsn,
                relay: r.relay,
                detail: r.detail,
                handoff: Some(handoff),
                connect: Duration::try_from_secs_f64(r.connect_secs).unwrap_or_default(),
                transmit: Duration::try_from_secs_f64(r.transmit_secs).unwrap_or_default(),
            },
            None => Outcome {
                index,
                status: DeliveryStatus::Deferred,
                dsn: EnhancedStatus::TEMP_SYSTEM,
                relay: "none".into(),
                detail: "delivery temporarily suspended: mail transport returned no status".into(),
                handoff: Some(handoff),
                connect: Duration::ZERO,
                transmit: Duration::ZERO,
            },
        })
        .collect()
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

/// The sender of postmaster notifications about failed bounces
/// (`double_bounce_sender@$myorigin`); a failure of such a notification is
/// dropped, never reported.
fn double_bounce_sender(params: &Params) -> String {
    format!(
        "{}@{}",
        params.get("double_bounce_sender"),
        params.get("myorigin")
    )
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
