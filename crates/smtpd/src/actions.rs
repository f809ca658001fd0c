//! What access tables (and later header and body checks and milters)
//! decided about the message being received, kept with the transaction
//! and applied when it is queued, as Postfix's cleanup applies its flags.
//!
//! - HOLD: the message is queued on hold ([`Envelope::hold`]).
//! - DISCARD: it is accepted and dropped; the client hears `250 ... queued
//!   as ID` all the same.
//! - FILTER: it goes through this content filter instead of the service's
//!   `content_filter` (the last FILTER wins).
//! - REDIRECT: its recipients are replaced by one address (the last wins;
//!   access(5): it overrides FILTER, and all recipients).
//! - BCC: more recipients (in an access table, Postfix 3.0's rule: the
//!   last BCC wins), with `NOTIFY=NEVER`: the sender never hears of them.
//! - PREPEND: header lines put before our Received header.

use postern_envelope::{ContentFilter, Notify, Orcpt};
use postern_ipc::qmgr::{Envelope, EnvelopeRecipient};

use crate::policy::AccessAction;

/// The actions in force for one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageActions {
    pub hold: bool,
    pub discard: bool,
    pub filter: Option<ContentFilter>,
    pub redirect: Option<String>,
    pub bcc: Vec<String>,
    pub prepend: Vec<String>,
}

impl MessageActions {
    pub fn apply(&mut self, action: AccessAction) {
        match action {
            AccessAction::Hold => self.hold = true,
            AccessAction::Discard => self.discard = true,
            AccessAction::Filter(f) => self.filter = Some(f),
            AccessAction::Redirect(a) => self.redirect = Some(a),
            AccessAction::Bcc(a) => self.bcc = vec![a],
            AccessAction::Prepend(h) => self.prepend.push(h),
        }
    }

    /// The envelope as the actions leave it; `filter` is the service's
    /// `content_filter`, which a FILTER action overrides.
    pub fn envelope(&self, mut env: Envelope, filter: Option<&ContentFilter>) -> Envelope {
        env.hold |= self.hold;
        env.filter = self.filter.clone().or_else(|| filter.cloned());
        if let Some(to) = &self.redirect {
            // One delivery to the new address; the first original
            // recipient stays as ORCPT, for the log's orig_to= and DSNs.
            let first = env.recipients.first().cloned().unwrap_or_default();
            env.recipients = vec![EnvelopeRecipient {
                address: to.clone(),
                orcpt: first.orcpt.or(Some(Orcpt::rfc822(first.address))),
                notify: first.notify,
            }];
            env.filter = None;
        }
        for bcc in &self.bcc {
            env.recipients.push(EnvelopeRecipient {
                address: bcc.clone(),
                orcpt: None,
                notify: Some(Notify::NEVER),
            });
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(rcpts: &[&str]) -> Envelope {
        Envelope {
            sender: "s@example.net".into(),
            recipients: rcpts
                .iter()
                .map(|r| EnvelopeRecipient {
                    address: r.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn actions_change_the_envelope_as_postfix_does() {
        let service: ContentFilter = "smtp:[127.0.0.1]:10025".parse().unwrap();
        let none = MessageActions::default();
        let e = none.envelope(env(&["a@x"]), Some(&service));
        assert_eq!(e.filter.as_ref(), Some(&service));
        assert!(!e.hold);

        let mut a = MessageActions::default();
        a.apply(AccessAction::Hold);
        a.apply(AccessAction::Filter(
            "scan:[127.0.0.2]:10025".parse().unwrap(),
        ));
        let e = a.envelope(env(&["a@x"]), Some(&service));
        assert!(e.hold);
        assert_eq!(e.filter.unwrap().to_string(), "scan:[127.0.0.2]:10025");

        a.apply(AccessAction::Redirect("first@y".into()));
        a.apply(AccessAction::Redirect("abuse@y".into()));
        a.apply(AccessAction::Bcc("archive@z".into()));
        let e = a.envelope(env(&["a@x", "b@x"]), Some(&service));
        assert_eq!(e.filter, None, "REDIRECT overrides FILTER");
        let to: Vec<_> = e.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(to, ["abuse@y", "archive@z"]);
        assert_eq!(e.recipients[0].orcpt, Some(Orcpt::rfc822("a@x")));
        assert_eq!(e.recipients[1].notify, Some(Notify::NEVER));
    }
}
