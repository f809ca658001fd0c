//! smtpd against the real master: greeting, EHLO, relay refusal and its
//! log line, the 451 when qmgr cannot be reached, reloads, and a message
//! queued end to end.

use std::net::SocketAddr;
use std::time::Duration;

use postern_tests::{Instance, SmtpClient, free_port, wait_for};

const LONG: Duration = Duration::from_secs(20);

/// The DMZ relay of scenario S1: relays example.local only, and (for the
/// test) does not trust loopback, so the test client is "outside".
const DMZ: &str = r#"mydomain = "example.local"
mydestination = "$myhostname, localhost"
mynetworks = "10.255.255.0/24"
relay_domains = "example.local"
smtpd_relay_restrictions = "permit_mynetworks, reject_unauth_destination""#;

/// DMZ for tests that queue mail: deliveries go to a closed loopback
/// port, so nothing is looked up or sent beyond this machine.
fn dmz_queueing() -> String {
    format!("{DMZ}\nrelayhost = \"[127.0.0.1]:9\"")
}

fn ehlo_lines(reply: &str) -> Vec<&str> {
    reply.lines().map(|l| &l[4..]).collect()
}

#[test]
fn greeting_ehlo_and_quit() {
    let inst = start_smtpd_only("");
    let (mut c, greeting) = SmtpClient::connect(inst.smtp).unwrap();
    assert_eq!(greeting, "220 mail.example.local ESMTP Postern\r\n");
    let ehlo = c.cmd("EHLO client.example").unwrap();
    assert_eq!(
        ehlo_lines(&ehlo),
        [
            "mail.example.local",
            "PIPELINING",
            "SIZE 10240000",
            "ETRN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING"
        ]
    );
    c.dialog(&[
        ("VRFY root", "502 5.5.1 VRFY command is disabled\r\n"),
        ("NOOP", "250 2.0.0 Ok\r\n"),
        ("QUIT", "221 2.0.0 Bye\r\n"),
    ]);
    inst.assert_logged("connect from unknown[127.0.0.1]");
    inst.assert_logged(
        "disconnect from unknown[127.0.0.1] ehlo=1 noop=1 vrfy=0/1 quit=1 commands=3/4",
    );
}

#[test]
fn relay_is_refused_and_logged_like_postfix() {
    let inst = start_smtpd_only(DMZ);
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.dialog(&[
        ("helo localhost", "250 mail.example.local\r\n"),
        ("mail from: user1@hogehoge.local", "250 2.1.0 Ok\r\n"),
        (
            "rcpt to: user@example.net",
            "554 5.7.1 <user@example.net>: Relay access denied\r\n",
        ),
        // Subdomains of a relay domain pass.
        ("rcpt to: user@sub.example.local", "250 2.1.5 Ok\r\n"),
        ("quit", "221 2.0.0 Bye\r\n"),
    ]);
    inst.assert_logged(
        "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <user@example.net>: \
         Relay access denied; from=<user1@hogehoge.local> to=<user@example.net> \
         proto=SMTP helo=<localhost>",
    );
    inst.assert_logged(
        "disconnect from unknown[127.0.0.1] helo=1 mail=1 rcpt=1/2 quit=1 commands=4/5",
    );
}

/// An instance running only the smtp service: protocol tests do not
/// depend on the other daemons, and with no qmgr service its socket is
/// never served.
fn start_smtpd_only(main_extra: &str) -> Instance {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = smtpd_only_config(smtp, main_extra);
    Instance::start_with(smtp, &config)
}

fn smtpd_only_config(smtp: SocketAddr, main_extra: &str) -> String {
    let out = Instance::standard_config_only(smtp, main_extra, "smtp");
    assert!(!out.contains("command = \"qmgr\""), "{out}");
    out
}

#[test]
fn data_is_deferred_when_qmgr_is_not_served() {
    let inst = start_smtpd_only(DMZ);
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.cmd("EHLO x").unwrap();
    c.dialog(&[
        ("MAIL FROM:<a@x.org>", "250 2.1.0 Ok\r\n"),
        ("RCPT TO:<user@example.local>", "250 2.1.5 Ok\r\n"),
        ("DATA", "451 4.3.0 Error: queue file write error\r\n"),
        // The session goes on; the transaction is gone.
        (
            "RCPT TO:<user@example.local>",
            "503 5.5.1 Error: need MAIL command\r\n",
        ),
        ("QUIT", "221 2.0.0 Bye\r\n"),
    ]);
    inst.assert_logged("queue file write error");
}

/// A table file that is missing at start defers with 4.3.5 and is used
/// as soon as it appears, without a reload.
#[test]
fn an_access_table_that_appears_later_is_used_without_a_reload() {
    let inst = start_smtpd_only(&format!(
        "{DMZ}\nsmtpd_recipient_restrictions = \"check_recipient_access hash:access, permit\""
    ));
    let rcpt_reply = |rcpt: &str| {
        let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
        c.cmd("EHLO x").unwrap();
        c.cmd("MAIL FROM:<a@x.org>").unwrap();
        let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
        let _ = c.cmd("QUIT");
        reply
    };
    assert_eq!(
        rcpt_reply("blocked@example.local"),
        "451 4.3.5 Server configuration error\r\n"
    );
    std::fs::write(
        inst.dir.path().join("access"),
        "blocked@example.local REJECT closed for good\n",
    )
    .unwrap();
    let refused =
        "554 5.7.1 <blocked@example.local>: Recipient address rejected: closed for good\r\n";
    assert!(
        wait_for(LONG, || rcpt_reply("blocked@example.local") == refused),
        "{}",
        inst.log()
    );
    assert_eq!(rcpt_reply("open@example.local"), "250 2.1.5 Ok\r\n");
}

