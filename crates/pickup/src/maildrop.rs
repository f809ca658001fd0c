//! Reading maildrop/: which files are ready, who left them, and what is
//! done with those that are not what sendmail writes. pickup trusts
//! nothing in a file but its content: the user is the file's owner, and a
//! file that is not a regular file with one link, or is too large, or
//! does not decode, is never queued.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use postern_ipc::maildrop::{self, Submission};
use postern_smtp::Address;

/// A file not marked complete this long after its last change was left
/// by a sendmail that died (or was never finished): it is removed.
pub const INCOMPLETE_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The largest file read whatever message_size_limit says (0 is no
/// limit): a sparse file of a terabyte must not take pickup down.
pub const HARD_LIMIT: u64 = 512 << 20;

/// One file that is ready, locked against another pickup process while
/// it is queued.
#[derive(Debug)]
pub struct Dropped {
    pub path: PathBuf,
    /// The owner: the submitting user.
    pub uid: u32,
    pub submission: Submission,
    pub content: Vec<u8>,
    _lock: Flock<File>,
}

/// What became of one directory entry.
#[derive(Debug)]
pub enum Entry {
    Ready(Dropped),
    /// Still being written, gone already, or another pickup has it: look
    /// again later.
    NotYet,
    /// Removed, with the reason to log: not a file sendmail makes (a
    /// link, a device, a directory, a stale incomplete file).
    Removed(String),
    /// A complete file that cannot be queued as it is (too large, does
    /// not decode, an envelope sendmail would not have written): moved to
    /// corrupt/ for the administrator, with the reason.
    Corrupt(String),
    /// Complete, but pickup cannot read it now: left in place, with the
    /// reason.
    Unreadable(String),
}

/// The names in `dir`, oldest first (by name order for equal times).
pub fn list(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut entries: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let mtime = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        entries.push((mtime, entry.path()));
    }
    entries.sort();
    Ok(entries.into_iter().map(|(_, p)| p).collect())
}

/// Opens and reads `path` when it is a complete submission; `max_size` is
/// the largest file accepted (message_size_limit plus the envelope).
pub fn read(path: &Path, max_size: u64, corrupt_dir: &Path) -> Entry {
    // Looked at before it is opened: a file sendmail is still writing is
    // its owner's alone (0600) until it is marked complete.
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Entry::NotYet,
        Err(e) => return Entry::Unreadable(format!("cannot stat: {e}")),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return remove(path, "a symbolic link");
    }
    if kind.is_dir() {
        return match std::fs::remove_dir(path) {
            Ok(()) => Entry::Removed("a directory".into()),
            Err(e) => Entry::Unreadable(format!("a directory that cannot be removed: {e}")),
        };
    }
    if !kind.is_file() {
        return remove(path, "not a regular file");
    }
    if meta.mode() & maildrop::COMPLETE == 0 {
        let age = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default();
        if age > INCOMPLETE_LIFETIME {
            return remove(path, "left incomplete by its writer");
        }
        return Entry::NotYet;
    }
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Entry::NotYet,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return remove(path, "a symbolic link");
        }
        // Complete but not readable (maildrop/ lost its setgid bit, or
        // the owner took the group's read away): left for the
        // administrator, never removed.
        Err(e) => return Entry::Unreadable(format!("cannot open: {e}")),
    };
    // Another pickup process is queueing it.
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => return Entry::NotYet,
        Err((_, e)) => return Entry::Unreadable(format!("cannot lock: {e}")),
    };
    // The file itself, now that it is open: what the name pointed to may
    // have changed in between.
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Entry::Unreadable(format!("cannot stat: {e}")),
    };
    if !meta.file_type().is_file() {
        return remove(path, "not a regular file");
    }
    if meta.nlink() != 1 {
        return remove(path, &format!("{} hard links", meta.nlink()));
    }
    if meta.mode() & maildrop::COMPLETE == 0 {
        return Entry::NotYet;
    }
    let uid = meta.uid();
    let max_size = max_size.min(HARD_LIMIT);
    if meta.len() > max_size {
        return move_to_corrupt(
            path,
            corrupt_dir,
            &format!("uid={uid}: message file too big ({} bytes)", meta.len()),
        );
    }
    let mut bytes = Vec::with_capacity(meta.len().min(64 << 20) as usize);
    if let Err(e) = read_all(&mut file, &mut bytes, max_size) {
        return Entry::Unreadable(format!("cannot read: {e}"));
    }
    let decoded = maildrop::decode(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|(submission, content)| {
            check_envelope(&submission).map(|()| (submission, content))
        });
    match decoded {
        Ok((submission, content)) => {
            let content = content.to_vec();
            Entry::Ready(Dropped {
                path: path.to_path_buf(),
                uid,
                submission,
                content,
                _lock: file,
            })
        }
        Err(e) => move_to_corrupt(path, corrupt_dir, &format!("uid={uid}: {e}")),
    }
}

