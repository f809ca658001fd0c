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
