//! A real full disk: a tiny tmpfs. Needs root and a working `mount`;
//! skipped otherwise.

use std::path::Path;
use std::process::Command;

use postern_queue::{Envelope, QueueError, QueueStore, Recipient};

struct Mount<'a>(&'a Path);

impl Drop for Mount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn full_disk_fails_commit_cleanly() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to mount a tmpfs");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: cannot mount tmpfs here");
        return;
    }
    let _guard = Mount(&mnt);
    let store = QueueStore::open(&mnt.join("queue"), 8 << 20).unwrap();
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![0u8; 4 << 20]).unwrap();
    let body = vec![b'x'; 1 << 20];
    let mut committed = Vec::new();
    let mut failure = None;
    for i in 0..200 {
        let mut inc = store.begin_message().unwrap();
        let id = inc.id();
        let res = inc.append_body(&body).and_then(|()| {
            inc.commit(Envelope {
                sender: format!("s{i}@x"),
                recipients: vec![Recipient::new("r@y")],
                ..Envelope::default()
            })
        });
        match res {
            Ok(id) => committed.push(id),
            Err(e) => {
                failure = Some((id, e));
                break;
            }
        }
    }
    let (failed_id, err) = failure.expect("a 24 MiB tmpfs must fill up");
    eprintln!("after {} commits: {err}", committed.len());
    // Bodies this big go to segment files: the write itself fails.
    assert!(
        matches!(&err, QueueError::Commit(_) | QueueError::Storage(_))
            || matches!(&err, QueueError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull),
        "{err:?}"
    );
    assert!(matches!(store.get(failed_id), Ok(None) | Err(_)));
    for id in &committed {
        assert_eq!(store.read_body(*id).unwrap(), body, "queued mail is intact");
    }

    // The administrator frees space; delivering the queued mail frees its
    // segment too, and the queue takes mail again.
    std::fs::remove_file(&ballast).unwrap();
    for id in committed {
        assert!(store.remove(id).unwrap());
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let retry = loop {
        let mut inc = store.begin_message().unwrap();
        let res = inc.append_body(&body).and_then(|()| {
            inc.commit(Envelope {
                sender: "again@x".into(),
                recipients: vec![Recipient::new("r@y")],
                ..Envelope::default()
            })
        });
        if res.is_ok() || std::time::Instant::now() > deadline {
            break res;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let id = retry.expect("the queue accepts mail once space is free");
    assert_eq!(store.read_body(id).unwrap(), body);
}
