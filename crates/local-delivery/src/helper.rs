//! Writing as the recipient: the daemon never changes its own uid (it is
//! multi-threaded), so each mailbox or file write runs in a child process,
//! this same binary started as `local-delivery --write-as KIND PATH ...`
//! with the recipient's uid and gid. The child reads the queued message on
//! stdin and prints one `DSN TEXT` line (see [`Outcome::to_line`]).

use std::fs::File;
use std::io::BufReader;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::copy::CopyOptions;
use crate::mailbox::{self, LockPolicy};
use crate::outcome::Outcome;

/// The first argument that selects helper mode.
pub const FLAG: &str = "--write-as";

/// What the helper writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The user's mbox (spool or `home_mailbox`).
    Mailbox,
    /// A Maildir (`home_mailbox = Maildir/`, a virtual mailbox, `/path/`).
    Maildir,
    /// An mbox-format file named in an alias or .forward.
    File,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mailbox => "mailbox",
            Kind::Maildir => "maildir",
            Kind::File => "file",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Mailbox, Kind::Maildir, Kind::File]
            .into_iter()
            .find(|k| k.name() == s)
    }
}

/// One write, as the daemon asks for it.
#[derive(Debug, Clone)]
pub struct Job {
    pub kind: Kind,
    pub path: PathBuf,
    pub sender: String,
    pub delivered_to: String,
    /// mailbox_size_limit (or virtual_mailbox_limit); 0 is unlimited.
    pub limit: u64,
    /// Who the mailbox belongs to, for the text of errors.
    pub user: String,
    /// Give a newly created mbox to this uid:gid (the helper runs as root
    /// when the spool directory is writable only by root).
    pub chown: Option<(u32, u32)>,
    pub hostname: String,
    /// deliver_lock_attempts, deliver_lock_delay, stale_lock_time.
    pub lock: LockPolicy,
}

impl Job {
    fn to_args(&self) -> Vec<String> {
        let mut a = vec![
            FLAG.to_string(),
            self.kind.name().to_string(),
            self.path.display().to_string(),
            self.sender.clone(),
            self.delivered_to.clone(),
            self.limit.to_string(),
            self.user.clone(),
            self.hostname.clone(),
            format!(
                "{}/{}/{}",
                self.lock.attempts,
                self.lock.delay.as_millis(),
                self.lock.stale_after.as_secs()
            ),
        ];
        if let Some((u, g)) = self.chown {
            a.push(format!("{u}:{g}"));
        }
        a
    }

    fn from_args(args: &[String]) -> Option<Job> {
        let [
            flag,
            kind,
            path,
            sender,
            delivered_to,
            limit,
            user,
            hostname,
            lock,
            rest @ ..,
        ] = args
        else {
            return None;
        };
        if flag != FLAG {
            return None;
        }
        let chown = match rest {
            [] => None,
            [ids] => {
                let (u, g) = ids.split_once(':')?;
                Some((u.parse().ok()?, g.parse().ok()?))
            }
            _ => return None,
        };
        let mut lock = lock.split('/').map(|n| n.parse::<u64>().ok());
        let (Some(Some(attempts)), Some(Some(delay)), Some(Some(stale))) =
            (lock.next(), lock.next(), lock.next())
        else {
            return None;
        };
        Some(Job {
            lock: LockPolicy {
                attempts: u32::try_from(attempts).ok()?,
                delay: std::time::Duration::from_millis(delay),
                stale_after: std::time::Duration::from_secs(stale),
            },
            kind: Kind::parse(kind)?,
            path: PathBuf::from(path),
            sender: sender.clone(),
            delivered_to: delivered_to.clone(),
            limit: limit.parse().ok()?,
            user: user.clone(),
            chown,
            hostname: hostname.clone(),
        })
    }

