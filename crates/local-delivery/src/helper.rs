//! Writing as the recipient: the daemon never changes its own uid (it is
//! multi-threaded), so each mailbox or file write runs in a child process,
//! this same binary started as `local-delivery --write-as` with the
//! recipient's uid and gid.
//!
//! The exchange is typed, in postern-ipc frames: the daemon writes one
//! [`Job`] frame on the child's stdin followed by the queued message; the
//! child writes one [`HelperReply`] frame on its stdout and exits. The child
//! may run as root, so it decodes its job strictly (one frame of at most
//! [`postern_ipc::MAX_FRAME`] bytes) before it touches anything. The daemon
//! trusts the reply no further: a missing, oversized, truncated or garbled
//! reply (a helper that died, or one the recipient tampered with) is a
//! [`HelperError`], and the delivery is deferred, never taken as done.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use postern_envelope::EnhancedStatus;
use postern_ipc::IpcError;
use serde::{Deserialize, Serialize};

use crate::copy::CopyOptions;
use crate::mailbox::{self, Failure, LockPolicy};
use crate::outcome::Outcome;

/// The first argument that selects helper mode.
pub const FLAG: &str = "--write-as";

/// How much of the helper's stderr is kept for the log.
const MAX_STDERR: u64 = 4096;

/// What the helper writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// The user's mbox (spool or `home_mailbox`).
    Mailbox,
    /// A Maildir (`home_mailbox = Maildir/`, a virtual mailbox, `/path/`).
    Maildir,
    /// An mbox-format file named in an alias or .forward.
    File,
}

/// One write, as the daemon asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// What the daemon writes first on the helper's stdin: the job, and how
/// many message bytes follow it, so that a message cut short (the daemon
/// died or could not read the queue file mid-copy) is a failed write,
/// never a shorter message delivered.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    job: Job,
    message_bytes: u64,
}

/// The message on the helper's stdin: exactly `left` bytes, an early end
/// of input being an error.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("message cut short, {} bytes missing", self.left),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The helper's answer: the outcome of its one write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelperReply {
    Sent {
        text: String,
    },
    /// Deferred or bounced by the class of `dsn` ([`Outcome::failed`]).
    Failed {
        dsn: EnhancedStatus,
        text: String,
    },
}

impl HelperReply {
    fn from_outcome(o: Outcome) -> HelperReply {
        if o.dsn.class() == 2 {
            HelperReply::Sent { text: o.text }
        } else {
            HelperReply::Failed {
                dsn: o.dsn,
                text: o.text,
            }
        }
    }

    /// The outcome, with control characters in the text blanked: the
    /// helper runs as the recipient, and its words go to the mail log.
    fn into_outcome(self) -> Outcome {
        let clean = |t: String| -> String {
            t.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect()
        };
        match self {
            HelperReply::Sent { text } => Outcome::sent(clean(text)),
            HelperReply::Failed { dsn, text } => Outcome::failed(dsn, clean(text)),
        }
    }
}

/// Why the helper gave no usable outcome; every case defers the delivery.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot run delivery helper: {0}")]
    Spawn(io::Error),
    /// It exited (or died) without a reply.
    #[error("delivery helper failed ({status}){stderr}")]
    NoReply { status: ExitStatus, stderr: String },
    /// Its reply is not one well-formed frame.
    #[error("delivery helper sent a bad reply ({status}): {error}")]
    BadReply { status: ExitStatus, error: IpcError },
}

/// A reply as read from the helper's stdout: `Ok(None)` when it wrote
/// nothing at all.
fn read_reply(r: &mut impl Read) -> Result<Option<HelperReply>, IpcError> {
    let Some(reply) = postern_ipc::read_frame_sync::<_, HelperReply>(r)? else {
        return Ok(None);
    };
    let mut extra = [0u8; 1];
    match r.read(&mut extra)? {
        0 => Ok(Some(reply)),
        _ => Err(IpcError::Protocol(
            "bytes after the delivery helper's reply".into(),
        )),
    }
}

impl Job {
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
        // What was written, or the words that go before a failure's reason.
        let (done, context): (Result<String, Failure>, String) = match self.kind {
            Kind::Mailbox => (
                mailbox::append_mbox(&self.path, src, &mbox, self.chown, self.lock)
                    .map(|_| "delivered to mailbox".into()),
                format!(
                    "cannot update mailbox {} for user {}. ",
                    self.path.display(),
                    self.user
                ),
            ),
            Kind::File => (
                if mailbox::is_char_device(&self.path) {
                    mailbox::write_device(&self.path, src, &mbox)
                } else {
                    mailbox::append_mbox(&self.path, src, &mbox, self.chown, self.lock)
                }
                .map(|_| format!("delivered to file: {}", self.path.display())),
                format!("cannot append message to file {}: ", self.path.display()),
            ),
            Kind::Maildir => {
                let opts = CopyOptions {
                    from_line: false,
                    quote_from: false,
                    blank_line: false,
                    ..mbox
                };
                (
                    mailbox::deliver_maildir(&self.path, src, &opts, &self.hostname)
                        .map(|_| "delivered to maildir".into()),
                    "maildir delivery failed: ".into(),
                )
            }
        };
        match done {
            Ok(text) => Outcome::sent(text),
            Err(f) => Outcome::failed(f.dsn, format!("{context}{}", f.reason)),
        }
    }
}

