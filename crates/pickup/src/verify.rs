//! `sendmail -bv`: instead of delivering, mail the sender a report of
//! where each recipient would go, for testing address rewriting and
//! routing. Postfix sends a probe through the delivery agents; Postern
//! reports the routing decision, the part the tables decide: each
//! recipient after canonical maps and virtual aliases, and its
//! transport, next hop and delivered address (postern-routing's).

use postern_config::Params;
use postern_ipc::qmgr::{Envelope, EnvelopeRecipient};
use postern_routing::Router;

use crate::maildrop::Dropped;
use crate::{Later, begin, now_rfc5322, qualify};

/// Queues the report to `sender` (as MAILER-DAEMON, the null sender).
pub async fn report(params: &Params, d: &Dropped, sender: &str) -> Result<(), Later> {
    let to = qualify(sender, params);
    if to.is_empty() {
        tracing::warn!("uid={}: -bv with the null sender: no report is sent", d.uid);
        return Ok(());
    }
    let router =
        Router::from_params(params).map_err(|e| Later::Skip(format!("cannot route: {e}")))?;
    let mut lines = Vec::new();
    for r in &d.submission.recipients {
        lines.push(route_line(&router, &r.address));
    }
    let (mut queue, id) = begin(params).await?;
    let hostname = params.get("myhostname");
    let date = now_rfc5322();
    let text = format!(
        "From: MAILER-DAEMON@{hostname} (Mail Delivery System)\r\n\
         To: {to}\r\n\
         Subject: Mail Delivery Status Report\r\n\
         Date: {date}\r\n\
         Message-Id: <{id}@{hostname}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         \r\n\
         This is the mail system at host {hostname}.\r\n\
         \r\n\
         Enclosed is the mail delivery report that you requested: where\r\n\
         each recipient would be delivered (nothing was sent).\r\n\
         \r\n{}",
        lines.concat()
    );
    queue.body(text.as_bytes()).await.map_err(Later::Skip)?;
    let envelope = Envelope {
        sender: String::new(),
        recipients: vec![EnvelopeRecipient {
            address: to.clone(),
            ..Default::default()
        }],
        ..Envelope::default()
    };
    let queued = queue.commit(envelope).await.map_err(Later::Skip)?;
    tracing::info!(
        "{queued}: uid={} from=<> verification report for <{to}>, {} recipient(s)",
        d.uid,
        d.submission.recipients.len()
    );
    Ok(())
}

/// `<addr>: ...` for each address the recipient becomes.
fn route_line(router: &Router, address: &str) -> String {
    let rewritten = router
        .rewrite_recipient(address)
        .and_then(|a| router.expand_virtual(&a));
    let expanded = match rewritten {
        Ok(list) => list,
        Err(e) => return format!("<{address}>: cannot be resolved now: {e}\r\n"),
    };
    if expanded.is_empty() {
        return format!("<{address}>: no recipient left after virtual alias expansion\r\n");
    }
    let mut out = String::new();
    for a in expanded {
        let via = if a == address {
            String::new()
        } else {
            format!(" (as <{a}>)")
        };
        match router.resolve(&a) {
            Ok(route) if matches!(route.transport.as_str(), "error" | "discard") => {
                out.push_str(&format!(
                    "<{address}>{via}: {}: {}\r\n",
                    route.transport, route.nexthop
                ));
            }
            Ok(route) => out.push_str(&format!(
                "<{address}>{via}: deliverable via {} to {}, recipient <{}>\r\n",
                route.transport, route.nexthop, route.recipient
            )),
            Err(e) => out.push_str(&format!(
                "<{address}>{via}: cannot be resolved now: {e}\r\n"
            )),
        }
    }
    out
}
