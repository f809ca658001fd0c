//! The process life of a daemon: [`run`] sets everything up and calls the
//! daemon's own async function with a [`Context`]; [`serve_sessions`] is
//! the multi-server accept loop most daemons use.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use clap::Parser;
use postern_config::{Config, Params};
use postern_ipc::{FdStream, TakeFds};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::args::CommonArgs;
use crate::configured::Configured;
use crate::inherit::{self, ListenKind};
use crate::status::{self, Health, StatusSender};
use crate::{log, privs};

#[derive(Parser, Debug)]
struct DaemonCli {
    #[command(flatten)]
    common: CommonArgs,
}

/// Everything a daemon gets from the skeleton.
#[derive(Debug)]
pub struct Context {
    /// The program name (`smtpd`), used in log lines.
    pub program: &'static str,
    /// The service name from master.toml (`smtp`, `submission`, ...).
    pub service: String,
    /// Listening sockets inherited from the master; taken by the accept loop.
    pub listeners: Vec<Listener>,
    /// Fires on SIGTERM or when the master goes away.
    pub shutdown: Shutdown,
    /// Extra reports to the master (certificates).
    pub status: StatusSender,
    config: watch::Receiver<Arc<Config>>,
    health: Arc<Health>,
    wakeups: mpsc::UnboundedReceiver<()>,
}

impl Context {
    /// This service's parameters: [main], its options, and `-o` overrides.
    pub fn params(&self) -> Params {
        self.config.borrow().params_for(&self.service)
    }

    /// State built by `build` from this service's parameters, once per
    /// configuration (again after each reload); `build` also gets the
    /// value of the previous configuration.
    pub fn configured<T: Clone>(
        &self,
        build: impl Fn(&Params, Option<&T>) -> T + Send + Sync + 'static,
    ) -> Configured<T> {
        Configured::new(self.config.clone(), self.service.clone(), build)
    }

    /// Tells the master this process serves. [`serve_sessions`] calls it.
    pub fn ready(&self) {
        self.health.ready.store(true, Ordering::Relaxed);
        self.health.ready_changed.notify_one();
    }

    /// Declares that this process holds a resource only one process may
    /// hold (qmgr's queue), so a restart must stop it before starting the
    /// replacement. Call before [`Context::ready`].
    pub fn set_exclusive(&self) {
        self.health.exclusive.store(true, Ordering::Relaxed);
    }

    /// Waits for the master's next wakeup (master(5) `wakeup`); `None`
    /// when the master is gone.
    pub async fn wakeup(&mut self) -> Option<()> {
        self.wakeups.recv().await
    }
}

/// Decrements the session count when a session ends.
#[derive(Debug)]
pub struct SessionGuard {
    health: Arc<Health>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.health.sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A cloneable view of the shutdown flag.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A flag and its trigger, for callers outside [`run`] (tests).
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { rx })
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has begun.
    pub async fn triggered(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// An inherited listening socket.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn adopt(fd: OwnedFd, kind: ListenKind) -> io::Result<Listener> {
        Ok(match kind {
            ListenKind::Inet => {
                let l = std::net::TcpListener::from(fd);
                l.set_nonblocking(true)?;
                Listener::Tcp(TcpListener::from_std(l)?)
            }
            ListenKind::Unix => {
                let l = std::os::unix::net::UnixListener::from(fd);
                l.set_nonblocking(true)?;
                Listener::Unix(UnixListener::from_std(l)?)
            }
        })
    }

    pub async fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, remote) = l.accept().await?;
                let local = s.local_addr()?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), Peer::Inet { remote, local }))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(FdStream::new(s)), Peer::Unix))
            }
        }
    }
}

/// Who is on the other end of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Inet {
        remote: SocketAddr,
        local: SocketAddr,
    },
    Unix,
}

/// A session's stream, TCP or Unix. A Unix stream keeps descriptors
/// passed to it (qmgr hands delivery agents the body's segment files).
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(FdStream),
}

