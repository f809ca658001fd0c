//! MAIL FROM and RCPT TO: opening the transaction, the recipient limit,
//! and the access policy.

use postern_smtp::{Address, MailParams, RcptParams};
use tokio::io::{AsyncRead, AsyncWrite};

use postern_auth::verify::SpfFailAction;

use crate::milter::Event;
use crate::policy::Stage;
use crate::queue::Queue;
use crate::session::{Session, Step, Transaction, reply};

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    pub(crate) async fn mail(&mut self, from: Address, params: MailParams) -> Step {
        if self.helo_missing() {
            return self.refuse("503 5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return self.refuse("503 5.5.1 Error: nested MAIL command");
        }
        if params.auth.is_some() && self.settings.sasl.is_none() {
            return self.refuse("503 5.5.4 Error: authentication disabled");
        }
        let limit = self.settings.message_size_limit;
        if limit > 0 && params.size.is_some_and(|s| s > limit) {
            return self.refuse("552 5.3.4 Message size exceeds fixed limit");
        }
        let tx = Transaction {
            sender: from,
            params,
            recipients: Vec::new(),
            overshoot: 0,
            bdat: None,
            actions: self.session_actions.clone(),
            spf: None,
        };
        self.tx = Some(tx);
        self.start_spf();
        if !self.settings.delay_reject {
            // The sender restrictions run now, and reject_spf_fail among
            // them needs the result.
            if let Some(spf) = self.tx.as_mut().and_then(|t| t.spf.as_mut()) {
                spf.results().await;
            }
        }
        if !self.settings.delay_reject
            && let Some(refusal) = self.policy_check(Stage::Mail, None).await
        {
            self.log_reject("MAIL", &refusal, None);
            self.tx = None;
            self.io.reply(&refusal);
            return Step::Err;
        }
        if self.milters.is_some() {
            let (sender, params) = match &self.tx {
                Some(t) => (t.sender.clone(), t.params.clone()),
                None => (Address::null(), MailParams::default()),
            };
            let verdict = self.milter_event(Event::Mail(&sender, &params)).await;
            if let Some((refusal, step)) = self.milter_refusal("MAIL", &verdict, None) {
                self.tx = None;
                self.milter_abort().await;
                self.io.reply(&refusal);
                return step;
            }
        }
        self.io.reply(&reply("250 2.1.0 Ok"));
        Step::Ok
    }

    pub(crate) async fn rcpt(&mut self, to: Address, params: RcptParams) -> Step {
        let Some(tx) = self.tx.as_mut() else {
            return self.refuse("503 5.5.1 Error: need MAIL command");
        };
        let limit = self.settings.recipient_limit;
        if limit > 0 && tx.recipients.len() >= limit {
            self.io
                .reply(&reply("452 4.5.3 Error: too many recipients"));
            tx.overshoot += 1;
            return if tx.overshoot <= self.settings.recipient_overshoot_limit {
                Step::Soft
            } else {
                Step::Err
            };
        }
        if !to.is_ascii() && !tx.params.smtputf8 {
            return self.refuse("553 5.6.7 Must declare SMTPUTF8 to send unicode address");
        }
        if let Some(spf) = tx.spf.as_mut() {
            spf.results().await;
        }
        let refusal = match self.policy_check(Stage::Rcpt, Some(&to)).await {
            Some(r) => Some(r),
            None => self.spf_fail_at(SpfFailAction::Reject),
        };
        if let Some(refusal) = refusal {
            self.log_reject("RCPT", &refusal, Some(&to));
            self.io.reply(&refusal);
            if self.milters.is_some() {
                // Their verdict cannot undo the refusal (SMFIP_RCPT_REJ).
                self.milter_event(Event::RejectedRcpt(&to, &params)).await;
            }
            return Step::Err;
        }
        if self.milters.is_some() {
            let verdict = self.milter_event(Event::Rcpt(&to, &params)).await;
            if let Some((refusal, step)) = self.milter_refusal("RCPT", &verdict, Some(&to)) {
                self.io.reply(&refusal);
                return step;
            }
        }
        if let Some(tx) = self.tx.as_mut() {
            tx.recipients.push((to, params));
        }
        self.io.reply(&reply("250 2.1.5 Ok"));
        Step::Ok
    }
}
