//! NAME
//!   master - Postern master process
//!
//! SYNOPSIS
//!   master [--config PATH] [-o name=value ...] [--check] [--daemon]
//!
//! DESCRIPTION
//!   The master is the resident process that runs Postern's daemons. It
//!   reads master.toml, binds every listening socket of every
//!   `[[service]]` (TCP for `inet` services, Unix sockets under
//!   `$queue_directory/private` or `public` for `unix` services), and
//!   starts `process_limit` processes of each service's command from
//!   `$daemon_directory`, handing each the service's sockets (a `unix`
//!   service may list several in `listen`, and gets them in that order:
//!   qmgr's enqueueing and administration sockets). Because the
//!   master owns the sockets, a replaced process serves the same socket and
//!   clients of a restarting service wait in the kernel backlog instead of
//!   being refused.
//!
//!   A process that dies after it became ready (it served) is replaced at
//!   once, however often that happens. A process that dies before it
//!   becomes ready means the command cannot start: its service is
//!   throttled for `$service_throttle_time`, logged as Postfix does ("bad
//!   command startup -- throttling"). A process that stops sending
//!   heartbeats for `$heartbeat_timeout`, or does not become ready within
//!   it, is killed (and in the second case its service throttled).
//!
//!   Before it binds anything the master checks the configuration: load's
//!   checks of every parameter, and the routing the daemons will build
//!   (postern-routing): a domain list naming a file that cannot be read, or
//!   holding an entry that is no name or table, is a fatal error naming
//!   master.toml's file, line and parameter, and the master exits non-zero.
//!   A reload (SIGHUP, `qctl reload`) is checked the same way.
//!
//!   The master answers `qctl` on `$queue_directory/private/master`:
//!   status, graceful restart of one service (the replacement starts and
//!   becomes ready before the old processes drain), reload and stop.
//!
//!   Unlike Postfix, each Postern daemon serves many sessions; the master
//!   keeps exactly `process_limit` processes per service running rather
//!   than spawning one per client.
//!
//! OPTIONS
//!   --config PATH   configuration file (default /etc/postern/master.toml)
//!   -o name=value   override a [main] parameter; passed on to every child
//!   --check         validate the configuration and exit (0 when valid)
//!   --daemon        detach from the terminal (default: stay in the
//!                   foreground until SIGTERM, as `postfix start-fg`)
//!
//! SIGNALS
//!   SIGHUP          reload master.toml: start added services, stop removed
//!                   ones, restart changed ones, and pass SIGHUP to the rest
//!                   so they reload their parameters. A broken file is
//!                   refused and the running configuration kept.
//!   SIGTERM, SIGINT stop accepting, let sessions finish for up to
//!                   `$drain_timeout`, then kill what is left and exit.
//!
//! SECURITY
//!   Run as root, the master binds privileged ports and its children drop
//!   to `$mail_owner` unless their service is `privileged = true`. Run as
//!   an ordinary user, everything runs as that user. Only one master may run
//!   per `$queue_directory`: the pid file `pid/master.pid` is locked.
//!
//! DIAGNOSTICS
//!   Problems are logged to `$maillog_file` (stderr when empty) in Postfix's
//!   format. `master --check` prints configuration errors with file, line
//!   and parameter, and warnings for unknown parameters.
//!
//! CONFIGURATION PARAMETERS
//!   queue_directory        where private/, public/ and pid/ live
//!   daemon_directory       where the service commands are
//!   mail_owner             the account unprivileged daemons run as
//!   service_throttle_time  how long a failing service is left alone (60s)
//!   drain_timeout          how long stopping processes may finish sessions (30s)
//!   heartbeat_timeout      how long a silent process lives (30s)
//!   maillog_file, syslog_name, myhostname   logging
//!
//! FILES
//!   /etc/postern/master.toml            configuration
//!   $queue_directory/pid/master.pid      lock and pid
//!   $queue_directory/private/master      control socket for qctl
//!
//! SEE ALSO
//!   qctl(1), smtpd(8), qmgr(8), postconf(5), master(5)

mod control;
mod lock;
mod spawn;
mod supervisor;

use std::process::ExitCode;

use clap::Parser;
use postern_daemon::{CommonArgs, log};

#[derive(Parser, Debug)]
#[command(name = "master", version, about = "Postern master process")]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,

    /// Detach from the terminal and run in the background.
    #[arg(long)]
    daemon: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match load(&cli.common) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern/master: fatal: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check {
        return check(&config);
    }
    if cli.daemon {
        // Before any thread exists: fork, setsid, stdio to /dev/null.
        if let Err(e) = nix::unistd::daemon(true, false) {
            eprintln!("postern/master: fatal: cannot detach: {e}");
            return ExitCode::FAILURE;
        }
    }
    let params = config.main().clone();
    let maillog = params.get("maillog_file");
    let maillog = (!maillog.is_empty()).then(|| params.path("maillog_file"));
    if let Err(e) = log::init(
        &params.get("myhostname"),
        &params.get("syslog_name"),
        "master",
        maillog.as_deref(),
    ) {
        log::early_fatal("master", format!("open maillog_file: {e}"));
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => log::fatal(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(supervisor::run(cli.common, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => log::fatal(format!("{e:#}")),
    }
}

/// Loads master.toml and checks what load alone cannot: that the router
/// can use every domain list and table it names, and smtpd every
/// header_checks and body_checks table, every milter and every DKIM
/// key (the daemons build the
/// same router, so what passes here does not fail at RCPT or DATA).
pub(crate) fn load(
    args: &CommonArgs,
) -> Result<postern_config::Config, postern_config::ConfigError> {
    let config = args.load_config()?;
    postern_routing::check_config(&config)?;
    postern_content::check_config(&config)?;
    postern_milter::check_config(&config)?;
    postern_auth::check_config(&config)?;
    Ok(config)
}

/// `master --check`: the configuration parses and validates, every
/// service's endpoint is well-formed and its command exists.
fn check(config: &postern_config::Config) -> ExitCode {
    for w in &config.warnings {
        eprintln!("postern/master: warning: {w}");
    }
    let mut ok = true;
    for service in &config.services {
        let params = config.params_for(&service.name);
        if let Err(e) = service.endpoints(&params) {
            eprintln!("postern/master: error: {e}");
            ok = false;
        }
        let command = params.path("daemon_directory").join(&service.command);
        if !command.is_file() {
            eprintln!(
                "postern/master: warning: service {}: command {} does not exist",
                service.name,
                command.display()
            );
        }
    }
    if ok {
        println!("{}: configuration is valid", config.file.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