#[test]
fn bdat_is_deferred_too_and_its_chunk_is_read() {
    let inst = start_smtpd_only(DMZ);
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.cmd("EHLO x").unwrap();
    c.cmd("MAIL FROM:<a@x.org>").unwrap();
    c.cmd("RCPT TO:<user@example.local>").unwrap();
    c.send_raw(b"BDAT 6 LAST\r\nhello\n").unwrap();
    assert_eq!(
        c.read_reply().unwrap(),
        "451 4.3.0 Error: queue file write error\r\n"
    );
    assert_eq!(c.cmd("NOOP").unwrap(), "250 2.0.0 Ok\r\n");
}

#[test]
fn a_reload_applies_to_new_sessions() {
    let inst = start_smtpd_only("");
    let (mut old, _) = SmtpClient::connect(inst.smtp).unwrap();
    inst.write_config(&smtpd_only_config(
        inst.smtp,
        "message_size_limit = 0\ndisable_vrfy_command = \"no\"",
    ));
    assert!(inst.qctl(&["reload"]).status.success());
    assert!(postern_tests::wait_for(LONG, || {
        SmtpClient::connect(inst.smtp)
            .and_then(|(mut c, _)| c.cmd("EHLO x"))
            .is_ok_and(|r| r.contains("250-SIZE\r\n250-VRFY\r\n"))
    }));
    // The session that was open is not cut short by the restart that
    // came with the reload; it is told to come back at its next command.
    let ehlo = old.cmd("EHLO x").unwrap();
    assert!(
        ehlo.contains("250-SIZE 10240000\r\n")
            || ehlo == "421 4.3.2 Service shutting down, closing transmission channel\r\n",
        "{ehlo}"
    );
}

#[test]
fn the_guides_session_is_queued() {
    let inst = Instance::start(&dmz_queueing(), "");
    let (mut c, greeting) = SmtpClient::connect(inst.smtp).unwrap();
    assert_eq!(greeting, "220 mail.example.local ESMTP Postern\r\n");
    c.dialog(&[
        ("helo localhost", "250 mail.example.local\r\n"),
        ("mail from: user1@hogehoge.local", "250 2.1.0 Ok\r\n"),
        ("rcpt to: user@example.local", "250 2.1.5 Ok\r\n"),
        ("data", "354 End data with <CR><LF>.<CR><LF>\r\n"),
    ]);
    c.send_raw(b"Subject: test\r\n\r\nhello\r\n").unwrap();
    let queued = c.cmd(".").unwrap();
    assert!(
        queued.starts_with("250 2.0.0 Ok: queued as "),
        "{queued}\n{}",
        inst.log()
    );
    let id = queued.trim_end()["250 2.0.0 Ok: queued as ".len()..].to_string();
    c.dialog(&[("quit", "221 2.0.0 Bye\r\n")]);
    inst.assert_logged(&format!("{id}: client=unknown[127.0.0.1]"));
    inst.assert_logged(
        "disconnect from unknown[127.0.0.1] helo=1 mail=1 rcpt=1 data=1 quit=1 commands=5",
    );
}

#[test]
fn large_messages_and_bdat_share_one_qmgr_connection() {
    let inst = Instance::start(&dmz_queueing(), "");
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.cmd("EHLO client.example").unwrap();
    // Larger than several IPC body chunks.
    let line = format!("{}\r\n", "z".repeat(998));
    let body = line.repeat(250);
    c.cmd("MAIL FROM:<a@x.org>").unwrap();
    c.cmd("RCPT TO:<user@example.local>").unwrap();
    c.dialog(&[("DATA", "354 End data with <CR><LF>.<CR><LF>\r\n")]);
    c.send_raw(format!("Subject: big\r\n\r\n{body}").as_bytes())
        .unwrap();
    let first = c.cmd(".").unwrap();
    assert!(
        first.starts_with("250 2.0.0 Ok: queued as "),
        "{first}\n{}",
        inst.log()
    );
    // MAIL, RCPT and BDAT chunks may be pipelined.
    c.send_raw(
        b"MAIL FROM:<a@x.org>\r\nRCPT TO:<user@example.local>\r\nBDAT 14\r\nSubject: b\r\n\r\n",
    )
    .unwrap();
    assert_eq!(c.read_reply().unwrap(), "250 2.1.0 Ok\r\n");
    assert_eq!(c.read_reply().unwrap(), "250 2.1.5 Ok\r\n");
    assert_eq!(c.read_reply().unwrap(), "250 2.0.0 Ok: 14 bytes\r\n");
    c.send_raw(format!("BDAT {} LAST\r\n{body}", body.len()).as_bytes())
        .unwrap();
    let second = c.read_reply().unwrap();
    assert!(second.starts_with("250 2.0.0 Ok: queued as "), "{second}");
    assert_ne!(first, second);
    c.dialog(&[("QUIT", "221 2.0.0 Bye\r\n")]);
    inst.assert_logged(
        "disconnect from unknown[127.0.0.1] ehlo=1 mail=2 rcpt=2 data=1 bdat=2 quit=1 commands=9",
    );
}
