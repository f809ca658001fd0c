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
//!   newaliases        check the aliases files alias_database names (as
//!                     Postfix's newaliases; Postern reads them as they
//!                     are, so nothing is rebuilt): the first line that does
//!                     not parse is reported as `newaliases: fatal:
//!                     FILE:LINE: ...`, exit status 65; a file that cannot
//!                     be read, 66 (sysexits)
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
//!   dkim keygen DOMAIN SELECTOR [--algorithm rsa|ed25519] [--bits N] [--directory DIR]
//!                     write DIR/DOMAIN.SELECTOR.pem (mode 0600, mail_owner's
//!                     when run as root; never over an existing file) and
//!                     print the TXT record to publish
//!   dkim show         list dkim_key_table's keys and their TXT records
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
//!   config import MAIN.CF [MASTER.CF]
//!                     print a master.toml (for --config's place) that
//!                     runs what a Postfix main.cf says: every parameter in
//!                     Postfix's syntax, master.cf's smtpd, qmgr, smtp,
//!                     relay, local and tlsmgr services with their -o
//!                     options (without it, the installed master.toml's
//!                     services); on standard error each line left out
//!                     and why (Postfix's own paths and accounts, a
//!                     parameter Postern does not have, a value it
//!                     refuses); a line that does not parse stops it with
//!                     its line number, and nothing is written
//!
//!   --json prints the answer as JSON for scripts.
//!
//!   Run as `mailq` (a link to qctl), it is `qctl list`; as `newaliases`,
//!   `qctl newaliases`; `-C FILE` names the configuration, as in Postfix.
//!
//!   The master's commands go to its control socket, the queue commands
//!   (flush, list, hold, release, show, delete, requeue) to qmgr's
//!   administration socket; both are in the private directory, so only
//!   mail_owner and root may use them.
//!
//! DIAGNOSTICS
//!   Exit status 0 on success; 1 with a message on standard error when the
//!   master is not running, refuses the request, or the configuration is
//!   broken.
//!
//! FILES
//!   $queue_directory/private/master   the master's control socket
//!   $queue_directory/private/qmgr-admin
//!                                     the queue manager's administration
//!                                     socket (list, show, hold, release,
//!                                     delete, requeue, flush)
//!
//! SEE ALSO
//!   master(8), qmgr(8), postconf(5), mailq(1), postsuper(1)

mod aliases;
mod client;
mod config;
mod dkim;
mod import;
mod list;
mod passwd;
mod postsuper;
mod show;
mod status;
mod stop;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use postern_daemon::CommonArgs;
use postern_envelope::QueueId;
use postern_ipc::control::{ControlReply, ControlRequest};
use postern_ipc::qmgr_admin::AdminRequest;

use crate::client::{IO_TIMEOUT, ask, ask_qmgr, done, refuse};

/// A restart may wait for a drain; the master bounds it itself.
const RESTART_TIMEOUT: Duration = Duration::from_secs(330);

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
    /// Check the aliases files alias_database names (newaliases).
    Newaliases,
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
    /// Make DKIM keys and show their DNS records.
    #[command(subcommand)]
    Dkim(DkimCommand),
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

