//! Connections kept between uses, by socket path: a later session or
//! request starts on one instead of connecting and exchanging hellos
//! again (smtpd to qmgr, qmgr to its delivery agents).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::net::UnixStream;

use crate::Connection;

/// Idle connections by the path they were opened to, at most `per_path`
/// each.
#[derive(Debug)]
pub struct IdleConnections {
    per_path: usize,
    idle: Mutex<HashMap<PathBuf, Vec<Connection<UnixStream>>>>,
}

impl IdleConnections {
    pub fn new(per_path: usize) -> IdleConnections {
        IdleConnections {
            per_path,
            idle: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Vec<Connection<UnixStream>>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently kept connection to `path` that the peer has not
    /// closed meanwhile.
    pub fn take(&self, path: &Path) -> Option<Connection<UnixStream>> {
        let mut idle = self.lock();
        let list = idle.get_mut(path)?;
        while let Some(conn) = list.pop() {
            if still_open(&conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn`, which is between exchanges, unless `path` has its
    /// fill (then it is closed).
    pub fn put(&self, path: &Path, conn: Connection<UnixStream>) {
        let mut idle = self.lock();
        let list = idle.entry(path.to_path_buf()).or_default();
        if list.len() < self.per_path {
            list.push(conn);
        }
    }
}

/// Nothing to read on an idle connection: end of file (the peer exited or
/// closed it) or stray bytes, buffered or waiting, mean it cannot be
/// reused.
fn still_open(conn: &Connection<UnixStream>) -> bool {
    if conn.has_buffered_input() {
        return false;
    }
    let fd = conn.get_ref().as_raw_fd();
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local buffer on a descriptor we own.
    let n = unsafe {
        libc::recv(
            fd,
            (&raw mut byte).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_the_peer_closed_or_wrote_to_is_not_handed_out() {
        let pool = IdleConnections::new(2);
        let path = Path::new("/run/test.sock");
        let (open, _open_peer) = UnixStream::pair().unwrap();
        let (closed, closed_peer) = UnixStream::pair().unwrap();
        let (extra, _extra_peer) = UnixStream::pair().unwrap();
        pool.put(path, Connection::new(open));
        pool.put(path, Connection::new(closed));
        pool.put(path, Connection::new(extra)); // over the limit: dropped
        drop(closed_peer);
        assert!(
            pool.take(path).is_some(),
            "the open one, under the closed one"
        );
        assert!(pool.take(path).is_none());

        let (written, mut written_peer) = UnixStream::pair().unwrap();
        pool.put(path, Connection::new(written));
        tokio::io::AsyncWriteExt::write_all(&mut written_peer, b"x")
            .await
            .unwrap();
        assert!(pool.take(path).is_none(), "stray bytes");
    }
}
