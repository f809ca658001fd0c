//! smtpd's checks of mail from outside mynetworks, end to end: a client on
//! 127.0.0.2 sends through the real daemons to a sink, with SPF, DKIM
//! and DMARC records served by the test DNS server on loopback. Each SPF
//! result reaches the Authentication-Results header and the log; forged
//! headers naming our authserv-id are gone; a python3-dkim signature
//! passes and a modified copy fails; DMARC p=reject and p=quarantine are
//! refused, held or tagged as configured; SPF failures are refused at
//! RCPT (`smtpd_spf_fail_action`, `reject_spf_fail`) or after DATA; and
//! mail a virtual or a local alias forwards outside carries an ARC set
//! that python3-dkim validates.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use postern_tests::dkim::{dkim_key, python_arc_verify, python_dkim_sign};
use postern_tests::dns::{DnsServer, Record};
use postern_tests::{Instance, Sink, SinkMessage, SmtpClient, arrived, free_port, wait_for};

const LONG: Duration = Duration::from_secs(40);
/// The client outside mynetworks.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Our authserv-id: the harness's myhostname.
const AUTHSERV_ID: &str = "mail.example.local";

/// SPF records for each result, the client being 127.0.0.2.
fn spf_records() -> Vec<Record> {
    vec![
        Record::txt("pass.test", "v=spf1 ip4:127.0.0.2 -all"),
        Record::txt("fail.test", "v=spf1 ip4:192.0.2.99 -all"),
        Record::txt("softfail.test", "v=spf1 ip4:192.0.2.99 ~all"),
        Record::txt("neutral.test", "v=spf1 ?all"),
        Record::txt("perm.test", "v=spf1 include: -all"),
        Record::unanswered("temp.test"),
        Record::txt("badhelo.test", "v=spf1 -all"),
    ]
}

/// An instance relaying example.net to `sink`, asking `dns`; `main` and
/// `services` are added to the config.
fn start(dns: &DnsServer, sink: &Sink, main: &str, services: &str) -> Instance {
    start_with_aliases(dns, sink, main, services, "")
}

fn start_with_aliases(
    dns: &DnsServer,
    sink: &Sink,
    main: &str,
    services: &str,
    aliases: &str,
) -> Instance {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, "");
    std::fs::write(inst.dir.path().join("aliases"), aliases).unwrap();
    let dir = inst.dir.path().display().to_string();
    inst.write_config(&Instance::standard_config(
        smtp,
        &format!(
            "mynetworks = \"127.0.0.1/32\"\n\
             relay_domains = \"example.net\"\n\
             transport_maps = \"inline:{{ example.net=smtp:[127.0.0.1]:{} }}\"\n\
             dns_servers = \"{}\"\n\
             smtpd_message_authentication_timeout = \"2s\"\n{}",
            sink.addr.port(),
            dns.addr,
            main.replace("{dir}", &dir)
        ),
        &services.replace("{dir}", &dir),
    ));
    inst.launch()
}

/// A second smtpd service on 127.0.0.1:`port` with these `options` (TOML
/// inline-table entries), and its address.
fn smtpd_service(name: &str, port: u16, options: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\ntype = \"inet\"\nlisten = \"127.0.0.1:{port}\"\n\
         command = \"smtpd\"\noptions = {{ {options} }}\n\n"
    )
}

/// Sends `message` from the client outside mynetworks (HELO
/// client.outside.test) to `smtp` and asserts that it was queued.
fn queued(smtp: SocketAddr, sender: &str, rcpt: &str, message: &[u8]) {
    let reply = send(smtp, OUTSIDE, "client.outside.test", sender, rcpt, message);
    assert!(
        reply.starts_with("250 2.0.0"),
        "{sender} to {rcpt}: {reply}"
    );
}

/// Sends `message` from `from` (HELO `helo`) to `smtp`; the reply to the
/// final dot, or to the first command that was refused.
fn send(
    smtp: SocketAddr,
    from: Ipv4Addr,
    helo: &str,
    sender: &str,
    rcpt: &str,
    message: &[u8],
) -> String {
    let (mut c, _) = SmtpClient::connect_from(from, smtp).unwrap();
    c.expect(&format!("EHLO {helo}"), "250");
    c.expect(&format!("MAIL FROM:<{sender}>"), "250");
    let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
    if !reply.starts_with("250") {
        let _ = c.cmd("QUIT");
        return reply;
    }
    c.expect("DATA", "354");
    c.send_raw(message).unwrap();
    let reply = c.cmd(".").unwrap();
    let _ = c.cmd("QUIT");
    reply
}

