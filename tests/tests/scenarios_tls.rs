//! TLS and SMTP AUTH between Postern servers (issue 5, scenarios S1, S4
//! and S5 of `../shared/SCENARIOS.md`), end to end: each server a separate
//! Postern instance on its own 127.0.0.x address at port 25, names from a
//! test [`DnsServer`], certificates from a test CA made here with rcgen.
//!
//! - S1 with the DMZ→LAN hop over TLS at `verify` against the test CA, and
//!   the same hop with the wrong CA deferred and listed.
//! - A smarthost that requires AUTH (a Postern with smtpd_sasl_auth_enable
//!   and a user added by `qctl passwd`), and a Postern that relays through
//!   it with smtp_sasl_password_maps: deferred with the SASL reason while
//!   the user is unknown there, relayed once it is known.
//! - `may` to a server without STARTTLS delivers in plaintext; `encrypt`
//!   defers with `TLS is required, but was not offered`.
//! - The `submission` and `smtps` services of the example master.toml,
//!   switched on as its comments say, with a certificate and a user.
//!
//! Port 25 and the extra loopback addresses need root, as the other
//! scenario tests do. This file's block of addresses is 127.0.0.201-239.

use postern_tests::certs::Ca;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use postern_tests::dns::{DnsServer, Record};
use postern_tests::{Instance, Sink, SmtpClient, free_port, wait_for};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const LONG: Duration = Duration::from_secs(40);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Plain SMTP sessions, the log, mailboxes, qctl (as in scenarios.rs)
// ---------------------------------------------------------------------------

fn connect(to: SocketAddr) -> SmtpClient {
    let (client, greeting) =
        SmtpClient::connect(to).unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    assert!(greeting.starts_with("220 "), "{greeting}");
    client
}

/// The guide's telnet session (HELO, MAIL, RCPT, DATA, a line, QUIT);
/// returns the queue ID.
fn telnet(to: SocketAddr, sender: &str, rcpt: &str) -> String {
    connect(to).telnet_message(
        sender,
        &[rcpt],
        b"Subject: over tls\r\n\r\nhello through the hops\r\n",
    )
}

/// The reply to RCPT TO after a HELO and MAIL FROM.
fn rcpt_reply(to: SocketAddr, sender: &str, rcpt: &str) -> String {
    connect(to).rcpt_reply(sender, rcpt)
}

/// A mailbox file written through an alias (`name: {dir}/mail/name`).
fn wait_mailbox(inst: &Instance, name: &str, needle: &str) -> String {
    let path = inst.dir.path().join("mail").join(name);
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    wait_for(LONG, || read().contains(needle));
    let text = read();
    assert!(
        text.contains(needle),
        "mailbox {name} lacks {needle:?}:\n{text}\nlog:\n{}",
        inst.log()
    );
    text
}

/// `qctl list`, waited for until it shows `needle`.
fn wait_listed(inst: &Instance, needle: &str) -> String {
    let list = || String::from_utf8_lossy(&inst.qctl(&["list"]).stdout).to_string();
    wait_for(LONG, || list().contains(needle));
    let listing = list();
    assert!(
        listing.contains(needle),
        "qctl list lacks {needle:?}:\n{listing}\nlog:\n{}",
        inst.log()
    );
    listing
}

/// `qctl passwd --scheme SCHEME USER` with the password on standard input.
fn qctl_passwd(config: &Path, user: &str, password: &str, scheme: &str) {
    let args = ["passwd", "--scheme", scheme, user];
    let out = postern_tests::qctl_with_input(config, &args, &format!("{password}\n"));
    postern_tests::assert_success(&out);
}

// ---------------------------------------------------------------------------
// S1 with the DMZ -> LAN hop over verified TLS
// ---------------------------------------------------------------------------

