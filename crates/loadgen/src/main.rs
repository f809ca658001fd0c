//! NAME
//!   smtp-loadgen - SMTP load generator with STARTTLS, for benchmarks
//!
//! SYNOPSIS
//!   smtp-loadgen [--sessions N] [--messages M] [--size BYTES] [--starttls]
//!                [--messages-per-session K] [--from ADDR] [--to ADDR]
//!                HOST:PORT
//!
//! DESCRIPTION
//!   Like Postfix's smtp-source, but asynchronous and able to speak TLS:
//!   N sessions run concurrently and share M messages between them. Each
//!   session connects, reads the greeting, says EHLO and, with --starttls,
//!   STARTTLS, the TLS handshake (any server certificate is accepted, as
//!   smtp_tls_security_level = may does) and EHLO again; then it sends up
//!   to K messages (MAIL FROM, RCPT TO, DATA, the message) and QUIT. With
//!   the default K = 1 every message is a new connection and, with
//!   --starttls, a new TLS handshake.
//!
//!   Every command waits for its reply (no pipelining: a server enforcing
//!   smtpd_forbid_unauth_pipelining would reject it). A message counts as
//!   sent when the reply to its end of data is 2xx. A rejected command is
//!   a failed message (then RSET and the next one); a broken session fails
//!   every message it had not finished.
//!
//!   TLS sessions are not resumed unless --resume is given, so every
//!   handshake is a full one; the report says how many were resumed.
//!
//! OUTPUT
//!   One "name: value" line each: messages sent, elapsed seconds,
//!   messages/s, connections, TLS handshakes (full and resumed),
//!   handshakes/s, the TLS version, cipher suite and key exchange of the
//!   first handshake, failures, and the first few failure replies.
//!
//! EXIT STATUS
//!   0 when every message was sent, 1 when any failed, 2 on bad usage.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use rustls::ClientConfig;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How many failure replies are kept for the report.
const FIRST_FAILURES: usize = 5;
/// Longest reply line accepted, and most lines in one reply.
const MAX_LINE: usize = 4096;
const MAX_LINES: usize = 100;

#[derive(Debug, Parser)]
#[command(
    name = "smtp-loadgen",
    version,
    about = "SMTP load generator (smtp-source with STARTTLS)"
)]
struct Args {
    /// Concurrent sessions.
    #[arg(short = 's', long, default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    sessions: u64,
    /// Messages in all.
    #[arg(short = 'm', long, default_value_t = 1000)]
    messages: u64,
    /// Message size in bytes (headers included).
    #[arg(short = 'l', long, default_value_t = 1024)]
    size: usize,
    /// STARTTLS in every session, accepting any certificate.
    #[arg(long)]
    starttls: bool,
    /// Messages sent in one session (one connection, one TLS handshake).
    #[arg(short = 'k', long, default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    messages_per_session: u64,
    /// Envelope sender.
    #[arg(short = 'f', long, default_value = "loadgen@example.com")]
    from: String,
    /// Envelope recipient.
    #[arg(short = 't', long, default_value = "rcpt@example.net")]
    to: String,
    /// Name sent with EHLO.
    #[arg(long, default_value = "loadgen.example.com")]
    helo: String,
    /// Resume TLS sessions (from an in-process cache) instead of a full
    /// handshake each time.
    #[arg(long)]
    resume: bool,
    /// Name sent as SNI (default: HOST when it is a name; none for an address).
    #[arg(long)]
    tls_server_name: Option<String>,
    /// Seconds to wait for each reply or handshake.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// Runtime threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// The server, HOST:PORT ([ADDR]:PORT for IPv6).
    target: String,
}

/// `HOST:PORT` or `[V6ADDR]:PORT` split into host and port.
fn parse_target(target: &str) -> Result<(String, u16)> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("target {target:?} is not HOST:PORT"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty()
        || host.contains(['[', ']'])
        || (host.contains(':') && !target.starts_with('['))
    {
        bail!("target {target:?} is not HOST:PORT");
    }
    let port = port
        .parse::<u16>()
        .with_context(|| format!("bad port in target {target:?}"))?;
    Ok((host.to_string(), port))
}

