//! One classifier of addresses, end to end: smtpd's RCPT answer and the
//! delivery agree for every form a domain list takes (`relay_domains` as
//! a file, as a table and with `.parent` entries, a `.parent` entry in
//! `mydestination`), because smtpd and qmgr ask the same router. A list
//! the router cannot use stops the master at start.
//!
//! Each test runs one instance on its own 127.0.0.x address at port 25
//! (root, as the other integration tests); relayed mail goes through
//! `relayhost` to a [`Sink`], local mail through an alias to a file in
//! the instance's directory. The SMTP client connects from another
//! address, outside `mynetworks`, so relaying is judged by
//! `reject_unauth_destination`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use postern_tests::{Instance, Sink, SmtpClient, wait_for};

const LONG: Duration = Duration::from_secs(40);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// The outside client every test connects from.
const OUTSIDE: u8 = 189;

/// `[main]` lines every test shares: mail to other domains goes to the
/// sink, only the instance itself is in mynetworks, and relaying is
/// refused outright (5xx) to everyone else.
fn main(server: u8, sink: &Sink, extra: &str) -> String {
    format!(
        "myhostname = \"mx.example.local\"\n\
         mynetworks = \"{}/32\"\n\
         relayhost = \"[127.0.0.1]:{}\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, reject_unauth_destination\"\n\
         alias_maps = \"hash:{{dir}}/aliases\"\n{extra}",
        ip(server),
        sink.addr.port()
    )
}

fn start(server: u8, main_extra: &str, files: &[(&str, &str)]) -> Instance {
    let mut all = vec![("aliases", "user: {dir}/mail/user\n"), ("mail/", "")];
    all.extend_from_slice(files);
    Instance::start_at(ip(server), main_extra, &all)
}

fn connect(to: SocketAddr) -> SmtpClient {
    let (c, greeting) = SmtpClient::connect_from(ip(OUTSIDE), to)
        .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    assert!(greeting.starts_with("220 "), "{greeting}");
    c
}

/// The reply to RCPT TO:<rcpt> from the outside client.
fn rcpt_reply(inst: &Instance, rcpt: &str) -> String {
    let mut c = connect(inst.smtp);
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<sender@example.org>", "250");
    let reply = c.cmd(&format!("RCPT TO:<{rcpt}>")).unwrap();
    let _ = c.cmd("QUIT");
    reply.trim_end().to_string()
}