#[test]
fn s1_dmz_relays_to_the_lan_over_tls_verified_against_the_test_ca() {
    let (lan_ip, dmz_ip, bad_dmz_ip) = (201, 202, 203);
    let ca = Ca::new("Example Local Test CA");
    let other_ca = Ca::new("Somebody Else's CA");
    let dns = DnsServer::start(vec![Record::a("mail.example.local", ip(lan_ip))]);
    let (cert, key) = ca.issue("mail.example.local");
    let lan = Instance::start_at(
        ip(lan_ip),
        &format!(
            "myhostname = \"mail.example.local\"\n\
             mydomain = \"example.local\"\n\
             mydestination = \"$myhostname, localhost.$mydomain, localhost, $mydomain\"\n\
             mynetworks = \"{}/32\"\n\
             alias_maps = \"hash:{{dir}}/aliases\"\n\
             smtpd_tls_security_level = \"may\"\n\
             smtpd_tls_cert_file = \"{{dir}}/cert.pem\"\n\
             smtpd_tls_key_file = \"{{dir}}/key.pem\"",
            ip(lan_ip)
        ),
        &[
            ("aliases", "user: {dir}/mail/user\n"),
            ("mail/", ""),
            ("cert.pem", &cert),
            ("key.pem", &key),
        ],
    );
    // The DMZ of S1, sending to the LAN server by name so that the name
    // in its certificate can be verified.
    let dmz_config = |me: u8| {
        format!(
            "myhostname = \"dmz.example.local\"\n\
             mydomain = \"example.local\"\n\
             mynetworks = \"{}/32\"\n\
             relay_domains = \"example.local\"\n\
             transport_maps = \"hash:{{dir}}/transport\"\n\
             smtp_tls_security_level = \"verify\"\n\
             smtp_tls_CAfile = \"{{dir}}/ca.pem\"\n\
             smtp_bind_address = \"{}\"\n\
             dns_servers = \"{}\"",
            ip(lan_ip),
            ip(me),
            dns.addr
        )
    };
    let transport = "example.local  smtp:[mail.example.local]\n";
    let dmz = Instance::start_at(
        ip(dmz_ip),
        &dmz_config(dmz_ip),
        &[("transport", transport), ("ca.pem", &ca.pem())],
    );

    let id = telnet(dmz.smtp, "user1@hogehoge.local", "user@example.local");
    let line = dmz.wait_log_line(&[&format!("{id}: to=<user@example.local>"), "status=sent"]);
    assert!(
        line.contains(&format!("relay=mail.example.local[{}]:25", ip(lan_ip))),
        "{line}"
    );
    let line = dmz.wait_log_line(&["Verified TLS connection established to"]);
    assert!(
        line.contains(&format!(
            "Verified TLS connection established to mail.example.local[{}]:25: TLSv1.",
            ip(lan_ip)
        )),
        "{line}"
    );
    lan.wait_log_line(&[&format!(
        "TLS connection established from unknown[{}]",
        ip(dmz_ip)
    )]);
    let text = wait_mailbox(&lan, "user", "Delivered-To: user@example.local");
    assert!(
        text.contains("Return-Path: <user1@hogehoge.local>"),
        "{text}"
    );
    // The LAN server's Received header notes the encrypted hop.
    assert!(text.contains("Received: from dmz.example.local"), "{text}");
    assert!(text.contains("(using TLSv1."), "{text}");
    assert!(text.contains("with ESMTPS id"), "{text}");
    assert!(text.contains("hello through the hops"), "{text}");

    // A DMZ that trusts another CA does not hand the mail over: it waits
    // in the queue with the reason.
    let bad = Instance::start_at(
        ip(bad_dmz_ip),
        &dmz_config(bad_dmz_ip),
        &[("transport", transport), ("ca.pem", &other_ca.pem())],
    );
    let id = telnet(bad.smtp, "user1@hogehoge.local", "user2@example.local");
    let line = bad.wait_log_line(&[
        &format!("{id}: to=<user2@example.local>"),
        "status=deferred",
    ]);
    assert!(line.contains("Server certificate not trusted"), "{line}");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    let listing = wait_listed(&bad, "Server certificate not trusted");
    assert!(listing.contains(&id), "{listing}");
    assert!(listing.contains("user2@example.local"), "{listing}");
    assert!(
        !bad.log().contains("Verified TLS connection"),
        "{}",
        bad.log()
    );
    assert!(!lan.log().contains("user2@example.local"), "{}", lan.log());
}

// ---------------------------------------------------------------------------
// A smarthost that requires AUTH (S5; the ISP relay of seed 000)
// ---------------------------------------------------------------------------