/// The message: a few headers, then lines of letters up to `size` bytes in
/// all (never less than the headers and a blank line). Lines are at most 80
/// bytes with their CRLF and none starts with a dot, so no dot-stuffing.
fn message(from: &str, to: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: smtp-loadgen test message\r\n\
         Message-ID: <smtp-loadgen.{}@example.com>\r\n\r\n",
        std::process::id()
    )
    .into_bytes();
    let mut left = size.saturating_sub(m.len());
    let mut letter = 0u8;
    while left > 0 {
        let mut line = left.min(80);
        // Never leave a single byte: it cannot be a CRLF-ended line.
        if left - line == 1 {
            line -= 1;
        }
        let line = line.max(2);
        for _ in 0..line - 2 {
            m.push(b'a' + letter % 26);
            letter = letter.wrapping_add(1);
        }
        m.extend_from_slice(b"\r\n");
        left = left.saturating_sub(line);
    }
    m
}

/// Takes up to `k` messages from `remaining`; 0 when none are left.
fn claim(remaining: &AtomicU64, k: u64) -> u64 {
    match remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| {
        (r > 0).then(|| r - r.min(k))
    }) {
        Ok(before) => before.min(k),
        Err(_) => 0,
    }
}

/// One reply line: its code and whether it is the last line of the reply.
fn parse_reply_line(line: &str) -> Option<(u16, bool)> {
    let b = line.trim_end_matches(['\r', '\n']).as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = (b[0] - b'0') as u16 * 100 + (b[1] - b'0') as u16 * 10 + (b[2] - b'0') as u16;
    match b.get(3) {
        None | Some(b' ') => Some((code, true)),
        Some(b'-') => Some((code, false)),
        _ => None,
    }
}

#[derive(Debug)]
struct Reply {
    code: u16,
    /// All lines, joined with " / ".
    text: String,
}

#[derive(Debug, Default)]
struct Stats {
    sent: AtomicU64,
    failed: AtomicU64,
    connections: AtomicU64,
    handshakes_full: AtomicU64,
    handshakes_resumed: AtomicU64,
    first_failures: Mutex<Vec<String>>,
    tls_params: Mutex<Option<String>>,
}

impl Stats {
    fn fail(&self, count: u64, what: String) {
        self.failed.fetch_add(count, Ordering::Relaxed);
        let mut first = self
            .first_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if first.len() < FIRST_FAILURES {
            first.push(what);
        }
    }
}

/// What every session shares (not Debug: TlsConnector is not).
struct Ctx {
    addr: SocketAddr,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    helo: String,
    mail: String,
    rcpt: String,
    /// The message, dot-terminated.
    data: Vec<u8>,
    per_session: u64,
    timeout: Duration,
    remaining: AtomicU64,
    stats: Stats,
}

async fn read_reply<S: AsyncRead + Unpin>(
    s: &mut BufReader<S>,
    timeout: Duration,
) -> Result<Reply> {
    let mut text = String::new();
    let mut line = String::new();
    for _ in 0..MAX_LINES {
        line.clear();
        let n = tokio::time::timeout(timeout, s.read_line(&mut line))
            .await
            .context("timeout waiting for a reply")?
            .context("reading a reply")?;
        if n == 0 {
            bail!("connection closed by the server");
        }
        if line.len() > MAX_LINE {
            bail!("reply line too long");
        }
        let (code, last) = parse_reply_line(&line)
            .ok_or_else(|| anyhow!("malformed reply line {:?}", line.trim_end()))?;
        if !text.is_empty() {
            text.push_str(" / ");
        }
        text.push_str(line.trim_end());
        if last {
            return Ok(Reply { code, text });
        }
    }
    bail!("reply has too many lines")
}

/// Sends `bytes` and reads the reply.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Reply> {
    let w = s.get_mut();
    tokio::time::timeout(timeout, async {
        w.write_all(bytes).await?;
        w.flush().await
    })
    .await
    .context("timeout sending")?
    .context("sending")?;
    read_reply(s, timeout).await
}

/// `command`, failing the session unless the reply code is `class`xx.
async fn expect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    bytes: &[u8],
    class: u16,
    timeout: Duration,
) -> Result<Reply> {
    let reply = command(s, bytes, timeout).await?;
    if reply.code / 100 != class {
        let cmd = String::from_utf8_lossy(bytes);
        bail!("{} -> {}", cmd.trim_end(), reply.text);
    }
    Ok(reply)
}

