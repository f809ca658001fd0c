//! NAME
//!   qctl - Postern control program
//!
//! SYNOPSIS
//!   qctl [--config PATH] [-o name=value ...] [--json] COMMAND
//!
//! DESCRIPTION
//!   qctl asks the running master about its services and tells it what to
//!   do; `qctl config` reads the configuration itself, like postconf(1).
//!
//!   status            each service: processes (pid, uptime, ready,
//!                     sessions), restarts, the last unexpected exit, and
//!                     whether it is throttled
//!   restart SERVICE   graceful replacement: new processes start and become
//!                     ready, then the old ones drain; no client is refused
//!   reload            re-read master.toml (as SIGHUP to the master)
//!   stop              stop the mail system and wait for the master to exit
//!   flush [ID]        retry deferred mail now (all, or one message), as
//!                     postqueue -f / -i; asks qmgr, or the master to wake
//!                     qmgr when qmgr cannot be reached directly
//!   list              the mail queue in mailq format: a `*` after the ID
//!                     marks an active message, `!` a held one; the reason
//!                     of the last failure in parentheses above the
//!                     recipients it applies to; with --json one object per
//!                     line as postqueue -j
//!   hold ID           put a message on hold (postsuper -h)
//!   release ID        release a held message (postsuper -H)
//!   show ID           the message as postcat -q shows it: the envelope
//!                     (queue state, size, arrival time, attempts, next
//!                     try and delay reason, client, sender, and each
//!                     recipient with its state and last reply or
//!                     reason), then the message itself; with --json one
//!                     object with the envelope fields and `message`
//!   delete ID|ALL     delete a message (postsuper -d); ALL deletes every
//!                     message and says `postsuper: Deleted: N messages`
//!   requeue ID|ALL    requeue a message or all of them (postsuper -r):
//!                     active and due now, the deferral reasons cleared,
//!                     held messages released (corrupt ones stay); says
//!                     `postsuper: Requeued: N messages`
//!   passwd [--scheme argon2|sha512|plain] USER
//!                     add or change USER in the smtpd_sasl_users table,
//!                     the password read from standard input
//!   config [-n] [-x] [NAME...]
//!                     print parameters as `name = value`; -n only what
//!                     is in force: those set in [main] or with -o, then
//!                     each service's options as `service/type/name =
//!                     value` (postconf -P's form), without unknown
//!                     parameters nothing reads (warned about); -x with
//!                     $names expanded
//!
//!   --json prints the answer as JSON for scripts.
//!
//! DIAGNOSTICS
//!   Exit status 0 on success; 1 with a message on standard error when the
//!   master is not running, refuses the request, or the configuration is
//!   broken.
//!
//! FILES
//!   $queue_directory/private/master   the master's control socket
//!   $queue_directory/private/qmgr     the queue manager's socket
//!
//! SEE ALSO
//!   master(8), qmgr(8), postconf(5), mailq(1), postsuper(1)

mod passwd;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use postern_config::Config;
use postern_daemon::CommonArgs;
use postern_daemon::date::Tm;
use postern_envelope::QueueId;
use postern_ipc::control::{ControlReply, ControlRequest, MasterStatus};
use postern_ipc::qmgr::{MessageInfo, QmgrReply, QmgrRequest, QueueEntry};
use postern_ipc::{Connection, Protocol};
use tokio::net::UnixStream;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A restart may wait for a drain; the master bounds it itself.
const RESTART_TIMEOUT: Duration = Duration::from_secs(330);
const STOP_WAIT: Duration = Duration::from_secs(120);

