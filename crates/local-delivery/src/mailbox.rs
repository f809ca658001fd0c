//! The two mailbox formats: appending to an mbox file under a dotlock and
//! an fcntl lock (Postfix's `mbox_open` + `mail_copy`), and writing one
//! file per message into a Maildir (Postfix's `maildir.c`). Both fsync
//! before they report success, and neither leaves a partial message
//! behind: an mbox is truncated back, a Maildir tmp/ file removed.
//!
//! These functions run in the delivery helper, with the recipient's
//! privileges; they know nothing about users or the IPC protocol.

use postern_envelope::EnhancedStatus;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufWriter, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::libc;

use crate::copy::{CopyOptions, copy_message};

/// Why a mailbox write failed: a status code and the reason, which the
/// caller prefixes with Postfix's "cannot update mailbox ..." words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub dsn: EnhancedStatus,
    pub reason: String,
}

impl Failure {
    fn io(what: impl std::fmt::Display, e: &io::Error) -> Failure {
        Failure {
            dsn: crate::outcome::io_dsn(e),
            reason: format!("{what}: {}", strerror(e)),
        }
    }
}

/// The C library's words for an errno, without Rust's " (os error N)".
pub fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// A warning from the helper process: it has no logger, so it writes to
/// stderr, which the daemon reads and logs.
fn warn(msg: std::fmt::Arguments<'_>) {
    eprintln!("{msg}");
}

/// How a dotlock is taken: Postfix's deliver_lock_attempts,
/// deliver_lock_delay and stale_lock_time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LockPolicy {
    pub attempts: u32,
    pub delay: Duration,
    pub stale_after: Duration,
}

impl Default for LockPolicy {
    fn default() -> Self {
        LockPolicy {
            attempts: 20,
            delay: Duration::from_secs(1),
            stale_after: Duration::from_secs(500),
        }
    }
}

/// Appends one message to the mbox file `path`, creating it (mode 0600,
/// then owned by `chown` when given) if needed.
pub fn append_mbox(
    path: &Path,
    src: &mut dyn BufRead,
    opts: &CopyOptions,
    chown: Option<(u32, u32)>,
    policy: LockPolicy,
) -> Result<u64, Failure> {
    let dotlock = DotLock::acquire(path, policy)?;
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        // No symlinks, and a FIFO planted in a shared directory must not
        // block the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Failure::io(format!("cannot open file {}", path.display()), &e))?;
    let meta = file
        .metadata()
        .map_err(|e| Failure::io(format!("cannot stat {}", path.display()), &e))?;
    if !meta.file_type().is_file() {
        return Err(Failure {
            dsn: EnhancedStatus::of(5, 2, 0),
            reason: format!("destination {} is not a regular file", path.display()),
        });
    }
    // A hard link could make us append to a file its owner never meant
    // to be a mailbox (Postfix refuses these too).
    if meta.nlink() > 1 {
        return Err(Failure {
            dsn: EnhancedStatus::of(5, 2, 0),
            reason: format!("file {} has {} hard links", path.display(), meta.nlink()),
        });
    }
    if let Some((uid, gid)) = chown
        && meta.len() == 0
        && meta.uid() != uid
    {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))
            .map_err(|e| Failure::io(format!("cannot chown {}", path.display()), &e))?;
    }
    lock_fcntl(&file, policy)?;
    let result = write_locked(&file, src, opts);
    drop(file); // closing releases the fcntl lock
    drop(dotlock);
    result
}

/// Writes the message to a character device (`/dev/null` in an alias),
/// which needs neither locks nor truncation.
pub fn write_device(
    path: &Path,
    src: &mut dyn BufRead,
    opts: &CopyOptions,
) -> Result<u64, Failure> {
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Failure::io(format!("cannot open file {}", path.display()), &e))?;
    let mut w = BufWriter::new(&file);
    let n = copy_message(src, &mut w, opts)
        .and_then(|n| w.flush().map(|()| n))
        .map_err(|e| Failure::io("error writing message", &e))?;
    Ok(n)
}

/// Whether `path` names a character device such as `/dev/null`.
pub fn is_char_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

