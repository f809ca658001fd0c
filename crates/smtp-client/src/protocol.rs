//! The SMTP conversation on an open [`Session`], as Postfix's
//! smtp_proto.c: greeting, EHLO (HELO when EHLO is refused with 5xx),
//! STARTTLS and EHLO again when the TLS level wants it ([`crate::tls`]),
//! AUTH when a password is known for the server ([`crate::sasl`]), the
//! SIZE check, then MAIL FROM, one RCPT TO per recipient and DATA — sent
//! together when the server offers PIPELINING — the dot-stuffed body
//! streamed from qmgr, and QUIT.
//!
//! Every recipient ends with an [`Outcome`]: the per-recipient RCPT reply
//! when that refused it, else the reply that ended the transaction.

use std::time::{Duration, Instant};

use postern_envelope::EnhancedStatus;
use postern_ipc::delivery::{DeliveryRecipient, DeliveryRequest};
use postern_smtp::{Body, Capabilities, DataEncoder, MailParams, RcptParams, Reply};

use postern_tls::SecurityLevel;

use crate::nexthop::Nexthop;
use crate::outcome::{Outcome, one_line, reply_dsn};
use crate::session::{Session, Stage, TlsFailure};
use crate::settings::Settings;
use crate::{sasl, tls};
use postern_daemon::delivery::{BodyError, BodySource};

/// Most bytes of pipelined commands written before reading their replies.
const PIPELINE_BATCH: usize = 4096;

/// What one session did for the recipients it was given.
#[derive(Debug)]
pub struct Report {
    /// One per recipient, in the order given.
    pub outcomes: Vec<Outcome>,
    /// When the greeting and EHLO were done (the end of the `c` delay).
    pub handshake_done: Option<Instant>,
    /// The session is in a known state and may carry another transaction.
    pub reusable: bool,
    /// The TLS handshake failed at level `may`: the same server is to be
    /// tried again over a new plaintext connection.
    pub retry_plaintext: bool,
}

/// Runs greeting and EHLO (unless the session is a cached one that did
/// them already) and one mail transaction. Only a failure to read the body
/// from qmgr is an error; everything on the SMTP side is an outcome. The
/// caller ends the session with [`quit`] or keeps it for reuse.
pub async fn deliver<S>(
    sess: &mut Session,
    s: &Settings,
    hop: &Nexthop,
    req: &DeliveryRequest,
    rcpts: &[&DeliveryRecipient],
    body: &mut BodySource<'_, S>,
) -> Result<Report, BodyError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + postern_ipc::TakeFds,
{
    let mut outcomes: Vec<Option<Outcome>> = vec![None; rcpts.len()];
    let mut handshake_done = None;
    let result = async {
        let caps = match sess.caps.clone() {
            Some(caps) => caps,
            None => {
                let caps = handshake(sess, s, hop).await?;
                sess.caps = Some(caps.clone());
                caps
            }
        };
        handshake_done = Some(Instant::now());
        transaction(sess, s, req, rcpts, &caps, body, &mut outcomes).await
    }
    .await;
    let mut retry_plaintext = false;
    let failure = match result {
        Ok(()) => None,
        Err(Failed::Smtp(o)) => Some(o),
        Err(Failed::RetryPlaintext(o)) => {
            retry_plaintext = true;
            Some(o)
        }
        Err(Failed::Body(e)) => return Err(e),
    };
    let outcomes = outcomes
        .into_iter()
        .map(|o| {
            o.or_else(|| failure.clone()).unwrap_or_else(|| {
                Outcome::deferred(
                    EnhancedStatus::of(4, 3, 0),
                    "internal error: recipient left without an outcome",
                )
            })
        })
        .collect();
    Ok(Report {
        outcomes,
        handshake_done,
        reusable: failure.is_none() && !sess.closing,
        retry_plaintext,
    })
}

/// Ends a session politely. The answer to QUIT changes nothing; a server
/// that hangs up first is fine.
pub async fn quit(mut sess: Session, s: &Settings) {
    let _ = sess.command("QUIT", s.quit_timeout, Stage::Quit).await;
}

