//! Bodies bigger than one queue chunk (32 KiB) live in the queue's segment
//! files and reach the delivery agents as passed descriptors. End to end,
//! over real SMTP, they arrive byte for byte: relayed by smtp-client to a
//! sink and delivered by local-delivery to a mailbox, from one queued copy.

use std::net::Ipv4Addr;
use std::time::Duration;

use postern_tests::{Instance, Sink, SmtpClient, wait_for};

const LONG: Duration = Duration::from_secs(30);

/// About 400 KiB of text: lines of many lengths (up to 998), some of them
/// starting with a dot, so dot-stuffing works across extent boundaries.
fn body() -> String {
    let mut text = String::from("Subject: big\r\n\r\n");
    let mut i = 0u32;
    while text.len() < 400 * 1024 {
        let len = (i.wrapping_mul(2_654_435_761) >> 22) as usize % 999;
        let fill: String = (0..len)
            .map(|j| char::from(b'a' + ((i as usize + j) % 26) as u8))
            .collect();
        if i.is_multiple_of(7) {
            text.push('.');
        }
        text.push_str(&fill);
        text.push_str("\r\n");
        i += 1;
    }
    text
}

/// Sends `body` over SMTP to `rcpts`, asserting it is queued.
fn send(inst: &Instance, rcpts: &[&str], body: &str) {
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<sender@example.org>", "250");
    for rcpt in rcpts {
        c.expect(&format!("RCPT TO:<{rcpt}>"), "250");
    }
    c.expect("DATA", "354");
    let mut wire = body.replace("\r\n.", "\r\n..");
    wire.push_str(".\r\n");
    c.send_raw(wire.as_bytes()).unwrap();
    let queued = c.read_reply().unwrap();
    assert!(queued.starts_with("250"), "{queued}");
    c.expect("QUIT", "221");
}

/// The text after the header: headers may gain lines on the way
/// (Received, Message-ID...), the text must not change at all.
fn text_of(message: &str) -> String {
    message
        .split_once("\r\n\r\n")
        .map(|(_, t)| t.to_string())
        .unwrap_or_default()
}

fn assert_same(got: &str, want: &str) {
    assert!(
        got == want,
        "body differs: {} bytes, want {}",
        got.len(),
        want.len()
    );
}

#[test]
fn a_big_body_is_relayed_and_delivered_byte_for_byte() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    let ip = Ipv4Addr::new(127, 0, 0, 171);
    let inst = Instance::start_at(
        ip,
        &format!(
            "mydestination = \"localhost\"\n\
             mynetworks = \"127.0.0.0/8\"\n\
             relayhost = \"[127.0.0.1]:{}\"\n\
             alias_maps = \"hash:{{dir}}/aliases\"",
            sink.addr.port()
        ),
        &[("aliases", "user: {dir}/mail/user\n"), ("mail/", "")],
    );
    let body = body();
    send(&inst, &["far@example.net", "user@localhost"], &body);

    let got = sink.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "{}", inst.log());
    let want = text_of(&body);
    assert_same(&text_of(&got[0].data), &want);

    let mailbox = inst.dir.path().join("mail").join("user");
    wait_for(LONG, || {
        std::fs::read_to_string(&mailbox).is_ok_and(|t| t.contains("Delivered-To: user@localhost"))
    });
    let text = std::fs::read_to_string(&mailbox).unwrap();
    let delivered = text.replace("\n", "\r\n");
    assert!(
        delivered.contains(&want),
        "mailbox body differs\nlog:\n{}",
        inst.log()
    );
    inst.wait_log_line(&["to=<far@example.net>", "status=sent"]);
    inst.wait_log_line(&["to=<user@localhost>", "status=sent"]);
    inst.wait_log_line(&["removed"]);
}

#[test]
fn a_deferred_big_body_moves_into_sled_and_arrives_whole_later() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    sink.set_rcpt_reply("451 4.3.0 try again later");
    let inst = Instance::start_at(
        Ipv4Addr::new(127, 0, 0, 172),
        &format!(
            "mydestination = \"localhost\"\n\
             mynetworks = \"127.0.0.0/8\"\n\
             relayhost = \"[127.0.0.1]:{}\"\n\
             minimal_backoff_time = \"1s\"\n\
             maximal_backoff_time = \"2s\"\n\
             queue_run_delay = \"1s\"",
            sink.addr.port()
        ),
        &[],
    );
    let body = body();
    send(&inst, &["far@example.net"], &body);
    let line = inst.wait_log_line(&["to=<far@example.net>", "status=deferred"]);
    assert!(line.contains("try again later"), "{line}");
    // Deferred, the body was copied into sled: the retry reads it there.

    sink.set_rcpt_reply("250 2.1.5 Ok");
    let got = sink.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "{}", inst.log());
    assert_same(&text_of(&got[0].data), &text_of(&body));
    inst.wait_log_line(&["to=<far@example.net>", "status=sent"]);
}
