//! smtpd's milters end to end (MILTER_README): a whole Postern with
//! `smtpd_milters` pointing at a real libmilter filter
//! (`tests/milters/testmilter.py` on Debian's python3-milter, started once
//! for the file), and at filters that are down, hang or talk garbage.
//!
//! The filter answers per client: each test connects from its own
//! 127.0.0.x address, which the filter sees as the host `[127.0.0.x]`
//! (Postern makes no reverse lookup), and picks that profile. A [`Sink`]
//! stands for the server behind the gateway.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::OnceLock;
use std::time::Duration;

use postern_tests::peers::TestMilter;
use postern_tests::{Instance, Sink, SinkMessage, SmtpClient, free_port, wait_for};
use serde_json::json;

const LONG: Duration = Duration::from_secs(40);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The one filter of this file, with a profile per test's client.
fn milter() -> &'static TestMilter {
    static MILTER: OnceLock<(tempfile::TempDir, TestMilter)> = OnceLock::new();
    let (_, m) = MILTER.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = json!({
            "profiles": {
                "[127.0.0.11]": {
                    "rcpt": {
                        "<bad@example.net>": "reject",
                        "<later@example.net>": "tempfail",
                        "<custom@example.net>": {
                            "code": "550", "xcode": "5.7.1",
                            "text": ["go away", "really"]
                        }
                    }
                },
                "[127.0.0.12]": {
                    "eom_actions": [
                        {"addheader": ["X-Added", "by milter"]},
                        {"insheader": ["X-First", "on top", 0]},
                        {"chgheader": ["Subject", 1, "changed"]},
                        {"chgheader": ["X-Drop", 1, ""]},
                        {"replacebody": "replaced body\r\n"},
                        {"chgfrom": ["<new@example.net>", null]},
                        {"addrcpt": ["<more@example.net>"]},
                        {"delrcpt": "<gone@example.net>"}
                    ]
                },
                "[127.0.0.13]": {"eom_actions": [{"quarantine": "looks bad"}]},
                "[127.0.0.14]": {"reply": {"eom": "discard"}},
                "[127.0.0.15]": {"reply": {"connect": "reject"}},
                "[127.0.0.16]": {"reply": {"eom": "hang"}, "hang_seconds": 5},
                "[127.0.0.17]": {"reply": {"eom": {
                    "code": "554", "xcode": "5.7.0", "text": ["multi", "line"]
                }}},
                "[127.0.0.18]": {"reply": {"envfrom": "accept"}},
                "[127.0.0.19]": {"reply": {"unknown": {
                    "code": "550", "xcode": "5.5.1", "text": ["not here either"]
                }}}
            }
        });
        let m = TestMilter::start(dir.path(), &config);
        (dir, m)
    });
    m
}

/// A gateway relaying example.net to `sink`, with `extra` in [main].
fn gateway(sink: &Sink, milters: &str, extra: &str) -> Instance {
    Instance::start(
        &format!(
            "mynetworks = \"127.0.0.0/8\"\n\
             relay_domains = \"example.net\"\n\
             transport_maps = \"inline:{{ example.net=smtp:[{}]:{} }}\"\n\
             smtpd_milters = \"{milters}\"\n{extra}",
            sink.addr.ip(),
            sink.addr.port()
        ),
        "",
    )
}

fn connect(inst: &Instance, from: u8) -> SmtpClient {
    let (c, greeting) = SmtpClient::connect_from(ip(from), inst.smtp).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    c
}

/// EHLO and MAIL FROM from 127.0.0.`from`.
fn mail(inst: &Instance, from: u8, sender: &str) -> SmtpClient {
    let mut c = connect(inst, from);
    c.expect("EHLO client.example", "250");
    c.expect(&format!("MAIL FROM:<{sender}>"), "250 2.1.0");
    c
}

/// DATA with a small message; the reply to the dot.
fn data(c: &mut SmtpClient, subject: &str) -> String {
    c.expect("DATA", "354");
    let msg = format!(
        "Subject: {subject}\r\nX-Drop: me\r\nFrom: <a@client.example>\r\n\r\noriginal body\r\n"
    );
    c.send_raw(msg.as_bytes()).unwrap();
    c.cmd(".").unwrap()
}

fn only(sink: &Sink, subject: &str, inst: &Instance) -> SinkMessage {
    let needle = format!("Subject: {subject}\r\n");
    assert!(
        wait_for(LONG, || sink
            .messages()
            .iter()
            .any(|m| m.data.contains(&needle))),
        "no {subject}:\n{}",
        inst.log()
    );
    let all: Vec<SinkMessage> = sink
        .messages()
        .into_iter()
        .filter(|m| m.data.contains(&needle))
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].clone()
}

