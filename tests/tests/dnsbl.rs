//! DNS blocklists and allowlists in smtpd's restrictions against the
//! tests' DNS server: reject_rbl_client with a result filter and the
//! list's TXT reason in Postfix's default reply, reject_rhsbl_sender with
//! an rbl_reply_maps template, permit_dnswl_client ahead of them, and
//! what DNS failures do (a blocklist that cannot be asked does not
//! refuse; an allowlist that cannot be asked turns a later refusal into
//! 450). Clients come from their own loopback addresses.

use std::net::{IpAddr, Ipv4Addr};

use postern_tests::dns::{DnsServer, Record};
use postern_tests::{Instance, SmtpClient};

fn client(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The query name of `ip` in list `zone`.
fn listed(ip: Ipv4Addr, zone: &str) -> String {
    let o = ip.octets();
    format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
}

/// RCPT's reply for a session from `from` with `sender`.
fn rcpt_reply(inst: &Instance, from: Ipv4Addr, sender: &str) -> String {
    let (mut c, _) = SmtpClient::connect_from(from, inst.smtp).unwrap();
    c.expect("EHLO client.example", "250");
    c.expect(&format!("MAIL FROM:<{sender}>"), "250");
    let reply = c.cmd("RCPT TO:<root@mail.example.local>").unwrap();
    let _ = c.cmd("QUIT");
    reply
}

#[test]
fn blocklists_refuse_allowlists_permit_and_failures_are_postfix_s() {
    let spammer = client(241);
    let other_code = client(242);
    let allowed = client(243);
    let broken_bl = client(244);
    let broken_wl = client(245);
    let clean = client(246);
    let a = |ip: &str| ip.parse::<Ipv4Addr>().unwrap();
    let dns = DnsServer::start(vec![
        Record::a(&listed(spammer, "bl.test"), a("127.0.0.2")),
        Record::txt(&listed(spammer, "bl.test"), "listed for spam"),
        Record::a(&listed(other_code, "bl.test"), a("127.0.0.11")),
        Record::a(&listed(allowed, "wl.test"), a("127.0.2.1")),
        Record::a(&listed(allowed, "bl.test"), a("127.0.0.2")),
        Record::servfail(&listed(broken_bl, "bl.test")),
        Record::servfail(&listed(broken_wl, "wl.test")),
        Record::a(&listed(broken_wl, "bl.test"), a("127.0.0.3")),
        Record::a("spam.example.dbl.test", a("127.0.1.2")),
    ]);
    let inst = Instance::start_at(
        client(231),
        &format!(
            "dns_servers = \"{}\"\n\
             smtpd_client_restrictions = \"permit_dnswl_client wl.test, \
             reject_rbl_client bl.test=127.0.0.[2..10]\"\n\
             smtpd_sender_restrictions = \"reject_rhsbl_sender dbl.test\"\n\
             rbl_reply_maps = \"texthash:{{dir}}/rbl_reply\"",
            dns.addr
        ),
        &[(
            "rbl_reply",
            "dbl.test 550 5.7.1 Sender $sender refused: $rbl_domain lists $rbl_what\n",
        )],
    );

    // Listed within the filter: Postfix's default reply with the TXT text,
    // and its log line.
    let reply = rcpt_reply(&inst, spammer, "a@example.net");
    assert_eq!(
        reply,
        "554 5.7.1 Service unavailable; Client host [127.0.0.241] blocked using bl.test; \
         listed for spam\r\n",
        "{}",
        inst.log()
    );
    inst.wait_log_line(&[
        "NOQUEUE: reject: RCPT from ",
        "[127.0.0.241]: 554 5.7.1 Service unavailable; Client host [127.0.0.241] blocked \
         using bl.test; listed for spam; from=<a@example.net> to=<root@mail.example.local> \
         proto=ESMTP helo=<client.example>",
    ]);

    // A result outside the filter is no listing; a clean client passes.
    assert!(rcpt_reply(&inst, other_code, "a@example.net").starts_with("250"));
    assert!(rcpt_reply(&inst, clean, "a@example.net").starts_with("250"));

    // The allowlist comes first and permits, although the blocklist lists
    // the client too.
    assert!(rcpt_reply(&inst, allowed, "a@example.net").starts_with("250"));

    // The sender's domain in a right-hand-side list, with the template
    // of rbl_reply_maps.
    assert_eq!(
        rcpt_reply(&inst, clean, "bob@spam.example"),
        "550 5.7.1 Sender bob@spam.example refused: dbl.test lists bob@spam.example\r\n"
    );

    // A blocklist that cannot be asked does not refuse, with a warning.
    assert!(rcpt_reply(&inst, broken_bl, "a@example.net").starts_with("250"));
    inst.wait_log_line(&["244.0.0.127.bl.test: RBL lookup error"]);

    // An allowlist that cannot be asked turns the blocklist's refusal
    // into a deferral.
    assert_eq!(
        rcpt_reply(&inst, broken_wl, "a@example.net"),
        "450 4.7.1 <127.0.0.245>: Client host rejected: Service unavailable\r\n"
    );
    let _ = IpAddr::V4(clean);
}
