//! Inbound message authentication in the session (postern-auth's
//! `verify`), for clients outside mynetworks that did not authenticate:
//!
//! * SPF of the HELO and MAIL FROM identities starts with the MAIL FROM
//!   command and runs beside the transaction; RCPT waits for it (and the
//!   sender restrictions at MAIL, with `smtpd_delay_reject = no`), so
//!   that `reject_spf_fail` and `smtpd_spf_fail_action = reject` can act
//!   on it there.
//! * At the end of the message: Authentication-Results fields that claim
//!   our authserv-id (myhostname) are removed (from all mail from outside
//!   mynetworks, authenticated clients' too, so that none but ours is
//!   there when local-delivery seals forwarded mail), DKIM, ARC and DMARC are
//!   checked, the results are logged and written into one
//!   `Authentication-Results:` field below our Received (where a milter
//!   adding one at the top lands in Postfix), and the SPF and DMARC
//!   actions are taken.
//! * A message that a virtual alias forwards to another domain is then
//!   sealed with ARC (`arc_sealing_key`).

use std::net::IpAddr;
use std::sync::Arc;

use postern_auth::verify::{
    AuthResults, DmarcAction, Inbound, SpfFailAction, SpfIdentity, SpfResults,
    remove_our_auth_results,
};
use postern_envelope::EnhancedStatus;
use postern_smtp::Reply;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::queue::Queue;
use crate::session::{Session, Step, Transaction};

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    /// The inbound checks, when this client's mail gets them: it comes
    /// from outside mynetworks and did not authenticate.
    pub(crate) fn inbound(&self) -> Option<&Result<Option<Arc<Inbound>>, String>> {
        if self.trusted_client() {
            return None;
        }
        match &self.settings.inbound {
            Ok(None) => None,
            other => Some(other),
        }
    }

    /// Starts the SPF check of the transaction just opened.
    pub(crate) fn start_spf(&mut self) {
        let Some(Ok(Some(inbound))) = self.inbound() else {
            return;
        };
        if !inbound.methods.spf {
            return;
        }
        let verifier = inbound.verifier.clone();
        let (ip, helo) = (self.client.addr, self.helo.clone().unwrap_or_default());
        if let Some(tx) = self.tx.as_mut() {
            let sender = tx.sender.to_string();
            tx.spf = Some(SpfState::Running(tokio::spawn(async move {
                verifier.check_spf(ip, &helo, &sender).await
            })));
        }
    }

    /// The refusal `smtpd_spf_fail_action` asks for at this point (RCPT
    /// for `reject`, the end of DATA for `reject_at_data`).
    pub(crate) fn spf_fail_at(&self, when: SpfFailAction) -> Option<Reply> {
        let Some(Ok(Some(inbound))) = self.inbound() else {
            return None;
        };
        if inbound.spf_fail != when {
            return None;
        }
        let results = self.tx.as_ref()?.spf.as_ref()?.done()?;
        let (code, dsn, text) = spf_refusal(results, self.client.addr)?;
        Some(Reply::new(code, Some(dsn), &text))
    }

    /// The inbound checks of a message held whole (`content`, starting
    /// with `own`, our own header, unless a header check removed it): the
    /// content with the forged Authentication-Results gone and ours added
    /// below our header, or the step after a refusal (answered and
    /// logged).
    pub(crate) async fn authenticate(
        &mut self,
        id: &str,
        content: Vec<u8>,
        own: &[u8],
    ) -> Result<Vec<u8>, Step> {
        if self.in_mynetworks() {
            return Ok(content);
        }
        let hostname = self.settings.hostname.clone();
        let own = if content.starts_with(own) {
            own.len()
        } else {
            0
        };
        let inbound = match self.inbound() {
            // Not checked (an authenticated client, or no methods): only
            // what claims our authserv-id goes.
            None => {
                let theirs = remove_our_auth_results(&content[own..], &hostname);
                return Ok([&content[..own], &theirs[..]].concat());
            }
            Some(Ok(Some(inbound))) => inbound.clone(),
            Some(_) => return Err(self.refuse("451 4.3.5 Server configuration error")),
        };
        let theirs = remove_our_auth_results(&content[own..], &hostname);
        let spf = match self.tx.as_mut().and_then(|t| t.spf.as_mut()) {
            Some(state) => state.results().await,
            None => None,
        };
        let results = inbound
            .verifier
            .check_message(&theirs, spf.as_deref(), inbound.methods)
            .await;
        tracing::info!(
            "{id}: Authentication-Results: {hostname}; {}",
            results.log_line()
        );
        let header = results.header(&hostname);
        let mut checked = Vec::with_capacity(content.len() + header.len());
        checked.extend_from_slice(&content[..own]);
        checked.extend_from_slice(header.as_bytes());
        checked.extend_from_slice(&theirs);
        drop(theirs);

        let verb = "END-OF-MESSAGE";
        let refusal = match inbound.spf_fail {
            SpfFailAction::RejectAtData => spf
                .as_deref()
                .and_then(|r| spf_refusal(r, self.client.addr))
                .map(|(code, dsn, text)| Reply::new(code, Some(dsn), &text)),
            _ => None,
        };
        let refusal = refusal.or_else(|| match inbound.dmarc_action(&results.dmarc) {
            DmarcAction::Reject => Some(dmarc_refusal(&results)),
            _ => None,
        });
        if let Some(reply) = refusal {
            self.log_whatsup(Some(id), "reject", verb, &reply.to_string(), None);
            self.io.reply(&reply);
            return Err(Step::Err);
        }
        if inbound.dmarc_action(&results.dmarc) == DmarcAction::Hold {
            let policy = results.dmarc.policy.map_or("none", |p| p.as_str());
            let text = format!("DMARC policy {policy} for {}", results.dmarc.header_from);
            self.log_whatsup(Some(id), "hold", verb, &text, None);
            if let Some(tx) = self.tx.as_mut() {
                tx.actions.hold = true;
            }
        }
        Ok(checked)
    }

    /// `content` with an ARC set on top when it was checked here and a
    /// virtual alias forwards one of its recipients to another domain.
    pub(crate) fn arc_seal(&self, id: &str, content: Vec<u8>, tx: &Transaction) -> Vec<u8> {
        if !matches!(self.inbound(), Some(Ok(Some(_)))) {
            return content;
        }
        let sealer = match &self.settings.arc {
            Ok(Some(sealer)) => sealer,
            Ok(None) => return content,
            Err(e) => {
                tracing::warn!("{id}: ARC sealing unusable: {e}");
                return content;
            }
        };
        let Ok(policy) = &self.settings.policy else {
            return content;
        };
        let forwarded = tx.recipients.iter().any(|(r, _)| {
            policy.forwards_outside(&r.to_string()).unwrap_or_else(|e| {
                tracing::warn!("{id}: ARC sealing: {e}");
                false
            })
        });
        if !forwarded {
            return content;
        }
        match sealer.seal(&content, &self.settings.hostname) {
            Ok(Some(set)) => {
                tracing::info!(
                    "{id}: ARC-Seal field added (s={}, d={})",
                    sealer.selector(),
                    sealer.domain()
                );
                let mut sealed = set.into_bytes();
                sealed.extend_from_slice(&content);
                sealed
            }
            Ok(None) => content,
            Err(e) => {
                tracing::warn!("{id}: ARC sealing failed: {e}");
                content
            }
        }
    }
}

