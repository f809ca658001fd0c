//! Real Debian mail filters as milter peers for smtpd's tests: each one
//! started from its own configuration in a test's directory, offline (no
//! DNS, no signature downloads), listening on a socket the test names in
//! `smtpd_milters`.
//!
//! # Layout
//!
//! - [`opendkim`]: opendkim signing (and verifying) with a key made for the
//!   test, and an offline check of a signed message (`opendkim -t`).
//! - [`clamav`]: clamd with a one-signature database and clamav-milter in
//!   front of it.
//! - [`spamassassin`]: spamd with local rules only and spamass-milter in
//!   front of it.
//! - [`testmilter`]: `tests/milters/testmilter.py`, a libmilter filter
//!   that answers and modifies as the test configures it.
//! - [`MilterSocket`], [`Listen`]: where a filter listens, in the milter
//!   library's spelling and in Postfix's.
//! - [`PeerProcess`], [`program`]: one started filter program, its log
//!   and its end.
//!
//! A peer's programs run in a process group of their own under a small
//! shell that kills the group when the test process goes away (it reads
//! a pipe only the test holds open), so nothing outlives a test, however
//! it ends. PR_SET_PDEATHSIG would not do: it follows the thread that
//! started the child and is cleared when a daemon changes its user (spamd
//! does, as root).

pub mod clamav;
pub mod opendkim;
pub mod spamassassin;
pub mod testmilter;

use std::ffi::OsStr;
use std::fmt;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for};

pub use clamav::ClamAv;
pub use opendkim::{DkimVerdict, OpenDkim};
pub use spamassassin::SpamAssassin;
pub use testmilter::TestMilter;

/// How long a peer may take to become ready (spamd compiles its rules).
const START_LIMIT: Duration = Duration::from_secs(60);

/// Which kind of socket a peer should listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket in the peer's directory.
    Unix,
    /// TCP on 127.0.0.1, a free port.
    Inet,
}

/// Where a milter listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MilterSocket {
    Unix(PathBuf),
    Inet(u16),
}

impl MilterSocket {
    /// A socket of kind `listen`: `dir/name.sock`, or a free port.
    pub fn new(listen: Listen, dir: &Path, name: &str) -> MilterSocket {
        match listen {
            Listen::Unix => MilterSocket::Unix(dir.join(format!("{name}.sock"))),
            Listen::Inet => MilterSocket::Inet(free_port()),
        }
    }

    /// The milter library's spelling (smfi_setconn, opendkim's Socket,
    /// clamav-milter's MilterSocket, spamass-milter's -p):
    /// `unix:/path` or `inet:PORT@127.0.0.1`.
    pub fn libmilter_spec(&self) -> String {
        match self {
            MilterSocket::Unix(path) => format!("unix:{}", path.display()),
            MilterSocket::Inet(port) => format!("inet:{port}@127.0.0.1"),
        }
    }

    /// Whether a connection is accepted now.
    pub fn accepts(&self) -> bool {
        match self {
            MilterSocket::Unix(path) => UnixStream::connect(path).is_ok(),
            MilterSocket::Inet(port) => {
                TcpStream::connect_timeout(&([127, 0, 0, 1], *port).into(), Duration::from_secs(1))
                    .is_ok()
            }
        }
    }

    /// Removes a unix socket left by an earlier run (the filters refuse to
    /// start on one).
    fn clear(&self) {
        if let MilterSocket::Unix(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Postfix's spelling, as `smtpd_milters` takes it: `unix:/path` or
/// `inet:127.0.0.1:PORT`.
impl fmt::Display for MilterSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MilterSocket::Unix(path) => write!(f, "unix:{}", path.display()),
            MilterSocket::Inet(port) => write!(f, "inet:127.0.0.1:{port}"),
        }
    }
}

/// The path of `name`, looked for on PATH and in the sbin directories
/// (which a non-root PATH often lacks); panics naming the Debian package
/// when it is not installed.
pub fn program(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!("{name} is not installed: apt-get install {package} (scripts/test installs it)")
        })
}

/// Makes `dir/name` (one others may enter: some filters drop to another
/// user) and returns it.
fn peer_dir(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    for d in [dir, &path] {
        let mode = d.metadata().unwrap().permissions().mode();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o755)).unwrap();
    }
    path
}

/// Writes `text` to `path`, panicking with the path on failure.
fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Runs the program (`$1`, its arguments after it) in the background,
/// then waits for it; a second process waits for the end of fd 3 (the
/// test's end of a pipe) and then kills the whole group.
const GUARD: &str = r#"exec 3<&0 0</dev/null
"$@" &
program=$!
{ read -r _ <&3; kill -KILL 0; } &
guard=$!
wait "$program"
status=$?
kill "$guard"
exit "$status""#;

/// One running filter program: its process group, and its standard output
/// and error in a log file.
#[derive(Debug)]
pub struct PeerProcess {
    name: String,
    log: PathBuf,
    child: Option<Child>,
    /// The test's end of the pipe the group's guard reads; closing it (the
    /// test process ending) kills the group.
    _lifeline: Option<ChildStdin>,
}

impl PeerProcess {
    /// Starts `program` with `args`, its output to `log`, in a process
    /// group of its own under the guard.
    pub fn spawn<S: AsRef<OsStr>>(program: &Path, args: &[S], log: PathBuf) -> PeerProcess {
        let name = program
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let out =
            std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(GUARD)
            .arg("peer-guard")
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let lifeline = child.stdin.take();
        PeerProcess {
            name,
            log,
            child: Some(child),
            _lifeline: lifeline,
        }
    }

    /// The program's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready` holds; panics with the log if the program ends
    /// first or [`START_LIMIT`] passes. How long it took.
    pub fn wait_ready(&mut self, what: &str, mut ready: impl FnMut() -> bool) -> Duration {
        let started = Instant::now();
        let mut ended = None;
        let child = self.child.as_mut().expect("running");
        wait_for(START_LIMIT, || {
            ended = child.try_wait().ok().flatten();
            ended.is_some() || ready()
        });
        if let Some(status) = ended {
            panic!(
                "{} exited ({status}) before {what}; its log {}:\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
        if !ready() {
            panic!(
                "{}: no {what} after {START_LIMIT:?}; its log {}:\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
        started.elapsed()
    }

    /// Kills the process group and reaps its leader.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