#[derive(Parser, Debug)]
#[command(name = "qctl", version, about = "Postern control program")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show each service's processes, restarts and state.
    Status,
    /// Replace a service's processes gracefully.
    Restart { service: String },
    /// Re-read master.toml.
    Reload,
    /// Stop the mail system.
    Stop,
    /// Retry deferred mail now (one message with ID).
    Flush { id: Option<QueueId> },
    /// List the mail queue (mailq).
    List,
    /// Put a message on hold (postsuper -h).
    Hold { id: QueueId },
    /// Release a held message (postsuper -H).
    Release { id: QueueId },
    /// Delete a message, or every message with ALL (postsuper -d).
    Delete { id: String },
    /// Show a message's envelope and content (postcat -q).
    Show { id: QueueId },
    /// Requeue a message, or every message with ALL (postsuper -r).
    Requeue { id: String },
    /// Add or change an SMTP AUTH user in smtpd_sasl_users; the password
    /// is read from standard input.
    Passwd {
        user: String,
        /// How to store it.
        #[arg(long, value_enum, default_value = "argon2")]
        scheme: passwd::Scheme,
    },
    /// Print configuration parameters, like postconf.
    Config {
        /// Only parameters set in the file or with -o.
        #[arg(short = 'n')]
        non_default: bool,
        /// Expand $name references.
        #[arg(short = 'x')]
        expand: bool,
        /// Parameters to print (default: all).
        names: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qctl: fatal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.common.load_config()?;
    if let Command::Config {
        non_default,
        expand,
        names,
    } = &cli.command
    {
        return print_config(&config, *non_default, *expand, names, cli.json);
    }
    if let Command::Passwd { user, scheme } = &cli.command {
        return passwd::run(&config, user, *scheme);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let private = config.main().path("queue_directory").join("private");
        let socket = private.join("master");
        let qmgr = private.join("qmgr");
        match cli.command {
            Command::Status => {
                let reply = ask(&socket, ControlRequest::Status, IO_TIMEOUT).await?;
                let ControlReply::Status(status) = reply else {
                    return refuse(reply);
                };
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    print_status(&status);
                }
                Ok(())
            }
            Command::Restart { service } => done(
                ask(
                    &socket,
                    ControlRequest::Restart { service },
                    RESTART_TIMEOUT,
                )
                .await?,
                cli.json,
            ),
            Command::Reload => done(
                ask(&socket, ControlRequest::Reload, IO_TIMEOUT).await?,
                cli.json,
            ),
            Command::Flush { id } => match ask_qmgr(&qmgr, QmgrRequest::Flush { id }).await {
                Ok(reply) => qmgr_done(reply, cli.json),
                // qmgr unreachable: the master reports why (not running,
                // restarting) and wakes it when it can.
                Err(_) => done(
                    ask(&socket, ControlRequest::Flush, IO_TIMEOUT).await?,
                    cli.json,
                ),
            },
            Command::List => list(&qmgr, cli.json).await,
            Command::Hold { id } => {
                qmgr_done(ask_qmgr(&qmgr, QmgrRequest::Hold { id }).await?, cli.json)
            }
            Command::Release { id } => qmgr_done(
                ask_qmgr(&qmgr, QmgrRequest::Release { id }).await?,
                cli.json,
            ),
            Command::Delete { id } if id == "ALL" => counted(
                ask_qmgr(&qmgr, QmgrRequest::DeleteAll).await?,
                "Deleted",
                cli.json,
            ),
            Command::Delete { id } => {
                let id = id.parse()?;
                qmgr_done(ask_qmgr(&qmgr, QmgrRequest::Delete { id }).await?, cli.json)
            }
            Command::Requeue { id } => {
                let id = (id != "ALL").then(|| id.parse()).transpose()?;
                counted(
                    ask_qmgr(&qmgr, QmgrRequest::Requeue { id }).await?,
                    "Requeued",
                    cli.json,
                )
            }
            Command::Show { id } => show(&qmgr, id, cli.json).await,
            Command::Stop => {
                done(
                    ask(&socket, ControlRequest::Stop, IO_TIMEOUT).await?,
                    cli.json,
                )?;
                wait_for_exit(&socket).await
            }
            Command::Config { .. } | Command::Passwd { .. } => unreachable!("handled above"),
        }
    })
}

