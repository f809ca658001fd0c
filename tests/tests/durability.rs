//! The queue's promise under fire: while clients send mail, qmgr, smtpd
//! and local-delivery are killed with SIGKILL at random moments. Every
//! message that got `250 ... queued as` must reach the mailbox; a message
//! may arrive twice (a delivery in flight is repeated), never not at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_tests::{Instance, SmtpClient, TEST_MAIL_OWNER, wait_for};

const MESSAGES: usize = 2000;
const CLIENTS: usize = 4;

/// A tiny deterministic generator, so a failing run can be repeated.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

/// The text of message `n`: every third one is big enough (40 to 120 KiB)
/// for the queue's segment files and the descriptor hand-off to
/// local-delivery; the last line shows it arrived whole.
fn text(n: usize) -> String {
    let mut text = format!("message number {n}\r\n");
    if n.is_multiple_of(3) {
        let size = (40 + n % 81) * 1024;
        let mut i = 0;
        while text.len() < size {
            text.push_str(&format!("{n:06} line {i:06} {}\r\n", "x".repeat(50)));
            i += 1;
        }
    }
    text.push_str(&format!("end of message {n}\r\n"));
    text
}

/// Sends one message; `Ok(true)` only when the server said 250 to the data.
fn send(client: &mut SmtpClient, n: usize) -> std::io::Result<bool> {
    if !client
        .cmd("MAIL FROM:<load@example.net>")?
        .starts_with("250")
    {
        client.cmd("RSET")?;
        return Ok(false);
    }
    if !client
        .cmd("RCPT TO:<user@example.local>")?
        .starts_with("250")
    {
        client.cmd("RSET")?;
        return Ok(false);
    }
    if !client.cmd("DATA")?.starts_with("354") {
        return Ok(false);
    }
    let body = format!(
        "Subject: load {n}\r\nMessage-ID: <load-{n}@example.net>\r\n\r\n{}.\r\n",
        text(n)
    );
    client.send_raw(body.as_bytes())?;
    Ok(client.read_reply()?.starts_with("250 2.0.0 Ok: queued as"))
}

#[test]
fn sigkill_of_qmgr_smtpd_and_local_delivery_loses_no_accepted_message() {
    let dir = tempfile::tempdir().unwrap();
    let mail = postern_tests::mail_dir(dir.path());
    let aliases = dir.path().join("aliases");
    std::fs::write(&aliases, format!("user: {}/user/\n", mail.display())).unwrap();
    let main = format!(
        r#"mydestination = "example.local"
mynetworks = "127.0.0.0/8"
alias_maps = "texthash:{}"
minimal_backoff_time = "1s"
maximal_backoff_time = "2s"
queue_run_delay = "1s"
relayhost = "[127.0.0.1]:9""#,
        aliases.display()
    );
    let inst = Instance::start(&main, "");
    let _ = TEST_MAIL_OWNER;

    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(Mutex::new(0usize));
    let sending = Arc::new(AtomicBool::new(true));

    let killer = {
        let sending = sending.clone();
        let config = inst.config.clone();
        std::thread::spawn(move || {
            let mut rng = Lcg(0x5eed);
            let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
            while sending.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(300 + rng.next() % 500));
                let service = ["qmgr", "smtp", "local"][(rng.next() % 3) as usize];
                let out = postern_tests::qctl(&config, &["--json", "status"]);
                let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                    continue;
                };
                let pids: Vec<i32> = status["services"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|s| s["name"] == service)
                    .flat_map(|s| s["processes"].as_array().cloned().unwrap_or_default())
                    .filter_map(|p| p["pid"].as_i64())
                    .map(|p| p as i32)
                    .collect();
                if let Some(&pid) = pids.get((rng.next() as usize) % pids.len().max(1)) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    *kills.entry(service).or_default() += 1;
                }
            }
            kills
        })
    };

    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (accepted, next, addr) = (accepted.clone(), next.clone(), inst.smtp);
            std::thread::spawn(move || {
                let mut session: Option<SmtpClient> = None;
                loop {
                    let n = {
                        let mut next = next.lock().unwrap();
                        if *next >= MESSAGES {
                            return;
                        }
                        *next += 1;
                        *next
                    };
                    if session.is_none() {
                        session = SmtpClient::connect(addr)
                            .ok()
                            .and_then(|(mut c, greeting)| {
                                (greeting.starts_with("220")
                                    && c.cmd("EHLO load.example.net").is_ok())
                                .then_some(c)
                            });
                    }
                    let Some(client) = session.as_mut() else {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    };
                    match send(client, n) {
                        Ok(true) => {
                            accepted.lock().unwrap().insert(n);
                        }
                        // A 4xx (qmgr was gone): this message is not ours to count.
                        Ok(false) => {}
                        // The smtpd was killed under us: reconnect.
                        Err(_) => session = None,
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    sending.store(false, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    let send_time = started.elapsed();

    let accepted = accepted.lock().unwrap().clone();
    let new_dir = mail.join("user/new");
    // Delivered copies by message number; a copy whose body is not whole
    // counts as missing (and is reported).
    let broken = Mutex::new(BTreeSet::new());
    let delivered = || -> BTreeMap<usize, usize> {
        let mut seen = BTreeMap::new();
        for entry in std::fs::read_dir(&new_dir).into_iter().flatten().flatten() {
            let file = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if let Some(n) = file
                .lines()
                .find_map(|l| l.strip_prefix("Subject: load "))
                .and_then(|n| n.trim().parse::<usize>().ok())
            {
                if file
                    .replace("\r\n", "\n")
                    .contains(&text(n).replace("\r\n", "\n"))
                {
                    *seen.entry(n).or_default() += 1;
                } else {
                    broken.lock().unwrap().insert(n);
                }
            }
        }
        seen
    };
    let all_in = wait_for(Duration::from_secs(180), || {
        let seen = delivered();
        accepted.iter().all(|n| seen.contains_key(n))
    });
    let seen = delivered();
    let missing: Vec<_> = accepted.iter().filter(|n| !seen.contains_key(n)).collect();
    let duplicates: usize = seen.values().map(|c| c - 1).sum();
    eprintln!(
        "durability: {} of {MESSAGES} accepted in {send_time:?}, {} delivered, {} missing, \
         {duplicates} duplicates; kills {kills:?}",
        accepted.len(),
        seen.len(),
        missing.len()
    );
    let broken = broken.into_inner().unwrap();
    assert!(
        broken.is_empty(),
        "delivered with a damaged body: {broken:?}"
    );
    assert!(
        kills.values().sum::<usize>() >= 3,
        "the test must actually kill daemons: {kills:?}"
    );
    assert!(
        accepted.len() > MESSAGES / 2,
        "most messages should be accepted"
    );
    assert!(
        all_in && missing.is_empty(),
        "accepted messages never delivered: {missing:?}\n{}",
        inst.log()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