#[test]
fn recipient_replies_reject_tempfail_and_a_custom_multiline_reply() {
    let sink = Sink::start(ip(1), 0);
    let inst = gateway(&sink, &milter().socket.to_string(), "");
    let mut c = mail(&inst, 11, "a@client.example");
    assert_eq!(
        c.cmd("RCPT TO:<bad@example.net>").unwrap(),
        "550 5.7.1 Command rejected\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<later@example.net>").unwrap(),
        "451 4.7.1 Service unavailable - try again later\r\n"
    );
    assert_eq!(
        c.cmd("RCPT TO:<custom@example.net>").unwrap(),
        "550-5.7.1 go away\r\n550 5.7.1 really\r\n"
    );
    c.expect("RCPT TO:<good@example.net>", "250 2.1.5");
    let r = data(&mut c, "replies");
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    c.expect("QUIT", "221");
    let m = only(&sink, "replies", &inst);
    assert_eq!(m.recipients, ["good@example.net"]);
    let line = inst.wait_log_line(&["NOQUEUE: milter-reject: RCPT from unknown[127.0.0.11]"]);
    assert!(
        line.contains("550 5.7.1 Command rejected; from=<a@client.example> to=<bad@example.net> proto=ESMTP helo=<client.example>"),
        "{line}"
    );
    // The filter saw the stages in order, with Postfix's macros, and not
    // our Received header.
    let events = milter().events("[127.0.0.11]");
    let names: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    for stage in [
        "connect", "helo", "envfrom", "envrcpt", "data", "header", "eoh", "body", "eom",
    ] {
        assert!(names.contains(&stage), "{stage} missing: {names:?}");
    }
    let eom = events.iter().find(|e| e["event"] == "eom").unwrap();
    let queue_id = m
        .data
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("by mail.example.local (Postern) with ESMTP id ")
        })
        .unwrap();
    assert_eq!(eom["macros"]["i"], queue_id.trim(), "{eom}");
    let connect = events.iter().find(|e| e["event"] == "connect").unwrap();
    let m = &connect["macros"];
    assert_eq!(m["{daemon_addr}"], "127.0.0.1", "{connect}");
    assert_eq!(m["{daemon_name}"], "mail.example.local", "{connect}");
    assert_eq!(m["_"], "unknown [127.0.0.11]", "{connect}");
    assert_eq!(m["v"], "Postern", "{connect}");
    let from = events.iter().find(|e| e["event"] == "envfrom").unwrap();
    assert_eq!(from["macros"]["{mail_addr}"], "a@client.example", "{from}");
    assert_eq!(from["macros"]["j"], "mail.example.local", "{from}");
    let headers: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "header")
        .map(|e| e["args"][0].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        headers,
        ["Subject", "X-Drop", "From", "Message-ID", "Date"],
        "{events:#?}"
    );
}

#[test]
fn end_of_message_modifications_are_made_before_the_message_is_queued() {
    let sink = Sink::start(ip(2), 0);
    let inst = gateway(&sink, &milter().socket.to_string(), "");
    let mut c = mail(&inst, 12, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    c.expect("RCPT TO:<gone@example.net>", "250");
    let r = data(&mut c, "modify me");
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    c.expect("QUIT", "221");
    let m = only(&sink, "changed", &inst);
    assert_eq!(m.sender, "new@example.net");
    let mut rcpts = m.recipients.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["more@example.net", "user@example.net"]);
    let (head, body) = m.data.split_once("\r\n\r\n").unwrap();
    assert_eq!(body, "replaced body\r\n");
    assert!(head.starts_with("Received: from client.example"), "{head}");
    assert!(
        head.contains("\r\nX-First: on top\r\nSubject: changed\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\nX-Added: by milter"), "{head}");
    assert!(!head.contains("X-Drop"), "{head}");
}

