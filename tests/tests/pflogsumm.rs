//! The mail log read by Debian's `pflogsumm`: mail runs through one
//! instance — messages delivered locally (aliases to files), one refused
//! at RCPT for relaying, one bounced by local delivery — and pflogsumm's
//! "Grand Totals" over the instance's maillog count exactly that.
//!
//! pflogsumm is run with `--syslog-name=postern` (Postern's syslog_name,
//! as for a Postfix instance with its own syslog_name). Skipped, with a
//! message, when `pflogsumm` is not installed.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use postern_tests::{Instance, SmtpClient, wait_for};

const LONG: Duration = Duration::from_secs(30);

fn pflogsumm_path() -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join("pflogsumm"))
        .find(|p| p.is_file())
}

/// pflogsumm's "Grand Totals" section as `label -> count`.
fn grand_totals(pflogsumm: &std::path::Path, log: &str) -> (BTreeMap<String, u64>, String) {
    let mut child = Command::new(pflogsumm)
        .args(["--syslog-name=postern", "--problems-first"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(log.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pflogsumm failed: {}\n{report}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut totals = BTreeMap::new();
    let mut lines = report
        .lines()
        .skip_while(|l| !l.starts_with("Grand Totals"));
    for line in lines.by_ref().skip(2) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with("Per-") || line.ends_with("-----") {
            break;
        }
        // `     4   received`, `     1   rejected (20%)`, `  1234   bytes received`
        let mut words = line.split_whitespace();
        let (Some(n), Some(label)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else {
            continue;
        };
        let label = if label == "bytes" {
            format!("bytes {}", words.next().unwrap_or_default())
        } else {
            label.to_string()
        };
        totals.insert(label, n);
    }
    (totals, report)
}

/// One session, one message, waiting for each reply; the queue ID.
fn send(inst: &Instance, sender: &str, rcpt: &str, n: usize) -> String {
    let (mut c, greeting) = SmtpClient::connect(inst.smtp).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    c.expect("EHLO client.example", "250");
    c.expect(&format!("MAIL FROM:<{sender}>"), "250 2.1.0");
    c.expect(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5");
    c.expect("DATA", "354 ");
    c.send_raw(
        format!("Subject: report {n}\r\nMessage-ID: <r{n}@client.example>\r\n\r\nbody {n}\r\n")
            .as_bytes(),
    )
    .unwrap();
    let queued = c.expect(".", "250 2.0.0 Ok: queued as ");
    c.expect("QUIT", "221");
    queued.trim_end().rsplit(' ').next().unwrap().to_string()
}

#[test]
fn pflogsumm_counts_what_went_through_the_instance() {
    let Some(pflogsumm) = pflogsumm_path() else {
        eprintln!("SKIPPED: pflogsumm is not installed (apt-get install pflogsumm)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mail = postern_tests::mail_dir(dir.path());
    let aliases = dir.path().join("aliases");
    std::fs::write(
        &aliases,
        format!("alice: {0}/alice\nbob: {0}/bob\n", mail.display()),
    )
    .unwrap();
    // The client (127.0.0.1) is outside mynetworks: it may send to
    // example.local only. Every local recipient is accepted at RCPT, so
    // an unknown one bounces in local delivery.
    let main = format!(
        "mydestination = \"example.local\"\n\
         mynetworks = \"127.0.0.2/32\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, reject_unauth_destination\"\n\
         alias_maps = \"texthash:{}\"\n\
         local_recipient_maps = \"\"\n\
         relayhost = \"[127.0.0.1]:9\"",
        aliases.display()
    );
    let inst = Instance::start(&main, "");

    // Three messages delivered to mailboxes.
    let mut ids = vec![
        send(&inst, "sender@client.example", "alice@example.local", 1),
        send(&inst, "sender@client.example", "bob@example.local", 2),
        send(&inst, "bob@example.local", "alice@example.local", 3),
    ];
    // One refused at RCPT: relaying for an outside client.
    {
        let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
        c.expect("EHLO client.example", "250");
        c.expect("MAIL FROM:<sender@client.example>", "250 2.1.0");
        c.expect(
            "RCPT TO:<someone@elsewhere.example>",
            "554 5.7.1 <someone@elsewhere.example>: Relay access denied",
        );
        c.expect("QUIT", "221");
    }
    // One bounced: no such local user. The notification goes to bob,
    // a local mailbox, and is delivered there.
    ids.push(send(
        &inst,
        "bob@example.local",
        "nosuchuser@example.local",
        4,
    ));

    // Everything settles: four messages and the bounce removed.
    let settled = || {
        let log = inst.log();
        ids.iter().all(|id| log.contains(&format!("{id}: removed")))
            && log.matches(": removed").count() == 5
            && log.contains("NOQUEUE: reject: RCPT from")
    };
    wait_for(LONG, settled);
    assert!(settled(), "{}", inst.log());
    let log = inst.log();
    assert_eq!(log.matches("status=bounced").count(), 1, "{log}");
    // alice twice, bob once, and bob's non-delivery notification.
    assert_eq!(log.matches("status=sent").count(), 4, "{log}");
    let bob = std::fs::read_to_string(mail.join("bob")).unwrap();
    assert!(bob.contains("nosuchuser@example.local"), "{bob}");

    let want: BTreeMap<String, u64> = [
        // The messages smtpd accepted (the notification is qmgr's own,
        // as Postfix's bounce daemon's is not counted either).
        ("received", 4),
        // Deliveries: three messages and the notification.
        ("delivered", 4),
        ("forwarded", 0),
        ("deferred", 0),
        ("bounced", 1),
        ("rejected", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let counts = |totals: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        want.keys()
            .map(|k| (k.clone(), totals.get(k).copied().unwrap_or(u64::MAX)))
            .collect()
    };

    let (totals, report) = grand_totals(&pflogsumm, &log);
    if std::env::var_os("PFLOGSUMM_DEBUG").is_some() {
        eprintln!("{log}\n{report}");
    }
    assert_eq!(counts(&totals), want, "{report}\nlog:\n{log}");
    assert!(
        totals.get("bytes received").copied().unwrap_or(0) > 0,
        "{report}"
    );
}