/// EHLO, then `n` transactions, then QUIT; `done` counts finished messages.
async fn transactions<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &Ctx,
    s: &mut BufReader<S>,
    n: u64,
    done: &mut u64,
) -> Result<()> {
    let t = ctx.timeout;
    for i in 0..n {
        if i > 0 {
            expect(s, b"RSET\r\n", 2, t).await?;
        }
        let steps: [(&[u8], u16); 4] = [
            (ctx.mail.as_bytes(), 2),
            (ctx.rcpt.as_bytes(), 2),
            (b"DATA\r\n", 3),
            (&ctx.data, 2),
        ];
        let mut ok = true;
        for (bytes, class) in steps {
            let reply = command(s, bytes, t).await?;
            if reply.code / 100 != class {
                let cmd = if bytes.len() > 100 {
                    "end of data".to_string()
                } else {
                    String::from_utf8_lossy(bytes).trim_end().to_string()
                };
                ctx.stats.fail(1, format!("{cmd} -> {}", reply.text));
                ok = false;
                break;
            }
        }
        if ok {
            ctx.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        *done += 1;
    }
    expect(s, b"QUIT\r\n", 2, t).await?;
    Ok(())
}

/// One connection carrying `n` messages.
async fn session(ctx: &Ctx, n: u64, done: &mut u64) -> Result<()> {
    let t = ctx.timeout;
    let tcp = tokio::time::timeout(t, TcpStream::connect(ctx.addr))
        .await
        .context("timeout connecting")?
        .context("connecting")?;
    tcp.set_nodelay(true)?;
    ctx.stats.connections.fetch_add(1, Ordering::Relaxed);
    let mut plain = BufReader::new(tcp);
    let greeting = read_reply(&mut plain, t).await?;
    if greeting.code / 100 != 2 {
        bail!("greeting {}", greeting.text);
    }
    let ehlo = format!("EHLO {}\r\n", ctx.helo);
    let features = expect(&mut plain, ehlo.as_bytes(), 2, t).await?;
    let Some((connector, name)) = &ctx.tls else {
        return transactions(ctx, &mut plain, n, done).await;
    };
    if !features.text.to_ascii_uppercase().contains("STARTTLS") {
        bail!("STARTTLS not offered: {}", features.text);
    }
    expect(&mut plain, b"STARTTLS\r\n", 2, t).await?;
    if !plain.buffer().is_empty() {
        bail!("data after the reply to STARTTLS");
    }
    let tls = tokio::time::timeout(t, connector.connect(name.clone(), plain.into_inner()))
        .await
        .context("timeout in the TLS handshake")?
        .context("TLS handshake")?;
    let conn = tls.get_ref().1;
    if conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
        ctx.stats.handshakes_resumed.fetch_add(1, Ordering::Relaxed);
    } else {
        ctx.stats.handshakes_full.fetch_add(1, Ordering::Relaxed);
    }
    {
        let mut params = ctx
            .stats
            .tls_params
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if params.is_none() {
            *params = Some(format!(
                "{:?} {:?} {}",
                conn.protocol_version()
                    .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
                conn.negotiated_cipher_suite()
                    .map(|s| s.suite())
                    .unwrap_or(rustls::CipherSuite::Unknown(0)),
                conn.negotiated_key_exchange_group()
                    .map(|g| format!("{:?}", g.name()))
                    .unwrap_or_else(|| "-".into()),
            ));
        }
    }
    let mut s = BufReader::new(tls);
    expect(&mut s, ehlo.as_bytes(), 2, t).await?;
    transactions(ctx, &mut s, n, done).await?;
    let _ = s.get_mut().shutdown().await;
    Ok(())
}

async fn worker(ctx: Arc<Ctx>) {
    loop {
        let n = claim(&ctx.remaining, ctx.per_session);
        if n == 0 {
            return;
        }
        let mut done = 0;
        if let Err(e) = session(&ctx, n, &mut done).await {
            ctx.stats.fail(n - done, format!("session: {e:#}"));
        }
    }
}

