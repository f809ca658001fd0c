//! The sendmail command and pickup, end to end: the real `sendmail`
//! binary writes into a real instance's maildrop/, the real pickup queues
//! it through qmgr, local-delivery writes the mailbox the test reads.
//! As root the tests also submit as the unprivileged `daemon` account
//! (uid 1), which reaches maildrop/ only through its mode.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use postern_tests::{Instance, bin_dir, wait_for};

const T: Duration = Duration::from_secs(30);
/// An unprivileged account every Debian system has.
const DAEMON_UID: u32 = 1;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// An instance whose local mailboxes are `<dir>/spool/USER`.
fn start(extra: &str) -> Instance {
    let inst = Instance::start(&format!("mail_spool_directory = \"spool\"\n{extra}"), "");
    let spool = inst.dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o1777)).unwrap();
    inst
}

fn mailbox(inst: &Instance, user: &str) -> PathBuf {
    inst.dir.path().join("spool").join(user)
}

/// Waits for `user`'s mailbox to hold `needle`; returns the mailbox.
fn wait_mail(inst: &Instance, user: &str, needle: &str) -> String {
    let path = mailbox(inst, user);
    let mut text = String::new();
    wait_for(T, || {
        text = std::fs::read_to_string(&path).unwrap_or_default();
        text.contains(needle)
    });
    assert!(
        text.contains(needle),
        "no {needle:?} in {}:\n{text}\nlog:\n{}",
        path.display(),
        inst.log()
    );
    text
}

