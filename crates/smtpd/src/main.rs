//! NAME
//!   smtpd - Postern SMTP server
//!
//! SYNOPSIS
//!   smtpd [--config PATH] [-o name=value ...]   (started by the master)
//!
//! DESCRIPTION
//!   smtpd accepts SMTP sessions on the sockets of its service (`smtp`,
//!   `submission`, `smtps`) and hands accepted mail to qmgr. Many sessions
//!   run in one process; the master starts `process_limit` of them.
//!
//!   This version greets with `$smtpd_banner` and answers NOOP, RSET,
//!   HELO/EHLO and QUIT; mail transactions arrive with the receiving work
//!   (MAIL, RCPT and DATA are answered `502 5.5.1 Error: command not
//!   implemented`, Postfix's reply for a disabled command).
//!
//! STANDARDS
//!   RFC 5321 (SMTP).
//!
//! CONFIGURATION PARAMETERS
//!   smtpd_banner        greeting text after `220 ` ($myhostname ESMTP $mail_name)
//!   smtpd_timeout       idle time before the session ends (300s)
//!   smtpd_max_sessions  sessions per process (Postern; 1000)
//!   drain_timeout       how long sessions may finish after SIGTERM
//!
//! SEE ALSO
//!   master(8), qmgr(8)

use postern_daemon::{Context, Peer, Shutdown, Stream, serve_sessions};
use std::process::ExitCode;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn main() -> ExitCode {
    postern_daemon::run("smtpd", serve)
}

async fn serve(mut ctx: Context) -> anyhow::Result<()> {
    let params = ctx.params();
    let max = params.int("smtpd_max_sessions").max(1) as usize;
    let drain = params.time("drain_timeout");
    let watch = ctx.config_watch();
    let service = ctx.service.clone();
    serve_sessions(&mut ctx, max, drain, move |stream, peer, shutdown| {
        let params = watch.borrow().params_for(&service);
        session(stream, peer, shutdown, params)
    })
    .await;
    Ok(())
}

async fn session(
    stream: Stream,
    peer: Peer,
    mut shutdown: Shutdown,
    params: postern_config::Params,
) {
    let client = match peer {
        Peer::Inet { remote, .. } => format!("unknown[{}]", remote.ip()),
        Peer::Unix => "local".to_string(),
    };
    tracing::info!("connect from {client}");
    let timeout = params.time("smtpd_timeout");
    let host = params.get("myhostname");
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read);
    let greeting = format!("220 {}\r\n", params.get("smtpd_banner"));
    if write.write_all(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::select! {
            r = tokio::time::timeout(timeout, lines.read_line(&mut line)) => r,
            _ = shutdown.triggered() => {
                // Between commands: tell the client to come back later.
                let _ = write.write_all(b"421 4.3.2 Service shutting down, closing transmission channel\r\n").await;
                break;
            }
        };
        let reply: &str = match read {
            Err(_) => {
                let _ = write
                    .write_all(b"421 4.4.2 Error: timeout exceeded\r\n")
                    .await;
                tracing::info!("timeout after command from {client}");
                break;
            }
            Ok(Err(_)) | Ok(Ok(0)) => break,
            Ok(Ok(_)) => {
                let verb = line
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                match verb.as_str() {
                    "QUIT" => {
                        let _ = write.write_all(b"221 2.0.0 Bye\r\n").await;
                        break;
                    }
                    "NOOP" | "RSET" => "250 2.0.0 Ok\r\n",
                    "HELO" | "EHLO" => {
                        let r = format!("250 {host}\r\n");
                        if write.write_all(r.as_bytes()).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    "MAIL" | "RCPT" | "DATA" => "502 5.5.1 Error: command not implemented\r\n",
                    _ => "500 5.5.2 Error: command not recognized\r\n",
                }
            }
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    tracing::info!("disconnect from {client}");
}