/// One request, one reply, after the hello.
async fn ask(
    socket: &Path,
    request: ControlRequest,
    timeout: Duration,
) -> anyhow::Result<ControlReply> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        anyhow!(
            "the Postern mail system is not running: cannot connect to {}: {e}",
            socket.display()
        )
    })?;
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::Control, IO_TIMEOUT)
        .await
        .context("control hello")?;
    conn.request(&request, timeout)
        .await
        .context("control request")
}

/// A connection to qmgr, after the hello.
async fn connect_qmgr(socket: &Path) -> anyhow::Result<Connection<UnixStream>> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        anyhow!(
            "the queue manager is not running: cannot connect to {}: {e}",
            socket.display()
        )
    })?;
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::Qmgr, IO_TIMEOUT)
        .await
        .context("qmgr hello")?;
    Ok(conn)
}

/// One request to qmgr, one reply, after the hello.
async fn ask_qmgr(socket: &Path, request: QmgrRequest) -> anyhow::Result<QmgrReply> {
    let mut conn = connect_qmgr(socket).await?;
    conn.request(&request, IO_TIMEOUT)
        .await
        .context("qmgr request")
}

fn qmgr_refuse(reply: QmgrReply) -> anyhow::Result<()> {
    match reply {
        QmgrReply::Error { message } => bail!("{message}"),
        other => bail!("unexpected reply from qmgr: {other:?}"),
    }
}

fn qmgr_done(reply: QmgrReply, json: bool) -> anyhow::Result<()> {
    match reply {
        QmgrReply::Done { message } => {
            print_done(&message, json);
            Ok(())
        }
        other => qmgr_refuse(other),
    }
}

/// A count answer in postsuper's words: `postsuper: Deleted: 3 messages`.
fn counted(reply: QmgrReply, verb: &str, json: bool) -> anyhow::Result<()> {
    match reply {
        QmgrReply::Count { count } => {
            let message = format!(
                "postsuper: {verb}: {count} message{}",
                if count == 1 { "" } else { "s" }
            );
            if json {
                let mut obj = serde_json::json!({ "ok": true, "message": message });
                obj[verb.to_ascii_lowercase()] = count.into();
                println!("{obj}");
            } else {
                println!("{message}");
            }
            Ok(())
        }
        other => qmgr_refuse(other),
    }
}

/// `qctl show`: the envelope, then the message streamed in chunks.
async fn show(socket: &Path, id: QueueId, json: bool) -> anyhow::Result<()> {
    let mut conn = connect_qmgr(socket).await?;
    let info = match conn
        .request(&QmgrRequest::Show { id }, IO_TIMEOUT)
        .await
        .context("qmgr request")?
    {
        QmgrReply::Message { message } => message,
        other => return qmgr_refuse(other),
    };
    let mut body = Vec::new();
    loop {
        let reply: Option<QmgrReply> = conn.recv_timeout(IO_TIMEOUT).await.context("qmgr reply")?;
        match reply {
            Some(QmgrReply::Body { data }) => body.extend_from_slice(&data),
            Some(QmgrReply::End) => break,
            Some(other) => return qmgr_refuse(other),
            None => bail!("qmgr closed the connection in the middle of the message"),
        }
    }
    if json {
        print_message_json(&info, &body)
    } else {
        print_message(&info, &body)
    }
}

