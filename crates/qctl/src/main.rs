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
//!   delete ID         delete a message (postsuper -d)
//!   passwd [--scheme argon2|sha512|plain] USER
//!                     add or change USER in the smtpd_sasl_users table,
//!                     the password read from standard input
//!   config [-n] [-x] [NAME...]
//!                     print parameters as `name = value`; -n only those
//!                     set in the file or with -o, -x with $names expanded
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

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use postern_config::Config;
use postern_daemon::CommonArgs;
use postern_ipc::control::{ControlReply, ControlRequest, MasterStatus};
use postern_ipc::qmgr::{QmgrReply, QmgrRequest, QueueEntry};
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
    Flush { id: Option<String> },
    /// List the mail queue (mailq).
    List,
    /// Put a message on hold (postsuper -h).
    Hold { id: String },
    /// Release a held message (postsuper -H).
    Release { id: String },
    /// Delete a message (postsuper -d).
    Delete { id: String },
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
            Command::List => match ask_qmgr(&qmgr, QmgrRequest::List).await? {
                QmgrReply::Queue { messages } => {
                    if cli.json {
                        print_queue_json(&messages)
                    } else {
                        print_queue(&messages);
                        Ok(())
                    }
                }
                other => qmgr_refuse(other),
            },
            Command::Hold { id } => {
                qmgr_done(ask_qmgr(&qmgr, QmgrRequest::Hold { id }).await?, cli.json)
            }
            Command::Release { id } => qmgr_done(
                ask_qmgr(&qmgr, QmgrRequest::Release { id }).await?,
                cli.json,
            ),
            Command::Delete { id } => {
                qmgr_done(ask_qmgr(&qmgr, QmgrRequest::Delete { id }).await?, cli.json)
            }
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

/// One request to qmgr, one reply, after the hello.
async fn ask_qmgr(socket: &Path, request: QmgrRequest) -> anyhow::Result<QmgrReply> {
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
            if json {
                println!("{}", serde_json::json!({ "ok": true, "message": message }));
            } else {
                println!("{message}");
            }
            Ok(())
        }
        other => qmgr_refuse(other),
    }
}

/// The listing in mailq's layout.
fn print_queue(messages: &[QueueEntry]) {
    if messages.is_empty() {
        println!("Mail queue is empty");
        return;
    }
    println!("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------");
    let mut bytes = 0u64;
    for m in messages {
        bytes += m.size;
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
        println!(
            "{head}{:pad$}{size} {:<20.20} {sender}",
            "",
            arrival_time(m.arrival_unix)
        );
        // Recipients under the reason of their last failure, as mailq
        // groups them.
        let mut shown: Option<&str> = None;
        for (rcpt, reason) in &m.recipients {
            let reason = reason
                .as_deref()
                .or(m.reason.as_deref())
                .filter(|r| !r.is_empty());
            if reason.is_some() && reason != shown {
                println!("({})", reason.unwrap_or_default());
                shown = reason;
            }
            println!("{:42}{rcpt}", "");
        }
        println!();
    }
    let n = messages.len();
    println!(
        "-- {} Kbytes in {} Request{}.",
        bytes.div_ceil(1024),
        n,
        if n == 1 { "" } else { "s" }
    );
}

/// One JSON object per message and line, as `postqueue -j` prints them.
fn print_queue_json(messages: &[QueueEntry]) -> anyhow::Result<()> {
    for m in messages {
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
            "queue_id": m.id,
            "arrival_time": m.arrival_unix,
            "message_size": m.size,
            "sender": m.sender,
            "recipients": recipients,
            "next_try_time": m.next_try_unix,
        });
        println!("{}", serde_json::to_string(&obj)?);
    }
    Ok(())
}

/// `Mon Nov 23 16:47:57` in local time, as mailq prints arrival times.
fn arrival_time(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = unix as libc::time_t;
    // SAFETY: localtime_r only writes into the struct we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    unsafe { libc::localtime_r(&t, &mut tm) };
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02}",
        DAYS[tm.tm_wday.clamp(0, 6) as usize],
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
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
            if json {
                println!("{}", serde_json::json!({ "ok": true, "message": message }));
            } else {
                println!("{message}");
            }
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
    let selected: Vec<_> = entries
        .iter()
        .filter(|e| names.is_empty() || names.contains(&e.name))
        .filter(|e| !non_default || !e.is_default)
        .collect();
    if json {
        let map: serde_json::Map<String, serde_json::Value> = selected
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    (if expand { &e.expanded } else { &e.raw }).clone().into(),
                )
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&map)?);
    } else {
        for e in selected {
            println!("{} = {}", e.name, if expand { &e.expanded } else { &e.raw });
        }
    }
    Ok(())
}
