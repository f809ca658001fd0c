//! NAME
//!   sendmail - Postern's Sendmail-compatible mail posting interface
//!
//! SYNOPSIS
//!   sendmail [option ...] [recipient ...]
//!   mailq, newaliases (through qctl)
//!
//! DESCRIPTION
//!   sendmail reads a message on standard input until the end of input or
//!   a line with only `.`, and leaves it in $queue_directory/maildrop/ for
//!   pickup(8), which queues it with qmgr. It is what cron, logwatch,
//!   unattended-upgrades, PHP's mail() and mutt run. It is not set-user
//!   or set-group ID: the kernel records the submitting user as the
//!   file's owner, and pickup takes the user from there (and names the
//!   uid in the Received header), never from anything sendmail writes.
//!
//!   The message is on disk (file, then directory entry, synced) before
//!   sendmail exits 0, also while the master is stopped: pickup queues
//!   it when the master starts.
//!
//!   Lines may end in LF or CRLF (both are stored as CRLF); leading
//!   `From ` lines are dropped. The message may be of any line length up
//!   to message_size_limit. Missing From:, Date: and Message-ID: headers
//!   are added by pickup, and Bcc: is removed, as Postfix's cleanup does.
//!
//! OPTIONS
//!   -t          take recipients from To:, Cc: and Bcc: (or, when there
//!               are any, from Resent-To:, Resent-Cc: and Resent-Bcc:), in
//!               addition to those on the command line
//!   -i, -oi     a line with only `.` is content, not the end
//!   -f SENDER, -r SENDER
//!               the envelope sender (default: the login name, to which
//!               qmgr appends @$myorigin); `<>` is the null sender
//!   -F NAME     the full name for a From: header pickup adds (default:
//!               the NAME environment variable)
//!   -N DSN      never, or a list of success, failure, delay: when to send
//!               delivery status notifications (default delay, failure)
//!   -R RET      full or hdrs: how much of the message a bounce returns
//!   -V ENVID    the DSN envelope ID
//!   -C FILE     the master.toml, or a directory holding one (default
//!               /etc/postern/master.toml, or $MAIL_CONFIG); any user may
//!               name one
//!   -bm         read a message and queue it (the default)
//!   -bs         SMTP on standard input and output; each message is
//!               submitted as above
//!   -bp         list the queue (runs `qctl list`, as mailq)
//!   -bi, -I     check the aliases files (runs `qctl newaliases`); -oAFILE
//!               names one instead of alias_database
//!   -bv         verify the recipients instead of delivering: a report of
//!               where each would go is mailed to the sender
//!   -q          retry deferred mail now (`qctl flush`); -qIqueueid one
//!               message; -qINTERVAL is ignored (queue_run_delay)
//!   -v          say what happens on standard error
//!   -B TYPE     7BIT or 8BITMIME (checked; pickup sees 8-bit content
//!               itself)
//!   Accepted and ignored, as in Postfix: -Am, -Ac, -G, -U, -bh, -bH, -c,
//!   -e x, -h N, -L label, -m, -n, -O option=value, -o7, -o8, -om, -oem,
//!   -odb and other -oX, -p x, -X file, -x.
//!   `--` ends the options; what follows are recipients even if they
//!   start with `-`.
//!
//!   Each recipient argument may be an address list (`a, Bob <b@x>`), as
//!   in Postfix.
//!
//! DIAGNOSTICS
//!   `sendmail: fatal: text` on standard error, and a sysexits(3) status:
//!   64 EX_USAGE (bad option, no recipients, a control character in an
//!   address), 65 EX_DATAERR (input that cannot be read or is over
//!   message_size_limit, headers -t cannot parse), 69 EX_UNAVAILABLE (no
//!   maildrop directory: Postern is not installed or never started), 71
//!   EX_OSERR (the user has no login name), 75 EX_TEMPFAIL (the queue
//!   file could not be written, e.g. the disk is full; nothing is left
//!   behind), 77 EX_NOPERM (not in authorized_submit_users), 78 EX_CONFIG
//!   (the configuration does not load).
//!
//! CONFIGURATION PARAMETERS
//!   queue_directory          where maildrop/ is
//!   authorized_submit_users  who may submit (default static:anyone);
//!                            pickup checks again
//!   message_size_limit       the largest message read
//!   myhostname, mail_name    in -bs's greeting
//!
//! FILES
//!   $queue_directory/maildrop/       one file per submitted message
//!   $queue_directory/public/pickup   wakes pickup
//!
//! SEE ALSO
//!   pickup(8), qctl(1) (mailq, newaliases), qmgr(8), sendmail(1)
//!   in Postfix

mod args;
mod drop;
mod exit;
mod message;
mod smtp;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use postern_config::{Config, Params};
use postern_ipc::maildrop::{EnvelopeRecipient, Submission};

use crate::args::{Mode, Options};
use crate::exit::{EX_CONFIG, EX_NOPERM, EX_OSERR, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE, Fatal};

/// What a submission needs from the configuration.
#[derive(Debug)]
pub struct Context {
    pub queue_directory: PathBuf,
    pub hostname: String,
    pub mail_name: String,
    pub size_limit: u64,
}

fn main() -> ExitCode {
    let mut argv = std::env::args();
    let name = argv
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or(a)
        })
        .unwrap_or_default();
    let mode = match name.as_str() {
        "mailq" => Mode::Mailq,
        "newaliases" => Mode::Newaliases,
        _ => Mode::Deliver,
    };
    let args: Vec<String> = argv.collect();
    match args::parse(&args, mode).and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sendmail: fatal: {}", e.text);
            ExitCode::from(e.status)
        }
    }
}