/// The envelope and content in postcat's layout, lines ending in LF.
fn print_message(m: &MessageInfo, body: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let place = format!("{}/{}", m.state, m.id);
    let mut out = String::new();
    out.push_str(&format!("*** ENVELOPE RECORDS {place} ***\n"));
    out.push_str(&format!("queue_state: {}\n", m.state));
    out.push_str(&format!("message_size: {}\n", m.size));
    out.push_str(&format!(
        "message_arrival_time: {}\n",
        Tm::local(m.arrival_unix).asctime()
    ));
    out.push_str(&format!("delivery_attempts: {}\n", m.attempts));
    if let Some(t) = m.last_attempt_unix {
        out.push_str(&format!("last_attempt_time: {}\n", Tm::local(t).asctime()));
    }
    if let Some(t) = m.next_try_unix {
        out.push_str(&format!("next_attempt_time: {}\n", Tm::local(t).asctime()));
    }
    if let Some(reason) = &m.reason {
        out.push_str(&format!("delay_reason: {reason}\n"));
    }
    if let Some(c) = &m.client {
        out.push_str(&format!("client_name: {}\n", c.name));
        out.push_str(&format!("client_address: {}\n", c.addr));
        out.push_str(&format!("helo_name: {}\n", c.helo));
        out.push_str(&format!("protocol_name: {}\n", c.protocol));
        if let Some(u) = &c.sasl_username {
            out.push_str(&format!("sasl_username: {u}\n"));
        }
    }
    if let Some(envid) = &m.envid {
        out.push_str(&format!("dsn_envid: {envid}\n"));
    }
    if let Some(ret) = m.ret {
        out.push_str(&format!("dsn_ret: {}\n", ret.keyword()));
    }
    out.push_str(&format!("sender: {}\n", m.sender));
    for r in &m.recipients {
        if let Some(orcpt) = &r.orcpt {
            out.push_str(&format!("original_recipient: {orcpt}\n"));
        }
        out.push_str(&format!("recipient: {}\n", r.address));
        let mut state = r.state.clone();
        if let Some(dsn) = &r.dsn {
            state.push_str(&format!(" dsn={dsn}"));
        }
        if let Some(reason) = &r.reason {
            state.push_str(&format!(" ({reason})"));
        }
        out.push_str(&format!("recipient_state: {state}\n"));
    }
    out.push_str(&format!("*** MESSAGE CONTENTS {place} ***\n"));
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    let mut text = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        text.push(body[i]);
        i += 1;
    }
    if !text.is_empty() && !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    stdout.write_all(&text)?;
    stdout.write_all(format!("*** MESSAGE FILE END {place} ***\n").as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// The shown message as one JSON object, with postqueue -j's field names
/// where it has them.
fn print_message_json(m: &MessageInfo, body: &[u8]) -> anyhow::Result<()> {
    let recipients: Vec<serde_json::Value> = m
        .recipients
        .iter()
        .map(|r| {
            serde_json::json!({
                "address": r.address,
                "orig_rcpt": r.orcpt.as_ref().map(ToString::to_string),
                "state": r.state,
                "reason": r.reason,
                "dsn": r.dsn.map(|d| d.to_string()),
            })
        })
        .collect();
    let client = m.client.as_ref().map(|c| {
        serde_json::json!({
            "name": c.name,
            "address": c.addr,
            "helo": c.helo,
            "protocol": c.protocol,
            "sasl_username": c.sasl_username,
        })
    });
    let obj = serde_json::json!({
        "queue_name": m.state,
        "queue_id": m.id.to_string(),
        "arrival_time": m.arrival_unix,
        "message_size": m.size,
        "sender": m.sender,
        "recipients": recipients,
        "delay_reason": m.reason,
        "next_try_time": m.next_try_unix,
        "attempts": m.attempts,
        "last_attempt_time": m.last_attempt_unix,
        "client": client,
        "envid": m.envid,
        "ret": m.ret.map(|r| r.keyword()),
        "message": String::from_utf8_lossy(body),
    });
    println!("{}", serde_json::to_string(&obj)?);
    Ok(())
}

/// `qctl list`: each frame printed as it arrives, so a long queue starts
/// printing at once and qctl holds one frame at a time.
async fn list(socket: &Path, json: bool) -> anyhow::Result<()> {
    let mut conn = connect_qmgr(socket).await?;
    conn.send(&QmgrRequest::List)
        .await
        .context("qmgr request")?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut mailq = Mailq::default();
    loop {
        let reply: Option<QmgrReply> = conn.recv_timeout(IO_TIMEOUT).await.context("qmgr reply")?;
        match reply {
            Some(QmgrReply::Queue { messages }) => {
                for m in &messages {
                    if json {
                        print_entry_json(&mut out, m)?;
                    } else {
                        mailq.entry(&mut out, m)?;
                    }
                }
                out.flush()?;
            }
            Some(QmgrReply::End) => break,
            Some(other) => return qmgr_refuse(other),
            None => bail!("qmgr closed the connection in the middle of the listing"),
        }
    }
    if !json {
        mailq.end(&mut out)?;
    }
    out.flush()?;
    Ok(())
}

/// The listing in mailq's layout, one message at a time.
#[derive(Default)]
struct Mailq {
    messages: u64,
    bytes: u64,
}

impl Mailq {
    fn entry(&mut self, out: &mut impl Write, m: &QueueEntry) -> std::io::Result<()> {
        if self.messages == 0 {
            writeln!(
                out,
                "-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------"
            )?;
        }
        self.messages += 1;
        self.bytes += m.size;
        let flag = match m.state.as_str() {
            "active" => "*",
            "hold" => "!",
            "corrupt" => "#",
            _ => "",
        };
        let sender = if m.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &m.sender
        };
        // The ID (with its flag) and the size share the 20 columns of
        // `-Queue ID-  --Size--`, so the columns stay aligned with our
        // 12-digit IDs.
        let head = format!("{}{flag}", m.id);
        let size = m.size.to_string();
        let pad = 20usize.saturating_sub(head.len() + size.len()).max(1);
        writeln!(
            out,
            "{head}{:pad$}{size} {:<20.20} {sender}",
            "",
            Tm::local(m.arrival_unix).mailq()
        )?;
        // Recipients under the reason of their last failure, as mailq
        // groups them.
        let mut shown: Option<&str> = None;
        for (rcpt, reason) in &m.recipients {
            let reason = reason
                .as_deref()
                .or(m.reason.as_deref())
                .filter(|r| !r.is_empty());
            if reason.is_some() && reason != shown {
                writeln!(out, "({})", reason.unwrap_or_default())?;
                shown = reason;
            }
            writeln!(out, "{:42}{rcpt}", "")?;
        }
        writeln!(out)
    }

    fn end(&self, out: &mut impl Write) -> std::io::Result<()> {
        if self.messages == 0 {
            return writeln!(out, "Mail queue is empty");
        }
        let n = self.messages;
        writeln!(
            out,
            "-- {} Kbytes in {} Request{}.",
            self.bytes.div_ceil(1024),
            n,
            if n == 1 { "" } else { "s" }
        )
    }
}

