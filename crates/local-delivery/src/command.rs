//! Delivery to a command (`|command` in aliases, :include: files and
//! .forward), like Postfix's `pipe_command()`: `/bin/sh -c command` as the
//! user, in its own process group, the message on stdin with a `From ` line,
//! `command_time_limit` enforced on the whole group, and sendmail-style
//! exit codes (EX_TEMPFAIL = 75 defers).

use postern_envelope::EnhancedStatus;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use crate::copy::{CopyOptions, copy_message};
use crate::outcome::Outcome;

/// How much command output is kept for the bounce text.
const OUTPUT_LIMIT: usize = 2048;

/// One command delivery.
#[derive(Debug, Clone)]
pub struct CommandJob {
    pub command: String,
    /// Run as this uid/gid when we are root.
    pub uid: u32,
    pub gid: u32,
    /// The working directory, when it exists.
    pub home: PathBuf,
    /// Environment as Postfix's local(8) sets it (HOME, USER, SENDER, ...).
    pub env: Vec<(String, String)>,
    pub sender: String,
    pub delivered_to: String,
    pub time_limit: Duration,
}

/// Runs the command with `message` piped in; blocking.
pub fn run(job: &CommandJob, message: File) -> Outcome {
    let (out_read, out_write) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return Outcome::internal(format!("Delivery failed: {e}")),
    };
    let out_write2 = match out_write.try_clone() {
        Ok(w) => w,
        Err(e) => return Outcome::internal(format!("Delivery failed: {e}")),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&job.command)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir(if job.home.is_dir() {
            job.home.as_path()
        } else {
            std::path::Path::new("/")
        })
        .stdin(Stdio::piped())
        .stdout(out_write)
        .stderr(out_write2)
        // Its own group, so a time-out kills the command's children too.
        .process_group(0);
    if nix::unistd::geteuid().is_root() {
        cmd.uid(job.uid).gid(job.gid);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::internal(format!("Delivery failed: {e}")),
    };
    // Our copies of the pipe's write end must go, or EOF never comes.
    drop(cmd);

    let captured = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    {
        let captured = captured.clone();
        let mut out_read = out_read;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out_read.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut c = captured.lock().unwrap_or_else(|e| e.into_inner());
                let room = OUTPUT_LIMIT.saturating_sub(c.len());
                c.extend_from_slice(&buf[..n.min(room)]);
            }
            let _ = done_tx.send(());
        });
    }
    if let Some(mut stdin) = child.stdin.take() {
        let opts = CopyOptions {
            sender: job.sender.clone(),
            delivered_to: job.delivered_to.clone(),
            from_line: true,
            quote_from: false,
            blank_line: false,
            limit: 0,
        };
        std::thread::spawn(move || {
            let mut src = BufReader::with_capacity(64 * 1024, message);
            // A command may stop reading early; that is not a failure.
            let _ = copy_message(&mut src, &mut stdin, &opts).and_then(|_| stdin.flush());
        });
    }

    let deadline = Instant::now() + job.time_limit;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Outcome::internal(format!("Delivery failed: wait: {e}")),
        }
    };
    // A background process may hold the output pipe open: do not wait for it.
    let _ = done_rx.recv_timeout(Duration::from_secs(1));
    let output = printable(&captured.lock().unwrap_or_else(|e| e.into_inner()));
    let with_output = |text: String| {
        if output.is_empty() {
            text
        } else {
            format!("{text}. Command output: {output}")
        }
    };
    let cmdq = &job.command;
    if timed_out {
        return Outcome::failed(
            EnhancedStatus::of(5, 3, 0),
            with_output(format!("Command time limit exceeded: \"{cmdq}\"")),
        );
    }
    let Some(status) = status else {
        return Outcome::internal("Delivery failed: cannot collect command status");
    };
    use std::os::unix::process::ExitStatusExt;
    if let Some(sig) = status.signal() {
        return Outcome::failed(
            EnhancedStatus::of(4, 3, 0),
            with_output(format!("Command died with signal {sig}: \"{cmdq}\"")),
        );
    }
    match status.code() {
        Some(0) => Outcome::sent(format!("delivered to command: {cmdq}")),
        Some(code) => match sys_exit(code) {
            Some((dsn, text)) => Outcome::failed(dsn, with_output(text.to_string())),
            None => Outcome::failed(
                EnhancedStatus::of(5, 3, 0),
                with_output(format!("Command died with status {code}: \"{cmdq}\"")),
            ),
        },
        None => Outcome::internal("Delivery failed: unknown command status"),
    }
}

