//! One master per queue directory: an exclusive lock on `pid/master.pid`,
//! held for the master's life, as Postfix locks its `pid/master.pid`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

/// The held lock; dropping it releases the lock and removes the pid.
#[derive(Debug)]
pub struct PidLock {
    file: File,
    path: PathBuf,
}

impl PidLock {
    pub fn acquire(queue_directory: &Path) -> anyhow::Result<PidLock> {
        let dir = queue_directory.join("pid");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join("master.pid");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("open {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            bail!(
                "the Postern mail system is already running (master pid {}) for queue_directory {}",
                text.trim(),
                queue_directory.display()
            );
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        writeln!(file, "{:>10}", std::process::id())?;
        file.sync_data()?;
        Ok(PidLock { file, path })
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = std::fs::remove_file(&self.path);
    }
}