#[test]
fn relaying_through_a_smarthost_that_requires_auth() {
    let (smarthost_ip, gw_ip, outside_ip) = (211, 212, 213);
    let ca = Ca::new("ISP Test CA");
    let dns = DnsServer::start(vec![
        Record::a("smarthost.isp.example", ip(smarthost_ip)),
        Record::mx("far.example", 10, "mx.far.example"),
        Record::a("mx.far.example", ip(outside_ip)),
    ]);
    let outside = Sink::start(ip(outside_ip), 25);
    let (cert, key) = ca.issue("smarthost.isp.example");
    // Relays for authenticated clients only; AUTH only under TLS.
    let smarthost = Instance::start_at(
        ip(smarthost_ip),
        &format!(
            "myhostname = \"smarthost.isp.example\"\n\
             mydestination = \"$myhostname, localhost\"\n\
             mynetworks = \"{}/32\"\n\
             smtpd_relay_restrictions = \"permit_sasl_authenticated, reject_unauth_destination\"\n\
             smtpd_tls_security_level = \"may\"\n\
             smtpd_tls_cert_file = \"{{dir}}/cert.pem\"\n\
             smtpd_tls_key_file = \"{{dir}}/key.pem\"\n\
             smtpd_tls_auth_only = \"yes\"\n\
             smtpd_sasl_auth_enable = \"yes\"\n\
             smtpd_sasl_users = \"texthash:{{dir}}/sasl_users\"\n\
             dns_servers = \"{}\"",
            ip(smarthost_ip),
            dns.addr
        ),
        &[
            ("cert.pem", &cert),
            ("key.pem", &key),
            ("sasl_users", "# SMTP AUTH users (qctl passwd)\n"),
        ],
    );
    let gw = Instance::start_at(
        ip(gw_ip),
        &format!(
            "myhostname = \"gw.example.local\"\n\
             mynetworks = \"127.0.0.1/32\"\n\
             relayhost = \"[smarthost.isp.example]\"\n\
             smtp_tls_security_level = \"verify\"\n\
             smtp_tls_CAfile = \"{{dir}}/ca.pem\"\n\
             smtp_sasl_auth_enable = \"yes\"\n\
             smtp_sasl_password_maps = \"texthash:{{dir}}/sasl_passwd\"\n\
             dns_servers = \"{}\"",
            dns.addr
        ),
        &[
            ("ca.pem", &ca.pem()),
            (
                "sasl_passwd",
                "[smarthost.isp.example] gw@isp.example:correct horse\n",
            ),
        ],
    );

    // Without logging in, nobody relays through the smarthost.
    let reply = rcpt_reply(smarthost.smtp, "a@gw.example.local", "x@far.example");
    assert!(
        reply.starts_with("554 5.7.1 <x@far.example>: Relay access denied"),
        "{reply}"
    );

    // The smarthost does not know the gateway's user yet: the login fails
    // and the mail waits with the SASL reason.
    let id = telnet(gw.smtp, "alice@gw.example.local", "bob@far.example");
    let line = gw.wait_log_line(&[&format!("{id}: to=<bob@far.example>"), "status=deferred"]);
    let reason = format!(
        "SASL authentication failed; server smarthost.isp.example[{}] said: 535 5.7.8",
        ip(smarthost_ip)
    );
    assert!(line.contains(&reason), "{line}");
    assert!(line.contains("dsn=4.7.8"), "{line}");
    let listing = wait_listed(&gw, "SASL authentication failed");
    assert!(listing.contains(&id), "{listing}");
    smarthost.wait_log_line(&[
        "SASL PLAIN authentication failed",
        "sasl_username=gw@isp.example",
    ]);
    assert!(outside.messages().is_empty());

    // The smarthost's administrator adds the user; the queue is flushed.
    qctl_passwd(
        &smarthost.config,
        "gw@isp.example",
        "correct horse",
        "sha512",
    );
    // smtpd notices the changed table within a second or so.
    std::thread::sleep(Duration::from_millis(1500));
    let flush = gw.qctl(&["flush"]);
    assert!(
        flush.status.success(),
        "{}",
        String::from_utf8_lossy(&flush.stderr)
    );
    let got = outside.wait_messages(1, LONG);
    assert_eq!(
        got.len(),
        1,
        "gw:\n{}\nsmarthost:\n{}",
        gw.log(),
        smarthost.log()
    );
    assert_eq!(got[0].sender, "alice@gw.example.local");
    assert_eq!(got[0].recipients, ["bob@far.example"]);
    assert_eq!(got[0].peer.ip(), ip(smarthost_ip));
    assert!(got[0].data.contains("with ESMTPSA id"), "{}", got[0].data);
    let line = gw.wait_log_line(&[&format!("{id}: to=<bob@far.example>"), "status=sent"]);
    assert!(
        line.contains(&format!(
            "relay=smarthost.isp.example[{}]:25",
            ip(smarthost_ip)
        )),
        "{line}"
    );
    gw.wait_log_line(&[&format!(
        "Verified TLS connection established to smarthost.isp.example[{}]:25",
        ip(smarthost_ip)
    )]);
    smarthost.wait_log_line(&["sasl_method=PLAIN", "sasl_username=gw@isp.example"]);
    smarthost.wait_log_line(&["to=<bob@far.example>", "status=sent"]);
    wait_for(LONG, || {
        !String::from_utf8_lossy(&gw.qctl(&["list"]).stdout).contains(&id)
    });
}