/// Readies a cached session for a new transaction: RSET must get a 2xx,
/// else the session is dropped and a new one opened.
pub async fn reset(sess: &mut Session, s: &Settings) -> bool {
    matches!(sess.command("RSET", s.helo_timeout, Stage::Rset).await, Ok(r) if r.is_positive())
}

/// Why a session stopped early.
enum Failed {
    /// Applies to every recipient still open.
    Smtp(Outcome),
    /// The TLS handshake failed where TLS was optional; the outcome
    /// stands if the plaintext retry cannot connect.
    RetryPlaintext(Outcome),
    Body(BodyError),
}

impl From<Outcome> for Failed {
    fn from(o: Outcome) -> Failed {
        Failed::Smtp(o)
    }
}

/// Greeting, EHLO (or HELO), STARTTLS and AUTH as configured; the
/// server's capabilities (after STARTTLS, those it announced over TLS).
async fn handshake(
    sess: &mut Session,
    s: &Settings,
    hop: &Nexthop,
) -> Result<Capabilities, Failed> {
    let greeting = sess.read(s.helo_timeout, Stage::Greeting).await?;
    if !greeting.is_positive() {
        // smtp_skip_5xx_greeting (Postfix's default): a server that greets
        // with 5xx is skipped like one that greets with 4xx, the next MX
        // host may do better, and the mail is deferred at worst.
        return Err(Outcome::deferred(
            reply_dsn(&greeting).temporary(),
            format!(
                "host {} refused to talk to me: {}",
                sess.target.namaddr(),
                one_line(&greeting)
            ),
        )
        .into());
    }
    let caps = hello(sess, s).await?;
    let caps = starttls(sess, s, hop, caps).await?;
    // smtp_sasl_auth_enable: log in when the server offers AUTH and the
    // password tables know it; else go on as strangers.
    if s.sasl.enabled
        && !caps.auth.is_empty()
        && let Some(creds) = sasl::credentials(s, hop, &sess.target.host)?
    {
        sasl::authenticate(sess, s, &caps, &creds).await?;
    }
    Ok(caps)
}

/// EHLO, or HELO for a server that refuses EHLO with 5xx.
async fn hello(sess: &mut Session, s: &Settings) -> Result<Capabilities, Failed> {
    let ehlo = greet(sess, s, "EHLO", Stage::Ehlo).await?;
    if ehlo.is_positive() {
        return Ok(Capabilities::from_reply(&ehlo));
    }
    if !ehlo.is_permanent() {
        return Err(Outcome::rejected(&ehlo, &sess.target.namaddr(), "EHLO command").into());
    }
    // An old server that does not know EHLO.
    let helo = greet(sess, s, "HELO", Stage::Helo).await?;
    if !helo.is_positive() {
        return Err(Outcome::rejected(&helo, &sess.target.namaddr(), "HELO command").into());
    }
    Ok(Capabilities::default())
}

/// `verb` (EHLO or HELO) with `smtp_helo_name`.
async fn greet(
    sess: &mut Session,
    s: &Settings,
    verb: &str,
    stage: Stage,
) -> Result<Reply, Outcome> {
    let line = format!("{verb} {}", s.helo_name);
    sess.command(&line, s.helo_timeout, stage).await
}

