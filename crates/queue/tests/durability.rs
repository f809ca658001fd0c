//! Process-level durability tests: the test binary re-executes itself as a
//! child (selected by an environment variable) under strace, or to be
//! killed with SIGKILL mid-commit.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_queue::{Envelope, QueueId, QueueStore, Recipient};

mod common;
use common::pattern;

const CAP: u64 = 16 << 20;
const STRACE_CHILD: &str = "POSTERN_QUEUE_TEST_STRACE_CHILD";
const CRASH_CHILD: &str = "POSTERN_QUEUE_TEST_CRASH_CHILD";

fn envelope(sender: String) -> Envelope {
    Envelope {
        sender,
        recipients: vec![Recipient::new("rcpt@example.net")],
        arrival_unix: 1_700_000_000,
        ..Envelope::default()
    }
}

/// Writes straight to fd 2, bypassing libtest's output capture, so the
/// marker is a write(2) syscall in the trace.
fn mark(s: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(s.as_bytes());
    let _ = e.flush();
}

fn self_command(test: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("current_exe"));
    c.args(["--exact", test, "--test-threads=1", "--nocapture"]);
    c
}

/// Child half of `commit_is_fdatasynced_before_it_returns`.
#[test]
fn strace_child() {
    let Ok(dir) = std::env::var(STRACE_CHILD) else {
        return;
    };
    let store = QueueStore::open(Path::new(&dir), CAP).unwrap();
    let mut inc = store.begin_message().unwrap();
    inc.append_body(b"Subject: traced\r\n\r\nhello\r\n")
        .unwrap();
    mark("POSTERN-MARK-BEFORE-COMMIT\n");
    let id = inc.commit(envelope("traced@example.org".into())).unwrap();
    mark("POSTERN-MARK-COMMITTED\n");
    assert!(store.get(id).unwrap().is_some());

    // A body big enough for a segment file.
    let mut inc = store.begin_message().unwrap();
    inc.append_body(&pattern(1, 100_000)).unwrap();
    mark("POSTERN-MARK-BEFORE-BIG-COMMIT\n");
    let id = inc.commit(envelope("big@example.org".into())).unwrap();
    mark("POSTERN-MARK-BIG-COMMITTED\n");
    assert_eq!(store.read_body(id).unwrap(), pattern(1, 100_000));
}

#[test]
fn commit_is_fdatasynced_before_it_returns() {
    let strace = ["/usr/bin/strace", "/bin/strace"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(strace) = strace else {
        eprintln!("SKIPPED: strace is not installed (apt-get install strace)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let qdir = tmp.path().join("queue");
    let trace = tmp.path().join("trace.txt");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(strace)
        .args(["-f", "-y", "-s", "64", "-o"])
        .arg(&trace)
        .args(["-e", "trace=fdatasync,fsync,sync_file_range,write"])
        .arg(&exe)
        .args(["--exact", "strace_child", "--test-threads=1", "--nocapture"])
        .env(STRACE_CHILD, &qdir)
        .output()
        .expect("run strace");
    assert!(
        out.status.success(),
        "traced child failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let pos = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains("write(") && l.contains(needle))
            .unwrap_or_else(|| panic!("marker {needle} not in trace:\n{text}"))
    };
    let before = pos("POSTERN-MARK-BEFORE-COMMIT");
    let after = pos("POSTERN-MARK-COMMITTED");
    let db = format!("{}/db>", qdir.display());
    let window = &lines[before..after];
    let synced = window
        .iter()
        .filter(|l| (l.contains("fdatasync(") || l.contains("fsync(")) && l.contains(&db))
        .count();
    assert!(
        synced >= 1,
        "no fdatasync/fsync of {db} between the commit call and its return:\n{}",
        window.join("\n")
    );
    // For the record: sled's own flush is only sync_file_range.
    let ranges = window
        .iter()
        .filter(|l| l.contains("sync_file_range(") && l.contains(&db))
        .count();
    eprintln!("during commit: {synced} fdatasync/fsync and {ranges} sync_file_range on {db}");

    // A big body: its segment, the new segment's directory entry, then
    // sled's log, all before commit returns.
    let big = &lines[pos("POSTERN-MARK-BEFORE-BIG-COMMIT")..pos("POSTERN-MARK-BIG-COMMITTED")];
    let bodies = format!("{}/bodies/", qdir.display());
    let first = |what: &dyn Fn(&str) -> bool| {
        big.iter()
            .position(|l| (l.contains("fdatasync(") || l.contains("fsync(")) && what(l))
            .unwrap_or_else(|| panic!("no sync in the big commit:\n{}", big.join("\n")))
    };
    let segment = first(&|l| l.contains(&bodies));
    let dir = first(&|l| l.contains(&format!("{}/bodies>", qdir.display())));
    let log = first(&|l| l.contains(&db));
    assert!(
        segment < log && dir < log,
        "segment {segment} and directory {dir} synced before the log {log}:\n{}",
        big.join("\n")
    );
}

/// Child half of `sigkill_loses_no_committed_message`: commits forever from
/// four threads, printing each ID only after commit returned.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD) else {
        return;
    };
    let store = QueueStore::open(Path::new(&dir), CAP).unwrap();
    let start = Instant::now();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                // Bounded in case the parent died without killing us.
                while start.elapsed() < Duration::from_secs(60) {
                    let seed = t * 1_000_000 + i;
                    let body = pattern(seed, 500 + (seed as usize * 7919) % 150_000);
                    let mut inc = store.begin_message().unwrap();
                    for c in body.chunks(64 * 1024) {
                        inc.append_body(c).unwrap();
                    }
                    let id = inc
                        .commit(envelope(format!("s{seed}@example.org")))
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "COMMITTED {id} {seed} {}", body.len()).unwrap();
                    out.flush().unwrap();
                    i += 1;
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
}

#[test]
fn sigkill_loses_no_committed_message() {
    let tmp = tempfile::tempdir().unwrap();
    let qdir = tmp.path().join("queue");
    let mut child = self_command("crash_child")
        .env(CRASH_CHILD, &qdir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("COMMITTED ") && tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while lines.len() < 60 && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    child.kill().unwrap(); // SIGKILL, mid-commit
    child.wait().unwrap();
    reader.join().unwrap();
    lines.extend(rx.try_iter());
    assert!(lines.len() >= 10, "child committed too little: {lines:?}");

    let store = QueueStore::open_with_retry(&qdir, CAP, Duration::from_secs(10)).unwrap();
    let report = store.recovery_report();
    eprintln!(
        "{} committed before SIGKILL; recovery: {report:?}",
        lines.len()
    );
    assert!(report.scheduled >= lines.len());
    for line in &lines {
        let f: Vec<&str> = line.split_whitespace().collect();
        let id: QueueId = f[1].parse().unwrap();
        let seed: u64 = f[2].parse().unwrap();
        let len: usize = f[3].parse().unwrap();
        let m = store
            .get(id)
            .unwrap()
            .unwrap_or_else(|| panic!("{id} was acknowledged but is gone"));
        assert_eq!(m.envelope.sender, format!("s{seed}@example.org"));
        assert_eq!(m.envelope.size, len as u64);
        assert!(
            store.read_body(id).unwrap() == pattern(seed, len),
            "{id} body differs"
        );
    }
}