/// Sends one message to `rcpt` from the outside client; RCPT must be
/// accepted and the message queued.
fn send(inst: &Instance, rcpt: &str) {
    let mut c = connect(inst.smtp);
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<sender@example.org>", "250");
    c.expect(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5 Ok");
    c.expect("DATA", "354");
    c.send_raw(format!("Subject: to {rcpt}\r\n\r\nhello\r\n.\r\n").as_bytes())
        .unwrap();
    let queued = c.read_reply().unwrap();
    assert!(queued.starts_with("250 2.0.0 Ok: queued as "), "{queued}");
    c.expect("QUIT", "221");
}

/// Waits until the sink holds a message for `rcpt`.
fn wait_relayed(inst: &Instance, sink: &Sink, rcpt: &str) {
    let arrived = |s: &Sink| {
        s.messages()
            .iter()
            .any(|m| m.recipients.iter().any(|r| r == rcpt))
    };
    wait_for(LONG, || arrived(sink));
    assert!(
        arrived(sink),
        "no message for {rcpt} at the sink: {:?}\nlog:\n{}",
        sink.messages()
            .iter()
            .map(|m| &m.recipients)
            .collect::<Vec<_>>(),
        inst.log()
    );
    inst.wait_log_line(&[&format!("to=<{rcpt}>"), "relay=127.0.0.1", "status=sent"]);
}

/// Waits until the alias file of `user` holds mail for `rcpt`.
fn wait_local(inst: &Instance, rcpt: &str) {
    let path = inst.dir.path().join("mail").join("user");
    let needle = format!("Delivered-To: {rcpt}");
    let has = || std::fs::read_to_string(&path).is_ok_and(|t| t.contains(&needle));
    wait_for(LONG, has);
    assert!(has(), "no local delivery for {rcpt}\nlog:\n{}", inst.log());
}

fn relay_denied(rcpt: &str) -> String {
    format!("554 5.7.1 <{rcpt}>: Relay access denied")
}

/// The opening bug of issue 10: relay_domains names a file of domains.
/// smtpd accepts what is in it, qmgr relays it, anything else is refused
/// at RCPT; an edit of the file applies to both without a reload.
#[test]
fn relay_domains_as_a_file_relays_what_it_lists_and_follows_its_edits() {
    let (server, sink) = (181, Sink::start(Ipv4Addr::LOCALHOST, 0));
    let inst = start(
        server,
        &main(server, &sink, "relay_domains = \"{dir}/relay_domains\""),
        &[(
            "relay_domains",
            "# our customers\nrelay.example, other.example\n",
        )],
    );
    send(&inst, "joe@relay.example");
    wait_relayed(&inst, &sink, "joe@relay.example");
    // Subdomains too: parent_domain_matches_subdomains names relay_domains.
    send(&inst, "ann@sub.other.example");
    wait_relayed(&inst, &sink, "ann@sub.other.example");
    send(&inst, "user@mx.example.local");
    wait_local(&inst, "user@mx.example.local");
    assert_eq!(
        rcpt_reply(&inst, "joe@unlisted.example"),
        relay_denied("joe@unlisted.example")
    );

    // Replaced as an editor does; every process checks once a second.
    let tmp = inst.dir.path().join("relay_domains.new");
    std::fs::write(&tmp, "later.example\n").unwrap();
    std::fs::rename(&tmp, inst.dir.path().join("relay_domains")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    send(&inst, "x@later.example");
    wait_relayed(&inst, &sink, "x@later.example");
    assert_eq!(
        rcpt_reply(&inst, "joe@relay.example"),
        relay_denied("joe@relay.example")
    );
}

#[test]
fn relay_domains_as_a_table_relays_its_domains_and_their_subdomains() {
    let (server, sink) = (182, Sink::start(Ipv4Addr::LOCALHOST, 0));
    let inst = start(
        server,
        &main(server, &sink, "relay_domains = \"hash:{dir}/relays\""),
        &[("relays", "relay.example OK\n")],
    );
    send(&inst, "joe@relay.example");
    wait_relayed(&inst, &sink, "joe@relay.example");
    send(&inst, "ann@deep.sub.relay.example");
    wait_relayed(&inst, &sink, "ann@deep.sub.relay.example");
    assert_eq!(
        rcpt_reply(&inst, "joe@notrelay.example"),
        relay_denied("joe@notrelay.example")
    );
}

#[test]
fn relay_domains_with_parent_entries_relay_subdomains_only() {
    let (server, sink) = (183, Sink::start(Ipv4Addr::LOCALHOST, 0));
    let inst = start(
        server,
        &main(
            server,
            &sink,
            "relay_domains = \"!.bad.customers.example, .customers.example\"",
        ),
        &[],
    );
    send(&inst, "joe@a.customers.example");
    wait_relayed(&inst, &sink, "joe@a.customers.example");
    for refused in ["joe@customers.example", "joe@x.bad.customers.example"] {
        assert_eq!(rcpt_reply(&inst, refused), relay_denied(refused));
    }
}

#[test]
fn a_parent_entry_in_mydestination_delivers_subdomains_here() {
    let (server, sink) = (184, Sink::start(Ipv4Addr::LOCALHOST, 0));
    let inst = start(
        server,
        &main(
            server,
            &sink,
            "mydestination = \"$myhostname, localhost, .example.com\"",
        ),
        &[],
    );
    send(&inst, "user@host.example.com");
    wait_local(&inst, "user@host.example.com");
    // Local recipients are checked against the local tables at RCPT.
    let unknown = "no-such-user-postern@host.example.com";
    assert_eq!(
        rcpt_reply(&inst, unknown),
        format!(
            "550 5.1.1 <{unknown}>: Recipient address rejected: User unknown in local \
             recipient table"
        )
    );
    // The parent itself is not listed: not ours, and no relay for outsiders.
    assert_eq!(
        rcpt_reply(&inst, "user@example.com"),
        relay_denied("user@example.com")
    );
    assert!(sink.messages().is_empty(), "{:?}", sink.messages());
}

/// What the router cannot use is a start-up error that names the file,
/// line and parameter, before anything is bound; never a surprise at DATA.
#[test]
fn an_unusable_domain_list_stops_the_master_at_start() {
    let smtp = SocketAddr::from((ip(185), 25));
    for (value, files, why) in [
        ("{dir}/missing", vec![], "cannot read the list file"),
        (
            "{dir}/relays",
            vec![("relays", "ok.example\nnosuch:table\n")],
            "relays:2: unsupported dictionary type \"nosuch\"",
        ),
    ] {
        let inst = Instance::create(smtp, "");
        let dir = inst.dir.path().display().to_string();
        for (name, text) in files {
            std::fs::write(inst.dir.path().join(name), text).unwrap();
        }
        let config = Instance::standard_config(
            smtp,
            &format!(
                "inet_interfaces = \"{}\"\nrelay_domains = \"{}\"",
                ip(185),
                value.replace("{dir}", &dir)
            ),
            "",
        );
        inst.write_config(&config);
        let line = config
            .lines()
            .position(|l| l.starts_with("relay_domains"))
            .unwrap()
            + 1;
        let status = inst.master_command().status().unwrap();
        let stderr = inst.stderr();
        assert!(!status.success(), "the master started: {stderr}");
        let location = format!(
            "{}:{line}: parameter \"relay_domains\": ",
            inst.config.display()
        );
        assert!(
            stderr.contains(&location) && stderr.contains(why),
            "want {location:?} and {why:?} in: {stderr}"
        );
        assert!(
            std::net::TcpStream::connect(smtp).is_err(),
            "smtp was bound before the check"
        );
        assert!(
            !inst.queue_directory().join("private").exists(),
            "unix services were bound before the check"
        );
    }
}