/// STARTTLS per `smtp_tls_security_level` (see [`crate::tls`]); the
/// capabilities to go on with.
async fn starttls(
    sess: &mut Session,
    s: &Settings,
    hop: &Nexthop,
    mut caps: Capabilities,
) -> Result<Capabilities, Failed> {
    let level = s.tls.level;
    let namaddr = sess.target.namaddr();
    if sess.is_tls() || !s.tls.wanted() {
        return Ok(caps);
    }
    if caps.starttls
        && !sess.no_starttls
        && let Some(config) = s.tls.config.clone()
    {
        let reply = sess
            .command("STARTTLS", s.starttls_timeout, Stage::Starttls)
            .await?;
        if reply.is_positive() {
            return match handshake_tls(sess, s, config).await {
                Ok(()) => Ok(hello(sess, s).await?),
                Err(failure) => Err(tls_failed(sess, s, hop, failure)?),
            };
        }
        if level.requires_tls() {
            return Err(Outcome::from_code(
                &reply,
                format!(
                    "TLS is required, but host {namaddr} refused to start TLS: {}",
                    one_line(&reply)
                ),
            )
            .into());
        }
        // `may`: go on in plaintext on this connection.
        caps.starttls = false;
        return Ok(caps);
    }
    if level.requires_tls() {
        let o = if !caps.starttls || sess.no_starttls {
            Outcome::deferred(
                EnhancedStatus::of(4, 7, 4),
                format!("TLS is required, but was not offered by host {namaddr}"),
            )
        } else {
            if let Some(e) = &s.tls.error {
                tracing::warn!("TLS is unavailable: {e}");
            }
            Outcome::deferred(
                EnhancedStatus::of(4, 7, 5),
                "TLS is required, but our TLS engine is unavailable",
            )
        };
        return Err(o.into());
    }
    Ok(caps)
}