impl TakeFds for Stream {
    fn take_fd(&mut self) -> Option<std::os::fd::OwnedFd> {
        match self {
            Stream::Tcp(_) => None,
            Stream::Unix(s) => s.take_fd(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Runs a daemon: parses the command line, takes the master's descriptors,
/// loads the configuration, drops privileges, starts logging, and calls
/// `serve` on a multi-threaded runtime until it returns.
pub fn run<F, Fut>(program: &'static str, serve: F) -> ExitCode
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = DaemonCli::parse();
    let inherited = inherit::take().unwrap_or_else(|e| log::early_fatal(program, e));
    let config = cli
        .common
        .load_config()
        .unwrap_or_else(|e| log::early_fatal(program, e));
    let params = config.params_for(&inherited.service);

    let maillog = params.get("maillog_file");
    let maillog = (!maillog.is_empty()).then(|| params.path("maillog_file"));
    if let Err(e) = log::init(
        &params.get("myhostname"),
        &params.get("syslog_name"),
        program,
        maillog.as_deref(),
    ) {
        log::early_fatal(program, format!("open maillog_file: {e}"));
    }
    raise_descriptor_limit();
    if let Err(e) = privs::drop_privileges(&params.get("mail_owner"), inherited.privileged) {
        log::fatal(e);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| log::fatal(format!("cannot start the runtime: {e}")));
    let result = runtime.block_on(async move {
        let health = Arc::new(Health::default());
        let master_gone = Arc::new(Notify::new());
        let status_stream = std::os::unix::net::UnixStream::from(inherited.status);
        status_stream.set_nonblocking(true)?;
        let (status, wakeups) =
            status::start(UnixStream::from_std(status_stream)?, health.clone(), master_gone.clone())
                .await?;
        let listeners = inherited
            .listeners
            .into_iter()
            .map(|fd| Listener::adopt(fd, inherited.kind))
            .collect::<io::Result<Vec<_>>>()?;

        let (stop_tx, shutdown) = Shutdown::new();
        let (config_tx, config_rx) = watch::channel(Arc::new(config));
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let common = cli.common.clone();
        let service = inherited.service.clone();
        let watcher_health = health.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {
                        tracing::debug!("SIGTERM: draining");
                        break;
                    }
                    _ = master_gone.notified() => {
                        tracing::warn!("master went away -- exiting");
                        break;
                    }
                    _ = hup.recv() => match common.load_config() {
                        Ok(new) => {
                            if new.service(&service).is_none() {
                                tracing::warn!("reload: service {service} is no longer configured");
                            }
                            let _ = config_tx.send(Arc::new(new));
                        }
                        Err(e) => tracing::error!("reload refused, keeping the running configuration: {e}"),
                    },
                }
            }
            watcher_health.draining.store(true, Ordering::Relaxed);
            watcher_health.ready_changed.notify_one();
            let _ = stop_tx.send(true);
            // Keep the sender alive so the flag stays set.
            std::future::pending::<()>().await;
        });

        let ctx = Context {
            program,
            service: inherited.service,
            listeners,
            shutdown,
            status,
            config: config_rx,
            health,
            wakeups,
        };
        serve(ctx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => log::fatal(format!("{e:#}")),
    }
}

/// One process serves thousands of sessions, each a descriptor: lift the
/// soft limit to the hard one (while still root, the hard limit may be
/// raised too, to what the kernel allows).
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, mut hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if nix::unistd::Uid::effective().is_root()
        && let Ok(max) = std::fs::read_to_string("/proc/sys/fs/nr_open")
        && let Ok(max) = max.trim().parse::<u64>()
        && max > hard
        && setrlimit(Resource::RLIMIT_NOFILE, max, max).is_ok()
    {
        hard = max;
    }
    if soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!("cannot raise the descriptor limit to {hard}: {e}");
    }
}

