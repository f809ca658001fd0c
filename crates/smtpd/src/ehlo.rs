//! HELO, EHLO and the small verbs that need no transaction: VRFY, ETRN.

use postern_envelope::EnhancedStatus;
use postern_smtp::{Address, Extension, Reply, ehlo_reply};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::milter::Event;
use crate::policy::Stage;
use crate::queue::Queue;
use crate::session::{Session, Step, reply};

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    /// HELO/EHLO: a new greeting also ends any transaction (RFC 5321
    /// 4.1.4).
    pub(crate) async fn helo(&mut self, name: String, esmtp: bool) -> Step {
        self.reset_transaction().await;
        if !self.settings.delay_reject {
            let previous = self.helo.replace(name.clone());
            if let Some(refusal) = self.policy_check(Stage::Helo, None).await {
                self.log_reject(if esmtp { "EHLO" } else { "HELO" }, &refusal, None);
                self.helo = previous;
                self.io.reply(&refusal);
                return Step::Err;
            }
        }
        self.helo = Some(name.clone());
        self.esmtp = esmtp;
        if self.milters.is_some() {
            let verdict = self.milter_event(Event::Helo(&name)).await;
            let verb = if esmtp { "EHLO" } else { "HELO" };
            if let Some((refusal, step)) = self.milter_refusal(verb, &verdict, None) {
                self.io.reply(&refusal);
                return step;
            }
        }
        let host = self.settings.hostname.clone();
        if !esmtp {
            self.io.reply(&Reply::new(250, None, &host));
            return Step::Ok;
        }
        let limit = self.settings.message_size_limit;
        let mut ext = vec![
            Extension::Pipelining,
            Extension::Size((limit > 0).then_some(limit)),
        ];
        if self.settings.vrfy_enabled {
            ext.push(Extension::Vrfy);
        }
        ext.push(Extension::Etrn);
        if self.tls_config.is_some() && self.tls.is_none() {
            ext.push(Extension::Starttls);
        }
        if let Some(sasl) = &self.settings.sasl
            && (self.tls.is_some() || !self.settings.tls_auth_only)
        {
            let mechs = sasl.mechanisms(self.tls.is_some());
            if !mechs.is_empty() {
                ext.push(Extension::Auth(
                    mechs.iter().map(|m| m.name().to_string()).collect(),
                ));
            }
        }
        ext.extend([
            Extension::EnhancedStatusCodes,
            Extension::EightBitMime,
            Extension::Dsn,
            Extension::SmtpUtf8,
            Extension::Chunking,
        ]);
        self.io.reply(&ehlo_reply(&host, &ext));
        Step::Ok
    }

    /// VRFY answers 252 (cannot verify, will try) when enabled; Postern
    /// keeps it off unless the administrator turns it on.
    pub(crate) fn vrfy(&mut self, arg: &str) -> Step {
        if !self.settings.vrfy_enabled {
            return self.refuse("502 5.5.1 VRFY command is disabled");
        }
        match Address::parse_path(arg) {
            Ok(addr) if !addr.is_null() => {
                self.io
                    .reply(&Reply::new(252, Some(EnhancedStatus::OK), arg));
                Step::Ok
            }
            _ => self.refuse("501 5.1.3 Bad recipient address syntax"),
        }
    }

    /// ETRN: asks qmgr to retry deferred mail now.
    pub(crate) async fn etrn(&mut self, _domain: &str) -> Step {
        if self.helo_missing() {
            return self.refuse("503 5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return self.refuse("503 5.5.1 Error: MAIL transaction in progress");
        }
        match self.queue.flush().await {
            Ok(()) => {
                self.io.reply(&reply("250 Queuing started"));
                Step::Ok
            }
            Err(e) => {
                tracing::warn!("ETRN from {}: {e}", self.client.namaddr());
                self.refuse("458 Unable to queue messages")
            }
        }
    }
}