/// The helper's `main`: reads its job and then the message on stdin, and
/// writes the outcome on stdout. Exit status 0 whenever a reply was written.
pub fn main(args: &[String]) -> ExitCode {
    if args.len() != 1 {
        eprintln!("local-delivery: {FLAG} takes no further arguments");
        return ExitCode::from(64);
    }
    let stdin = io::stdin();
    let mut stdin = stdin.lock();
    let request: Request = match postern_ipc::read_frame_sync(&mut stdin) {
        Ok(Some(request)) => request,
        Ok(None) => {
            eprintln!("local-delivery: {FLAG}: no job on stdin");
            return ExitCode::from(64);
        }
        Err(e) => {
            eprintln!("local-delivery: {FLAG}: bad job: {e}");
            return ExitCode::from(64);
        }
    };
    let message = Exactly {
        inner: stdin,
        left: request.message_bytes,
    };
    let mut src = BufReader::with_capacity(64 * 1024, message);
    let reply = HelperReply::from_outcome(request.job.run(&mut src));
    match postern_ipc::write_frame_sync(&mut io::stdout().lock(), &reply) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("local-delivery: {FLAG}: cannot write the reply: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `job` in a helper process as `ids` (uid, gid) with `message` on its
/// stdin; `ids` is ignored unless we are root. Blocking: call it from
/// `spawn_blocking`. Any failure of the helper is a 4.3.0 deferral.
pub fn spawn(job: &Job, ids: Option<(u32, u32)>, message: File) -> Outcome {
    run(job, ids, message).unwrap_or_else(|e| Outcome::internal(e.to_string()))
}

fn run(job: &Job, ids: Option<(u32, u32)>, mut message: File) -> Result<Outcome, HelperError> {
    // /proc/self/exe still works after the binary on disk was replaced.
    let mut cmd = Command::new(Path::new("/proc/self/exe"));
    cmd.arg(FLAG)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if nix::unistd::geteuid().is_root()
        && let Some((uid, gid)) = ids
    {
        // std drops supplementary groups when it changes the uid as root.
        cmd.uid(uid).gid(gid);
    }
    let message_bytes = message
        .metadata()
        .and_then(|m| Ok(m.len().saturating_sub(message.stream_position()?)))
        .map_err(HelperError::Spawn)?;
    let request = Request {
        job: job.clone(),
        message_bytes,
    };
    let mut child = cmd.spawn().map_err(HelperError::Spawn)?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HelperError::Spawn(io::Error::other("helper pipes missing")));
    };
    let (reply, stderr) = std::thread::scope(|s| {
        // A helper that stops reading (it failed early) ends this with
        // EPIPE; its reply or exit status says why.
        s.spawn(move || {
            if postern_ipc::write_frame_sync(&mut stdin, &request).is_ok() {
                let _ = io::copy(&mut message, &mut stdin);
            }
        });
        let errors = s.spawn(move || {
            let mut kept = Vec::new();
            let _ = (&mut stderr).take(MAX_STDERR).read_to_end(&mut kept);
            let _ = io::copy(&mut stderr, &mut io::sink());
            String::from_utf8_lossy(&kept).trim().to_string()
        });
        let reply = read_reply(&mut stdout);
        // Drain what a misbehaving helper writes on, so it cannot block.
        let _ = io::copy(&mut stdout, &mut io::sink());
        (reply, errors.join().unwrap_or_default())
    });
    let status = child.wait().map_err(HelperError::Spawn)?;
    if !stderr.is_empty() {
        tracing::warn!("delivery helper: {stderr}");
    }
    match reply {
        Ok(Some(reply)) => Ok(reply.into_outcome()),
        Ok(None) => Err(HelperError::NoReply {
            status,
            stderr: if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            },
        }),
        Err(error) => Err(HelperError::BadReply { status, error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a whole small file.
    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn job(kind: Kind, path: PathBuf) -> Job {
        Job {
            kind,
            path,
            sender: "s@x".into(),
            delivered_to: "a@b".into(),
            limit: 0,
            user: "nobody".into(),
            chown: Some((1, 2)),
            hostname: "h".into(),
            lock: LockPolicy::default(),
        }
    }

    #[test]
    fn jobs_and_replies_round_trip_as_frames() {
        let j = job(Kind::File, "/tmp/x y".into());
        let mut buf = Vec::new();
        let request = Request {
            job: j.clone(),
            message_bytes: 19,
        };
        postern_ipc::write_frame_sync(&mut buf, &request).unwrap();
        buf.extend_from_slice(b"the message follows");
        let mut r = &buf[..];
        let back = postern_ipc::read_frame_sync::<_, Request>(&mut r)
            .unwrap()
            .unwrap();
        assert_eq!((back.job, back.message_bytes), (j, 19));
        assert_eq!(r, b"the message follows");

        for o in [
            Outcome::sent("delivered to maildir"),
            Outcome::failed(EnhancedStatus::of(5, 2, 2), "mailbox full"),
            Outcome::failed(EnhancedStatus::of(4, 2, 0), "locked"),
        ] {
            let mut buf = Vec::new();
            postern_ipc::write_frame_sync(&mut buf, &HelperReply::from_outcome(o.clone())).unwrap();
            let back = read_reply(&mut &buf[..]).unwrap().unwrap().into_outcome();
            assert_eq!(back, o);
        }
    }

    #[test]
    fn reply_text_loses_its_control_characters() {
        let r = HelperReply::Failed {
            dsn: EnhancedStatus::of(5, 2, 2),
            text: "cannot update\nmailbox".into(),
        };
        let o = r.into_outcome();
        assert_eq!(o.status, postern_envelope::DeliveryStatus::Bounced);
        assert_eq!(o.text, "cannot update mailbox");
    }

    #[test]
    fn a_bad_reply_is_an_error_not_a_panic() {
        // Nothing at all: the helper died before it answered.
        assert!(read_reply(&mut &b""[..]).unwrap().is_none());
        // The text line of the old protocol.
        let old = b"2.0.0 delivered to maildir\n";
        assert!(read_reply(&mut &old[..]).is_err());
        // A length prefix over the frame limit is refused before reading on.
        let huge = [0xff, 0xff, 0xff, 0xff, 0, 0];
        assert!(matches!(
            read_reply(&mut &huge[..]),
            Err(IpcError::FrameTooLarge { .. })
        ));
        // Cut short, garbled inside, or followed by more bytes.
        let mut good = Vec::new();
        let sent = HelperReply::Sent { text: "ok".into() };
        postern_ipc::write_frame_sync(&mut good, &sent).unwrap();
        assert!(matches!(
            read_reply(&mut &good[..good.len() - 1]),
            Err(IpcError::Truncated)
        ));
        let mut garbled = good.clone();
        garbled[4] = 0x7f;
        assert!(matches!(
            read_reply(&mut &garbled[..]),
            Err(IpcError::Decode(_))
        ));
        let mut longer = good.clone();
        longer.push(0);
        assert!(matches!(
            read_reply(&mut &longer[..]),
            Err(IpcError::Protocol(_))
        ));
        // An invalid enhanced status code does not decode.
        let mut bad_code = Vec::new();
        postern_ipc::write_frame_sync(&mut bad_code, &(1u32, (7u8, 0u16, 0u16), "x")).unwrap();
        assert!(read_reply(&mut &bad_code[..]).is_err());
    }

    #[test]
    fn a_helper_that_dies_without_a_reply_defers() {
        // In a test /proc/self/exe is the test runner, which refuses
        // `--write-as` and exits without a reply.
        let dir = tempfile::tempdir().unwrap();
        let message = tempfile::tempfile().unwrap();
        let o = spawn(&job(Kind::Maildir, dir.path().join("md/")), None, message);
        assert_eq!(o.status, postern_envelope::DeliveryStatus::Deferred);
        assert_eq!(o.dsn, "4.3.0");
        assert!(o.text.starts_with("delivery helper failed ("), "{}", o.text);
    }

    /// A daemon killed mid-copy leaves the helper an early end of input:
    /// the write fails and nothing is filed, instead of a shorter message.
    #[test]
    fn a_message_cut_short_is_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("md/");
        let sent = b"Subject: s\r\n\r\nbody\r\n";
        let mut cut = BufReader::new(Exactly {
            inner: &sent[..],
            left: sent.len() as u64 + 100,
        });
        let o = job(Kind::Maildir, maildir.clone()).run(&mut cut);
        assert_eq!(
            o.status,
            postern_envelope::DeliveryStatus::Deferred,
            "{o:?}"
        );
        assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0);

        let mut whole = BufReader::new(Exactly {
            inner: &sent[..],
            left: sent.len() as u64,
        });
        let o = job(Kind::Maildir, maildir.clone()).run(&mut whole);
        assert_eq!(o.status, postern_envelope::DeliveryStatus::Sent, "{o:?}");
        assert_eq!(std::fs::read_dir(maildir.join("new")).unwrap().count(), 1);
    }

    #[test]
    fn file_jobs_append_in_mbox_format() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job {
            chown: None,
            ..job(Kind::File, dir.path().join("f"))
        };
        let o = job.run(&mut &b"Subject: s\r\n\r\nbody\r\n"[..]);
        assert_eq!(o.text, format!("delivered to file: {}", job.path.display()));
        assert!(read(&job.path).ends_with("Subject: s\n\nbody\n\n"));
    }
}