/// sendmail's sysexits.h codes as Postfix's `sys_exits.c` words them.
fn sys_exit(code: i32) -> Option<(EnhancedStatus, &'static str)> {
    Some(match code {
        64 => (EnhancedStatus::of(5, 3, 0), "command line usage error"),
        65 => (EnhancedStatus::of(5, 6, 0), "data format error"),
        66 => (EnhancedStatus::of(5, 3, 0), "cannot open input"),
        67 => (EnhancedStatus::of(5, 1, 1), "user unknown"),
        68 => (EnhancedStatus::of(5, 1, 2), "host name unknown"),
        69 => (EnhancedStatus::of(5, 3, 0), "service unavailable"),
        70 => (EnhancedStatus::of(5, 3, 0), "internal software error"),
        71 => (EnhancedStatus::of(4, 3, 0), "system resource problem"),
        72 => (EnhancedStatus::of(5, 3, 0), "critical OS file missing"),
        73 => (EnhancedStatus::of(5, 2, 0), "can't create user output file"),
        74 => (EnhancedStatus::of(5, 3, 0), "input/output error"),
        75 => (EnhancedStatus::of(4, 3, 0), "temporary failure"),
        76 => (EnhancedStatus::of(5, 5, 0), "remote error in protocol"),
        77 => (EnhancedStatus::of(5, 7, 0), "permission denied"),
        78 => (EnhancedStatus::of(5, 3, 5), "local configuration error"),
        _ => return None,
    })
}

/// Tabs and newlines become spaces, other control bytes underscores.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => '_',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_ipc::delivery::DeliveryStatus;

    fn job(command: &str, limit: Duration) -> CommandJob {
        CommandJob {
            command: command.into(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            home: "/".into(),
            env: vec![("RECIPIENT".into(), "r@example.local".into())],
            sender: "s@example.org".into(),
            delivered_to: "r@example.local".into(),
            time_limit: limit,
        }
    }

    fn message(dir: &std::path::Path) -> File {
        let p = dir.join("msg");
        std::fs::write(&p, "Subject: t\r\n\r\nhello\r\n").unwrap();
        File::open(p).unwrap()
    }

    #[test]
    fn the_command_reads_the_message_with_a_from_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let j = job(
            &format!(
                "cat > {} && echo $RECIPIENT >> {}",
                out.display(),
                out.display()
            ),
            Duration::from_secs(10),
        );
        let o = run(&j, message(dir.path()));
        assert_eq!(o.status, DeliveryStatus::Sent, "{o:?}");
        assert_eq!(o.text, format!("delivered to command: {}", j.command));
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("From s@example.org  "), "{text}");
        assert!(
            text.ends_with("Return-Path: <s@example.org>\nDelivered-To: r@example.local\nSubject: t\n\nhello\nr@example.local\n"),
            "{text}"
        );
    }

    #[test]
    fn exit_codes_map_like_postfix() {
        let dir = tempfile::tempdir().unwrap();
        let o = run(
            &job("exit 75", Duration::from_secs(10)),
            message(dir.path()),
        );
        assert_eq!(o.status, DeliveryStatus::Deferred);
        assert_eq!(
            (o.dsn.to_string().as_str(), o.text.as_str()),
            ("4.3.0", "temporary failure")
        );
        let o = run(
            &job("echo no such mailbox; exit 3", Duration::from_secs(10)),
            message(dir.path()),
        );
        assert_eq!(o.status, DeliveryStatus::Bounced);
        assert_eq!(
            o.text,
            "Command died with status 3: \"echo no such mailbox; exit 3\". Command output: no such mailbox"
        );
    }

    #[test]
    fn the_time_limit_kills_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let o = run(
            &job("sleep 30", Duration::from_millis(300)),
            message(dir.path()),
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(o.status, DeliveryStatus::Bounced);
        assert_eq!(o.text, "Command time limit exceeded: \"sleep 30\"");
    }
}