fn write_locked(file: &File, src: &mut dyn BufRead, opts: &CopyOptions) -> Result<u64, Failure> {
    let mut f = file;
    let end = f
        .seek(SeekFrom::End(0))
        .map_err(|e| Failure::io("cannot seek", &e))?;
    // mailbox_size_limit bounds the whole file, not just this message.
    let full = opts.limit > 0 && end >= opts.limit;
    let mut opts = opts.clone();
    opts.limit = opts.limit.saturating_sub(end);
    let copied = (|| {
        if full {
            return Err(crate::copy::too_large());
        }
        let mut w = BufWriter::with_capacity(64 * 1024, f);
        let n = copy_message(src, &mut w, &opts)?;
        w.flush()?;
        drop(w);
        file.sync_all()?;
        Ok::<u64, io::Error>(n)
    })();
    match copied {
        Ok(n) => Ok(n),
        Err(e) => {
            // Leave the mailbox as it was: no half message for the reader.
            if let Err(t) = file.set_len(end).and_then(|()| file.sync_all()) {
                warn(format_args!(
                    "cannot truncate mailbox back to {end} bytes: {t}"
                ));
            }
            Err(Failure::io("error writing message", &e))
        }
    }
}

/// Takes an exclusive fcntl(2) lock on the whole file, retrying as a
/// dotlock does.
fn lock_fcntl(file: &File, policy: LockPolicy) -> Result<(), Failure> {
    // SAFETY: flock is plain old data; all-zero is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    let mut attempt = 0;
    loop {
        match nix::fcntl::fcntl(file.as_fd(), nix::fcntl::FcntlArg::F_SETLK(&fl)) {
            Ok(_) => return Ok(()),
            Err(e) if attempt + 1 < policy.attempts.max(1) => {
                if !matches!(e, nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) {
                    return Err(lock_failure(e));
                }
                attempt += 1;
                std::thread::sleep(policy.delay);
            }
            Err(e) => return Err(lock_failure(e)),
        }
    }
}

fn lock_failure(e: nix::errno::Errno) -> Failure {
    Failure {
        dsn: EnhancedStatus::of(4, 2, 0),
        reason: format!("unable to lock for exclusive access: {}", e.desc()),
    }
}

/// `PATH.lock`, created exclusively and removed on drop.
#[derive(Debug)]
struct DotLock {
    path: Option<PathBuf>,
}

impl DotLock {
    fn acquire(mailbox: &Path, policy: LockPolicy) -> Result<DotLock, Failure> {
        let mut name = mailbox.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut attempt = 0;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(DotLock { path: Some(path) }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if is_stale(&path, policy.stale_after) {
                        warn(format_args!("{}: removing stale lock file", path.display()));
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    attempt += 1;
                    if attempt >= policy.attempts.max(1) {
                        return Err(Failure {
                            dsn: EnhancedStatus::of(4, 2, 0),
                            reason: format!(
                                "unable to create lock file {}: {}",
                                path.display(),
                                strerror(&e)
                            ),
                        });
                    }
                    std::thread::sleep(policy.delay);
                }
                // A spool directory this user may not write in (no
                // group mail): the fcntl lock alone still serialises
                // writers, as Postfix does on systems without dotlocks.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Ok(DotLock { path: None });
                }
                Err(e) => {
                    return Err(Failure::io(
                        format!("unable to create lock file {}", path.display()),
                        &e,
                    ));
                }
            }
        }
    }
}

fn is_stale(path: &Path, stale_after: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > stale_after)
}

impl Drop for DotLock {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Messages written by this process so far, for unique Maildir names.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes one message into the Maildir `dir` (creating `tmp/`, `new/` and
/// `cur/` as needed): into `tmp/` under a unique name, fsync, then a rename
/// into `new/`, so a reader never sees a partial message. Returns the path
/// in `new/`.
pub fn deliver_maildir(
    dir: &Path,
    src: &mut dyn BufRead,
    opts: &CopyOptions,
    hostname: &str,
) -> Result<PathBuf, Failure> {
    let mut builder = DirBuilder::new();
    builder.recursive(true).mode(0o700);
    for sub in ["tmp", "new", "cur"] {
        let d = dir.join(sub);
        builder
            .create(&d)
            .map_err(|e| Failure::io(format!("create maildir file {}", d.display()), &e))?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // time.MusecPpidQcounter.host: unique across processes and hosts
    // (the modern Maildir convention; '/' and ':' are not allowed).
    let host: String = hostname
        .chars()
        .map(|c| match c {
            '/' => '\\',
            ':' => '_',
            c => c,
        })
        .collect();
    let name = format!(
        "{}.M{}P{}Q{}.{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        host
    );
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Failure::io(format!("create maildir file {}", tmp.display()), &e))?;
    let written = (|| {
        let mut w = BufWriter::with_capacity(64 * 1024, &file);
        copy_message(src, &mut w, opts)?;
        w.flush()?;
        drop(w);
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::io("error writing message", &e));
    }
    drop(file);
    if let Err(e) = std::fs::rename(&tmp, &new) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Failure::io(
            format!("cannot rename {} to {}", tmp.display(), new.display()),
            &e,
        ));
    }
    // The rename is durable only once the directory is on disk too.
    if let Err(e) = File::open(dir.join("new")).and_then(|d| d.sync_all()) {
        warn(format_args!("fsync {}: {e}", dir.join("new").display()));
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(limit: u64) -> CopyOptions {
        CopyOptions {
            sender: "s@example.org".into(),
            delivered_to: "u@example.local".into(),
            from_line: true,
            quote_from: true,
            blank_line: true,
            limit,
        }
    }

    fn quick() -> LockPolicy {
        LockPolicy {
            attempts: 2,
            delay: Duration::from_millis(10),
            stale_after: Duration::from_secs(500),
        }
    }

    #[test]
    fn mbox_appends_two_messages_and_removes_the_dotlock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user");
        for body in [
            "Subject: one\r\n\r\nFrom me\r\n",
            "Subject: two\r\n\r\nbye\r\n",
        ] {
            append_mbox(&path, &mut body.as_bytes(), &opts(0), None, quick()).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("\nFrom s@example.org  ").count(), 1, "{text}");
        assert!(text.starts_with("From s@example.org  "), "{text}");
        assert!(text.contains("\n>From me\n\nFrom s@example.org"), "{text}");
        assert!(text.ends_with("Subject: two\n\nbye\n\n"), "{text}");
        assert!(!dir.path().join("user.lock").exists());
    }