// ---------------------------------------------------------------------------
// may and encrypt towards a server without STARTTLS
// ---------------------------------------------------------------------------

#[test]
fn may_sends_in_plaintext_to_a_server_without_starttls_and_encrypt_defers() {
    let (server_ip, may_ip, encrypt_ip) = (221, 222, 223);
    let server = Sink::start(ip(server_ip), 25);
    let config = |level: &str| {
        format!(
            "mynetworks = \"127.0.0.1/32\"\n\
             relayhost = \"[{}]\"\n\
             smtp_tls_security_level = \"{level}\"",
            ip(server_ip)
        )
    };
    let may = Instance::start_at(ip(may_ip), &config("may"), &[]);
    let id = telnet(may.smtp, "a@client.example", "plain@far.example");
    let got = server.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "{}", may.log());
    assert_eq!(got[0].recipients, ["plain@far.example"]);
    assert_eq!(got[0].peer.ip(), ip(may_ip));
    let line = may.wait_log_line(&[&format!("{id}: to=<plain@far.example>"), "status=sent"]);
    assert!(
        line.contains(&format!("relay={0}[{0}]:25", ip(server_ip))),
        "{line}"
    );
    assert!(
        !may.log().contains("TLS connection established"),
        "{}",
        may.log()
    );

    let encrypt = Instance::start_at(ip(encrypt_ip), &config("encrypt"), &[]);
    let id = telnet(encrypt.smtp, "a@client.example", "secret@far.example");
    let reason = format!(
        "TLS is required, but was not offered by host {0}[{0}]",
        ip(server_ip)
    );
    let line =
        encrypt.wait_log_line(&[&format!("{id}: to=<secret@far.example>"), "status=deferred"]);
    assert!(line.contains(&reason), "{line}");
    assert!(line.contains("dsn=4.7.4"), "{line}");
    let listing = wait_listed(&encrypt, &reason);
    assert!(listing.contains(&id), "{listing}");
    assert!(listing.contains("secret@far.example"), "{listing}");
    // Nothing went over the plaintext connection.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.messages().len(), 1);
}

// ---------------------------------------------------------------------------
// The example master.toml's submission and smtps services
// ---------------------------------------------------------------------------

/// A line-oriented SMTP client over a plain or TLS stream.
struct Smtp<S: Read + Write> {
    r: BufReader<S>,
}

impl<S: Read + Write> Smtp<S> {
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).expect("reply");
            assert!(n > 0, "connection closed after {all:?}");
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        let w = self.r.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        w.flush().unwrap();
        self.reply()
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// The TLS handshake on `sock`, verifying `host` against `ca`.
fn handshake(sock: TcpStream, ca: &Ca, host: &str) -> Smtp<Tls> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    Smtp {
        r: BufReader::new(tls),
    }
}

/// Over an established session: relay refused before AUTH, AUTH, relay
/// accepted and queued.
fn submit<S: Read + Write>(c: &mut Smtp<S>, rcpt: &str) {
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.contains("AUTH PLAIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<user@example.local>").starts_with("250 "));
    let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(reply.starts_with("554 5.7.1 "), "{reply}");
    assert!(c.cmd("RSET").starts_with("250 "));
    let reply = c.cmd(&format!(
        "AUTH PLAIN {}",
        postern_tests::auth_plain("user", "submit-pw")
    ));
    assert!(reply.starts_with("235 2.7.0"), "{reply}");
    assert!(c.cmd("MAIL FROM:<user@example.local>").starts_with("250 "));
    let reply = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(reply.starts_with("250 2.1.5"), "{reply}");
    assert!(c.cmd("DATA").starts_with("354 "));
    let reply = c.cmd("Subject: submitted\r\n\r\nhi\r\n.");
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let _ = c.cmd("QUIT");
}