fn message(from: &str, subject: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "{extra_headers}From: <{from}>\r\nTo: <bob@example.net>\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@test>\r\n\r\nHello from {from}.\r\n"
    )
    .into_bytes()
}

/// The Authentication-Results fields of `data` naming `id`, unfolded.
fn auth_results(data: &str, id: &str) -> Vec<String> {
    let header = data.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = header.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .lines()
        .filter_map(|l| l.strip_prefix("Authentication-Results: "))
        .filter(|v| v.starts_with(&format!("{id};")))
        .map(str::to_string)
        .collect()
}

#[test]
fn each_spf_result_is_recorded_and_forged_results_are_removed() {
    let dns = DnsServer::start(spf_records());
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    let unchecked = free_port();
    let inst = start(
        &dns,
        &sink,
        "",
        &smtpd_service(
            "smtp_unchecked",
            unchecked,
            "smtpd_message_authentication = \"\"",
        ),
    );
    for (domain, want) in [
        ("pass.test", "pass"),
        ("fail.test", "fail"),
        ("softfail.test", "softfail"),
        ("neutral.test", "neutral"),
        ("none.test", "none"),
        ("perm.test", "permerror"),
        ("temp.test", "temperror"),
    ] {
        let sender = format!("alice@{domain}");
        let forged = format!(
            "Authentication-Results: {AUTHSERV_ID}; spf=pass smtp.mailfrom=forged@{domain}\r\n\
             Authentication-Results: other.test; dkim=pass header.d={domain}\r\n"
        );
        let reply = send(
            inst.smtp,
            OUTSIDE,
            "client.outside.test",
            &sender,
            "bob@example.net",
            &message(&sender, domain, &forged),
        );
        assert!(reply.starts_with("250 2.0.0"), "{domain}: {reply}");
        let m = arrived(&sink, domain, &inst);
        let ours = auth_results(&m.data, AUTHSERV_ID);
        assert_eq!(
            ours.len(),
            1,
            "{domain}: one of ours, the forged one gone:\n{}",
            m.data
        );
        assert!(
            ours[0].contains(&format!("spf={want} smtp.mailfrom={sender};")),
            "{domain}: {}",
            ours[0]
        );
        assert!(
            ours[0].contains("spf=none smtp.helo=client.outside.test;"),
            "{}",
            ours[0]
        );
        assert!(
            ours[0].contains("dkim=none;") && ours[0].contains("dmarc=none"),
            "{}",
            ours[0]
        );
        assert!(!m.data.contains("forged@"), "{}", m.data);
        assert!(
            m.data
                .contains("Authentication-Results: other.test; dkim=pass"),
            "another host's results stay: {}",
            m.data
        );
        // Below our Received, as a milter's header lands in Postfix.
        let received = m.data.find("Received: from client.outside.test").unwrap();
        let ar = m
            .data
            .find(&format!("Authentication-Results: {AUTHSERV_ID};"))
            .unwrap();
        assert!(received < ar, "{}", m.data);
        inst.wait_log_line(&[&format!(
            "Authentication-Results: {AUTHSERV_ID}; spf={want} smtp.mailfrom={sender}"
        )]);
    }

    // Not checked, mail from outside still loses what claims to be ours.
    let forged =
        format!("Authentication-Results: {AUTHSERV_ID}; dmarc=pass header.from=bank.test\r\n");
    let reply = send(
        format!("127.0.0.1:{unchecked}").parse().unwrap(),
        OUTSIDE,
        "client.outside.test",
        "alice@pass.test",
        "bob@example.net",
        &message("alice@pass.test", "unchecked", &forged),
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let m = arrived(&sink, "unchecked", &inst);
    assert!(auth_results(&m.data, AUTHSERV_ID).is_empty(), "{}", m.data);

    // Mail from mynetworks is not checked.
    let reply = send(
        inst.smtp,
        Ipv4Addr::LOCALHOST,
        "inside.test",
        "alice@fail.test",
        "bob@example.net",
        &message("alice@fail.test", "inside", ""),
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let m = arrived(&sink, "inside", &inst);
    assert!(auth_results(&m.data, AUTHSERV_ID).is_empty(), "{}", m.data);
}

#[test]
fn spf_failures_are_refused_at_rcpt_or_after_data_as_configured() {
    let dns = DnsServer::start(spf_records());
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    let (at_data, restriction, early) = (free_port(), free_port(), free_port());
    let inst = start(
        &dns,
        &sink,
        "smtpd_spf_fail_action = \"reject\"",
        &[
            smtpd_service(
                "smtp_data",
                at_data,
                "smtpd_spf_fail_action = \"reject_at_data\"",
            ),
            smtpd_service(
                "smtp_restriction",
                restriction,
                "smtpd_spf_fail_action = \"tag\", \
                 smtpd_recipient_restrictions = \"reject_spf_fail\"",
            ),
            smtpd_service(
                "smtp_early",
                early,
                "smtpd_spf_fail_action = \"tag\", smtpd_delay_reject = \"no\", \
                 smtpd_sender_restrictions = \"reject_spf_fail\"",
            ),
        ]
        .concat(),
    );
    let port = |p: u16| -> SocketAddr { format!("127.0.0.1:{p}").parse().unwrap() };
    let fail = message("alice@fail.test", "spf fail", "");

    // smtpd_spf_fail_action = reject: at RCPT.
    let reply = send(
        inst.smtp,
        OUTSIDE,
        "client.outside.test",
        "alice@fail.test",
        "bob@example.net",
        &fail,
    );
    assert!(
        reply.starts_with(
            "550 5.7.23 <alice@fail.test>: Sender address rejected: SPF fail - fail.test does not designate 127.0.0.2 as permitted sender"
        ),
        "{reply}"
    );
    inst.wait_log_line(&[
        "NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 550 5.7.23 <alice@fail.test>",
        "from=<alice@fail.test> to=<bob@example.net>",
    ]);
    let pass = message("alice@pass.test", "spf pass", "");
    queued(inst.smtp, "alice@pass.test", "bob@example.net", &pass);
    // A HELO identity that fails counts too.
    let reply = send(
        inst.smtp,
        OUTSIDE,
        "badhelo.test",
        "alice@pass.test",
        "bob@example.net",
        &pass,
    );
    assert!(
        reply.starts_with("550 5.7.23 <badhelo.test>: Helo command rejected: SPF fail"),
        "{reply}"
    );
    // softfail is not fail.
    let soft = message("alice@softfail.test", "spf softfail", "");
    queued(inst.smtp, "alice@softfail.test", "bob@example.net", &soft);
    // Clients in mynetworks are exempt.
    let reply = send(
        inst.smtp,
        Ipv4Addr::LOCALHOST,
        "client.outside.test",
        "alice@fail.test",
        "bob@example.net",
        &fail,
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");

    // reject_at_data: the RCPT passes, the message is refused.
    let reply = send(
        port(at_data),
        OUTSIDE,
        "client.outside.test",
        "alice@fail.test",
        "bob@example.net",
        &fail,
    );
    assert!(
        reply.starts_with("550 5.7.23 <alice@fail.test>: Sender address rejected: SPF fail"),
        "{reply}"
    );
    inst.wait_log_line(&["reject: END-OF-MESSAGE from unknown[127.0.0.2]: 550 5.7.23"]);

    // reject_spf_fail in smtpd_recipient_restrictions.
    let reply = send(
        port(restriction),
        OUTSIDE,
        "client.outside.test",
        "alice@fail.test",
        "bob@example.net",
        &fail,
    );
    assert!(
        reply.starts_with("550 5.7.23 <alice@fail.test>: Sender address rejected: SPF fail"),
        "{reply}"
    );
    let reply = send(
        port(restriction),
        OUTSIDE,
        "client.outside.test",
        "alice@neutral.test",
        "bob@example.net",
        &message("alice@neutral.test", "neutral", ""),
    );
    assert!(reply.starts_with("250 2.0.0"), "{reply}");

    // With smtpd_delay_reject = no, the sender restrictions at MAIL wait
    // for SPF.
    let (mut c, _) = SmtpClient::connect_from(OUTSIDE, port(early)).unwrap();
    c.expect("EHLO client.outside.test", "250");
    c.expect(
        "MAIL FROM:<alice@fail.test>",
        "550 5.7.23 <alice@fail.test>: Sender address rejected: SPF fail",
    );
    c.expect("MAIL FROM:<alice@pass.test>", "250");
    let _ = c.cmd("QUIT");

    // Nothing refused arrived.
    assert!(
        wait_for(LONG, || sink.messages().len() >= 4),
        "{}",
        inst.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let subjects: Vec<String> = sink
        .messages()
        .iter()
        .filter_map(|m| {
            m.data
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(
        subjects.iter().filter(|s| s.contains("spf fail")).count(),
        1,
        "only the one from mynetworks: {subjects:?}"
    );
}

/// DKIM and DMARC records: `signed.test` signs with `sel` and publishes
/// p=reject, `quar.test` p=quarantine; neither lets 127.0.0.2 send.
fn dmarc_records(dir: &Path) -> (std::path::PathBuf, Vec<Record>) {
    let (key, record) = dkim_key(dir);
    let records = vec![
        Record::txt("sel._domainkey.signed.test", &record),
        Record::txt("_dmarc.signed.test", "v=DMARC1; p=reject"),
        Record::txt("signed.test", "v=spf1 -all"),
        Record::txt("_dmarc.quar.test", "v=DMARC1; p=quarantine"),
        Record::txt("quar.test", "v=spf1 -all"),
    ];
    (key, records)
}

#[test]
fn dkim_results_and_dmarc_policies() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    let tmp = tempfile::tempdir().unwrap();
    let (key, records) = dmarc_records(tmp.path());
    let dns = DnsServer::start(records);
    let tag = free_port();
    let inst = start(
        &dns,
        &sink,
        "smtpd_dmarc_reject_action = \"reject\"\nsmtpd_dmarc_quarantine_action = \"hold\"",
        &smtpd_service(
            "smtp_tag",
            tag,
            "smtpd_dmarc_reject_action = \"tag\", smtpd_dmarc_quarantine_action = \"tag\"",
        ),
    );
    let tag: SocketAddr = format!("127.0.0.1:{tag}").parse().unwrap();
    let signed = python_dkim_sign(
        &message("alice@signed.test", "signed", ""),
        &key,
        "sel",
        "signed.test",
    );

    // Signed: DKIM passes and aligns, so DMARC passes although SPF fails.
    queued(inst.smtp, "alice@signed.test", "bob@example.net", &signed);
    let m = arrived(&sink, "signed", &inst);
    let ours = auth_results(&m.data, AUTHSERV_ID);
    assert_eq!(ours.len(), 1, "{}", m.data);
    assert!(
        ours[0].contains("spf=fail smtp.mailfrom=alice@signed.test;"),
        "{}",
        ours[0]
    );
    assert!(
        ours[0].contains("dkim=pass header.d=signed.test header.s=sel"),
        "{}",
        ours[0]
    );
    assert!(
        ours[0].contains("dmarc=pass (p=reject) header.from=signed.test"),
        "{}",
        ours[0]
    );

    // Modified in transit: DKIM fails, and DMARC's p=reject refuses it.
    let modified = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Hello from", "Goodbye from")
        .replace("Subject: signed", "Subject: modified");
    let reply = send(
        inst.smtp,
        OUTSIDE,
        "client.outside.test",
        "alice@signed.test",
        "bob@example.net",
        modified.as_bytes(),
    );
    assert!(
        reply.starts_with("550 5.7.1 rejected by DMARC policy for signed.test"),
        "{reply}"
    );
    inst.wait_log_line(&[
        "reject: END-OF-MESSAGE from unknown[127.0.0.2]: 550 5.7.1 rejected by DMARC policy for signed.test",
    ]);
    inst.wait_log_line(&["dkim=fail", "header.d=signed.test", "dmarc=fail (p=reject)"]);

    // Tagged only, on the service that says so.
    let modified = modified.replace("Subject: modified", "Subject: tagged");
    queued(
        tag,
        "alice@signed.test",
        "bob@example.net",
        modified.as_bytes(),
    );
    let m = arrived(&sink, "tagged", &inst);
    let ours = auth_results(&m.data, AUTHSERV_ID);
    assert!(ours[0].contains("dkim=fail"), "{}", ours[0]);
    assert!(
        ours[0].contains("dmarc=fail (p=reject) header.from=signed.test"),
        "{}",
        ours[0]
    );

    // p=quarantine: held.
    let quar = message("alice@quar.test", "quarantined", "");
    queued(inst.smtp, "alice@quar.test", "bob@example.net", &quar);
    inst.wait_log_line(&[
        "hold: END-OF-MESSAGE from unknown[127.0.0.2]: DMARC policy quarantine for quar.test",
    ]);
    assert!(
        wait_for(LONG, || {
            let out = inst.qctl(&["--json", "list"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            text.contains("alice@quar.test") && text.contains("\"hold\"")
        }),
        "{}",
        String::from_utf8_lossy(&inst.qctl(&["--json", "list"]).stdout)
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !sink
            .messages()
            .iter()
            .any(|m| m.data.contains("Subject: quarantined")),
        "held mail is not delivered"
    );
}

#[test]
fn mail_forwarded_outside_is_arc_sealed() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    let tmp = tempfile::tempdir().unwrap();
    let (key, record) = dkim_key(tmp.path());
    let mut records = spf_records();
    records.push(Record::txt("arc._domainkey.fwd.test", &record));
    let dns = DnsServer::start(records);
    // smtpd runs as mail_owner and reads the key.
    let _ = std::process::Command::new("chown")
        .arg(postern_tests::TEST_MAIL_OWNER)
        .arg(&key)
        .status();
    let inst = start_with_aliases(
        &dns,
        &sink,
        &format!(
            "dkim_key_table = \"inline:{{ fwd=fwd.test:arc:{} }}\"\n\
             arc_sealing_key = \"fwd\"\n\
             virtual_alias_domains = \"alias.test\"\n\
             virtual_alias_maps = \"inline:{{ fwd@alias.test=bob@example.net }}\"",
            key.display()
        ),
        "",
        "fwd2: bob@example.net\n",
    );

    let sealed_ok = |m: &SinkMessage| {
        assert!(
            m.data.starts_with("ARC-Seal: i=1; a=rsa-sha256;")
                || m.data.contains("\r\nARC-Seal: i=1;"),
            "{}",
            m.data
        );
        assert!(m.data.contains("cv=none"), "{}", m.data);
        assert!(
            m.data
                .contains(&format!("ARC-Authentication-Results: i=1; {AUTHSERV_ID};")),
            "{}",
            m.data
        );
        assert_eq!(
            python_arc_verify(&m.data, &record, tmp.path()),
            "pass",
            "{}",
            m.data
        );
    };

    // A virtual alias: sealed by smtpd.
    let msg = message("alice@pass.test", "virtual", "");
    queued(inst.smtp, "alice@pass.test", "fwd@alias.test", &msg);
    let m = arrived(&sink, "virtual", &inst);
    sealed_ok(&m);
    assert!(
        m.data.contains("spf=pass smtp.mailfrom=alice@pass.test"),
        "{}",
        m.data
    );

    // A local alias: sealed by local-delivery as it forwards.
    let msg = message("alice@pass.test", "local alias", "");
    queued(
        inst.smtp,
        "alice@pass.test",
        "fwd2@mail.example.local",
        &msg,
    );
    let m = arrived(&sink, "local alias", &inst);
    sealed_ok(&m);
    assert!(
        m.data.contains("Delivered-To: fwd2@mail.example.local"),
        "{}",
        m.data
    );
    inst.wait_log_line(&["ARC-Seal field added (s=arc, d=fwd.test)"]);

    // Relayed, not forwarded; and mail from mynetworks is not checked.
    let msg = message("alice@pass.test", "relayed", "");
    send(
        inst.smtp,
        OUTSIDE,
        "client.outside.test",
        "alice@pass.test",
        "bob@example.net",
        &msg,
    );
    let m = arrived(&sink, "relayed", &inst);
    assert!(!m.data.contains("ARC-Seal"), "{}", m.data);
    let msg = message("alice@pass.test", "inside", "");
    send(
        inst.smtp,
        Ipv4Addr::LOCALHOST,
        "inside.test",
        "alice@pass.test",
        "fwd@alias.test",
        &msg,
    );
    let m = arrived(&sink, "inside", &inst);
    assert!(!m.data.contains("ARC-Seal"), "{}", m.data);
}

/// A setting that needs a check the method list leaves out is refused at
/// start with its file, line and name, not ignored.
#[test]
fn settings_that_need_a_missing_method_stop_the_start() {
    for (extra, param) in [
        (
            "smtpd_message_authentication = \"spf, dmarc\"",
            "smtpd_message_authentication",
        ),
        (
            "smtpd_message_authentication = \"dkim\"\nsmtpd_recipient_restrictions = \"reject_spf_fail\"",
            "smtpd_recipient_restrictions",
        ),
        (
            "smtpd_message_authentication = \"\"\nsmtpd_spf_fail_action = \"reject\"",
            "smtpd_spf_fail_action",
        ),
        (
            "smtpd_message_authentication = \"spf, dkim\"\nsmtpd_dmarc_reject_action = \"reject\"",
            "smtpd_dmarc_reject_action",
        ),
    ] {
        let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let inst = Instance::create(smtp, &Instance::standard_config(smtp, extra, ""));
        let out = std::process::Command::new(postern_tests::bin_dir().join("master"))
            .arg("--config")
            .arg(inst.dir.path().join("master.toml"))
            .arg("--check")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}: accepted");
        assert!(
            err.contains("master.toml:") && err.contains(param),
            "{extra}: {err}"
        );
    }
}