    #[test]
    fn a_message_over_the_limit_leaves_the_mbox_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user");
        std::fs::write(&path, "existing\n").unwrap();
        let big = format!("Subject: x\r\n\r\n{}\r\n", "y".repeat(5000));
        let err = append_mbox(&path, &mut big.as_bytes(), &opts(1000), None, quick()).unwrap_err();
        assert_eq!(err.dsn, "5.2.2");
        assert_eq!(err.reason, "error writing message: File too large");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "existing\n");
    }

    #[test]
    fn a_held_dotlock_defers_and_a_stale_one_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user");
        let lock = dir.path().join("user.lock");
        std::fs::write(&lock, "").unwrap();
        let err = append_mbox(&path, &mut &b"x\r\n"[..], &opts(0), None, quick()).unwrap_err();
        assert_eq!(err.dsn, "4.2.0");
        assert!(
            err.reason.starts_with("unable to create lock file"),
            "{err:?}"
        );
        let stale = LockPolicy {
            stale_after: Duration::ZERO,
            ..quick()
        };
        std::thread::sleep(Duration::from_millis(20));
        append_mbox(&path, &mut &b"x\r\n"[..], &opts(0), None, stale).unwrap();
        assert!(!lock.exists());
    }

    #[test]
    fn hard_links_fifos_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("user");
        std::fs::write(&path, "").unwrap();
        std::fs::hard_link(&path, dir.path().join("other")).unwrap();
        let err = append_mbox(&path, &mut &b"x\r\n"[..], &opts(0), None, quick()).unwrap_err();
        assert_eq!(err.dsn, "5.2.0");
        assert!(err.reason.ends_with("has 2 hard links"), "{err:?}");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Refused at once (ENXIO without a reader), never a hang.
        let err = append_mbox(&fifo, &mut &b"x\r\n"[..], &opts(0), None, quick()).unwrap_err();
        assert!(err.reason.contains("fifo"), "{err:?}");

        let null = Path::new("/dev/null");
        assert!(is_char_device(null));
        assert!(write_device(null, &mut &b"x\r\n"[..], &opts(0)).is_ok());
    }

    #[test]
    fn maildir_delivery_is_atomic_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let md = dir.path().join("Maildir");
        let mut o = opts(0);
        o.from_line = false;
        o.quote_from = false;
        o.blank_line = false;
        let a = deliver_maildir(&md, &mut &b"Subject: a\r\n\r\nFrom x\r\n"[..], &o, "h").unwrap();
        let b = deliver_maildir(&md, &mut &b"Subject: b\r\n\r\n"[..], &o, "h").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 2);
        assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
        assert!(md.join("cur").is_dir());
        assert_eq!(
            std::fs::read_to_string(&a).unwrap(),
            "Return-Path: <s@example.org>\nDelivered-To: u@example.local\nSubject: a\n\nFrom x\n"
        );
        o.limit = 10;
        let err = deliver_maildir(&md, &mut &b"Subject: c\r\n\r\n"[..], &o, "h").unwrap_err();
        assert_eq!(err.dsn, "5.2.2");
        assert_eq!(std::fs::read_dir(md.join("tmp")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 2);
    }
}
