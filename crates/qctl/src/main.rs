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
//!   flush             ask qmgr to retry deferred mail now
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
//!
//! SEE ALSO
//!   master(8), postconf(5)

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use clap::{Parser, Subcommand};
use postern_config::Config;
use postern_daemon::CommonArgs;
use postern_ipc::control::{ControlReply, ControlRequest, MasterStatus};
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
    /// Retry deferred mail now.
    Flush,
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let socket = config
            .main()
            .path("queue_directory")
            .join("private")
            .join("master");
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
            Command::Flush => done(
                ask(&socket, ControlRequest::Flush, IO_TIMEOUT).await?,
                cli.json,
            ),
            Command::Stop => {
                done(
                    ask(&socket, ControlRequest::Stop, IO_TIMEOUT).await?,
                    cli.json,
                )?;
                wait_for_exit(&socket).await
            }
            Command::Config { .. } => unreachable!("handled above"),
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
