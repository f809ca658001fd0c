//! The multi-server setups of `../shared/SCENARIOS.md` end to end: each
//! server is a separate Postern instance (master and all daemons) with
//! its smtpd on its own 127.0.0.x address at port 25 and its outgoing
//! connections leaving from that address; a [`DnsServer`] gives the MX
//! answers, a [`Sink`] plays "the outside", and mail that reaches a
//! mailbox is written through an alias to a file in the instance's
//! directory, so no Unix users are needed.
//!
//! The guides' LAN addresses (192.168.x, 10.x) become 127.0.0.x; each test
//! has its own block of addresses so the tests can run in parallel. Port
//! 25 and the extra loopback addresses need root, as the other
//! integration tests do.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use postern_tests::dns::{DnsServer, Record};
use postern_tests::{Instance, POSTFIX_MASTER_CF, Sink, SmtpClient, wait_for};

const LONG: Duration = Duration::from_secs(40);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn connect(to: SocketAddr, from: Option<Ipv4Addr>) -> SmtpClient {
    let (client, greeting) = match from {
        Some(src) => SmtpClient::connect_from(src, to),
        None => SmtpClient::connect(to),
    }
    .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    assert!(greeting.starts_with("220 "), "{greeting}");
    client
}

/// The guide's telnet session, typed one line at a time and waiting for
/// each reply (no pipelining): `helo localhost`, `mail from: X` (no angle
/// brackets), `rcpt to: Y` for each recipient, `data`, a one-line body,
/// `.`, `quit`. Returns the queue ID from `250 2.0.0 Ok: queued as ID`.
fn telnet(to: SocketAddr, from: Option<Ipv4Addr>, sender: &str, rcpts: &[&str]) -> String {
    connect(to, from).telnet_message(sender, rcpts, b"helo postfix\r\n")
}

/// The reply to RCPT TO after a HELO and MAIL FROM.
fn rcpt_reply(to: SocketAddr, from: Option<Ipv4Addr>, sender: &str, rcpt: &str) -> String {
    connect(to, from).rcpt_reply(sender, rcpt)
}

/// A mailbox file written through an alias (`name: {dir}/mail/name`).
fn mailbox(inst: &Instance, name: &str) -> String {
    std::fs::read_to_string(inst.dir.path().join("mail").join(name)).unwrap_or_default()
}

fn wait_mailbox(inst: &Instance, name: &str, needle: &str) -> String {
    wait_for(LONG, || mailbox(inst, name).contains(needle));
    let text = mailbox(inst, name);
    assert!(
        text.contains(needle),
        "mailbox {name} lacks {needle:?}:\n{text}\nlog:\n{}",
        inst.log()
    );
    text
}