/// One JSON object per message and line, as `postqueue -j` prints them.
fn print_entry_json(out: &mut impl Write, m: &QueueEntry) -> anyhow::Result<()> {
    let recipients: Vec<serde_json::Value> = m
        .recipients
        .iter()
        .map(|(address, reason)| {
            let mut r = serde_json::json!({ "address": address });
            if let Some(reason) = reason.as_ref().or(m.reason.as_ref()) {
                r["delay_reason"] = reason.clone().into();
            }
            r
        })
        .collect();
    let obj = serde_json::json!({
        "queue_name": m.state,
        "queue_id": m.id.to_string(),
        "arrival_time": m.arrival_unix,
        "message_size": m.size,
        "sender": m.sender,
        "recipients": recipients,
        "next_try_time": m.next_try_unix,
    });
    writeln!(out, "{}", serde_json::to_string(&obj)?)?;
    Ok(())
}

/// A daemon's "done" message, as text or as `{"ok": true, "message": ...}`.
fn print_done(message: &str, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "ok": true, "message": message }));
    } else {
        println!("{message}");
    }
}

fn refuse(reply: ControlReply) -> anyhow::Result<()> {
    match reply {
        ControlReply::Error { message } => bail!("{message}"),
        other => bail!("unexpected reply from the master: {other:?}"),
    }
}

