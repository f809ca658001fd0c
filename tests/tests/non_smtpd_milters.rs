//! `non_smtpd_milters` and mail that local-delivery forwards (an alias
//! to another domain). As in Postfix, whose local(8) hands forwarded
//! mail to cleanup without `CLEANUP_FLAG_MILTER` (internal mail:
//! int_filt.c never filters the `forward` class), the forwarded copy
//! does not pass the filters again: it passed smtpd_milters when it
//! arrived. The filter here adds a header to every message it sees and
//! is both the smtpd and the non-SMTP filter: the delivered copy carries
//! the header once, from smtpd.

use std::time::Duration;

use postern_tests::peers::TestMilter;
use postern_tests::{Instance, Sink, SmtpClient, wait_for};
use serde_json::json;

#[test]
fn forwarded_mail_does_not_pass_non_smtpd_milters() {
    let dir = tempfile::tempdir().unwrap();
    let milter = TestMilter::start(
        dir.path(),
        &json!({"profiles": {"*": {
            "eom_actions": [{"addheader": ["X-Non-Smtpd", "filtered"]}]
        }}}),
    );
    let sink = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let inst = Instance::start(
        &format!(
            "alias_maps = \"inline:{{ fwd=far@example.net }}\"\n\
             transport_maps = \"inline:{{ example.net=smtp:[{1}]:{2} }}\"\n\
             smtpd_milters = \"{0}\"\n\
             non_smtpd_milters = \"{0}\"",
            milter.socket,
            sink.addr.ip(),
            sink.addr.port(),
        ),
        "",
    );
    let (mut c, greeting) = SmtpClient::connect(inst.smtp).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<a@client.example>", "250");
    c.expect("RCPT TO:<fwd@localhost>", "250");
    c.expect("DATA", "354");
    c.send_raw(b"Subject: forwarded\r\n\r\nbody\r\n").unwrap();
    c.expect(".", "250");
    c.expect("QUIT", "221");

    assert!(
        wait_for(Duration::from_secs(40), || !sink.messages().is_empty()),
        "nothing forwarded:\n{}",
        inst.log()
    );
    let copy = &sink.messages()[0];
    assert!(
        copy.data.contains("Subject: forwarded\r\n"),
        "{}",
        copy.data
    );
    assert!(
        copy.data.contains("Delivered-To: fwd@localhost\r\n"),
        "{}",
        copy.data
    );
    assert_eq!(
        copy.data.matches("X-Non-Smtpd: filtered").count(),
        1,
        "{}",
        copy.data
    );
    assert!(!milter.events("[127.0.0.1]").is_empty(), "smtpd's session");
    assert!(
        milter.events("localhost").is_empty(),
        "the filter saw the forwarded copy"
    );
}

/// internal_mail_filter_classes = bounce: the non-delivery notice qmgr
/// writes goes through non_smtpd_milters before it is queued, as
/// Postfix's bounce daemon sends it through cleanup's filters (a signing
/// milter then signs bounces too).
#[test]
fn bounces_pass_non_smtpd_milters_when_internal_mail_filter_classes_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let milter = TestMilter::start(
        dir.path(),
        &json!({"profiles": {"*": {
            "eom_actions": [{"addheader": ["X-Non-Smtpd", "filtered"]}]
        }}}),
    );
    let sink = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let inst = Instance::start(
        &format!(
            "mynetworks = \"127.0.0.0/8\"\n\
             relay_domains = \"example.net, nowhere.example\"\n\
             transport_maps = \"inline:{{ example.net=smtp:[{0}]:{1}, \
             {{ nowhere.example=error:no such place }} }}\"\n\
             non_smtpd_milters = \"{2}\"\n\
             internal_mail_filter_classes = \"bounce\"",
            sink.addr.ip(),
            sink.addr.port(),
            milter.socket,
        ),
        "",
    );
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<sender@example.net>", "250");
    c.expect("RCPT TO:<someone@nowhere.example>", "250");
    c.expect("DATA", "354");
    c.send_raw(b"Subject: doomed\r\n\r\nbody\r\n").unwrap();
    c.expect(".", "250");
    c.expect("QUIT", "221");

    assert!(
        wait_for(Duration::from_secs(40), || !sink.messages().is_empty()),
        "no bounce:\n{}",
        inst.log()
    );
    let bounce = &sink.messages()[0];
    assert_eq!(bounce.recipients, ["sender@example.net"]);
    assert!(bounce.data.contains("no such place"), "{}", bounce.data);
    assert_eq!(
        bounce.data.matches("X-Non-Smtpd: filtered").count(),
        1,
        "{}",
        bounce.data
    );
    let events = milter.events("localhost");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "envrcpt" && e["args"][0] == "sender@example.net"),
        "{events:#?}"
    );
}