/// Replaces a table file the way an editor does, and waits until the
/// table's once-a-second change check must have seen it.
fn edit_table(inst: &Instance, name: &str, text: &str) {
    let path = inst.dir.path().join(name);
    let tmp = inst.dir.path().join(format!("{name}.new"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
}

// ---------------------------------------------------------------------------
// S1: a DMZ relay in front of a LAN server (seed 000)
// ---------------------------------------------------------------------------

/// S1's addresses (the last byte of 127.0.0.x): the DMZ, the LAN
/// server, the outside MX, a LAN client.
type S1 = (u8, u8, u8, u8);

/// S1's DNS and "the internet".
fn s1_outside(s1: S1) -> (DnsServer, Sink) {
    let (_, lan_ip, outside_mx, _) = s1;
    let dns = DnsServer::start(vec![
        Record::mx("sub.example.local", 10, "mail.example.local"),
        Record::a("mail.example.local", ip(lan_ip)),
        Record::mx("internetmail.example", 10, "mx.internetmail.example"),
        Record::a("mx.internetmail.example", ip(outside_mx)),
    ]);
    (dns, Sink::start(ip(outside_mx), 25))
}

#[test]
fn s1_dmz_relays_inbound_to_the_lan_mailbox_and_the_lan_relays_outbound_via_the_dmz() {
    let s1 = (111, 112, 113, 114);
    let (dmz_ip, lan_ip, _, lan_client) = s1;
    let (dns, outside) = s1_outside(s1);
    let lan = Instance::start_at(
        ip(lan_ip),
        &format!(
            "myhostname = \"mail.example.local\"\n\
             mydomain = \"example.local\"\n\
             mydestination = \"$myhostname, localhost.$mydomain, localhost, $mydomain, sub.$mydomain\"\n\
             mynetworks = \"{}/32, {}/32\"\n\
             relayhost = \"[{}]\"\n\
             alias_maps = \"hash:{{dir}}/aliases\"\n\
             dns_servers = \"{}\"",
            ip(lan_ip),
            ip(lan_client),
            ip(dmz_ip),
            dns.addr
        ),
        &[("aliases", "user: {dir}/mail/user\n"), ("mail/", "")],
    );
    let dmz = Instance::start_at(
        ip(dmz_ip),
        &format!(
            "myhostname = \"dmz.example.local\"\n\
             mydomain = \"example.local\"\n\
             mynetworks = \"{}/32\"\n\
             relay_domains = \"example.local\"\n\
             transport_maps = \"hash:{{dir}}/transport\"\n\
             dns_servers = \"{}\"",
            ip(lan_ip),
            dns.addr
        ),
        &[(
            "transport",
            &format!("example.local  smtp:[{}]\n", ip(lan_ip)),
        )],
    );

    s1_checks(&lan, &dmz, &outside, s1);
}

/// S1 from the guide's main.cf files (seed 000) through `qctl config
/// import` with a master.cf as Debian's: the same checks pass. The
/// guide's `inet_interface = all` (sic) is reported and left out.
#[test]
fn s1_from_the_guides_main_cf_imported_passes_the_same_checks() {
    let s1 = (191, 192, 193, 194);
    let (dmz_ip, lan_ip, _, lan_client) = s1;
    let (dns, outside) = s1_outside(s1);
    let dns_servers = format!("dns_servers={}", dns.addr);
    let lan = Instance::start_imported(
        ip(lan_ip),
        &format!(
            "inet_interface = all\n\
             mynetworks = {}/32, {}/32\n\
             myhostname = mail.example.local\n\
             mydomain = example.local\n\
             mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain, sub.$mydomain\n\
             relayhost = [{}]\n\
             alias_maps = hash:{{dir}}/aliases\n",
            ip(lan_ip),
            ip(lan_client),
            ip(dmz_ip),
        ),
        POSTFIX_MASTER_CF,
        &[("aliases", "user: {dir}/mail/user\n"), ("mail/", "")],
        &[&dns_servers],
    );
    assert!(
        lan.import_report().contains("inet_interface"),
        "{}",
        lan.import_report()
    );
    let dmz = Instance::start_imported(
        ip(dmz_ip),
        &format!(
            "myhostname = dmz.example.local\n\
             mydomain = example.local\n\
             inet_interface = all\n\
             mynetworks = {}/32\n\
             relay_domains = example.local\n\
             transport_maps = hash:{{dir}}/transport\n",
            ip(lan_ip),
        ),
        POSTFIX_MASTER_CF,
        &[(
            "transport",
            &format!("example.local  smtp:[{}]\n", ip(lan_ip)),
        )],
        &[&dns_servers],
    );
    s1_checks(&lan, &dmz, &outside, s1);
}

/// What S1 must do, however its two servers were configured.
fn s1_checks(lan: &Instance, dmz: &Instance, outside: &Sink, s1: S1) {
    let (dmz_ip, lan_ip, outside_mx, lan_client) = s1;
    // Inbound: the guide's session from outside to the DMZ.
    let id = telnet(
        dmz.smtp,
        None,
        "user1@hogehoge.local",
        &["user@example.local"],
    );
    let line = dmz.wait_log_line(&[&format!("{id}: to=<user@example.local>"), "status=sent"]);
    assert!(
        line.contains(&format!("relay={0}[{0}]:25", ip(lan_ip))) && line.contains("dsn=2.0.0"),
        "{line}"
    );
    let lan_id = line
        .rsplit("queued as ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    let line = lan.wait_log_line(&[&format!("{lan_id}: to=<user@example.local>"), "status=sent"]);
    assert!(line.contains("relay=local"), "{line}");
    let text = wait_mailbox(lan, "user", "Delivered-To: user@example.local");
    assert!(
        text.contains("Return-Path: <user1@hogehoge.local>"),
        "{text}"
    );
    assert!(text.contains("Received: from dmz.example.local"), "{text}");
    assert!(text.contains(&format!("[{}]", ip(dmz_ip))), "{text}");
    assert!(text.contains("helo postfix"), "{text}");

    // Subdomains are relay domains too; this one goes by its MX record.
    let id = telnet(
        dmz.smtp,
        None,
        "user1@hogehoge.local",
        &["user@sub.example.local"],
    );
    let line = dmz.wait_log_line(&[&format!("{id}: to=<user@sub.example.local>"), "status=sent"]);
    assert!(
        line.contains(&format!("relay=mail.example.local[{}]:25", ip(lan_ip))),
        "{line}"
    );
    wait_mailbox(lan, "user", "Delivered-To: user@sub.example.local");

    // Any other domain from outside is refused (Postfix 3's default
    // smtpd_relay_restrictions: defer_unauth_destination, 454).
    let reply = rcpt_reply(dmz.smtp, None, "user1@hogehoge.local", "user@example.net");
    assert!(
        reply.starts_with("454 4.7.1 <user@example.net>: Relay access denied"),
        "{reply}"
    );
    let line = dmz.wait_log_line(&["NOQUEUE: reject: RCPT from", "Relay access denied"]);
    assert!(line.contains("to=<user@example.net>"), "{line}");

    // Outbound: a LAN client -> LAN server -> relayhost DMZ -> MX.
    let id = telnet(
        lan.smtp,
        Some(ip(lan_client)),
        "user1@example.local",
        &["test@internetmail.example"],
    );
    let line = lan.wait_log_line(&[
        &format!("{id}: to=<test@internetmail.example>"),
        "status=sent",
    ]);
    assert!(
        line.contains(&format!("relay={0}[{0}]:25", ip(dmz_ip))),
        "{line}"
    );
    let got = outside.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "{}", dmz.log());
    assert_eq!(got[0].recipients, ["test@internetmail.example"]);
    assert_eq!(got[0].sender, "user1@example.local");
    assert_eq!(got[0].peer.ip(), ip(dmz_ip));
    let line = dmz.wait_log_line(&["to=<test@internetmail.example>", "status=sent"]);
    assert!(
        line.contains(&format!(
            "relay=mx.internetmail.example[{}]:25",
            ip(outside_mx)
        )),
        "{line}"
    );
    // Both hops left a trace in the header.
    assert!(
        got[0].data.matches("Received: ").count() >= 2,
        "{}",
        got[0].data
    );
}

// ---------------------------------------------------------------------------
// S2: through-server, branch and hub (seed 001)
// ---------------------------------------------------------------------------

#[test]
fn s2_branch_falls_back_to_the_hub_and_the_through_server_relays_inward() {
    let (hub_ip, branch_ip, through_ip) = (121, 122, 123);
    let hub = Instance::start_at(
        ip(hub_ip),
        &format!(
            "myhostname = \"ms.example.jp\"\n\
             mydomain = \"example.jp\"\n\
             myorigin = \"$mydomain\"\n\
             mydestination = \"ms.example.jp, example.jp, localhost, localhost.example.jp, branch.example.jp\"\n\
             mynetworks = \"{}/32, {}/32, {}/32\"\n\
             alias_maps = \"hash:{{dir}}/aliases\"\n\
             message_size_limit = \"0\"\n\
             mailbox_size_limit = \"0\"",
            ip(hub_ip),
            ip(branch_ip),
            ip(through_ip)
        ),
        &[
            ("aliases", "bob: {dir}/mail/bob\ncarol: {dir}/mail/carol\n"),
            ("mail/", ""),
        ],
    );
    let branch = Instance::start_at(
        ip(branch_ip),
        &format!(
            "myhostname = \"branch.example.jp\"\n\
             mydomain = \"example.jp\"\n\
             mydestination = \"$myhostname, localhost\"\n\
             mynetworks = \"{}/32\"\n\
             local_recipient_maps = \"\"\n\
             fallback_transport = \"smtp:[{}]\"\n\
             alias_maps = \"hash:{{dir}}/aliases\"",
            ip(branch_ip),
            ip(hub_ip)
        ),
        &[("aliases", "alice: {dir}/mail/alice\n"), ("mail/", "")],
    );
    let through = Instance::start_at(
        ip(through_ip),
        &format!(
            "myhostname = \"dmz-ms.example.jp\"\n\
             mydomain = \"example.jp\"\n\
             myorigin = \"$mydomain\"\n\
             mydestination = \"localhost.$mydomain, localhost\"\n\
             mynetworks = \"{}/32\"\n\
             relay_domains = \"example.jp\"\n\
             relayhost = \"[{}]\"\n\
             alias_maps = \"hash:{{dir}}/aliases\"\n\
             message_size_limit = \"0\"\n\
             mailbox_size_limit = \"0\"",
            ip(through_ip),
            ip(hub_ip)
        ),
        &[("aliases", "")],
    );

    // The branch knows alice; bob is nobody here, so he goes to the hub.
    let id = telnet(
        branch.smtp,
        None,
        "someone@outside.example",
        &["alice@branch.example.jp", "bob@branch.example.jp"],
    );
    wait_mailbox(&branch, "alice", "Delivered-To: alice@branch.example.jp");
    let line = branch.wait_log_line(&[&format!("{id}: to=<bob@branch.example.jp>"), "status=sent"]);
    assert!(
        line.contains(&format!("relay={0}[{0}]:25", ip(hub_ip))),
        "{line}"
    );
    let text = wait_mailbox(&hub, "bob", "Delivered-To: bob@branch.example.jp");
    assert!(
        text.contains("Return-Path: <someone@outside.example>"),
        "{text}"
    );
    assert!(!branch.log().contains("status=bounced"), "{}", branch.log());

    // The through-server relays @example.jp inward and never delivers it.
    let id = telnet(
        through.smtp,
        None,
        "someone@outside.example",
        &["carol@example.jp"],
    );
    let line = through.wait_log_line(&[&format!("{id}: to=<carol@example.jp>"), "status=sent"]);
    assert!(
        line.contains(&format!("relay={0}[{0}]:25", ip(hub_ip))),
        "{line}"
    );
    wait_mailbox(&hub, "carol", "Delivered-To: carol@example.jp");
    assert!(!through.log().contains("relay=local"), "{}", through.log());
}

// ---------------------------------------------------------------------------
// S3: a routing hub sorting by destination domain (seed 002)
// ---------------------------------------------------------------------------

#[test]
fn s3_the_three_transport_forms_route_as_the_guide_says_and_edits_apply_live() {
    let (hub_ip, lan_a, sub_mx, mailtrans) = (131, 132, 133, 134);
    let dns = DnsServer::start(vec![
        Record::mx("sub.example.local", 10, "mx.sub.example.local"),
        Record::a("mx.sub.example.local", ip(sub_mx)),
        Record::a("mailtrans.example.local", ip(mailtrans)),
    ]);
    let (a, sub, other) = (
        Sink::start(ip(lan_a), 25),
        Sink::start(ip(sub_mx), 25),
        Sink::start(ip(mailtrans), 25),
    );
    let table = |first: u8| {
        format!(
            "example.local :[{}]\n\
             sub.example.local :sub.example.local\n\
             .example.local :[mailtrans.example.local]\n",
            ip(first)
        )
    };
    // "127.0.0.0/8" of the guide is this host alone here: every test
    // client is on loopback. Relay control as the guide's Postfix 2.x:
    // reject_unauth_destination in the recipient restrictions (554).
    let hub = Instance::start_at(
        ip(hub_ip),
        &format!(
            "myhostname = \"mail.example.local\"\n\
             mydomain = \"example.local\"\n\
             mynetworks = \"{}/32\"\n\
             relay_domains = \"example.local\"\n\
             transport_maps = \"hash:{{dir}}/transport\"\n\
             smtpd_relay_restrictions = \"\"\n\
             smtpd_recipient_restrictions = \"permit_mynetworks, reject_unauth_destination\"\n\
             dns_servers = \"{}\"",
            ip(hub_ip),
            dns.addr
        ),
        &[("transport", &table(lan_a))],
    );

    telnet(hub.smtp, None, "t@client.example", &["u1@example.local"]);
    telnet(
        hub.smtp,
        None,
        "t@client.example",
        &["u2@sub.example.local"],
    );
    telnet(
        hub.smtp,
        None,
        "t@client.example",
        &["u3@abc.example.local"],
    );
    let got = a.wait_messages(1, LONG);
    assert_eq!(got[0].recipients, ["u1@example.local"], "{}", hub.log());
    let got = sub.wait_messages(1, LONG);
    assert_eq!(got[0].recipients, ["u2@sub.example.local"], "{}", hub.log());
    let got = other.wait_messages(1, LONG);
    assert_eq!(got[0].recipients, ["u3@abc.example.local"], "{}", hub.log());
    let line = hub.wait_log_line(&["to=<u2@sub.example.local>", "status=sent"]);
    assert!(
        line.contains(&format!("relay=mx.sub.example.local[{}]:25", ip(sub_mx))),
        "{line}"
    );
    let line = hub.wait_log_line(&["to=<u3@abc.example.local>", "status=sent"]);
    assert!(
        line.contains(&format!(
            "relay=mailtrans.example.local[{}]:25",
            ip(mailtrans)
        )),
        "{line}"
    );

    // Unknown domains are refused, and the hub keeps nothing.
    let reply = rcpt_reply(hub.smtp, None, "t@client.example", "x@example.net");
    assert!(
        reply.starts_with("554 5.7.1 <x@example.net>: Relay access denied"),
        "{reply}"
    );

    // example.local now goes to mailtrans too: no restart, no postmap.
    edit_table(&hub, "transport", &table(mailtrans));
    telnet(hub.smtp, None, "t@client.example", &["u4@example.local"]);
    let got = other.wait_messages(2, LONG);
    assert_eq!(got.len(), 2, "{}", hub.log());
    assert_eq!(got[1].recipients, ["u4@example.local"]);
    assert_eq!(a.messages().len(), 1);
    assert!(wait_for(LONG, || {
        String::from_utf8_lossy(&hub.qctl(&["list"]).stdout)
            .trim()
            .lines()
            .all(|l| !l.contains('@'))
    }));
}

// ---------------------------------------------------------------------------
// S5: an SMTP gateway (seed 004), routing half
// ---------------------------------------------------------------------------

#[test]
fn s5_per_domain_routes_mx_load_sharing_and_domain_rewriting() {
    let (gw_ip, sample, mx1, mx2, gov) = (141, 142, 143, 144, 145);
    let dns = DnsServer::start(vec![
        Record::mx("other.example", 10, "gw1.other.example"),
        Record::mx("other.example", 10, "gw2.other.example"),
        Record::a("gw1.other.example", ip(mx1)),
        Record::a("gw2.other.example", ip(mx2)),
    ]);
    let sample_sink = Sink::start(ip(sample), 2526);
    let (g1, g2) = (Sink::start(ip(mx1), 25), Sink::start(ip(mx2), 25));
    let gov_sink = Sink::start(ip(gov), 25);
    let gw = Instance::start_at(
        ip(gw_ip),
        &format!(
            "myhostname = \"gw.example.com\"\n\
             mynetworks = \"127.0.0.1/32\"\n\
             relay_domains = \"test-sample.jp, region.example, gov.example\"\n\
             transport_maps = \"hash:{{dir}}/transport\"\n\
             virtual_alias_maps = \"hash:{{dir}}/virtual\"\n\
             smtp_connection_cache_on_demand = \"no\"\n\
             dns_servers = \"{}\"",
            dns.addr
        ),
        &[
            (
                "transport",
                &format!(
                    "test-sample.jp smtp:[{}]:2526\ngov.example smtp:[{}]\n",
                    ip(sample),
                    ip(gov)
                ),
            ),
            ("virtual", "@region.example @gov.example\n"),
        ],
    );

    telnet(gw.smtp, None, "a@client.example", &["y@test-sample.jp"]);
    let got = sample_sink.wait_messages(1, LONG);
    assert_eq!(got[0].recipients, ["y@test-sample.jp"], "{}", gw.log());
    gw.wait_log_line(&[
        "to=<y@test-sample.jp>",
        &format!("relay={0}[{0}]:2526", ip(sample)),
        "status=sent",
    ]);

    // Equal-preference MX gateways share the load.
    for n in 0..10 {
        telnet(
            gw.smtp,
            None,
            "a@client.example",
            &[&format!("u{n}@other.example")],
        );
    }
    assert!(
        wait_for(LONG, || g1.messages().len() + g2.messages().len() >= 10),
        "{}",
        gw.log()
    );
    let (n1, n2) = (g1.messages().len(), g2.messages().len());
    assert!(n1 > 0 && n2 > 0, "gw1 got {n1}, gw2 got {n2}");

    // A regional domain becomes the government network's in transit.
    telnet(gw.smtp, None, "a@client.example", &["taro@region.example"]);
    let got = gov_sink.wait_messages(1, LONG);
    assert_eq!(got[0].recipients, ["taro@gov.example"], "{}", gw.log());
    let line = gw.wait_log_line(&["to=<taro@gov.example>", "status=sent"]);
    assert!(line.contains("orig_to=<taro@region.example>"), "{line}");
}

// ---------------------------------------------------------------------------
// Failures: a remote that says "later", and a relay loop
// ---------------------------------------------------------------------------

#[test]
fn a_remote_4xx_is_deferred_listed_and_delivered_after_it_recovers() {
    let (gw_ip, remote_ip) = (151, 152);
    let remote = Sink::start(ip(remote_ip), 25);
    remote.set_rcpt_reply("451 4.3.0 Try again later");
    let gw = Instance::start_at(
        ip(gw_ip),
        &format!(
            "mynetworks = \"127.0.0.1/32\"\n\
             relayhost = \"[{}]\"\n\
             minimal_backoff_time = \"1s\"\n\
             maximal_backoff_time = \"2s\"\n\
             queue_run_delay = \"1s\"",
            ip(remote_ip)
        ),
        &[],
    );
    let id = telnet(gw.smtp, None, "a@client.example", &["z@far.example"]);
    let line = gw.wait_log_line(&[&format!("{id}: to=<z@far.example>"), "status=deferred"]);
    assert!(line.contains("451 4.3.0 Try again later"), "{line}");
    let listing = String::from_utf8_lossy(&gw.qctl(&["list"]).stdout).to_string();
    assert!(listing.contains(&id), "{listing}");
    assert!(listing.contains("451 4.3.0 Try again later"), "{listing}");

    remote.set_rcpt_reply("250 2.1.5 Ok");
    let got = remote.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "{}", gw.log());
    gw.wait_log_line(&[&format!("{id}: to=<z@far.example>"), "status=sent"]);
    gw.wait_log_line(&[&format!("{id}: removed")]);
}

#[test]
fn a_relay_loop_between_two_servers_ends_in_a_bounce() {
    let (a_ip, b_ip, sender_ip) = (161, 162, 163);
    let sender_host = Sink::start(ip(sender_ip), 25);
    let config = |peer: u8| {
        (
            "mynetworks = \"127.0.0.1/32\"\n\
             relay_domains = \"loop.example\"\n\
             transport_maps = \"hash:{dir}/transport\"\n\
             hopcount_limit = \"6\""
                .to_string(),
            format!(
                "loop.example smtp:[{}]\nsender.example smtp:[{}]\n",
                ip(peer),
                ip(sender_ip)
            ),
        )
    };
    let (main_a, table_a) = config(b_ip);
    let (main_b, table_b) = config(a_ip);
    let a = Instance::start_at(ip(a_ip), &main_a, &[("transport", &table_a)]);
    let b = Instance::start_at(ip(b_ip), &main_b, &[("transport", &table_b)]);

    telnet(a.smtp, None, "alice@sender.example", &["x@loop.example"]);
    let got = sender_host.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "A:\n{}\nB:\n{}", a.log(), b.log());
    let bounce = &got[0];
    assert_eq!(bounce.sender, "", "a bounce has the null sender");
    assert_eq!(bounce.recipients, ["alice@sender.example"]);
    assert!(bounce.data.contains("too many hops"), "{}", bounce.data);
    let both = format!("{}{}", a.log(), b.log());
    assert!(both.contains("status=bounced"), "{both}");
    // The loop stopped: no more than a handful of hops were made.
    std::thread::sleep(Duration::from_secs(1));
    let hops = |i: &Instance| i.log().matches("to=<x@loop.example>").count();
    assert!(hops(&a) + hops(&b) <= 6, "{both}");
}