/// RFC 7372's "SPF validation failed".
const SPF_FAILED: EnhancedStatus = EnhancedStatus::of(5, 7, 23);

/// The SPF check of one transaction: running, or its results.
#[derive(Debug)]
pub(crate) enum SpfState {
    Running(JoinHandle<SpfResults>),
    Done(Arc<SpfResults>),
    /// The check's task died (it panicked): treated as not checked.
    Lost,
}

impl Drop for SpfState {
    fn drop(&mut self) {
        // A transaction that ends (RSET, QUIT, a dropped connection) stops
        // its lookups.
        if let SpfState::Running(task) = self {
            task.abort();
        }
    }
}

impl SpfState {
    /// The results, waiting for the check if it still runs (each lookup
    /// is bounded by smtpd_message_authentication_timeout).
    pub(crate) async fn results(&mut self) -> Option<Arc<SpfResults>> {
        if let SpfState::Running(task) = self {
            *self = match task.await {
                Ok(results) => SpfState::Done(Arc::new(results)),
                Err(e) => {
                    tracing::warn!("SPF check lost: {e}");
                    SpfState::Lost
                }
            };
        }
        match self {
            SpfState::Done(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// The results if the check has finished and been collected.
    pub(crate) fn done(&self) -> Option<&SpfResults> {
        match self {
            SpfState::Done(r) => Some(r),
            _ => None,
        }
    }
}

/// The refusal of a sender whose HELO or MAIL FROM identity fails SPF
/// (`reject_spf_fail`, `smtpd_spf_fail_action`), worded as Postfix words
/// the sender and HELO restrictions.
pub(crate) fn spf_refusal(
    results: &SpfResults,
    client: IpAddr,
) -> Option<(u16, EnhancedStatus, String)> {
    let failed = results.failed()?;
    let (subject, class) = match failed.identity {
        SpfIdentity::MailFrom => (failed.subject.as_str(), "Sender address"),
        SpfIdentity::Helo => (failed.subject.as_str(), "Helo command"),
    };
    Some((
        550,
        SPF_FAILED,
        format!(
            "<{subject}>: {class} rejected: SPF fail - {} does not designate {client} as permitted sender",
            failed.domain
        ),
    ))
}

/// The reply for a message refused by its domain's DMARC policy, as
/// opendmarc words it.
pub(crate) fn dmarc_refusal(results: &AuthResults) -> Reply {
    Reply::new(
        550,
        Some(EnhancedStatus::of(5, 7, 1)),
        &format!("rejected by DMARC policy for {}", results.dmarc.header_from),
    )
}