/// Mail from the sendmail command passes non_smtpd_milters, canonical
/// maps and DKIM signing like mail from SMTP: the filter adds its
/// header, sender_canonical_maps rewrites the envelope sender, and
/// python3-dkim verifies the signature pickup added for the From: domain
/// pickup wrote.
#[test]
fn mail_from_sendmail_passes_non_smtpd_milters_canonical_maps_and_dkim_signing() {
    let dir = tempfile::tempdir().unwrap();
    let milter = TestMilter::start(
        dir.path(),
        &json!({"profiles": {"*": {
            "eom_actions": [{"addheader": ["X-Non-Smtpd", "filtered"]}]
        }}}),
    );
    let (key, record) = postern_tests::dkim::dkim_key(dir.path());
    let _ = std::process::Command::new("chown")
        .arg(postern_tests::TEST_MAIL_OWNER)
        .arg(&key)
        .status();
    let sink = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let inst = Instance::start(
        &format!(
            "transport_maps = \"inline:{{ example.net=smtp:[{0}]:{1} }}\"\n\
             non_smtpd_milters = \"{2}\"\n\
             sender_canonical_maps = \"inline:{{ root@mail.example.local=admin@example.org }}\"\n\
             dkim_signing_table = \"inline:{{ mail.example.local=k }}\"\n\
             dkim_key_table = \"inline:{{ {{ k=mail.example.local:sel:{3} }} }}\"",
            sink.addr.ip(),
            sink.addr.port(),
            milter.socket,
            key.display(),
        ),
        "",
    );
    let out = inst.sendmail(
        &["bob@example.net"],
        b"Subject: from cron\n\nnightly report\n",
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(40), || !sink.messages().is_empty()),
        "nothing arrived:\n{}",
        inst.log()
    );
    let m = &sink.messages()[0];
    assert_eq!(m.sender, "admin@example.org", "{}", inst.log());
    assert!(m.data.starts_with("DKIM-Signature: "), "{}", m.data);
    assert!(m.data.contains("X-Non-Smtpd: filtered\r\n"), "{}", m.data);
    assert!(m.data.contains("(Postern, from userid "), "{}", m.data);
    assert!(
        postern_tests::dkim::python_dkim_verifies(&m.data, &record, dir.path()),
        "{}",
        m.data
    );
    let events = milter.events("localhost");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "envrcpt" && e["args"][0] == "bob@example.net"),
        "{events:#?}"
    );
}

/// A filter that refuses a message from sendmail: the user has gone, so
/// the message waits on hold for the administrator instead of vanishing.
#[test]
fn a_milter_refusal_of_sendmail_mail_puts_it_on_hold() {
    let dir = tempfile::tempdir().unwrap();
    let milter = TestMilter::start(
        dir.path(),
        &json!({"profiles": {"*": {"reply": {"eom": "reject"}}}}),
    );
    let inst = Instance::start(&format!("non_smtpd_milters = \"{}\"", milter.socket), "");
    let out = inst.sendmail(&["bob@example.net"], b"Subject: refused\n\nx\n", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    inst.assert_logged("held: refused by a milter: 5");
    let list = inst.qctl(&["list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("!"), "{text}");
}