/// The handshake itself, logged as Postfix logs it when it succeeds.
async fn handshake_tls(
    sess: &mut Session,
    s: &Settings,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> Result<(), TlsFailure> {
    let name = tls::server_name(&sess.target.host).ok_or_else(|| {
        TlsFailure::Handshake(format!(
            "\"{}\" is not a valid server name",
            sess.target.host
        ))
    })?;
    sess.start_tls(config, name, s.starttls_timeout).await?;
    if let Some(summary) = sess.tls_summary()
        && s.tls_log_summary
    {
        tracing::info!(
            "{} TLS connection established to {}: {summary}",
            tls::trust_word(s.tls.level),
            sess.target.relay()
        );
    }
    Ok(())
}

/// What a failed handshake means: a deferral (`Server certificate not
/// trusted`, `... not verified`, `Cannot start TLS: handshake failure`),
/// or at level `may` a plaintext retry, unless a SASL password exists
/// for the server (TLS was to protect it).
fn tls_failed(
    sess: &Session,
    s: &Settings,
    hop: &Nexthop,
    failure: TlsFailure,
) -> Result<Failed, Failed> {
    let namaddr = sess.target.namaddr();
    let (text, why) = match failure {
        TlsFailure::NotTrusted(why) => ("Server certificate not trusted", why),
        TlsFailure::NotMatched(why) => ("Server certificate not verified", why),
        TlsFailure::Handshake(why) => ("Cannot start TLS: handshake failure", why),
    };
    tracing::info!("TLS with {namaddr} failed: {text}: {why}");
    let o = Outcome::deferred(EnhancedStatus::of(4, 7, 5), text);
    if s.tls.level == SecurityLevel::May && sasl::credentials(s, hop, &sess.target.host)?.is_none()
    {
        return Ok(Failed::RetryPlaintext(o));
    }
    Ok(Failed::Smtp(o))
}

async fn transaction<S>(
    sess: &mut Session,
    s: &Settings,
    req: &DeliveryRequest,
    rcpts: &[&DeliveryRecipient],
    caps: &Capabilities,
    body: &mut BodySource<'_, S>,
    outcomes: &mut [Option<Outcome>],
) -> Result<(), Failed>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + postern_ipc::TakeFds,
{
    let namaddr = sess.target.namaddr();
    if let Some(limit) = caps.size.filter(|&l| l > 0)
        && req.size > limit
    {
        let o = Outcome::bounced(
            EnhancedStatus::of(5, 3, 4),
            format!(
                "message size {} exceeds size limit {limit} of server {namaddr}",
                req.size
            ),
        );
        outcomes.iter_mut().for_each(|slot| *slot = Some(o.clone()));
        return Ok(());
    }
    let needs_utf8 = !req.sender.is_ascii() || rcpts.iter().any(|r| !r.address.is_ascii());
    if needs_utf8 && !caps.smtputf8 {
        let o = Outcome::bounced(
            EnhancedStatus::of(5, 6, 7),
            format!("SMTPUTF8 is required, but was not offered by host {namaddr}"),
        );
        outcomes.iter_mut().for_each(|slot| *slot = Some(o.clone()));
        return Ok(());
    }

    let mail = format!(
        "MAIL FROM:<{}>{}",
        req.sender,
        mail_params(req, caps, needs_utf8)
    );
    let rcpt_lines: Vec<String> = rcpts
        .iter()
        .map(|r| format!("RCPT TO:<{}>{}", r.address, rcpt_params(r, caps)))
        .collect();

    // Replies to MAIL, each RCPT and DATA (None: not sent).
    let mail_reply;
    let mut rcpt_replies: Vec<Reply>;
    let data_reply: Option<Reply>;
    if caps.pipelining {
        // RFC 2920: MAIL, RCPT and DATA go out together and the replies
        // come back in order. Writing in batches of a few kilobytes and
        // reading each batch's replies before the next keeps a server that
        // answers while we still write from deadlocking us (RFC 2920 3.1).
        let mut cmds: Vec<(&str, Stage, Duration)> = vec![(&mail, Stage::Mail, s.mail_timeout)];
        cmds.extend(
            rcpt_lines
                .iter()
                .map(|l| (l.as_str(), Stage::Rcpt, s.rcpt_timeout)),
        );
        cmds.push(("DATA", Stage::Data, s.data_init_timeout));
        let mut replies = Vec::with_capacity(cmds.len());
        let mut next = 0;
        while next < cmds.len() {
            let begin = next;
            let mut batch = String::new();
            while next < cmds.len()
                && (batch.is_empty() || batch.len() + cmds[next].0.len() + 2 <= PIPELINE_BATCH)
            {
                batch.push_str(cmds[next].0);
                batch.push_str("\r\n");
                next += 1;
            }
            let (_, stage, t) = cmds[begin];
            sess.write(batch.as_bytes(), t, stage).await?;
            for &(_, stage, t) in &cmds[begin..next] {
                replies.push(sess.read(t, stage).await?);
            }
        }
        data_reply = replies.pop();
        mail_reply = replies.remove(0);
        rcpt_replies = replies;
    } else {
        mail_reply = sess.command(&mail, s.mail_timeout, Stage::Mail).await?;
        rcpt_replies = Vec::with_capacity(rcpts.len());
        if mail_reply.is_positive() {
            for line in &rcpt_lines {
                rcpt_replies.push(sess.command(line, s.rcpt_timeout, Stage::Rcpt).await?);
            }
        }
        data_reply = if rcpt_replies.iter().any(Reply::is_positive) {
            Some(
                sess.command("DATA", s.data_init_timeout, Stage::Data)
                    .await?,
            )
        } else {
            None
        };
    }

    // Pipelined DATA that a server answered with 354 although nothing is
    // to be sent: end it with an empty message the server will refuse.
    let go_ahead = data_reply.as_ref().is_some_and(|r| r.code() == 354);

    if !mail_reply.is_positive() {
        let o = Outcome::rejected(&mail_reply, &namaddr, "MAIL FROM command");
        outcomes.iter_mut().for_each(|slot| *slot = Some(o.clone()));
        abandon(sess, go_ahead, s).await?;
        return Ok(());
    }
    let mut accepted = Vec::new();
    for (i, reply) in rcpt_replies.iter().enumerate() {
        if reply.is_positive() {
            accepted.push(i);
        } else {
            outcomes[i] = Some(Outcome::rejected(reply, &namaddr, "RCPT TO command"));
        }
    }
    if accepted.is_empty() {
        abandon(sess, go_ahead, s).await?;
        return Ok(());
    }
    let data_reply = data_reply.unwrap_or_else(|| Reply::new(451, None, "no DATA reply"));
    if data_reply.code() != 354 {
        let o = Outcome::rejected(&data_reply, &namaddr, "DATA command");
        for &i in &accepted {
            outcomes[i] = Some(o.clone());
        }
        return Ok(());
    }

    // The body, chunk by chunk from qmgr, dot-stuffed on the way.
    let mut encoder = DataEncoder::new();
    let mut out = Vec::with_capacity(postern_ipc::BODY_CHUNK + 1024);
    loop {
        out.clear();
        match body.next().await.map_err(Failed::Body)? {
            Some(chunk) => encoder.encode(&chunk, &mut out),
            None => break,
        }
        sess.write(&out, s.data_xfer_timeout, Stage::Body).await?;
    }
    out.clear();
    encoder.finish(&mut out);
    sess.write(&out, s.data_xfer_timeout, Stage::Body).await?;
    let done = sess.read(s.data_done_timeout, Stage::Dot).await?;
    let o = if done.is_positive() {
        Outcome::sent(&done)
    } else {
        Outcome::rejected(&done, &namaddr, "end of DATA command")
    };
    for &i in &accepted {
        outcomes[i] = Some(o.clone());
    }
    Ok(())
}

/// Ends a DATA that a server accepted although no recipient was: an
/// empty message it will refuse for lack of recipients.
async fn abandon(sess: &mut Session, go_ahead: bool, s: &Settings) -> Result<(), Outcome> {
    if go_ahead {
        sess.write(b".\r\n", s.data_done_timeout, Stage::Dot)
            .await?;
        sess.read(s.data_done_timeout, Stage::Dot).await?;
    }
    Ok(())
}

/// SIZE when offered; BODY=8BITMIME for 8-bit mail when offered (when it
/// is not, the body goes as it is, as Postfix with
/// `disable_mime_output_conversion = yes`); SMTPUTF8 when needed; RET and
/// ENVID when the server speaks DSN.
fn mail_params(req: &DeliveryRequest, caps: &Capabilities, needs_utf8: bool) -> MailParams {
    MailParams {
        size: caps.size.map(|_| req.size),
        body: (req.body_8bit && caps.eight_bit_mime).then_some(Body::EightBitMime),
        smtputf8: needs_utf8 || (req.smtputf8 && caps.smtputf8),
        ret: req.ret.filter(|_| caps.dsn),
        envid: req.envid.clone().filter(|_| caps.dsn),
        auth: None,
    }
}

/// NOTIFY and ORCPT, when the server speaks DSN.
fn rcpt_params(r: &DeliveryRecipient, caps: &Capabilities) -> RcptParams {
    if !caps.dsn {
        return RcptParams::default();
    }
    let notify = r.notify;
    let orcpt = r.orcpt.clone();
    RcptParams { notify, orcpt }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_follow_the_capabilities() {
        let req = DeliveryRequest {
            size: 1234,
            body_8bit: true,
            ret: Some(postern_envelope::Ret::Hdrs),
            envid: Some("id+1".into()),
            ..Default::default()
        };
        let none = Capabilities::default();
        assert_eq!(mail_params(&req, &none, false).to_string(), "");
        let all = Capabilities {
            size: Some(0),
            eight_bit_mime: true,
            dsn: true,
            ..Default::default()
        };
        assert_eq!(
            mail_params(&req, &all, false).to_string(),
            " SIZE=1234 BODY=8BITMIME RET=HDRS ENVID=id+2B1"
        );
        let r = DeliveryRecipient {
            address: "a@b".into(),
            orcpt: Some(postern_envelope::Orcpt::rfc822("a@b")),
            notify: Some(postern_envelope::Notify::DEFAULT),
            ..Default::default()
        };
        assert_eq!(
            rcpt_params(&r, &all).to_string(),
            " NOTIFY=FAILURE,DELAY ORCPT=rfc822;a@b"
        );
        assert_eq!(rcpt_params(&r, &none).to_string(), "");
    }
}
