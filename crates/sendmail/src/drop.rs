//! Leaving a message in `$queue_directory/maildrop/` for pickup, durably:
//! the file is created under a fresh random name that only its owner
//! may read, written and synced, its directory entry synced (with fsync
//! of the directory where this user may open it, as root and mail_owner
//! may, and syncfs(2) of its file system otherwise), then marked complete
//! ([`maildrop::COMPLETE`]) and synced again. Only then does sendmail
//! exit 0. A write that fails before the mark removes the file: nothing
//! is half-queued; once marked, the file stays.
//!
//! Then pickup is told to look ([`maildrop::TRIGGER`]); when it is not
//! running (the master is stopped) the file waits for it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use postern_ipc::maildrop::{self, Submission};

use crate::exit::{EX_SOFTWARE, EX_TEMPFAIL, EX_UNAVAILABLE, Fatal};

/// Writes one submission; returns the file's name in maildrop/.
pub fn drop_message(
    queue_directory: &Path,
    submission: &Submission,
    content: &[u8],
) -> Result<String, Fatal> {
    let dir = queue_directory.join(maildrop::DIR);
    let bytes = maildrop::encode(submission, content)
        .map_err(|e| Fatal::new(EX_SOFTWARE, format!("cannot encode the envelope: {e}")))?;
    let (name, path, mut file) = create(&dir)?;
    let fail = |e: std::io::Error| {
        Fatal::new(
            EX_TEMPFAIL,
            format!("error writing queue file {}: {e}", path.display()),
        )
    };
    let written = write_synced(&mut file, &bytes).and_then(|()| sync_entry(&dir, &file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&path);
        return Err(fail(e));
    }
    // From here on pickup may take it: it is not removed again, whatever
    // happens (a retry would queue it twice).
    mark_complete(&file).map_err(fail)?;
    trigger(queue_directory);
    Ok(name)
}

/// A new file with a name nobody else has, mode 0600 until complete.
fn create(dir: &Path) -> Result<(String, PathBuf, File), Fatal> {
    for _ in 0..8 {
        let name = random_name()?;
        let path = dir.join(&name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => return Ok((name, path, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                // A missing maildrop/ means Postern was never installed
                // or started here: retrying will not help.
                let status = if e.kind() == std::io::ErrorKind::NotFound {
                    EX_UNAVAILABLE
                } else {
                    EX_TEMPFAIL
                };
                return Err(Fatal::new(
                    status,
                    format!("cannot create a queue file in {}: {e}", dir.display()),
                ));
            }
        }
    }
    Err(Fatal::new(
        EX_TEMPFAIL,
        format!("cannot find a free queue file name in {}", dir.display()),
    ))
}

/// 16 random bytes in hex.
fn random_name() -> Result<String, Fatal> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        // SAFETY: the pointer and length describe the unfilled part of
        // `bytes`, which lives across the call.
        let n = unsafe {
            libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Fatal::new(EX_TEMPFAIL, format!("getrandom: {e}")));
        }
        filled += n as usize;
    }
    Ok(bytes.iter().map(|b| format!("{b:02X}")).collect())
}

/// The content on disk.
fn write_synced(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// The mark that the file is complete (owner execute; group read for
/// pickup, whose group the setgid maildrop/ gives the file), on disk.
fn mark_complete(file: &File) -> std::io::Result<()> {
    file.set_permissions(std::fs::Permissions::from_mode(0o740))?;
    file.sync_all()
}

/// The directory entry on disk: fsync(2) of the directory when this user
/// may open it, else syncfs(2), which flushes the whole file system the
/// file is on (maildrop/ is not readable by ordinary users, so that they
/// cannot list each other's mail).
fn sync_entry(dir: &Path, file: &File) -> std::io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(_) => nix::unistd::syncfs(file).map_err(std::io::Error::from),
    }
}

/// Wakes pickup; it also looks on its own every minute, and when it
/// starts.
fn trigger(queue_directory: &Path) {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let path = queue_directory.join(maildrop::TRIGGER);
    let Ok(addr) = UnixAddr::new(&path) else {
        return;
    };
    // Non-blocking: a full backlog means pickup is busy and will look.
    if let Ok(fd) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) {
        use std::os::fd::AsRawFd;
        let _ = connect(fd.as_raw_fd(), &addr);
    }
}