fn tls_config(resume: bool) -> Result<Arc<ClientConfig>> {
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    let config = postern_tls::client_config(
        postern_tls::SecurityLevel::May,
        &Default::default(),
        &versions,
    )?
    .context("no TLS client config")?;
    if resume {
        return Ok(config);
    }
    let mut config = Arc::unwrap_or_clone(config);
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

fn per_second(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

async fn run(args: Args) -> Result<bool> {
    let (host, port) = parse_target(&args.target)?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("looking up {host}"))?
        .next()
        .ok_or_else(|| anyhow!("{host} has no address"))?;
    let tls = if args.starttls {
        let name = args.tls_server_name.clone().unwrap_or_else(|| host.clone());
        let name = ServerName::try_from(name).context("bad TLS server name")?;
        Some((TlsConnector::from(tls_config(args.resume)?), name))
    } else {
        None
    };
    let mut data = message(&args.from, &args.to, args.size);
    data.extend_from_slice(b".\r\n");
    let ctx = Arc::new(Ctx {
        addr,
        tls,
        helo: args.helo.clone(),
        mail: format!("MAIL FROM:<{}>\r\n", args.from),
        rcpt: format!("RCPT TO:<{}>\r\n", args.to),
        data,
        per_session: args.messages_per_session,
        timeout: Duration::from_secs(args.timeout),
        remaining: AtomicU64::new(args.messages),
        stats: Stats::default(),
    });

    let start = Instant::now();
    let workers: Vec<_> = (0..args.sessions)
        .map(|_| tokio::spawn(worker(ctx.clone())))
        .collect();
    for w in workers {
        w.await.context("a session task failed")?;
    }
    let secs = start.elapsed().as_secs_f64();

    let s = &ctx.stats;
    let sent = s.sent.load(Ordering::Relaxed);
    let failed = s.failed.load(Ordering::Relaxed);
    let full = s.handshakes_full.load(Ordering::Relaxed);
    let resumed = s.handshakes_resumed.load(Ordering::Relaxed);
    println!("target: {}", args.target);
    println!(
        "sessions: {} messages-per-session: {} size: {} starttls: {}",
        args.sessions,
        args.messages_per_session,
        args.size,
        if args.starttls { "yes" } else { "no" }
    );
    println!("messages sent: {sent}");
    println!("elapsed: {secs:.3} s");
    println!("messages/s: {:.1}", per_second(sent, secs));
    println!("connections: {}", s.connections.load(Ordering::Relaxed));
    println!(
        "TLS handshakes: {} (full {full}, resumed {resumed})",
        full + resumed
    );
    println!("handshakes/s: {:.1}", per_second(full + resumed, secs));
    if let Some(p) = s
        .tls_params
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        println!("TLS: {p}");
    }
    println!("failures: {failed}");
    for f in s
        .first_failures
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("failure: {f}");
    }
    Ok(failed == 0 && sent == args.messages)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if args.threads > 0 {
        rt.worker_threads(args.threads);
    }
    let result = rt
        .build()
        .context("starting the runtime")
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("smtp-loadgen: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_and_defaults() {
        let a = Args::try_parse_from(["smtp-loadgen", "127.0.0.1:2525"]).unwrap();
        assert_eq!((a.sessions, a.messages, a.size), (20, 1000, 1024));
        assert_eq!(a.messages_per_session, 1);
        assert!(!a.starttls && !a.resume);
        let a = Args::try_parse_from([
            "smtp-loadgen",
            "--sessions",
            "5",
            "-m",
            "100",
            "--size",
            "2048",
            "--starttls",
            "--messages-per-session",
            "10",
            "--from",
            "a@b.example",
            "--to",
            "c@d.example",
            "localhost:25",
        ])
        .unwrap();
        assert_eq!((a.sessions, a.messages, a.size), (5, 100, 2048));
        assert_eq!(a.messages_per_session, 10);
        assert!(a.starttls);
        assert_eq!(
            (a.from.as_str(), a.to.as_str()),
            ("a@b.example", "c@d.example")
        );
        assert!(Args::try_parse_from(["smtp-loadgen", "--sessions", "0", "h:1"]).is_err());
        assert!(Args::try_parse_from(["smtp-loadgen", "-k", "0", "h:1"]).is_err());
        assert!(Args::try_parse_from(["smtp-loadgen"]).is_err());
    }

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("127.0.0.1:25").unwrap(),
            ("127.0.0.1".into(), 25)
        );
        assert_eq!(parse_target("[::1]:2525").unwrap(), ("::1".into(), 2525));
        assert_eq!(
            parse_target("mx.example:587").unwrap(),
            ("mx.example".into(), 587)
        );
        for bad in ["127.0.0.1", "::1:25", ":25", "h:x", "h:70000", "[::1:25"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn message_has_the_size_asked_and_needs_no_dot_stuffing() {
        let header_len = message("a@b", "c@d", 0).len();
        for size in 0..600 {
            let m = message("a@b", "c@d", size);
            let expect = if size > header_len && size - header_len == 1 {
                size + 1
            } else {
                size.max(header_len)
            };
            assert_eq!(m.len(), expect, "size {size}");
            assert!(m.ends_with(b"\r\n"));
            let text = std::str::from_utf8(&m).unwrap();
            for line in text.split_inclusive("\r\n") {
                assert!(line.ends_with("\r\n") && line.len() <= 80, "{line:?}");
                assert!(!line.starts_with('.'));
                assert_eq!(line.matches('\n').count(), 1);
            }
        }
        let m = message("a@b", "c@d", 1024);
        assert_eq!(m.len(), 1024);
        assert!(m.starts_with(b"From: <a@b>\r\nTo: <c@d>\r\n"));
    }

    #[test]
    fn claims_share_the_messages_out() {
        let r = AtomicU64::new(7);
        assert_eq!(claim(&r, 3), 3);
        assert_eq!(claim(&r, 3), 3);
        assert_eq!(claim(&r, 3), 1);
        assert_eq!(claim(&r, 3), 0);
        assert_eq!(r.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn reply_lines() {
        assert_eq!(parse_reply_line("250-PIPELINING\r\n"), Some((250, false)));
        assert_eq!(parse_reply_line("250 OK\r\n"), Some((250, true)));
        assert_eq!(parse_reply_line("354\r\n"), Some((354, true)));
        assert_eq!(parse_reply_line("25 x\r\n"), None);
        assert_eq!(parse_reply_line("250x\r\n"), None);
    }

    /// A whole session against a scripted plaintext server.
    #[tokio::test(flavor = "current_thread")]
    async fn one_plain_session() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut s = BufReader::new(sock);
            let mut seen = Vec::new();
            s.get_mut().write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if s.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                let reply: &[u8] = match line.trim_end() {
                    l if l.starts_with("EHLO") => b"250-test\r\n250 PIPELINING\r\n",
                    l if l.starts_with("RCPT") => b"550 5.1.1 no such user\r\n",
                    "DATA" => b"354 go\r\n",
                    "." => b"250 queued\r\n",
                    "QUIT" => b"221 bye\r\n",
                    _ => b"250 ok\r\n",
                };
                seen.push(line.trim_end().to_string());
                s.get_mut().write_all(reply).await.unwrap();
                if line.starts_with("QUIT") {
                    break;
                }
            }
            seen
        });
        let ctx = Ctx {
            addr,
            tls: None,
            helo: "h.example".into(),
            mail: "MAIL FROM:<a@b>\r\n".into(),
            rcpt: "RCPT TO:<c@d>\r\n".into(),
            data: b"Subject: x\r\n\r\nhi\r\n.\r\n".to_vec(),
            per_session: 2,
            timeout: Duration::from_secs(5),
            remaining: AtomicU64::new(0),
            stats: Stats::default(),
        };
        let mut done = 0;
        session(&ctx, 2, &mut done).await.unwrap();
        assert_eq!(done, 2);
        assert_eq!(ctx.stats.sent.load(Ordering::Relaxed), 0);
        assert_eq!(ctx.stats.failed.load(Ordering::Relaxed), 2);
        let failures = ctx.stats.first_failures.lock().unwrap().clone();
        assert_eq!(failures[0], "RCPT TO:<c@d> -> 550 5.1.1 no such user");
        let seen = server.await.unwrap();
        assert_eq!(
            seen,
            [
                "EHLO h.example",
                "MAIL FROM:<a@b>",
                "RCPT TO:<c@d>",
                "RSET",
                "MAIL FROM:<a@b>",
                "RCPT TO:<c@d>",
                "QUIT"
            ]
        );
    }
}