fn done(reply: ControlReply, json: bool) -> anyhow::Result<()> {
    match reply {
        ControlReply::Done { message } => {
            print_done(&message, json);
            Ok(())
        }
        other => refuse(other),
    }
}

/// `qctl stop` returns once the master has let go of its control socket.
async fn wait_for_exit(socket: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline {
        if UnixStream::connect(socket).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the master is still running after {STOP_WAIT:?}")
}

fn print_status(status: &MasterStatus) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    println!(
        "master pid {} up {} config {} queue_directory {}",
        status.pid,
        human_duration(now - status.started_unix),
        status.config_file,
        status.queue_directory
    );
    for s in &status.services {
        let throttle = match s.throttled_until_unix {
            Some(until) => format!(" THROTTLED for {}", human_duration(until - now)),
            None => String::new(),
        };
        println!(
            "{:<14} {:<5} {:<22} {} processes {}/{} restarts {}{}{}",
            s.name,
            s.kind,
            s.listen,
            s.command,
            s.processes.len(),
            s.process_limit,
            s.restarts,
            s.last_exit
                .as_ref()
                .map(|e| format!(" last exit: {e}"))
                .unwrap_or_default(),
            throttle
        );
        for p in &s.processes {
            println!(
                "    pid {:<8} up {:<8} {:<10} sessions {}",
                p.pid,
                human_duration(now - p.started_unix),
                if p.draining {
                    "draining"
                } else if p.ready {
                    "ready"
                } else {
                    "starting"
                },
                p.sessions
            );
        }
        for c in &s.certificates {
            println!(
                "    certificate {} ({}) expires in {}",
                c.file,
                c.subject,
                human_duration(c.not_after_unix - now)
            );
        }
    }
}

fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{}h", secs / 86400, secs % 86400 / 3600),
    }
}

fn print_config(
    config: &Config,
    non_default: bool,
    expand: bool,
    names: &[String],
    json: bool,
) -> anyhow::Result<()> {
    let entries = config.main().entries();
    for name in names {
        if !entries.iter().any(|e| &e.name == name) {
            bail!("unknown parameter: {name}");
        }
    }
    let wanted = |name: &str| names.is_empty() || names.iter().any(|n| n == name);
    // (name, value) in postconf's order: [main], then with -n each
    // service's options as postconf -P writes master.cf's -o settings
    // (`service/type/name`), since those are in force for that service.
    let mut lines: Vec<(String, String)> = Vec::new();
    for e in &entries {
        if !wanted(&e.name) || (non_default && e.is_default) {
            continue;
        }
        if non_default && config.is_unused(&e.name) {
            eprintln!(
                "qctl: warning: {}: unused parameter: {}={}",
                config.file.display(),
                e.name,
                e.raw
            );
            continue;
        }
        let value = if expand { &e.expanded } else { &e.raw };
        lines.push((e.name.clone(), value.clone()));
    }
    if non_default {
        for svc in &config.services {
            let params = config.params_for(&svc.name);
            let kind = match svc.kind {
                postern_config::ServiceType::Inet => "inet",
                postern_config::ServiceType::Unix => "unix",
            };
            for (name, raw) in &svc.options {
                // A -o for the whole run beats the option: not in force.
                if !wanted(name) || config.is_unused(name) || config.is_overridden(name) {
                    continue;
                }
                let value = if expand {
                    params.get(name)
                } else {
                    raw.clone()
                };
                lines.push((format!("{}/{kind}/{name}", svc.name), value));
            }
        }
    }
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            lines.into_iter().map(|(k, v)| (k, v.into())).collect();
        println!("{}", serde_json::to_string_pretty(&map)?);
    } else {
        for (name, value) in lines {
            println!("{name} = {value}");
        }
    }
    Ok(())
}
