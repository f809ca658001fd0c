//! The contract between the master and the processes it spawns, like
//! Postfix's `master_proto.h`: which descriptors a child inherits and which
//! environment variables describe them.
//!
//! - fd 3 is a stream socket to the master (the status channel);
//! - fds 4 .. 4+N are the service's listening sockets, N in
//!   [`ENV_LISTEN_FDS`], all of the kind in [`ENV_LISTEN_KIND`].

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// The status socket's descriptor in a child.
pub const STATUS_FD: RawFd = 3;
/// The first listening socket's descriptor in a child.
pub const FIRST_LISTEN_FD: RawFd = 4;

/// The service name from master.toml (`smtp`, `submission`, `qmgr`, ...).
pub const ENV_SERVICE: &str = "POSTERN_SERVICE";
/// How many listening sockets follow [`FIRST_LISTEN_FD`].
pub const ENV_LISTEN_FDS: &str = "POSTERN_LISTEN_FDS";
/// `inet` or `unix`.
pub const ENV_LISTEN_KIND: &str = "POSTERN_LISTEN_KIND";
/// `1` when the service runs with privileges (master.cf's unpriv = n).
pub const ENV_PRIVILEGED: &str = "POSTERN_PRIVILEGED";

/// What a child learns from its environment about how it was started.
#[derive(Debug)]
pub struct Inherited {
    pub service: String,
    pub privileged: bool,
    pub kind: ListenKind,
    pub status: OwnedFd,
    pub listeners: Vec<OwnedFd>,
}

/// The kind of the inherited listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenKind {
    Inet,
    Unix,
}

impl ListenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenKind::Inet => "inet",
            ListenKind::Unix => "unix",
        }
    }
}

/// Why a process cannot run as a daemon.
#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    #[error(
        "{0} is not set: this program is started by the Postern master, not by hand (see master(8))"
    )]
    NotFromMaster(&'static str),
    #[error("bad value for {name}: {value:?}")]
    BadValue { name: &'static str, value: String },
    #[error("inherited descriptor {0} is not open")]
    BadFd(RawFd),
}

/// Takes ownership of the descriptors the master passed. Call once, early,
/// before anything else opens files.
pub fn take() -> Result<Inherited, InheritError> {
    let service =
        std::env::var(ENV_SERVICE).map_err(|_| InheritError::NotFromMaster(ENV_SERVICE))?;
    let count_text =
        std::env::var(ENV_LISTEN_FDS).map_err(|_| InheritError::NotFromMaster(ENV_LISTEN_FDS))?;
    let count: i32 = count_text.parse().map_err(|_| InheritError::BadValue {
        name: ENV_LISTEN_FDS,
        value: count_text.clone(),
    })?;
    let kind = match std::env::var(ENV_LISTEN_KIND).as_deref() {
        Ok("inet") => ListenKind::Inet,
        Ok("unix") => ListenKind::Unix,
        Ok(other) => {
            return Err(InheritError::BadValue {
                name: ENV_LISTEN_KIND,
                value: other.to_string(),
            });
        }
        Err(_) => return Err(InheritError::NotFromMaster(ENV_LISTEN_KIND)),
    };
    let privileged = std::env::var(ENV_PRIVILEGED).as_deref() == Ok("1");
    let status = adopt(STATUS_FD)?;
    let listeners = (0..count)
        .map(|i| adopt(FIRST_LISTEN_FD + i))
        .collect::<Result<_, _>>()?;
    // Children of this daemon (local delivery's commands) must not inherit them.
    for var in [ENV_SERVICE, ENV_LISTEN_FDS, ENV_LISTEN_KIND, ENV_PRIVILEGED] {
        // SAFETY: called once at start-up before any other thread exists.
        unsafe { std::env::remove_var(var) };
    }
    Ok(Inherited {
        service,
        privileged,
        kind,
        status,
        listeners,
    })
}

fn adopt(fd: RawFd) -> Result<OwnedFd, InheritError> {
    // fcntl(F_GETFD) fails with EBADF for a descriptor that is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(InheritError::BadFd(fd));
    }
    // Mark it close-on-exec: it is ours, not our children's.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the master opened this descriptor for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Moves `fds` to the descriptor numbers a child expects. For the master's
/// `pre_exec` hook: async-signal-safe (only dup/dup2/fcntl), no allocation.
///
/// Each source is first copied above every target so that a source whose
/// number is some other target is not overwritten before it is moved.
///
/// # Safety
/// Call only in a freshly forked child before exec.
pub unsafe fn install_child_fds(status: RawFd, listeners: &[RawFd]) -> std::io::Result<()> {
    const PARK: RawFd = 1000;
    let mut parked = [0 as RawFd; 64];
    if listeners.len() + 1 > parked.len() {
        return Err(std::io::Error::from_raw_os_error(libc::EMFILE));
    }
    let sources = std::iter::once(status).chain(listeners.iter().copied());
    for (i, fd) in sources.enumerate() {
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, PARK) };
        if high < 0 {
            return Err(std::io::Error::last_os_error());
        }
        parked[i] = high;
    }
    for (i, &high) in parked[..listeners.len() + 1].iter().enumerate() {
        let target = STATUS_FD + i as RawFd;
        // dup2 clears close-on-exec on the target.
        if unsafe { libc::dup2(high, target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        unsafe { libc::close(high) };
    }
    Ok(())
}