    /// Performs the write in this process.
    pub fn run(&self, src: &mut dyn std::io::BufRead) -> Outcome {
        let mbox = CopyOptions {
            sender: self.sender.clone(),
            delivered_to: self.delivered_to.clone(),
            from_line: true,
            quote_from: true,
            blank_line: true,
            limit: self.limit,
        };
        match self.kind {
            Kind::Mailbox => {
                match mailbox::append_mbox(&self.path, src, &mbox, self.chown, self.lock) {
                    Ok(_) => Outcome::sent("delivered to mailbox"),
                    Err(f) => Outcome::failed(
                        f.dsn,
                        format!(
                            "cannot update mailbox {} for user {}. {}",
                            self.path.display(),
                            self.user,
                            f.reason
                        ),
                    ),
                }
            }
            Kind::File if mailbox::is_char_device(&self.path) => {
                match mailbox::write_device(&self.path, src, &mbox) {
                    Ok(_) => Outcome::sent(format!("delivered to file: {}", self.path.display())),
                    Err(f) => Outcome::failed(
                        f.dsn,
                        format!(
                            "cannot append message to file {}: {}",
                            self.path.display(),
                            f.reason
                        ),
                    ),
                }
            }
            Kind::File => {
                match mailbox::append_mbox(&self.path, src, &mbox, self.chown, self.lock) {
                    Ok(_) => Outcome::sent(format!("delivered to file: {}", self.path.display())),
                    Err(f) => Outcome::failed(
                        f.dsn,
                        format!(
                            "cannot append message to file {}: {}",
                            self.path.display(),
                            f.reason
                        ),
                    ),
                }
            }
            Kind::Maildir => {
                let opts = CopyOptions {
                    from_line: false,
                    quote_from: false,
                    blank_line: false,
                    ..mbox
                };
                match mailbox::deliver_maildir(&self.path, src, &opts, &self.hostname) {
                    Ok(_) => Outcome::sent("delivered to maildir"),
                    Err(f) => {
                        Outcome::failed(f.dsn, format!("maildir delivery failed: {}", f.reason))
                    }
                }
            }
        }
    }
}

/// The helper's `main`: runs the job from the command line on stdin and
/// prints the outcome. Exit status 0 whenever an outcome was printed.
pub fn main(args: &[String]) -> ExitCode {
    let Some(job) = Job::from_args(args) else {
        eprintln!("local-delivery: bad {FLAG} arguments: {args:?}");
        return ExitCode::from(64);
    };
    let stdin = std::io::stdin();
    let mut src = BufReader::with_capacity(64 * 1024, stdin.lock());
    let outcome = job.run(&mut src);
    println!("{}", outcome.to_line());
    ExitCode::SUCCESS
}

/// Runs `job` in a helper process as `ids` (uid, gid) with `message` on its
/// stdin; `ids` is ignored unless we are root. Blocking: call it from
/// `spawn_blocking`.
pub fn spawn(job: &Job, ids: Option<(u32, u32)>, message: File) -> Outcome {
    // /proc/self/exe still works after the binary on disk was replaced.
    let exe = Path::new("/proc/self/exe");
    let mut cmd = Command::new(exe);
    cmd.args(job.to_args())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::from(message))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if nix::unistd::geteuid().is_root()
        && let Some((uid, gid)) = ids
    {
        // std drops supplementary groups when it changes the uid as root.
        cmd.uid(uid).gid(gid);
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return Outcome::internal(format!("cannot run delivery helper: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        tracing::warn!("delivery helper: {}", stderr.trim());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().next().and_then(Outcome::from_line) {
        Some(o) => o,
        None => Outcome::internal(format!(
            "delivery helper failed ({}){}",
            out.status,
            if stderr.trim().is_empty() {
                String::new()
            } else {
                format!(": {}", stderr.trim())
            }
        )),
    }
}

/// Reads a whole small file, for tests of the helper round trip.
#[cfg(test)]
fn read(path: &Path) -> String {
    use std::io::Read;
    let mut s = String::new();
    File::open(path).unwrap().read_to_string(&mut s).unwrap();
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_arguments_round_trip() {
        let job = Job {
            kind: Kind::File,
            path: "/tmp/x y".into(),
            sender: String::new(),
            delivered_to: "a@b".into(),
            limit: 7,
            user: "nobody".into(),
            chown: Some((1, 2)),
            hostname: "h".into(),
            lock: LockPolicy::default(),
        };
        let back = Job::from_args(&job.to_args()).unwrap();
        assert_eq!(back.to_args(), job.to_args());
        assert!(Job::from_args(&["--write-as".into()]).is_none());
    }

    #[test]
    fn file_jobs_append_in_mbox_format() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job {
            kind: Kind::File,
            path: dir.path().join("f"),
            sender: "s@x".into(),
            delivered_to: "a@b".into(),
            limit: 0,
            user: "nobody".into(),
            chown: None,
            hostname: "h".into(),
            lock: LockPolicy::default(),
        };
        let o = job.run(&mut &b"Subject: s\r\n\r\nbody\r\n"[..]);
        assert_eq!(o.text, format!("delivered to file: {}", job.path.display()));
        assert!(read(&job.path).ends_with("Subject: s\n\nbody\n\n"));
    }
}