/// Accepts sessions on every listener and runs `handler` for each, at most
/// `max_sessions` at once (further clients wait in the kernel backlog).
/// On shutdown it stops accepting, lets running sessions finish for up to
/// `drain_timeout`, and returns. A daemon that has more to do than serve
/// sessions (qmgr's scheduling) uses [`accept_sessions`] instead.
pub async fn serve_sessions<H, Fut>(
    ctx: &mut Context,
    max_sessions: usize,
    drain_timeout: Duration,
    handler: H,
) where
    H: Fn(Stream, Peer, Shutdown) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let sessions = accept_sessions(ctx, max_sessions, handler);
    ctx.ready();
    ctx.shutdown.clone().triggered().await;
    sessions.drain(drain_timeout).await;
}

/// The accept loops [`accept_sessions`] started, until [`Sessions::drain`].
#[derive(Debug)]
pub struct Sessions {
    accept_loops: tokio::task::JoinSet<()>,
    health: Arc<Health>,
}

/// The multi-server accept loop: takes the context's listeners and runs
/// `handler` for each accepted session, at most `max_sessions` at once,
/// until shutdown. Each session counts for heartbeats and the drain. The
/// caller tells the master it is ready ([`Context::ready`]) when it is.
pub fn accept_sessions<H, Fut>(ctx: &mut Context, max_sessions: usize, handler: H) -> Sessions
where
    H: Fn(Stream, Peer, Shutdown) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut sessions = Sessions {
        accept_loops: tokio::task::JoinSet::new(),
        health: ctx.health.clone(),
    };
    let listeners = std::mem::take(&mut ctx.listeners);
    sessions.accept_on(ctx, listeners, max_sessions, handler);
    sessions
}

impl Sessions {
    /// Also accepts on `listeners` (taken from [`Context::listeners`]) with
    /// a handler and a limit of their own: a daemon that serves another
    /// protocol on some of its sockets (qmgr's administration socket).
    pub fn accept_on<H, Fut>(
        &mut self,
        ctx: &Context,
        listeners: Vec<Listener>,
        max_sessions: usize,
        handler: H,
    ) where
        H: Fn(Stream, Peer, Shutdown) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let permits = Arc::new(Semaphore::new(max_sessions.max(1)));
        for listener in listeners {
            self.accept_loop(ctx, listener, permits.clone(), handler.clone());
        }
    }

    fn accept_loop<H, Fut>(
        &mut self,
        ctx: &Context,
        listener: Listener,
        permits: Arc<Semaphore>,
        handler: H,
    ) where
        H: Fn(Stream, Peer, Shutdown) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut shutdown = ctx.shutdown.clone();
        let health = ctx.health.clone();
        self.accept_loops.spawn(async move {
            loop {
                let permit = tokio::select! {
                    _ = shutdown.triggered() => return,
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                };
                let accepted = tokio::select! {
                    _ = shutdown.triggered() => return,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        health.sessions.fetch_add(1, Ordering::Relaxed);
                        let guard = SessionGuard {
                            health: health.clone(),
                        };
                        let session = handler(stream, peer, shutdown.clone());
                        tokio::spawn(async move {
                            session.await;
                            drop(guard);
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
}

impl Sessions {
    /// After shutdown has begun: waits for the accept loops to stop, then
    /// for open sessions for up to `drain_timeout`. Returns what is left
    /// of it, for the daemon's own winding down.
    pub async fn drain(mut self, drain_timeout: Duration) -> Duration {
        // Dropping our copies of the listeners; the master and any
        // replacement process keep theirs open, so no client is refused.
        while self.accept_loops.join_next().await.is_some() {}
        let deadline = tokio::time::Instant::now() + drain_timeout;
        let open = || self.health.sessions.load(Ordering::Relaxed);
        while open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if open() > 0 {
            tracing::warn!(
                "drain_timeout: ending {} session(s) still open after {:?}",
                open(),
                drain_timeout
            );
        }
        deadline.saturating_duration_since(tokio::time::Instant::now())
    }
}
