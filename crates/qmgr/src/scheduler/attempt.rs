//! One delivery attempt of a message: its pending recipients routed and
//! grouped by (transport, next hop), the requests to the agents within the
//! concurrency limits, and the agents' replies turned into outcomes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern_config::Params;
use postern_envelope::EnhancedStatus;
use postern_ipc::delivery::{DeliveryRecipient, DeliveryReply, DeliveryRequest, DeliveryStatus};
use postern_queue::{Envelope, QueueId, QueueState, StoredMessage};
use postern_routing::{AddressClass, Router};

use crate::agent::{self, AgentError};
use crate::destination::{self, Feedback, Limits};
use crate::route::{self, Decision, Route};

use super::{Outcome, Qmgr, unix};

/// How long an agent may take to answer one request; a remote delivery
/// has its own timeouts inside smtp-client, this only catches a hung agent.
const AGENT_REPLY_TIMEOUT: Duration = Duration::from_secs(3600);

impl Qmgr {
    /// One delivery attempt of one message.
    pub(super) async fn attempt(self: &Arc<Self>, id: QueueId) {
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
                    handoff,
                    ..Outcome::internal(
                        index,
                        DeliveryStatus::Deferred,
                        EnhancedStatus::TEMP_SYSTEM,
                        detail.clone(),
                    )
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
            let address = &env.recipients[i].address;
            let decision = match router {
                Ok(router) => router
                    .resolve(address)
                    .map(|r| match &env.filter {
                        // A content filter overrides every route but an
                        // unknown virtual alias recipient's bounce.
                        Some(f)
                            if r.class != AddressClass::VirtualAlias || r.transport != "error" =>
                        {
                            r.through_filter(f, address)
                        }
                        _ => r,
                    })
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
                remote_reply: r.remote_reply,
                handoff: Some(handoff),
                connect: Duration::try_from_secs_f64(r.connect_secs).unwrap_or_default(),
                transmit: Duration::try_from_secs_f64(r.transmit_secs).unwrap_or_default(),
            },
            None => Outcome {
                handoff: Some(handoff),
                ..Outcome::internal(
                    index,
                    DeliveryStatus::Deferred,
                    EnhancedStatus::TEMP_SYSTEM,
                    "delivery temporarily suspended: mail transport returned no status".into(),
                )
            },
        })
        .collect()
}
