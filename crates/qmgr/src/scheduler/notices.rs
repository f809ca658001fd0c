//! Notices to the sender that qmgr writes and queues itself: non-delivery
//! (bounces, expiry) and delay warnings, and the postmaster copy of a
//! failed bounce.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use postern_config::Params;
use postern_envelope::Notify as DsnNotify;
use postern_queue::{Envelope, QueueError, QueueId, Recipient, Ret, StoredMessage};

use postern_milter::nonsmtp::{self, Judgement, Submission};
use postern_milter::{MilterList, MilterSettings};

use crate::bounce::{self, Audience, Failed};
use crate::route;

use super::{Outcome, Qmgr, blocking, unix};

impl Qmgr {
    /// Queues the non-delivery notification for the bounced recipients;
    /// false if it could not be queued (the recipients stay deferred).
    pub(super) async fn return_to_sender(
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
            .filter(|o| DsnNotify::in_force(env.recipients[o.index].notify).failure)
            .map(|o| reported(env, o))
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
            bounced.iter().map(|o| reported(env, o)).collect()
        } else {
            failed
        };
        let Some(original) = self.original(id, "bounce").await else {
            return false;
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
        let who = match audience {
            Audience::Sender => "sender",
            Audience::Postmaster => "postmaster",
        };
        let to = vec![Recipient::new(to)];
        self.queue_notice(id, sender, to, text, who, "non-delivery")
            .await
    }

    /// Queues the delay notification for the `delayed` recipients; false
    /// if it could not be queued (it is tried again at the next attempt).
    pub(super) async fn warn_sender(
        self: &Arc<Self>,
        params: &Params,
        msg: &StoredMessage,
        delayed: &[&Outcome],
        after: Duration,
    ) -> bool {
        let env = &msg.envelope;
        let id = msg.id;
        let recipients: Vec<Failed> = delayed.iter().map(|o| reported(env, o)).collect();
        let Some(original) = self.original(id, "delay notification").await else {
            return false;
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
        self.queue_notice(id, String::new(), to, text, "sender", "delay")
            .await
    }

    /// The body of `id`, for the `notice` about it; None (logged) when it
    /// cannot be read.
    async fn original(self: &Arc<Self>, id: QueueId, notice: &str) -> Option<Vec<u8>> {
        let store = self.store.clone();
        match blocking(move || store.read_body(id)).await {
            Ok(body) => Some(body),
            Err(e) => {
                tracing::warn!("{id}: cannot read message for the {notice}: {e}");
                None
            }
        }
    }

    /// Queues the `kind` notification about `id` for `who` (logged either
    /// way); false if it could not be queued.
    async fn queue_notice(
        self: &Arc<Self>,
        id: QueueId,
        sender: String,
        to: Vec<Recipient>,
        text: Vec<u8>,
        who: &str,
        kind: &str,
    ) -> bool {
        // Postfix's internal_mail_filter_classes: notices to senders are
        // the "bounce" class, those to the postmaster "notify".
        let class = match who {
            "postmaster" => "notify",
            _ => "bounce",
        };
        match self.enqueue_notice(sender, to, text, class).await {
            Ok(Some(new)) => {
                tracing::info!("{id}: {who} {kind} notification: {new}");
                true
            }
            Ok(None) => {
                tracing::info!("{id}: {who} {kind} notification discarded by a milter");
                true
            }
            Err(e) => {
                tracing::warn!("{id}: cannot queue {kind} notification: {e}");
                false
            }
        }
    }

    /// [`Qmgr::enqueue`] for a notice of `class` (`bounce` or `notify`):
    /// when internal_mail_filter_classes names the class, the notice goes
    /// through non_smtpd_milters first, as Postfix's bounce daemon sends
    /// it through cleanup's filters (so that a signing milter signs
    /// bounces too), and is then DKIM-signed when dkim_signing_table has a
    /// key for its From: address, as smtpd signs mail from mynetworks. A
    /// filter's refusal keeps the notice from being queued (it is tried
    /// again: Err); a discard drops it (None); a quarantine queues it on
    /// hold.
    async fn enqueue_notice(
        self: &Arc<Self>,
        sender: String,
        recipients: Vec<Recipient>,
        body: Vec<u8>,
        class: &str,
    ) -> Result<Option<QueueId>, String> {
        let params = self.params();
        let filtered = params
            .words("internal_mail_filter_classes")
            .iter()
            .any(|c| c == class);
        if !filtered {
            let id = self.enqueue(sender, recipients, body, false).await;
            return id.map(Some).map_err(|e| e.to_string());
        }
        let (content, sender, recipients, hold) =
            match MilterSettings::from_params(&params, MilterList::NonSmtpd) {
                Ok(settings) if !settings.milters.is_empty() => {
                    let addresses: Vec<String> =
                        recipients.iter().map(|r| r.address.clone()).collect();
                    let submission = Submission {
                        queue_id: "NOQUEUE",
                        hostname: &params.get("myhostname"),
                        sender: &sender,
                        recipients: &addresses,
                        content: &body,
                    };
                    match nonsmtp::judge(&settings, &submission).await {
                        Judgement::Accept {
                            content,
                            sender,
                            recipients: addresses,
                            hold,
                        } => {
                            let recipients = addresses.into_iter().map(Recipient::new).collect();
                            (content, sender, recipients, hold.is_some())
                        }
                        Judgement::Discard => return Ok(None),
                        Judgement::Refuse(reply) => {
                            return Err(format!("refused by a milter: {reply}"));
                        }
                    }
                }
                _ => (body, sender, recipients, false),
            };
        let content = postern_auth::sign_or_warn(&params, content, "notification");
        let id = self.enqueue(sender, recipients, content, hold).await;
        id.map(Some).map_err(|e| e.to_string())
    }

    /// Queues a message qmgr itself wrote (a notification) and schedules
    /// it, or puts it straight on hold.
    pub async fn enqueue(
        self: &Arc<Self>,
        sender: String,
        recipients: Vec<Recipient>,
        body: Vec<u8>,
        hold: bool,
    ) -> Result<QueueId, QueueError> {
        // Notifications go through the same rewriting as received mail
        // (virtual aliases may redirect the sender's address); if the
        // tables cannot be read, the addresses are used as they are.
        let (sender, recipients) = match self.router() {
            Ok(router) => route::rewrite_envelope(&router, &sender, recipients.clone(), true)
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
            if hold {
                incoming.hold();
            }
            incoming.commit(envelope)
        })
        .await?;
        if !hold {
            self.note_arrival(id, arrived);
            self.schedule(id);
        }
        Ok(id)
    }
}

/// The report line of one outcome.
fn reported(env: &Envelope, o: &Outcome) -> Failed {
    let r = &env.recipients[o.index];
    Failed {
        address: r.address.clone(),
        orcpt: r.orcpt.clone(),
        dsn: o.dsn,
        relay: o.relay.clone(),
        detail: o.detail.clone(),
        remote_reply: o.remote_reply.clone(),
        expired: o.status == postern_envelope::DeliveryStatus::Expired,
    }
}

/// The sender of postmaster notifications about failed bounces
/// (`double_bounce_sender@$myorigin`); a failure of such a notification is
/// dropped, never reported.
pub(super) fn double_bounce_sender(params: &Params) -> String {
    format!(
        "{}@{}",
        params.get("double_bounce_sender"),
        params.get("myorigin")
    )
}