#[derive(Subcommand, Debug)]
enum DkimCommand {
    /// Write a new private key and print the TXT record to publish.
    Keygen {
        domain: String,
        selector: String,
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: dkim::Algorithm,
        /// RSA key size.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
        /// Where to write DOMAIN.SELECTOR.pem (default: the current directory).
        #[arg(long)]
        directory: Option<std::path::PathBuf>,
    },
    /// List dkim_key_table's keys and their DNS records.
    Show,
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(multi_call(std::env::args_os().collect()));
    if let Command::Newaliases = cli.command {
        return match cli.common.load_config() {
            Ok(config) => aliases::check(&config),
            Err(e) => {
                eprintln!("newaliases: fatal: {e:#}");
                ExitCode::from(78)
            }
        };
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qctl: fatal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command line of qctl run under another name, as programs call
/// Postfix's: `mailq [-C FILE]` is `qctl list`, `newaliases [-C FILE]`
/// is `qctl newaliases` (`-C` names the configuration, as in Postfix).
fn multi_call(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().to_string());
    let command = match name.as_deref() {
        Some("mailq") => "list",
        Some("newaliases") => "newaliases",
        _ => return args,
    };
    let mut out = vec![std::ffi::OsString::from("qctl")];
    let mut rest = args.drain(1..);
    while let Some(a) = rest.next() {
        if a == "-C" {
            out.push("--config".into());
            out.extend(rest.next());
        }
    }
    out.push(command.into());
    out
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // `config import MAIN.CF` makes the configuration: there may be none.
    if let Command::Config { names, .. } = &cli.command
        && names.first().map(String::as_str) == Some("import")
    {
        let (main_cf, master_cf) = match names.as_slice() {
            [_, main_cf] => (main_cf, None),
            [_, main_cf, master_cf] => (main_cf, Some(std::path::Path::new(master_cf))),
            _ => anyhow::bail!("usage: qctl config import MAIN.CF [MASTER.CF]"),
        };
        return import::import(std::path::Path::new(main_cf), master_cf, &cli.common.config);
    }
    let config = cli.common.load_config()?;
    if let Command::Config {
        non_default,
        expand,
        names,
    } = &cli.command
    {
        return config::print_config(&config, *non_default, *expand, names, cli.json);
    }
    if let Command::Passwd { user, scheme } = &cli.command {
        return passwd::run(&config, user, *scheme);
    }
    if let Command::Dkim(command) = &cli.command {
        return match command {
            DkimCommand::Keygen {
                domain,
                selector,
                algorithm,
                bits,
                directory,
            } => dkim::keygen(
                &config,
                domain,
                selector,
                *algorithm,
                *bits,
                &directory.clone().unwrap_or_else(dkim::default_directory),
            ),
            DkimCommand::Show => dkim::show(&config, cli.json),
        };
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let queue_directory = config.main().path("queue_directory");
        let socket = queue_directory.join("private/master");
        let qmgr = queue_directory.join(postern_ipc::qmgr_admin::SOCKET);
        match cli.command {
            Command::Status => {
                let reply = ask(&socket, ControlRequest::Status, IO_TIMEOUT).await?;
                let ControlReply::Status(status) = reply else {
                    return refuse(reply);
                };
                if cli.json {
                    println!("{}", serde_json::to_string_pretty(&status)?);
                } else {
                    status::print_status(&status);
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
            Command::Flush { id } => match ask_qmgr(&qmgr, AdminRequest::Flush { id }).await {
                Ok(reply) => done(reply, cli.json),
                // qmgr unreachable: the master reports why (not running,
                // restarting) and wakes it when it can.
                Err(_) => done(
                    ask(&socket, ControlRequest::Flush, IO_TIMEOUT).await?,
                    cli.json,
                ),
            },
            Command::List => list::list(&qmgr, cli.json).await,
            Command::Hold { id } => {
                done(ask_qmgr(&qmgr, AdminRequest::Hold { id }).await?, cli.json)
            }
            Command::Release { id } => done(
                ask_qmgr(&qmgr, AdminRequest::Release { id }).await?,
                cli.json,
            ),
            Command::Delete { id } if id == "ALL" => postsuper::counted(
                ask_qmgr(&qmgr, AdminRequest::DeleteAll).await?,
                "Deleted",
                cli.json,
            ),
            Command::Delete { id } => {
                let id = id.parse()?;
                done(
                    ask_qmgr(&qmgr, AdminRequest::Delete { id }).await?,
                    cli.json,
                )
            }
            Command::Requeue { id } => {
                let id = (id != "ALL").then(|| id.parse()).transpose()?;
                postsuper::counted(
                    ask_qmgr(&qmgr, AdminRequest::Requeue { id }).await?,
                    "Requeued",
                    cli.json,
                )
            }
            Command::Show { id } => show::show(&qmgr, id, cli.json).await,
            Command::Stop => {
                done(
                    ask(&socket, ControlRequest::Stop, IO_TIMEOUT).await?,
                    cli.json,
                )?;
                stop::wait_for_exit(&socket).await
            }
            Command::Config { .. }
            | Command::Passwd { .. }
            | Command::Dkim(_)
            | Command::Newaliases => {
                unreachable!("handled above")
            }
        }
    })
}