fn maildrop_files(inst: &Instance) -> Vec<PathBuf> {
    std::fs::read_dir(inst.queue_directory().join("maildrop"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

fn status(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn sendmail_t_i_as_root_and_as_an_unprivileged_user_reaches_mailboxes_with_added_headers() {
    let inst = start("");
    let message = b"To: root\nBcc: daemon\nSubject: cron output\n\nfirst\n.\nafter the dot\n";
    let out = inst.sendmail(&["-t", "-i"], message, None);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    for user in ["root", "daemon"] {
        let mbox = wait_mail(&inst, user, "after the dot");
        assert!(mbox.starts_with("From root@mail.example.local "), "{mbox}");
        assert!(
            mbox.contains("Received: by mail.example.local (Postern, from userid 0)\n\tid "),
            "{mbox}"
        );
        // The full name from the passwd file, as Postfix does.
        assert!(
            mbox.contains("\nFrom: root <root@mail.example.local>\n"),
            "{mbox}"
        );
        assert!(mbox.contains("\nDate: "), "{mbox}");
        assert!(mbox.contains("\nMessage-Id: <"), "{mbox}");
        assert!(!mbox.contains("Bcc:"), "Bcc left in:\n{mbox}");
        assert!(mbox.contains("\n\nfirst\n.\nafter the dot\n"), "{mbox}");
    }
    let line = inst.wait_log_line(&["pickup", "uid=0 from=<root>"]);
    assert!(line.contains("postern/pickup["), "{line}");

    if !is_root() {
        return;
    }
    // As daemon: the envelope sender and the Received header name it, -F
    // names it in From:, and the dot ends the message without -i.
    let out = inst.sendmail(
        &["-F", "Daemon Account", "root"],
        b"Subject: from daemon\r\n\r\nbody line\r\n.\r\nnot sent\r\n",
        Some(DAEMON_UID),
    );
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let mbox = wait_mail(&inst, "root", "body line");
    let copy = &mbox[mbox.find("From daemon@mail.example.local ").expect(&mbox)..];
    assert!(copy.contains("(Postern, from userid 1)"), "{copy}");
    assert!(
        copy.contains("\nFrom: Daemon Account <daemon@mail.example.local>\n"),
        "{copy}"
    );
    assert!(!copy.contains("not sent"), "{copy}");
    assert!(maildrop_files(&inst).is_empty());
}

#[test]
fn with_the_master_stopped_sendmail_exits_0_and_the_message_is_delivered_at_start() {
    let mut inst = start("");
    postern_tests::assert_success(&inst.qctl(&["stop"]));
    assert!(inst.wait_master_exit(T), "master did not stop");
    let out = inst.sendmail(&["root"], b"Subject: while stopped\n\nkept\n", None);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    if is_root() {
        let out = inst.sendmail(
            &["root"],
            b"Subject: also stopped\n\nkept too\n",
            Some(DAEMON_UID),
        );
        assert_eq!(status(&out), 0, "{}", stderr(&out));
    }
    let waiting = maildrop_files(&inst);
    assert_eq!(waiting.len(), if is_root() { 2 } else { 1 });
    // SIGKILL-proof: what sendmail left is on disk as a complete file.
    for f in &waiting {
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o740, "{}", f.display());
    }
    let inst = inst.launch();
    wait_mail(&inst, "root", "\nkept\n");
    if is_root() {
        wait_mail(&inst, "root", "kept too");
    }
    assert!(wait_for(T, || maildrop_files(&inst).is_empty()));
}

#[test]
fn bad_input_gets_a_sysexits_status_and_nothing_is_queued() {
    let inst =
        start("message_size_limit = 20000\nauthorized_submit_users = \"!daemon, static:anyone\"");
    let cases: Vec<(&[&str], Vec<u8>, i32, &str)> = vec![
        (
            &[],
            b"Subject: x\n\nno one\n".to_vec(),
            64,
            "Recipient addresses must be specified",
        ),
        (
            &["-t"],
            b"Subject: x\n\nno one\n".to_vec(),
            64,
            "No recipient addresses found",
        ),
        (
            &["-f", "bad\u{1}sender", "root"],
            b"x\n".to_vec(),
            64,
            "control character",
        ),
        (&["root\u{7}"], b"x\n".to_vec(), 64, "control character"),
        (
            &["-Z", "root"],
            b"x\n".to_vec(),
            64,
            "-Z option not supported",
        ),
        (&["root"], vec![b'x'; 30000], 65, "message file too big"),
    ];
    for (args, input, code, text) in &cases {
        let out = inst.sendmail(args, input, None);
        assert_eq!(status(&out), *code, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(text), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("sendmail: fatal: "),
            "{}",
            stderr(&out)
        );
    }
    if is_root() {
        let out = inst.sendmail(&["root"], b"Subject: no\n\nx\n", Some(DAEMON_UID));
        assert_eq!(status(&out), 77, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("User daemon(1) is not allowed to submit mail"),
            "{}",
            stderr(&out)
        );
    }
    if is_root() {
        // A maildrop/ this user may not write: a temporary failure.
        let maildrop = inst.queue_directory().join("maildrop");
        std::fs::set_permissions(&maildrop, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = inst.sendmail(&["-f", "x@y.test", "root"], b"x\n", Some(DAEMON_UID + 1));
        std::fs::set_permissions(&maildrop, std::fs::Permissions::from_mode(0o3733)).unwrap();
        assert_eq!(status(&out), 75, "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
    }
    // A queue directory that is not there (never installed).
    let broken = inst.dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&inst.config).unwrap().replace(
            "queue_directory = \"queue\"",
            "queue_directory = \"nowhere\"",
        ),
    )
    .unwrap();
    let out = Command::new(bin_dir().join("sendmail"))
        .args(["-C"])
        .arg(&broken)
        .arg("root")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(status(&out), 69, "{}", stderr(&out));
    assert!(maildrop_files(&inst).is_empty());

    // A header section that never ends and a 1 MB line are mail, whole.
    let mut long = b"Subject: long\nX-Never: ends".to_vec();
    long.extend(std::iter::repeat_n(b'y', 15000));
    let out = inst.sendmail(&["root"], &long, None);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    wait_mail(&inst, "root", &"y".repeat(15000));

    // A file in maildrop/ that is not a submission is moved aside.
    let bogus = inst.queue_directory().join("maildrop/0123BOGUS");
    std::fs::write(&bogus, b"\0\0\0\x05garbage").unwrap();
    std::fs::set_permissions(&bogus, std::fs::Permissions::from_mode(0o740)).unwrap();
    let out = inst.sendmail(&["root"], b"Subject: wake\n\nx\n", None);
    assert_eq!(status(&out), 0);
    inst.assert_logged("maildrop/0123BOGUS: uid=0: ");
    assert!(inst.queue_directory().join("corrupt/0123BOGUS").exists());
}

#[test]
fn a_one_megabyte_line_arrives_whole() {
    let inst = start("");
    let mut message = b"Subject: wide\n\n".to_vec();
    message.extend(std::iter::repeat_n(b'w', 1 << 20));
    message.extend(b"\nend\n");
    let out = inst.sendmail(&["root"], &message, None);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let mbox = wait_mail(&inst, "root", "\nend\n");
    assert!(mbox.contains(&format!("\n{}\nend\n", "w".repeat(1 << 20))));
}

/// Python's smtplib over a socket pair that is sendmail -bs's standard
/// input and output.
const SMTPLIB_OVER_A_PIPE: &str = r#"
import smtplib, socket, subprocess, sys
sendmail, config = sys.argv[1], sys.argv[2]
ours, theirs = socket.socketpair()
p = subprocess.Popen([sendmail, "-C", config, "-bs"], stdin=theirs, stdout=theirs)
theirs.close()
s = smtplib.SMTP()
s.sock = ours
code, greeting = s.getreply()
assert code == 220, greeting
s.ehlo("client.example")
assert s.has_extn("dsn") and s.has_extn("size"), s.esmtp_features
refused = s.sendmail("alice@example.org", ["root"],
                     "Subject: over a pipe\r\n\r\nhello from smtplib\r\n",
                     rcpt_options=["NOTIFY=NEVER"])
assert refused == {}, refused
code, _ = s.docmd("VRFY root")
print("vrfy", code)
s.quit()
print("exit", p.wait())
"#;

#[test]
fn sendmail_bs_speaks_smtp_to_smtplib_over_a_pipe() {
    let inst = start("");
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(SMTPLIB_OVER_A_PIPE)
        .arg(bin_dir().join("sendmail"))
        .arg(&inst.config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", stderr(&out));
    assert!(
        stdout.contains("vrfy 502") && stdout.contains("exit 0"),
        "{stdout}"
    );
    let mbox = wait_mail(&inst, "root", "hello from smtplib");
    assert!(mbox.starts_with("From alice@example.org "), "{mbox}");
    assert!(mbox.contains("(Postern, from userid 0)"), "{mbox}");
}

#[test]
fn bp_bi_q_and_bv_run_the_queue_commands_and_the_verification_report() {
    let inst = start("relayhost = \"[127.0.0.1]:9\"\nalias_database = \"hash:aliases\"");
    // A deferred message (nothing listens on port 9), as mailq shows it.
    let out = inst.sendmail(&["someone@elsewhere.test"], b"Subject: d\n\nx\n", None);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    inst.wait_log_line(&["status=deferred", "someone@elsewhere.test"]);
    let bp = inst.sendmail(&["-bp"], b"", None);
    assert_eq!(status(&bp), 0, "{}", stderr(&bp));
    let listing = String::from_utf8_lossy(&bp.stdout).to_string();
    let mailq = inst.qctl(&["list"]);
    assert_eq!(listing, String::from_utf8_lossy(&mailq.stdout), "{listing}");
    assert!(listing.contains("someone@elsewhere.test"), "{listing}");
    assert!(listing.contains("root@mail.example.local"), "{listing}");

    let q = inst.sendmail(&["-q"], b"", None);
    assert_eq!(status(&q), 0, "{}", stderr(&q));

    std::fs::write(
        inst.dir.path().join("aliases"),
        "postmaster: root\nbroken line\n",
    )
    .unwrap();
    let bi = inst.sendmail(&["-bi"], b"", None);
    assert_eq!(status(&bi), 65, "{}", stderr(&bi));
    assert!(stderr(&bi).contains("aliases:2"), "{}", stderr(&bi));
    std::fs::write(inst.dir.path().join("aliases"), "postmaster: root\n").unwrap();

    let bv = inst.sendmail(&["-bv", "root", "someone@elsewhere.test"], b"", None);
    assert_eq!(status(&bv), 0, "{}", stderr(&bv));
    assert!(
        String::from_utf8_lossy(&bv.stdout)
            .contains("Mail Delivery Status Report will be mailed to <root>."),
        "{}",
        String::from_utf8_lossy(&bv.stdout)
    );
    let report = wait_mail(&inst, "root", "Subject: Mail Delivery Status Report");
    assert!(
        report.contains("<root> (as <root@mail.example.local>): deliverable via local to mail.example.local, recipient <root@mail.example.local>"),
        "{report}"
    );
    assert!(
        report.contains("<someone@elsewhere.test>: deliverable via smtp to [127.0.0.1]:9"),
        "{report}"
    );
    assert!(!report.contains("Subject: probe"), "{report}");
}

/// mailq and sendmail -q as an ordinary user go to qmgr's public socket,
/// which lists and flushes for the users authorized_mailq_users and
/// authorized_flush_users admit (the kernel says who asks), and does
/// nothing else.
#[test]
fn an_unprivileged_mailq_uses_the_public_socket_and_its_user_lists() {
    if !is_root() {
        return;
    }
    let inst =
        start("relayhost = \"[127.0.0.1]:9\"\nauthorized_flush_users = \"!daemon, static:anyone\"");
    let out = inst.sendmail(&["far@elsewhere.test"], b"Subject: d\n\nx\n", None);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    inst.wait_log_line(&["status=deferred", "far@elsewhere.test"]);
    let as_daemon = |args: &[&str]| {
        let mut cmd = Command::new(bin_dir().join("qctl"));
        cmd.arg("--config").arg(&inst.config).args(args);
        std::os::unix::process::CommandExt::uid(&mut cmd, DAEMON_UID);
        std::os::unix::process::CommandExt::gid(&mut cmd, DAEMON_UID);
        cmd.output().unwrap()
    };
    let list = as_daemon(&["list"]);
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("far@elsewhere.test"),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
    let bp = inst.sendmail(&["-bp"], b"", Some(DAEMON_UID));
    assert_eq!(bp.stdout, list.stdout);
    let flush = inst.sendmail(&["-q"], b"", Some(DAEMON_UID));
    assert_ne!(status(&flush), 0);
    assert!(
        stderr(&flush).contains("User daemon(1) is not allowed to flush the mail queue"),
        "{}",
        stderr(&flush)
    );
    let id = String::from_utf8_lossy(&list.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .trim_end_matches(['*', '!'])
        .to_string();
    let hold = as_daemon(&["hold", &id]);
    assert!(!hold.status.success());
    assert!(
        stderr(&hold).contains("not served on public/showq"),
        "{}",
        stderr(&hold)
    );
}

/// header_checks apply to mail from sendmail as cleanup applies them to
/// local mail: HOLD keeps it, DISCARD drops it, REDIRECT changes where it
/// goes, and the rest is delivered as it is.
#[test]
fn header_checks_apply_to_mail_from_sendmail() {
    let inst = start("header_checks = \"regexp:header_checks\"");
    std::fs::write(
        inst.dir.path().join("header_checks"),
        "/^Subject: hold me/ HOLD kept for a look\n\
         /^Subject: drop me/ DISCARD not wanted\n\
         /^Subject: for daemon/ REDIRECT daemon@mail.example.local\n",
    )
    .unwrap();
    for subject in ["hold me", "drop me", "for daemon", "plain"] {
        let out = inst.sendmail(
            &["root"],
            format!("Subject: {subject}\n\nx\n").as_bytes(),
            None,
        );
        assert_eq!(status(&out), 0, "{}", stderr(&out));
    }
    wait_mail(&inst, "root", "Subject: plain");
    wait_mail(&inst, "daemon", "Subject: for daemon");
    inst.assert_logged("hold: header Subject: hold me from local;");
    inst.assert_logged("discard: header Subject: drop me from local;");
    let root = std::fs::read_to_string(mailbox(&inst, "root")).unwrap();
    assert!(
        !root.contains("drop me") && !root.contains("hold me"),
        "{root}"
    );
    let list = inst.qctl(&["list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains('!'), "{text}");
}

/// A file sendmail is still writing (its owner's alone, not yet marked
/// complete) is left alone, however often pickup looks; once complete it
/// is queued as its owner's. (A benchmark found pickup removing such
/// files when it could not open them.)
#[test]
fn a_file_still_being_written_is_left_alone_until_it_is_complete() {
    if !is_root() {
        return;
    }
    let inst = start("");
    let submission = postern_ipc::maildrop::Submission {
        recipients: vec![postern_ipc::maildrop::EnvelopeRecipient {
            address: "root".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let bytes =
        postern_ipc::maildrop::encode(&submission, b"Subject: slow writer\r\n\r\nx\r\n").unwrap();
    let path = inst.queue_directory().join("maildrop/5C0DE5C0DE");
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // As sendmail run by daemon leaves it: its owner, maildrop/'s group.
    let group = std::os::unix::fs::MetadataExt::gid(
        &std::fs::metadata(inst.queue_directory().join("maildrop")).unwrap(),
    );
    std::os::unix::fs::chown(&path, Some(DAEMON_UID), Some(group)).unwrap();
    for n in 0..3 {
        let wake = format!("Subject: wake {n}\n\nx\n");
        let out = inst.sendmail(&["root"], wake.as_bytes(), None);
        assert_eq!(status(&out), 0, "{}", stderr(&out));
        wait_mail(&inst, "root", &format!("Subject: wake {n}"));
    }
    assert!(path.exists(), "{}", inst.log());
    assert!(!inst.log().contains("5C0DE5C0DE"), "{}", inst.log());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o740)).unwrap();
    let out = inst.sendmail(&["root"], b"Subject: last wake\n\nx\n", None);
    assert_eq!(status(&out), 0);
    let mbox = wait_mail(&inst, "root", "Subject: slow writer");
    let copy = &mbox[mbox.find("From daemon@").expect(&mbox)..];
    assert!(copy.contains("(Postern, from userid 1)"), "{copy}");
}

/// pickup checks a file's envelope as sendmail would: one written by
/// hand with a line break in its sender (which would smuggle SMTP
/// commands or a second mbox message) or without recipients goes to
/// corrupt/, and the mail after it is not held up.
#[test]
fn a_hand_written_file_with_a_bad_envelope_goes_to_corrupt_and_holds_nothing_up() {
    let inst = start("");
    let bad = |sender: &str, recipients: &[&str]| postern_ipc::maildrop::Submission {
        sender: Some(sender.to_string()),
        recipients: recipients
            .iter()
            .map(|a| postern_ipc::maildrop::EnvelopeRecipient {
                address: a.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    for (name, submission) in [
        ("00BADSENDER", bad("a@b>\r\nRCPT TO:<x@y.test", &["root"])),
        ("00NORCPT", bad("a@b.test", &[])),
        ("00BADRCPT", bad("a@b.test", &["root\nFrom evil"])),
    ] {
        let bytes =
            postern_ipc::maildrop::encode(&submission, b"Subject: forged\r\n\r\nx\r\n").unwrap();
        let path = inst.queue_directory().join("maildrop").join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o740)).unwrap();
    }
    let out = inst.sendmail(&["root"], b"Subject: after them\n\nx\n", None);
    assert_eq!(status(&out), 0, "{}", stderr(&out));
    let mbox = wait_mail(&inst, "root", "Subject: after them");
    assert!(!mbox.contains("forged"), "{mbox}");
    for name in ["00BADSENDER", "00NORCPT", "00BADRCPT"] {
        assert!(
            wait_for(T, || inst
                .queue_directory()
                .join("corrupt")
                .join(name)
                .exists()),
            "{name}: {}",
            inst.log()
        );
    }
    inst.assert_logged("maildrop/00NORCPT: uid=0: no recipients; moved to");
}