fn run(o: &Options) -> Result<(), Fatal> {
    let config_path = config_path(o);
    match &o.mode {
        Mode::Mailq => return exec_qctl(&config_path, &["list"], &[]),
        Mode::Newaliases => {
            let alias = o.alias_file.as_ref().map(|f| format!("alias_database={f}"));
            return exec_qctl(&config_path, &["newaliases"], alias.as_slice());
        }
        Mode::Flush(id) => {
            let mut words = vec!["flush"];
            words.extend(id.as_deref());
            return exec_qctl(&config_path, &words, &[]);
        }
        Mode::Daemon => {
            return Err(Fatal::new(
                EX_USAGE,
                "-bd: the mail system runs under its master (systemctl start postern)",
            ));
        }
        Mode::Deliver | Mode::Smtp | Mode::Verify => {}
    }
    let config =
        Config::load(&config_path, &[]).map_err(|e| Fatal::new(EX_CONFIG, e.to_string()))?;
    let params = config.main();
    let user = login_name()?;
    authorize(params, &user)?;
    let ctx = Context {
        queue_directory: params.path("queue_directory"),
        hostname: params.get("myhostname"),
        mail_name: params.get("mail_name"),
        size_limit: params.size("message_size_limit"),
    };
    if o.mode == Mode::Smtp {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        return smtp::serve(&ctx, stdin, stdout);
    }
    submit(o, &ctx, &user)
}

/// -C, else $MAIL_CONFIG, else the default; a directory means its
/// master.toml.
fn config_path(o: &Options) -> PathBuf {
    let path = o
        .config
        .clone()
        .or_else(|| std::env::var_os("MAIL_CONFIG").map(PathBuf::from))
        .unwrap_or_else(postern_config::default_config_path);
    if path.is_dir() {
        path.join("master.toml")
    } else {
        path
    }
}

/// The submitting user's login name, as the kernel knows the real uid.
fn login_name() -> Result<String, Fatal> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => Ok(u.name),
        _ => Err(Fatal::new(
            EX_OSERR,
            format!("no login name found for user ID {uid}"),
        )),
    }
}

/// authorized_submit_users; pickup checks again, since the file it reads
/// need not come from here.
fn authorize(params: &Params, user: &str) -> Result<(), Fatal> {
    let uid = nix::unistd::getuid();
    match params.user_allowed("authorized_submit_users", user) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Fatal::new(
            EX_NOPERM,
            format!("User {user}({uid}) is not allowed to submit mail"),
        )),
        Err(e) => Err(Fatal::new(
            EX_TEMPFAIL,
            format!("authorized_submit_users: {e}"),
        )),
    }
}

/// -bm and -bv: read the message (-bv has none), find the recipients,
/// leave it for pickup.
fn submit(o: &Options, ctx: &Context, user: &str) -> Result<(), Fatal> {
    let sender = o
        .sender
        .as_deref()
        .map(message::sender_address)
        .transpose()
        .map_err(|t| Fatal::new(EX_USAGE, t))?;
    let mut addresses = Vec::new();
    for arg in &o.recipients {
        addresses.extend(message::argument_addresses(arg).map_err(|t| Fatal::new(EX_USAGE, t))?);
    }
    let verify = o.mode == Mode::Verify;
    let content = if verify {
        Vec::new()
    } else {
        message::read_message(std::io::stdin().lock(), o.dot_ends, ctx.size_limit)?
    };
    if o.extract {
        addresses.extend(message::extract_recipients(&content)?);
    }
    if addresses.is_empty() {
        return Err(Fatal::new(
            EX_USAGE,
            if o.extract {
                "No recipient addresses found in message header"
            } else {
                "Recipient addresses must be specified on the command line or via the -t option"
            },
        ));
    }
    let full_name = o
        .full_name
        .clone()
        .or_else(|| std::env::var("NAME").ok())
        .filter(|n| !n.trim().is_empty() && !n.chars().any(char::is_control));
    let submission = Submission {
        sender: sender.clone(),
        full_name,
        recipients: addresses
            .into_iter()
            .map(|address| EnvelopeRecipient {
                address,
                orcpt: None,
                notify: o.notify,
            })
            .collect(),
        ret: o.ret,
        envid: o.envid.clone(),
        verify,
    };
    let name = drop::drop_message(&ctx.queue_directory, &submission, &content)?;
    let shown = sender.unwrap_or_else(|| user.to_string());
    if o.verbose > 0 {
        eprintln!(
            "sendmail: {shown}: {} recipient(s), {} bytes, queued as maildrop/{name}",
            submission.recipients.len(),
            content.len()
        );
    }
    if verify {
        println!("Mail Delivery Status Report will be mailed to <{shown}>.");
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// Runs qctl (beside this program, or /usr/sbin/qctl beside
/// /usr/libexec/postern) for the modes it serves, as Postfix's sendmail
/// runs postqueue.
fn exec_qctl(config: &Path, words: &[&str], overrides: &[String]) -> Result<(), Fatal> {
    let here = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let qctl = [here.join("qctl"), here.join("../../sbin/qctl")]
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Fatal::new(
                EX_UNAVAILABLE,
                format!("qctl not found beside {}", here.display()),
            )
        })?;
    let mut cmd = std::process::Command::new(&qctl);
    cmd.arg("--config").arg(config);
    for o in overrides {
        cmd.arg("-o").arg(o);
    }
    cmd.args(words);
    let e = cmd.exec();
    Err(Fatal::new(
        EX_UNAVAILABLE,
        format!("cannot run {}: {e}", qctl.display()),
    ))
}