/// What sendmail checks, checked again: the file may not come from it.
/// Addresses must parse as mailboxes (no line break can reach an SMTP
/// command or a mailbox), there must be a recipient, and the DSN values
/// must be what RFC 3461 allows.
pub fn check_envelope(s: &Submission) -> Result<(), String> {
    let mailbox = |a: &str, what: &str| {
        Address::parse(a)
            .map(|_| ())
            .map_err(|e| format!("bad {what} address {a:?}: {e}"))
    };
    if let Some(sender) = s.sender.as_deref().filter(|s| !s.is_empty()) {
        mailbox(sender, "sender")?;
    }
    if s.recipients.is_empty() {
        return Err("no recipients".into());
    }
    for r in &s.recipients {
        mailbox(&r.address, "recipient")?;
        if let Some(o) = &r.orcpt {
            let atom = !o.addr_type.is_empty()
                && o.addr_type
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !atom || o.addr.chars().any(char::is_control) {
                return Err(format!("bad ORCPT {}; {:?}", o.addr_type, o.addr));
            }
        }
    }
    if let Some(envid) = &s.envid {
        let printable = envid.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if envid.is_empty() || envid.len() > 100 || !printable {
            return Err(format!("bad ENVID {envid:?}"));
        }
    }
    if let Some(name) = &s.full_name
        && (name.len() > 256 || name.chars().any(char::is_control))
    {
        return Err(format!("bad full name {name:?}"));
    }
    Ok(())
}

fn read_all(file: &mut File, out: &mut Vec<u8>, max_size: u64) -> std::io::Result<()> {
    file.take(max_size + 1).read_to_end(out)?;
    if out.len() as u64 > max_size {
        return Err(std::io::Error::other("grew past the size limit"));
    }
    Ok(())
}

fn remove(path: &Path, why: &str) -> Entry {
    match std::fs::remove_file(path) {
        Ok(()) => Entry::Removed(why.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Entry::NotYet,
        Err(e) => Entry::Removed(format!("{why}; cannot remove it: {e}")),
    }
}

/// Keeps a file that does not decode where the administrator finds it,
/// as Postfix keeps damaged queue files in corrupt/.
pub fn move_to_corrupt(path: &Path, corrupt_dir: &Path, why: &str) -> Entry {
    let name = path.file_name().unwrap_or_default();
    let moved = std::fs::create_dir_all(corrupt_dir)
        .and_then(|()| std::fs::rename(path, corrupt_dir.join(name)));
    match moved {
        Ok(()) => Entry::Corrupt(format!("{why}; moved to {}", corrupt_dir.display())),
        Err(e) => remove(path, &format!("{why}; cannot move it to corrupt/: {e}")),
    }
}

/// Removes a file once its message is queued, durably, so that a restart
/// does not queue it again. A crash between qmgr's commit and this
/// removal queues it twice, as it does Postfix's pickup.
pub fn done(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        // Moved to corrupt/ already.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
