//! The filtering gateway with the real filters Postfix sites run (scenario
//! S5): one Postern whose `smtpd_milters` chains opendkim (signing),
//! clamav-milter (in front of clamd with a one-signature database) and
//! spamass-milter (in front of spamd with local rules), all from Debian,
//! each started once for this file on loopback. Mail goes in over SMTP
//! and comes out at a [`Sink`]; what the filters did is read off the
//! delivered message and the replies.

use std::net::Ipv4Addr;
use std::time::Duration;

use postern_tests::peers::clamav::{TEST_VIRUS, TEST_VIRUS_NAME};
use postern_tests::peers::spamassassin::{GTUBE, REJECT_REPLY, TEST_SPAM_WORD};
use postern_tests::peers::{ClamAv, DkimVerdict, Listen, OpenDkim, SpamAssassin};
use postern_tests::{Instance, Sink, SinkMessage, SmtpClient, wait_for};

const LONG: Duration = Duration::from_secs(60);
const DOMAIN: &str = "example.test";

struct Gateway {
    _dir: tempfile::TempDir,
    dkim: OpenDkim,
    _clamav: ClamAv,
    _spam: SpamAssassin,
    sink: Sink,
    inst: Instance,
}

/// The filters and the gateway, once for the file (spamd takes a second
/// or two to compile its rules). The instance is the one test's: its
/// master dies with the thread that started it.
fn gateway() -> &'static Gateway {
    thread_local! {
        static GATEWAY: &'static Gateway = Box::leak(Box::new(start_gateway()));
    }
    GATEWAY.with(|g| *g)
}

fn start_gateway() -> Gateway {
    {
        let dir = tempfile::tempdir().unwrap();
        // smtpd runs as mail_owner: the filters listen on loopback ports.
        let dkim = OpenDkim::start_on(dir.path(), DOMAIN, Listen::Inet);
        let clamav = ClamAv::start_with(dir.path(), Listen::Inet, "RejectMsg Virus %v found");
        let spam = SpamAssassin::start_on(dir.path(), Listen::Inet);
        let sink = Sink::start(Ipv4Addr::new(127, 0, 0, 1), 0);
        let inst = Instance::start(
            &format!(
                "mynetworks = \"127.0.0.0/8\"\n\
                 relay_domains = \"example.org\"\n\
                 transport_maps = \"inline:{{ example.org=smtp:[127.0.0.1]:{} }}\"\n\
                 smtpd_milters = \"{}, {}, {}\"\n\
                 milter_content_timeout = \"60s\"",
                sink.addr.port(),
                dkim.socket,
                clamav.socket,
                spam.socket
            ),
            "",
        );
        Gateway {
            _dir: dir,
            dkim,
            _clamav: clamav,
            _spam: spam,
            sink,
            inst,
        }
    }
}

/// Sends a message with `subject` and `body` from alice@example.test;
/// the reply to the dot.
fn send(subject: &str, body: &str) -> String {
    let g = gateway();
    let (mut c, _) = SmtpClient::connect(g.inst.smtp).unwrap();
    c.expect("EHLO client.example.test", "250");
    c.expect("MAIL FROM:<alice@example.test>", "250");
    c.expect("RCPT TO:<bob@example.org>", "250");
    c.expect("DATA", "354");
    let msg = format!(
        "From: Alice <alice@{DOMAIN}>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n"
    );
    c.send_raw(msg.as_bytes()).unwrap();
    let reply = c.cmd(".").unwrap();
    c.expect("QUIT", "221");
    reply
}

fn delivered(subject: &str) -> SinkMessage {
    let g = gateway();
    let needle = format!("Subject: {subject}\r\n");
    let found = wait_for(LONG, || {
        g.sink.messages().iter().any(|m| m.data.contains(&needle))
    });
    assert!(found, "{subject} not delivered:\n{}", g.inst.log());
    g.sink
        .messages()
        .into_iter()
        .find(|m| m.data.contains(&needle))
        .unwrap()
}

fn header<'a>(m: &'a SinkMessage, name: &str) -> Option<&'a str> {
    let head = m.data.split("\r\n\r\n").next().unwrap_or("");
    head.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

#[test]
fn the_gateway_signs_clean_mail_refuses_the_virus_and_tags_or_refuses_spam() {
    clean_mail_arrives_signed_by_opendkim_and_marked_by_both_scanners();
    the_virus_is_refused_with_clamav_milters_reply();
    spam_is_tagged_and_gtube_is_refused_by_spamass_milter();
}

fn clean_mail_arrives_signed_by_opendkim_and_marked_by_both_scanners() {
    let r = send("clean", "Nothing to see here.");
    assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{r}");
    let m = delivered("clean");
    let sig = header(&m, "DKIM-Signature").unwrap_or_else(|| panic!("unsigned:\n{}", m.data));
    assert!(sig.contains(&format!("d={DOMAIN}")), "{sig}");
    assert_eq!(
        gateway().dkim.verify(m.data.as_bytes()),
        DkimVerdict::Pass,
        "{}",
        m.data
    );
    // A signature over a changed body no longer verifies: the check can
    // fail.
    let tampered = m.data.replace("Nothing to see", "Something to see");
    assert!(matches!(
        gateway().dkim.verify(tampered.as_bytes()),
        DkimVerdict::Fail(_)
    ));
    assert_eq!(header(&m, "X-Virus-Status"), Some("Clean"), "{}", m.data);
    assert!(header(&m, "X-Virus-Scanned").is_some_and(|v| v.starts_with("clamav-milter")));
    assert!(
        header(&m, "X-Spam-Status").is_some_and(|v| v.starts_with("No,")),
        "{}",
        m.data
    );
}

fn the_virus_is_refused_with_clamav_milters_reply() {
    let r = send("infected", &format!("attachment: {TEST_VIRUS}"));
    assert_eq!(
        r.trim_end(),
        format!("550 5.7.1 Virus {TEST_VIRUS_NAME} found")
    );
    gateway()
        .inst
        .wait_log_line(&["milter-reject: END-OF-MESSAGE", TEST_VIRUS_NAME]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !gateway()
            .sink
            .messages()
            .iter()
            .any(|m| m.data.contains("Subject: infected"))
    );
}

fn spam_is_tagged_and_gtube_is_refused_by_spamass_milter() {
    let r = send("spammy", &format!("buy now {TEST_SPAM_WORD}"));
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let m = delivered("spammy");
    assert_eq!(header(&m, "X-Spam-Flag"), Some("YES"), "{}", m.data);
    assert!(header(&m, "X-Spam-Status").is_some_and(|v| v.starts_with("Yes,")));
    // Still signed: opendkim comes first in the chain and saw the message
    // as received.
    assert!(header(&m, "DKIM-Signature").is_some());

    let r = send("gtube", GTUBE);
    assert_eq!(r.trim_end(), REJECT_REPLY);
}

#[test]
#[should_panic(expected = "postern-no-such-filter is not installed: apt-get install some-package")]
fn a_missing_program_fails_the_start_by_name() {
    postern_tests::peers::program("postern-no-such-filter", "some-package");
}
