//! `sendmail -bs`: SMTP on standard input and output, for programs that
//! speak SMTP to a pipe (Python's smtplib over a process, some MUAs).
//! Each accepted message goes into maildrop/ like any other submission
//! from this user, so the same checks apply to it and pickup names the
//! user in its Received header; as in Postfix, relaying controls do not
//! apply to it. The commands are postern-smtp's; the dialogue is a small
//! subset of smtpd's: no TLS, no AUTH, no BDAT, no VRFY.

use std::io::{BufRead, Read as _, Write};

use postern_ipc::maildrop::{EnvelopeRecipient, Submission};
use postern_smtp::ehlo::{Extension, ehlo_reply};
use postern_smtp::{BareNewlinePolicy, Command, DataDecoder, parse_command};

use crate::Context;
use crate::drop::drop_message;
use crate::exit::{EX_TEMPFAIL, Fatal};

/// Longest command line read (RFC 5321 allows 512 with CRLF; Postfix
/// reads longer ones and refuses them).
const MAX_COMMAND: usize = 4096;
/// As smtpd_recipient_limit's default.
const MAX_RECIPIENTS: usize = 1000;

/// The transaction in progress.
#[derive(Default)]
struct Transaction {
    mail: Option<Submission>,
}

/// Serves one SMTP session; Ok at QUIT or the end of input.
pub fn serve(ctx: &Context, mut input: impl BufRead, mut output: impl Write) -> Result<(), Fatal> {
    let io = |e: std::io::Error| Fatal::new(EX_TEMPFAIL, format!("standard input/output: {e}"));
    let say = |out: &mut dyn Write, text: &[u8]| -> Result<(), Fatal> {
        out.write_all(text).and_then(|()| out.flush()).map_err(io)
    };
    say(
        &mut output,
        format!("220 {} ESMTP {}\r\n", ctx.hostname, ctx.mail_name).as_bytes(),
    )?;
    let mut tx = Transaction::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = input
            .by_ref()
            .take(MAX_COMMAND as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with(b"\n") && line.len() > MAX_COMMAND {
            skip_line(&mut input).map_err(io)?;
            say(&mut output, b"500 5.5.0 Error: line too long\r\n")?;
            continue;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let command = match parse_command(text) {
            Ok(c) => c,
            Err(e) => {
                say(&mut output, &e.reply().to_wire())?;
                if e.closes_session() {
                    return Ok(());
                }
                continue;
            }
        };
        let reply: Vec<u8> = match command {
            // HELO and EHLO end any transaction (RFC 5321 4.1.4).
            Command::Helo(_) => {
                tx.mail = None;
                format!("250 {}\r\n", ctx.hostname).into_bytes()
            }
            Command::Ehlo(_) => {
                tx.mail = None;
                let limit = (ctx.size_limit > 0).then_some(ctx.size_limit);
                ehlo_reply(
                    &ctx.hostname,
                    &[
                        Extension::Pipelining,
                        Extension::Size(limit),
                        Extension::EnhancedStatusCodes,
                        Extension::EightBitMime,
                        Extension::Dsn,
                    ],
                )
                .to_wire()
            }
            Command::Mail { from, params } => {
                if tx.mail.is_some() {
                    b"503 5.5.1 Error: nested MAIL command\r\n".to_vec()
                } else if ctx.size_limit > 0 && params.size.is_some_and(|s| s > ctx.size_limit) {
                    b"552 5.3.4 Message size exceeds fixed limit\r\n".to_vec()
                } else {
                    tx.mail = Some(Submission {
                        sender: Some(if from.is_null() {
                            String::new()
                        } else {
                            from.to_string()
                        }),
                        ret: params.ret,
                        envid: params.envid,
                        ..Submission::default()
                    });
                    b"250 2.1.0 Ok\r\n".to_vec()
                }
            }
            Command::Rcpt { to, params } => match tx.mail.as_mut() {
                None => b"503 5.5.1 Error: need MAIL command\r\n".to_vec(),
                Some(m) if m.recipients.len() >= MAX_RECIPIENTS => {
                    b"452 4.5.3 Error: too many recipients\r\n".to_vec()
                }
                Some(m) => {
                    m.recipients.push(EnvelopeRecipient {
                        address: to.to_string(),
                        orcpt: params.orcpt,
                        notify: params.notify,
                    });
                    b"250 2.1.5 Ok\r\n".to_vec()
                }
            },
            Command::Data => match tx.mail.take() {
                Some(m) if !m.recipients.is_empty() => {
                    say(&mut output, b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                    let Some(content) = read_data(&mut input, ctx.size_limit).map_err(io)? else {
                        // The input ended inside the message: nothing is queued.
                        return Ok(());
                    };
                    match content {
                        Err(()) => b"552 5.3.4 Error: message file too big\r\n".to_vec(),
                        Ok(content) => match drop_message(&ctx.queue_directory, &m, &content) {
                            Ok(name) => format!("250 2.0.0 Ok: queued as {name}\r\n").into_bytes(),
                            Err(e) => {
                                eprintln!("sendmail: warning: {}", e.text);
                                b"451 4.3.0 Error: queue file write error\r\n".to_vec()
                            }
                        },
                    }
                }
                other => {
                    let missing = if other.is_some() { "RCPT" } else { "MAIL" };
                    tx.mail = other;
                    format!("503 5.5.1 Error: need {missing} command\r\n").into_bytes()
                }
            },
            Command::Rset => {
                tx.mail = None;
                b"250 2.0.0 Ok\r\n".to_vec()
            }
            Command::Noop => b"250 2.0.0 Ok\r\n".to_vec(),
            Command::Quit => {
                say(&mut output, b"221 2.0.0 Bye\r\n")?;
                return Ok(());
            }
            Command::Vrfy(_) => b"502 5.5.1 VRFY command is disabled\r\n".to_vec(),
            Command::Help => {
                b"214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT\r\n".to_vec()
            }
            Command::Expn(_)
            | Command::Bdat { .. }
            | Command::Starttls
            | Command::Auth { .. }
            | Command::Etrn(_) => b"502 5.5.1 Error: command not implemented\r\n".to_vec(),
        };
        say(&mut output, &reply)?;
    }
}

/// Reads the rest of an overlong line.
fn skip_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// The message after 354, to the final dot: None when the input ends
/// first, Err when it outgrows `limit` (0: none; the rest is read and
/// dropped so the dialogue stays in step).
fn read_data(input: &mut impl BufRead, limit: u64) -> std::io::Result<Option<Result<Vec<u8>, ()>>> {
    let mut decoder = DataDecoder::new(BareNewlinePolicy::Normalize, 0);
    let mut content = Vec::new();
    let mut too_big = false;
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(None);
        }
        let progress = decoder.feed(buf, &mut content);
        input.consume(progress.consumed);
        if limit > 0 && content.len() as u64 > limit {
            // Read on to the dot, keeping nothing.
            too_big = true;
            content.clear();
        }
        if progress.done {
            return Ok(Some(if too_big { Err(()) } else { Ok(content) }));
        }
    }
}