#[test]
fn the_example_submission_and_smtps_services_work_once_switched_on() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let example = std::fs::read_to_string(root.join("master.toml")).unwrap();
    // What the comments say to do: remove the "#" before the settings.
    let mut text: String = example
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#', '=']) => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let (smtp, submission, smtps) = (free_port(), free_port(), free_port());
    let replace = |text: &mut String, from: &str, to: &str| {
        assert!(text.contains(from), "master.toml lacks {from:?}:\n{text}");
        *text = text.replace(from, to);
    };
    for (from, to) in [
        ("127.0.0.1:2525", format!("127.0.0.1:{smtp}")),
        ("127.0.0.1:2587", format!("127.0.0.1:{submission}")),
        ("127.0.0.1:2465", format!("127.0.0.1:{smtps}")),
        ("/var/spool/postern", "queue".into()),
        ("/var/log/postern.log", "maillog".into()),
        (
            "mail_owner = \"postern\"",
            format!("mail_owner = \"{}\"", postern_tests::TEST_MAIL_OWNER),
        ),
        ("/etc/postern/tls/cert.pem", "cert.pem".into()),
        ("/etc/postern/tls/key.pem", "key.pem".into()),
        ("/etc/postern/sasl_users", "sasl_users".into()),
    ] {
        replace(&mut text, from, &to);
    }
    // Submitted mail leaves through a sink, never for the real Internet.
    let outside = Sink::start(ip(231), 0);
    text = text.replace(
        "[main]\n",
        &format!(
            "[main]\nmyhostname = \"mail.example.local\"\nmynetworks = \"10.255.255.0/24\"\n\
             relayhost = \"[{}]:{}\"\n",
            outside.addr.ip(),
            outside.addr.port()
        ),
    );
    assert!(text.contains("name = \"submission\"") && text.contains("name = \"smtps\""));

    let smtp_addr: SocketAddr = format!("127.0.0.1:{smtp}").parse().unwrap();
    let inst = Instance::create(smtp_addr, &text);
    let ca = Ca::new("Submission Test CA");
    let (cert, key) = ca.issue("mail.example.local");
    std::fs::write(inst.dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(inst.dir.path().join("key.pem"), key).unwrap();
    std::fs::write(inst.dir.path().join("sasl_users"), "").unwrap();
    qctl_passwd(&inst.config, "user", "submit-pw", "sha512");
    let check = inst.master_command().arg("--check").output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let inst = inst.launch();

    // submission: nothing but STARTTLS before TLS, then AUTH, then relay.
    let sub: SocketAddr = format!("127.0.0.1:{submission}").parse().unwrap();
    let mut c = Smtp {
        r: BufReader::new(tcp(sub)),
    };
    assert!(c.reply().starts_with("220 "));
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    let reply = c.cmd("MAIL FROM:<user@example.local>");
    assert!(
        reply.starts_with("530 5.7.0 Must issue a STARTTLS command first"),
        "{reply}"
    );
    let reply = c.cmd(&format!(
        "AUTH PLAIN {}",
        postern_tests::auth_plain("user", "submit-pw")
    ));
    assert!(!reply.starts_with("235"), "{reply}");
    assert!(c.cmd("STARTTLS").starts_with("220 "));
    let mut c = handshake(c.r.into_inner(), &ca, "mail.example.local");
    submit(&mut c, "someone@far.example");
    inst.wait_log_line(&[
        "postern/submission/",
        "sasl_method=PLAIN",
        "sasl_username=user",
    ]);

    // smtps: TLS from the first byte.
    let mut c = handshake(
        tcp(format!("127.0.0.1:{smtps}").parse().unwrap()),
        &ca,
        "mail.example.local",
    );
    assert!(c.reply().starts_with("220 "));
    submit(&mut c, "other@far.example");
    inst.wait_log_line(&["postern/smtps/", "sasl_method=PLAIN", "sasl_username=user"]);

    let got = outside.wait_messages(2, LONG);
    assert_eq!(got.len(), 2, "{}", inst.log());
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.recipients.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, ["other@far.example", "someone@far.example"]);

    // The plain smtp service still relays nothing for strangers.
    let reply = rcpt_reply(inst.smtp, "a@client.example", "x@far.example");
    assert!(reply.contains("Relay access denied"), "{reply}");
}