#[test]
fn quarantine_holds_discard_drops_and_a_reply_at_the_end_refuses() {
    let sink = Sink::start(ip(3), 0);
    let inst = gateway(&sink, &milter().socket.to_string(), "");
    let mut c = mail(&inst, 13, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    let r = data(&mut c, "quarantined");
    let held = r.trim_end().rsplit(' ').next().unwrap().to_string();
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    let line = inst.wait_log_line(&[&format!(
        "{held}: milter-hold: END-OF-MESSAGE from unknown[127.0.0.13]"
    )]);
    assert!(line.contains("looks bad"), "{line}");
    let out = inst.qctl(&["--json", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains(&held) && list.contains("\"hold\""), "{list}");

    let mut c = mail(&inst, 14, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    let r = data(&mut c, "discarded");
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    inst.wait_log_line(&["milter-discard: END-OF-MESSAGE from unknown[127.0.0.14]"]);

    let mut c = mail(&inst, 17, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    assert_eq!(
        data(&mut c, "refused"),
        "554-5.7.0 multi\r\n554 5.7.0 line\r\n"
    );
    // The session goes on after a refused message.
    c.expect("RSET", "250");
    c.expect("QUIT", "221");

    std::thread::sleep(Duration::from_secs(1));
    let subjects: Vec<String> = sink.messages().iter().map(|m| m.data.clone()).collect();
    assert!(
        subjects.iter().all(|d| !d.contains("quarantined")
            && !d.contains("discarded")
            && !d.contains("refused")),
        "{subjects:?}"
    );
    let out = inst.qctl(&["release", &held]);
    assert!(out.status.success(), "{out:?}");
    only(&sink, "quarantined", &inst);
}

#[test]
fn a_reject_at_connect_answers_every_command_and_accept_ends_the_filters_part() {
    let sink = Sink::start(ip(4), 0);
    let inst = gateway(&sink, &milter().socket.to_string(), "");
    let mut c = connect(&inst, 15);
    assert_eq!(
        c.cmd("EHLO client.example").unwrap(),
        "550 5.7.1 Command rejected\r\n"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<a@client.example>").unwrap(),
        "550 5.7.1 Command rejected\r\n"
    );
    c.expect("QUIT", "221");
    // Accept at MAIL: the filter sees no more of the message, which is
    // delivered.
    let mut c = mail(&inst, 18, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    assert!(data(&mut c, "accepted").starts_with("250 2.0.0"));
    only(&sink, "accepted", &inst);
    let events = milter().events("[127.0.0.18]");
    assert!(!events.iter().any(|e| e["event"] == "eom"), "{events:#?}");
}

#[test]
fn an_unknown_command_is_the_filters_to_answer() {
    let sink = Sink::start(ip(6), 0);
    let inst = gateway(&sink, &milter().socket.to_string(), "");
    let mut c = connect(&inst, 19);
    c.expect("EHLO client.example", "250");
    assert_eq!(
        c.cmd("XYZZY plugh").unwrap(),
        "550 5.5.1 not here either\r\n"
    );
    c.expect("QUIT", "221");
    // Without a word from the filters (no profile for this client),
    // smtpd's own reply.
    let mut c = connect(&inst, 20);
    c.expect("EHLO client.example", "250");
    assert_eq!(
        c.cmd("XYZZY plugh").unwrap(),
        "502 5.5.2 Error: command not recognized\r\n"
    );
    let events = milter().events("[127.0.0.19]");
    let unknown = events
        .iter()
        .find(|e| e["event"] == "unknown")
        .expect("no unknown event");
    assert_eq!(unknown["args"][0], "XYZZY plugh", "{unknown}");
}

/// A port where nothing listens.
fn dead_port() -> u16 {
    free_port()
}

#[test]
fn a_filter_that_is_down_hangs_or_talks_garbage_gets_the_default_action() {
    let sink = Sink::start(ip(5), 0);
    // Down, with Postfix's default (tempfail): mail is refused for now.
    let down = format!("inet:127.0.0.1:{}", dead_port());
    let inst = gateway(&sink, &down, "");
    let mut c = connect(&inst, 21);
    for command in ["EHLO client.example", "MAIL FROM:<a@client.example>"] {
        assert_eq!(
            c.cmd(command).unwrap(),
            "451 4.7.1 Service unavailable - try again later\r\n"
        );
    }
    c.expect("QUIT", "221");
    inst.wait_log_line(&["connect to Milter service", &down, "Connection refused"]);
    drop(inst);

    // Down with accept: mail flows as if there were no filter.
    let inst = gateway(&sink, &down, "milter_default_action = \"accept\"");
    let mut c = mail(&inst, 22, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    assert!(data(&mut c, "filter down").starts_with("250 2.0.0"));
    only(&sink, "filter down", &inst);
    drop(inst);

    // Hangs at the end of the message past milter_content_timeout, with
    // reject: refused with Postfix's text for a failed filter (milter8.c),
    // and the session goes on.
    let inst = gateway(
        &sink,
        &milter().socket.to_string(),
        "milter_content_timeout = \"2s\"\nmilter_default_action = \"reject\"",
    );
    let mut c = mail(&inst, 16, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    assert_eq!(data(&mut c, "hung"), "550 5.5.0 Service unavailable\r\n");
    c.expect("NOOP", "250");
    inst.wait_log_line(&["warning: milter", "timed out"]);
    drop(inst);

    // Garbage, with quarantine: the message is held, nothing is lost.
    let garbage = TcpListener::bind("127.0.0.1:0").unwrap();
    let gport = garbage.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in garbage.incoming().flatten() {
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        }
    });
    let inst = gateway(
        &sink,
        &format!("inet:127.0.0.1:{gport}"),
        "milter_default_action = \"quarantine\"",
    );
    let mut c = mail(&inst, 23, "a@client.example");
    c.expect("RCPT TO:<user@example.net>", "250");
    let r = data(&mut c, "garbage");
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    let id = r.trim_end().rsplit(' ').next().unwrap().to_string();
    let out = inst.qctl(&["--json", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains(&id) && list.contains("\"hold\""),
        "{list}\n{}",
        inst.log()
    );
    inst.wait_log_line(&["warning: milter", &format!("127.0.0.1:{gport}")]);
}
