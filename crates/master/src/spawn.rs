//! Binding service endpoints and starting service processes.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, anyhow};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage, bind, listen, setsockopt, socket,
    socketpair, sockopt,
};
use postern_config::Endpoint;
use postern_daemon::inherit::{self, ListenKind};

/// Room for clients that arrive while a service restarts.
const LISTEN_BACKLOG: i32 = 1024;

/// Binds every socket of a service's endpoints, in their order (a daemon
/// with several unix sockets tells them apart by it). Unix sockets left by
/// a previous run are replaced: the caller holds the pid lock, so nobody
/// else owns them.
pub fn bind_endpoints(endpoints: &[Endpoint]) -> anyhow::Result<(ListenKind, Vec<OwnedFd>)> {
    let mut kind = ListenKind::Unix;
    let mut fds = Vec::new();
    for endpoint in endpoints {
        match endpoint {
            Endpoint::Inet(addrs) => {
                kind = ListenKind::Inet;
                for addr in addrs {
                    fds.push(bind_tcp(addr)?);
                }
            }
            Endpoint::Unix(path) => fds.push(bind_unix(path)?),
        }
    }
    Ok((kind, fds))
}

fn bind_tcp(addr: &SocketAddr) -> anyhow::Result<OwnedFd> {
    let fail =
        |what: &str, e: nix::Error| anyhow!("{what} {} port {}: {e}", addr.ip(), addr.port());
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| fail("socket", e))?;
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| fail("setsockopt", e))?;
    if addr.is_ipv6() {
        // So that "port" alone can bind both 0.0.0.0 and [::].
        setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(|e| fail("setsockopt", e))?;
    }
    bind(fd.as_raw_fd(), &SockaddrStorage::from(*addr)).map_err(|e| fail("bind", e))?;
    let backlog = Backlog::new(LISTEN_BACKLOG).unwrap_or(Backlog::MAXCONN);
    listen(&fd, backlog).map_err(|e| fail("listen", e))?;
    Ok(fd)
}

fn bind_unix(path: &Path) -> anyhow::Result<OwnedFd> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow!("remove stale socket {}: {e}", path.display())),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("bind {}", path.display()))?;
    // The directory (private/ 0700, public/ 0755) decides who may connect.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(OwnedFd::from(listener))
}

/// A started process and the master's end of its status socket.
#[derive(Debug)]
pub struct Spawned {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub status: tokio::net::UnixStream,
}

/// What to start and with which sockets.
#[derive(Debug)]
pub struct SpawnRequest<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub service: &'a str,
    pub kind: ListenKind,
    pub privileged: bool,
    pub listeners: &'a [OwnedFd],
}

pub fn spawn(req: &SpawnRequest<'_>) -> anyhow::Result<Spawned> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    let status_fd: RawFd = theirs.as_raw_fd();
    let listen_fds: Vec<RawFd> = req.listeners.iter().map(|f| f.as_raw_fd()).collect();

    let mut cmd = tokio::process::Command::new(req.program);
    cmd.args(req.args)
        .env(inherit::ENV_SERVICE, req.service)
        .env(inherit::ENV_LISTEN_FDS, listen_fds.len().to_string())
        .env(inherit::ENV_LISTEN_KIND, req.kind.as_str())
        .env(
            inherit::ENV_PRIVILEGED,
            if req.privileged { "1" } else { "0" },
        )
        .stdin(Stdio::null())
        .kill_on_drop(false);
    // SAFETY: install_child_fds only calls async-signal-safe functions.
    unsafe {
        cmd.pre_exec(move || inherit::install_child_fds(status_fd, &listen_fds));
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("spawn command {}", req.program.display()))?;
    drop(theirs);
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("child exited before it was seen"))?;
    let ours = std::os::unix::net::UnixStream::from(ours);
    ours.set_nonblocking(true)?;
    Ok(Spawned {
        child,
        pid,
        status: tokio::net::UnixStream::from_std(ours)?,
    })
}
