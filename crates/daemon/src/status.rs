//! The child's side of the status channel to the master (Postfix's status
//! pipe): `Ready` once the daemon serves, a heartbeat every second with the
//! number of sessions, `Draining` when it stops accepting; and the master's
//! wakeups (master(5) `wakeup`) in the other direction. When the master goes
//! away the channel closes and the daemon drains and exits, as Postfix
//! daemons do when their master dies.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use postern_ipc::status::{CertificateInfo, ChildStatus, MasterToChild};
use postern_ipc::{Connection, IpcError, Protocol};
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc};

/// How often a daemon tells the master it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared counters the heartbeat reports.
#[derive(Debug, Default)]
pub struct Health {
    pub sessions: AtomicU32,
    pub draining: AtomicBool,
    pub ready: AtomicBool,
    pub exclusive: AtomicBool,
    pub(crate) ready_changed: Notify,
}

/// Messages a daemon may send besides the automatic ones.
#[derive(Debug, Clone)]
pub struct StatusSender {
    tx: mpsc::UnboundedSender<ChildStatus>,
}

impl StatusSender {
    /// Publishes this process's certificates to `qctl status`.
    pub fn certificates(&self, certificates: Vec<CertificateInfo>) {
        let _ = self.tx.send(ChildStatus::Info { certificates });
    }
}

/// Starts the status task. Returns the sender for extra messages and a
/// receiver of wakeups. `master_gone` is notified when the channel closes.
pub(crate) async fn start(
    stream: UnixStream,
    health: Arc<Health>,
    master_gone: Arc<Notify>,
) -> Result<(StatusSender, mpsc::UnboundedReceiver<()>), IpcError> {
    let mut hello = Connection::new(stream);
    hello
        .client_hello(Protocol::MasterStatus, HELLO_TIMEOUT)
        .await?;
    let (tx, mut rx) = mpsc::unbounded_channel::<ChildStatus>();
    let (wake_tx, wake_rx) = mpsc::unbounded_channel();
    let (read_half, write_half) = hello.into_inner().into_split();

    tokio::spawn(async move {
        let mut write_half = write_half;
        let mut beat = tokio::time::interval(HEARTBEAT_INTERVAL);
        let mut announced_ready = false;
        let mut announced_draining = false;
        let pid = std::process::id();
        loop {
            let msg = tokio::select! {
                _ = beat.tick() => None,
                _ = health.ready_changed.notified() => None,
                m = rx.recv() => match m { Some(m) => Some(m), None => return },
            };
            let sessions = health.sessions.load(Ordering::Relaxed);
            let mut outgoing = Vec::new();
            if !announced_ready && health.ready.load(Ordering::Relaxed) {
                announced_ready = true;
                let exclusive = health.exclusive.load(Ordering::Relaxed);
                outgoing.push(ChildStatus::Ready { pid, exclusive });
            }
            if !announced_draining && health.draining.load(Ordering::Relaxed) {
                announced_draining = true;
                outgoing.push(ChildStatus::Draining { sessions });
            }
            outgoing.push(msg.unwrap_or(ChildStatus::Heartbeat { sessions }));
            for m in outgoing {
                if postern_ipc::write_frame(&mut write_half, &m).await.is_err() {
                    return;
                }
            }
        }
    });

    tokio::spawn(async move {
        let mut read_half = read_half;
        loop {
            match postern_ipc::read_frame::<_, MasterToChild>(&mut read_half).await {
                Ok(Some(MasterToChild::Wakeup)) => {
                    let _ = wake_tx.send(());
                }
                Ok(None) | Err(IpcError::Closed) => break,
                Err(e) => {
                    tracing::warn!("status channel to master: {e}");
                    break;
                }
            }
        }
        master_gone.notify_one();
    });

    Ok((StatusSender { tx }, wake_rx))
}
