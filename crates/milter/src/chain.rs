//! [`Milters`]: the filters of one list, in order, for one SMTP session
//! (Postfix's milter.c). Each event goes to the filters in turn until one
//! answers anything but continue or accept: that answer is the chain's,
//! and the filters after it do not see the event.

use crate::client::{ClientInfo, Header, Milter};
use crate::macros::MacroSource;
use crate::settings::MilterSettings;
use crate::verdict::{MessageOutcome, MilterError, Outcome, Verdict};

/// The filters of one session.
#[derive(Debug)]
pub struct Milters {
    milters: Vec<Milter>,
    /// `milter_macro_daemon_name`, the `{daemon_name}` macro when the
    /// caller has none.
    daemon_name: String,
    /// `milter_macro_v`, the `v` macro likewise.
    macro_v: String,
}

/// The caller's macros, with `{daemon_name}` and `v` from the settings.
struct WithDefaults<'a> {
    inner: &'a dyn MacroSource,
    daemon_name: &'a str,
    macro_v: &'a str,
}

impl MacroSource for WithDefaults<'_> {
    fn macro_value(&self, name: &str) -> Option<String> {
        self.inner.macro_value(name).or_else(|| {
            let fallback = match name {
                "daemon_name" => self.daemon_name,
                "v" => self.macro_v,
                _ => return None,
            };
            Some(fallback.to_string()).filter(|v| !v.is_empty())
        })
    }
}

/// One envelope event, to hand to each filter.
enum Event<'a> {
    Connect(&'a ClientInfo),
    Helo(&'a str),
    Mail(&'a str, &'a [String]),
    Rcpt(&'a str, &'a [String]),
    Data,
    Unknown(&'a str),
}

impl Milters {
    /// Filters for a new session; nothing is connected until
    /// [`Milters::connect`].
    pub fn new(settings: &MilterSettings) -> Milters {
        Milters {
            milters: settings
                .milters
                .iter()
                .map(|spec| Milter::new(spec.clone(), settings.macros.clone()))
                .collect(),
            daemon_name: settings.daemon_name.clone(),
            macro_v: settings.macro_v.clone(),
        }
    }

    /// No filters configured: the caller may skip every call.
    pub fn is_empty(&self) -> bool {
        self.milters.is_empty()
    }

    /// The filters, in order.
    pub fn milters(&self) -> &[Milter] {
        &self.milters
    }

    async fn each(
        &mut self,
        event: Event<'_>,
        macros: &dyn MacroSource,
        rejected: bool,
    ) -> Outcome {
        let source = WithDefaults {
            inner: macros,
            daemon_name: &self.daemon_name,
            macro_v: &self.macro_v,
        };
        let mut errors = Vec::new();
        for m in &mut self.milters {
            if rejected && !m.wants_rejected_recipients() {
                continue;
            }
            let o = match event {
                Event::Connect(client) => m.connect(client, &source).await,
                Event::Helo(name) => m.helo(name, &source).await,
                Event::Mail(sender, params) => m.mail(sender, params, &source).await,
                Event::Rcpt(rcpt, params) => m.rcpt(rcpt, params, &source).await,
                Event::Data => m.data(&source).await,
                Event::Unknown(command) => m.unknown(command, &source).await,
            };
            errors.extend(o.errors);
            if !o.verdict.goes_on() {
                return Outcome {
                    verdict: o.verdict,
                    errors,
                };
            }
        }
        Outcome {
            verdict: Verdict::Continue,
            errors,
        }
    }

    /// The client connected: each filter is connected, negotiated and
    /// told. Macros: `milter_connect_macros`.
    pub async fn connect(&mut self, client: &ClientInfo, macros: &dyn MacroSource) -> Outcome {
        self.each(Event::Connect(client), macros, false).await
    }

    /// HELO or EHLO. Macros: `milter_helo_macros`.
    pub async fn helo(&mut self, helo_name: &str, macros: &dyn MacroSource) -> Outcome {
        self.each(Event::Helo(helo_name), macros, false).await
    }

    /// MAIL FROM, `sender` in angle brackets, then its ESMTP parameters.
    /// Macros: `milter_mail_macros`.
    pub async fn mail(
        &mut self,
        sender: &str,
        params: &[String],
        macros: &dyn MacroSource,
    ) -> Outcome {
        self.each(Event::Mail(sender, params), macros, false).await
    }

    /// An accepted RCPT TO, as [`Milters::mail`]. Macros:
    /// `milter_rcpt_macros`.
    pub async fn rcpt(
        &mut self,
        recipient: &str,
        params: &[String],
        macros: &dyn MacroSource,
    ) -> Outcome {
        self.each(Event::Rcpt(recipient, params), macros, false)
            .await
    }

    /// A RCPT TO that smtpd rejected, for the filters that asked to see
    /// those (`SMFIP_RCPT_REJ`); their verdict does not change smtpd's
    /// refusal, as in Postfix.
    pub async fn rejected_rcpt(
        &mut self,
        recipient: &str,
        params: &[String],
        macros: &dyn MacroSource,
    ) -> Outcome {
        self.each(Event::Rcpt(recipient, params), macros, true)
            .await
    }

    /// DATA or the first BDAT. Macros: `milter_data_macros`.
    pub async fn data(&mut self, macros: &dyn MacroSource) -> Outcome {
        self.each(Event::Data, macros, false).await
    }

    /// A command smtpd does not know, as sent. Macros:
    /// `milter_unknown_command_macros`.
    pub async fn unknown(&mut self, command: &str, macros: &dyn MacroSource) -> Outcome {
        self.each(Event::Unknown(command), macros, false).await
    }

    /// The message content to each filter in turn (see
    /// [`Milter::message`]); macros: `milter_end_of_header_macros` with
    /// each header and end of headers, `milter_end_of_data_macros` with
    /// body chunks and end of message. The first verdict other than
    /// continue or accept ends the chain; modifications of the filters
    /// that saw the message come in chain order. Every filter sees the
    /// message as received (Postfix shows a later filter the edits of
    /// earlier ones).
    pub async fn message<B: AsRef<[u8]>>(
        &mut self,
        headers: &[Header],
        body: &[B],
        macros: &dyn MacroSource,
    ) -> MessageOutcome {
        let source = WithDefaults {
            inner: macros,
            daemon_name: &self.daemon_name,
            macro_v: &self.macro_v,
        };
        let mut out = MessageOutcome {
            verdict: Verdict::Continue,
            modifications: Vec::new(),
            errors: Vec::new(),
        };
        for m in &mut self.milters {
            let o = m.message(headers, body, &source).await;
            out.errors.extend(o.errors);
            out.modifications.extend(o.modifications);
            if !o.verdict.goes_on() {
                out.verdict = o.verdict;
                break;
            }
        }
        out
    }

    /// The message or envelope in progress is over: after each message,
    /// at RSET, and at HELO after MAIL. Returns write failures to log.
    pub async fn abort(&mut self) -> Vec<MilterError> {
        let mut errors = Vec::new();
        for m in &mut self.milters {
            errors.extend(m.abort().await);
        }
        errors
    }

    /// The session is over: QUIT to each filter, sockets closed.
    pub async fn quit(&mut self) {
        for m in &mut self.milters {
            m.quit().await;
        }
    }
}
