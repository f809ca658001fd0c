//! Group commit vs one sync per commit: N threads each commit M messages of
//! 1 KiB. `cargo run --release --example commit_bench -- [threads] [per_thread]`

use std::time::Instant;

use postern_queue::{Envelope, QueueStore, Recipient};

fn run(threads: usize, per_thread: usize, serial: bool) -> (f64, u64, u64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = QueueStore::open(tmp.path(), 64 << 20).expect("open");
    store.set_serial_commits(serial);
    let body = vec![b'x'; 1024];
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let store = store.clone();
            let body = &body;
            s.spawn(move || {
                for i in 0..per_thread {
                    let mut inc = store.begin_message().expect("begin");
                    inc.append_body(body).expect("append");
                    inc.commit(Envelope {
                        sender: format!("t{t}-{i}@example.org"),
                        recipients: vec![Recipient::new("rcpt@example.net")],
                        ..Envelope::default()
                    })
                    .expect("commit");
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let st = store.stats();
    ((threads * per_thread) as f64 / secs, st.requests, st.syncs)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let per_thread: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    for (name, n, serial) in [
        ("1 thread", 1, false),
        ("N threads, one sync per commit", threads, true),
        ("N threads, group commit", threads, false),
    ] {
        let (ops, req, syncs) = run(n, per_thread, serial);
        println!(
            "{name:32} threads={n:3} commits={:6} ops/s={ops:8.0} syncs={syncs:6} (requests {req})",
            n * per_thread
        );
    }
}
