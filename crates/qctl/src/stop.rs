//! `qctl stop`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::net::UnixStream;

pub(crate) const STOP_WAIT: Duration = Duration::from_secs(120);

/// `qctl stop` returns once the master has let go of its control socket.
pub(crate) async fn wait_for_exit(socket: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline {
        if UnixStream::connect(socket).await.is_err() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the master is still running after {STOP_WAIT:?}")
}