#[test]
fn a_reload_gives_qmgr_new_routing_rules() {
    let (gw_ip, old_ip, new_ip) = (171, 172, 173);
    let (old, new) = (Sink::start(ip(old_ip), 25), Sink::start(ip(new_ip), 25));
    let main = |relayhost: u8| {
        format!(
            "inet_interfaces = \"{0}\"\nsmtp_bind_address = \"{0}\"\n\
             mynetworks = \"127.0.0.1/32\"\nrelayhost = \"[{1}]\"",
            ip(gw_ip),
            ip(relayhost)
        )
    };
    let gw = Instance::start_at(ip(gw_ip), &main(old_ip), &[]);
    telnet(gw.smtp, None, "a@client.example", &["r1@far.example"]);
    assert_eq!(old.wait_messages(1, LONG).len(), 1, "{}", gw.log());

    gw.write_config(&Instance::standard_config(gw.smtp, &main(new_ip), ""));
    assert!(gw.qctl(&["reload"]).status.success());
    // The daemons take the new configuration on SIGHUP, a moment later.
    std::thread::sleep(Duration::from_secs(2));
    telnet(gw.smtp, None, "a@client.example", &["r2@far.example"]);
    let got = new.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "{}", gw.log());
    assert_eq!(got[0].recipients, ["r2@far.example"]);
    assert_eq!(old.messages().len(), 1);
}
