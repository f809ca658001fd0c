//! smtp-client: the real daemon, started by the master, driven the way
//! qmgr drives it (Delivery requests on `private/smtp`), delivering to fake
//! SMTP servers on 127.0.0.x that record what they receive, with next hops
//! resolved through the test DNS server.
//!
//! Only the smtp-client service runs, so these tests do not depend on the
//! other daemons.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_ipc::delivery::{
    DeliveryRecipient, DeliveryReply, DeliveryRequest, DeliveryStatus, RecipientResult,
};
use postern_tests::Instance;
use postern_tests::agent;
use postern_tests::dns::{DnsServer, Record};

// ---------------------------------------------------------------------------
// A fake SMTP server
// ---------------------------------------------------------------------------

/// How a fake server answers.
#[derive(Clone, Debug)]
struct Script {
    greeting: String,
    /// Refuse EHLO with 502, so the client must fall back to HELO.
    no_ehlo: bool,
    pipelining: bool,
    size: Option<u64>,
    mail: String,
    /// Replies to RCPT TO by address; others get 250.
    rcpt: HashMap<String, String>,
    data: String,
    dot: String,
    /// Close the connection after the reply to the final dot.
    close_after_dot: bool,
    /// Accept the connection and never say anything.
    silent: bool,
    /// With PIPELINING, answer whenever no more input is buffered instead
    /// of waiting for DATA.
    lenient_pipelining: bool,
    /// Hang up without a word on receiving this verb.
    hang_up_on: Option<&'static str>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            greeting: "220 fake.test ESMTP".into(),
            no_ehlo: false,
            pipelining: false,
            size: None,
            mail: "250 2.1.0 Ok".into(),
            rcpt: HashMap::new(),
            data: "354 End data with <CR><LF>.<CR><LF>".into(),
            dot: "250 2.0.0 Ok: queued as FAKE1".into(),
            close_after_dot: false,
            silent: false,
            lenient_pipelining: false,
            hang_up_on: None,
        }
    }
}

/// What one SMTP session brought.
#[derive(Clone, Debug, Default)]
struct Transcript {
    peer: Option<SocketAddr>,
    /// Command lines, without CRLF.
    commands: Vec<String>,
    /// The DATA content exactly as sent, dot-stuffing and final dot included.
    data: Vec<u8>,
    /// With PIPELINING: MAIL, RCPT and DATA all arrived before any reply.
    pipelined: bool,
}

#[derive(Debug)]
struct FakeSmtp {
    addr: SocketAddr,
    sessions: Arc<Mutex<Vec<Transcript>>>,
}

impl FakeSmtp {
    /// Serves `script` on `ip` at `port` (0: any free port).
    fn start(ip: Ipv4Addr, port: u16, script: Script) -> FakeSmtp {
        let listener = TcpListener::bind((ip, port)).expect("bind fake SMTP server");
        let addr = listener.local_addr().unwrap();
        let sessions = postern_tests::serve_sessions(listener, move |stream| {
            let mut t = Transcript {
                peer: stream.peer_addr().ok(),
                ..Default::default()
            };
            let _ = serve(stream, &script, &mut t);
            t
        });
        FakeSmtp { addr, sessions }
    }

    fn sessions(&self) -> Vec<Transcript> {
        self.sessions.lock().unwrap().clone()
    }

    /// Waits briefly for the session thread to record (it does after the
    /// client's QUIT or close).
    fn wait_sessions(&self, n: usize) -> Vec<Transcript> {
        postern_tests::wait_for(Duration::from_secs(5), || self.sessions().len() >= n);
        self.sessions()
    }
}

/// One SMTP session by `script`.
fn serve(stream: TcpStream, script: &Script, t: &mut Transcript) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let say = |w: &mut TcpStream, reply: &str| w.write_all(format!("{reply}\r\n").as_bytes());
    if script.silent {
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
        return Ok(());
    }
    say(&mut w, &script.greeting)?;
    if !script.greeting.starts_with('2') {
        // Wait for the client to hang up.
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
        return Ok(());
    }
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end_matches(['\r', '\n']).to_string();
        t.commands.push(cmd.clone());
        let verb = cmd
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if script.hang_up_on == Some(verb.as_str()) {
            return Ok(());
        }
        if script.pipelining && verb == "MAIL" {
            // Read up to DATA before answering anything (a client that
            // waits for the MAIL reply instead would stall here), or, in
            // the lenient mode, answer whenever the input runs dry, as
            // real servers do.
            let mut batch = vec![cmd];
            let mut answered = 0;
            while !batch.last().unwrap().eq_ignore_ascii_case("DATA") {
                if script.lenient_pipelining && r.buffer().is_empty() {
                    for c in &batch[answered..] {
                        say(&mut w, &answer(script, c))?;
                    }
                    answered = batch.len();
                }
                line.clear();
                if r.read_line(&mut line)? == 0 {
                    return Ok(());
                }
                let c = line.trim_end_matches(['\r', '\n']).to_string();
                t.commands.push(c.clone());
                batch.push(c);
            }
            t.pipelined = answered == 0;
            for c in &batch[answered..] {
                say(&mut w, &answer(script, c))?;
            }
            if !script.data.starts_with("354") {
                continue;
            }
            receive_data(&mut r, t)?;
            say(&mut w, &script.dot)?;
            if script.close_after_dot {
                return Ok(());
            }
            continue;
        }
        let reply = answer(script, &cmd);
        say(&mut w, &reply)?;
        match verb.as_str() {
            "QUIT" => return Ok(()),
            "DATA" if reply.starts_with("354") => {
                receive_data(&mut r, t)?;
                say(&mut w, &script.dot)?;
                if script.close_after_dot {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
}

fn answer(script: &Script, cmd: &str) -> String {
    let upper = cmd.to_ascii_uppercase();
    if upper.starts_with("EHLO") {
        if script.no_ehlo {
            return "502 5.5.2 Error: command not recognized".into();
        }
        let mut lines = vec!["fake.test".to_string()];
        if script.pipelining {
            lines.push("PIPELINING".into());
        }
        if let Some(n) = script.size {
            lines.push(format!("SIZE {n}"));
        }
        lines.push("8BITMIME".into());
        return postern_tests::reply_250(&lines);
    }
    if upper.starts_with("HELO") {
        return "250 fake.test".into();
    }
    if upper.starts_with("MAIL FROM:") {
        return script.mail.clone();
    }
    if let Some(rest) = upper.strip_prefix("RCPT TO:<") {
        let addr = rest.split('>').next().unwrap_or("").to_ascii_lowercase();
        return script
            .rcpt
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| "250 2.1.5 Ok".into());
    }
    match upper.as_str() {
        "DATA" => script.data.clone(),
        "QUIT" => "221 2.0.0 Bye".into(),
        "RSET" => "250 2.0.0 Ok".into(),
        _ => "502 5.5.2 Error: command not recognized".into(),
    }
}

/// Reads DATA content through the final `.` line.
fn receive_data(r: &mut BufReader<TcpStream>, t: &mut Transcript) -> std::io::Result<()> {
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        t.data.extend_from_slice(&line);
        if line == b".\r\n" {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------
// Postern with only smtp-client, and qmgr's side of the delivery protocol
// ---------------------------------------------------------------------------

/// A request for `rcpts` from sender@origin.test to `nexthop`.
fn request(nexthop: &str, rcpts: &[&str], size: u64) -> DeliveryRequest {
    DeliveryRequest {
        queue_id: "4ABCDEF".parse().unwrap(),
        sender: "sender@origin.test".into(),
        recipients: rcpts
            .iter()
            .enumerate()
            .map(|(i, a)| DeliveryRecipient {
                index: i + 10,
                address: a.to_string(),
                ..Default::default()
            })
            .collect(),
        transport: "smtp".into(),
        nexthop: nexthop.into(),
        size,
        ..Default::default()
    }
}

/// Turns the connection cache off, so each delivery looks up and connects.
const NO_CACHE: &str = r#"smtp_connection_cache_on_demand = "no""#;

const MESSAGE: &[u8] = b"Subject: test\r\n\r\nhello\r\n";

/// Acts as qmgr: one request, its body in `chunks`, End; the reply.
fn deliver(inst: &Instance, req: DeliveryRequest, chunks: &[&[u8]]) -> DeliveryReply {
    agent::deliver(inst, "smtp", req, chunks)
}

/// [`deliver`] of [`MESSAGE`] (said to be 20 bytes) to `rcpts`.
fn send(inst: &Instance, nexthop: &str, rcpts: &[&str]) -> DeliveryReply {
    deliver(inst, request(nexthop, rcpts, 20), &[MESSAGE])
}

/// The first result of `reply`, asserted to have `status`.
fn first(reply: &DeliveryReply, status: DeliveryStatus) -> &RecipientResult {
    let r = &reply.results[0];
    assert_eq!(r.status, status, "{r:?}");
    r
}

/// Asserts a result's status, enhanced status code and text.
fn assert_result(r: &RecipientResult, status: DeliveryStatus, dsn: &str, detail: &str) {
    assert_eq!(
        (r.status, r.dsn.to_string().as_str()),
        (status, dsn),
        "{r:?}"
    );
    assert_eq!(r.detail, detail);
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// One fake server on 127.0.0.`last`, reached by its address, and Postern
/// with `main_extra` and a DNS server without records.
struct Direct {
    server: FakeSmtp,
    /// `[127.0.0.N]:port`.
    nexthop: String,
    inst: Instance,
    _dns: DnsServer,
}

fn direct(last: u8, script: Script, main_extra: &str) -> Direct {
    let server = FakeSmtp::start(ip(last), 0, script);
    let nexthop = format!("[{}]:{}", ip(last), server.addr.port());
    let dns = DnsServer::start(vec![]);
    let inst = agent::start_smtp_client_only(&dns, main_extra);
    Direct {
        server,
        nexthop,
        inst,
        _dns: dns,
    }
}

/// MX records of `domain` in this order, `(preference, host, address)`,
/// and the hosts' A records.
fn mx(domain: &str, hosts: &[(u16, &str, Ipv4Addr)]) -> Vec<Record> {
    let mut records: Vec<Record> = hosts
        .iter()
        .map(|(pref, host, _)| Record::mx(domain, *pref, host))
        .collect();
    records.extend(hosts.iter().map(|(_, host, addr)| Record::a(host, *addr)));
    records
}

/// Two fake servers on the same port (the port comes from the next hop).
fn pair(a: Ipv4Addr, sa: Script, b: Ipv4Addr, sb: Script) -> (FakeSmtp, FakeSmtp) {
    for _ in 0..20 {
        let first = FakeSmtp::start(a, 0, sa.clone());
        if TcpListener::bind((b, first.addr.port())).is_ok() {
            let second = FakeSmtp::start(b, first.addr.port(), sb);
            return (first, second);
        }
    }
    panic!("no common free port on {a} and {b}");
}

/// Two fake servers on one port, MX hosts `(preference, name before the
/// domain, 127.0.0.N)` of `domain` (the MX records in this order), the
/// first by `script`, the second by the default one; and Postern with
/// `main_extra`.
struct TwoMx {
    a: FakeSmtp,
    b: FakeSmtp,
    port: u16,
    /// `domain:port`.
    nexthop: String,
    inst: Instance,
    dns: DnsServer,
}

fn two_mx(domain: &str, hosts: [(u16, &str, u8); 2], script: Script, main_extra: &str) -> TwoMx {
    let [a, b] = hosts;
    let (sa, sb) = pair(ip(a.2), script, ip(b.2), Script::default());
    let port = sa.addr.port();
    let names = hosts.map(|(_, name, _)| format!("{name}.{domain}"));
    let dns = DnsServer::start(mx(
        domain,
        &[(a.0, &names[0], ip(a.2)), (b.0, &names[1], ip(b.2))],
    ));
    let inst = agent::start_smtp_client_only(&dns, main_extra);
    TwoMx {
        a: sa,
        b: sb,
        port,
        nexthop: format!("{domain}:{port}"),
        inst,
        dns,
    }
}

/// A free port on `ip` with nothing listening (bound and released).
fn closed_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A script whose greeting is `greeting`.
fn greeting(greeting: &str) -> Script {
    Script {
        greeting: greeting.into(),
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn bracketed_nexthop_delivers_directly_and_dot_stuffs_the_body() {
    let d = direct(2, Script::default(), "");
    let port = d.server.addr.port();
    // Lines starting with dots, split across chunks mid-line, a bare LF,
    // and no final newline.
    let chunks: [&[u8]; 3] = [
        b"Subject: dots\r\n\r\n.hidden\r\n..two\r",
        b"\n.",
        b"\nlast\nend",
    ];
    let size = chunks.iter().map(|c| c.len() as u64).sum();
    let reply = deliver(
        &d.inst,
        request(&d.nexthop, &["rcpt@remote.test"], size),
        &chunks,
    );
    let r = &reply.results[0];
    assert_eq!(r.index, 10);
    assert_result(
        r,
        DeliveryStatus::Sent,
        "2.0.0",
        "250 2.0.0 Ok: queued as FAKE1",
    );
    assert_eq!(r.relay.to_string(), format!("127.0.0.2[127.0.0.2]:{port}"));
    assert!(r.connect_secs >= 0.0 && r.transmit_secs >= 0.0);

    let t = &d.server.wait_sessions(1)[0];
    assert_eq!(
        t.commands,
        [
            "EHLO mail.example.local",
            "MAIL FROM:<sender@origin.test>",
            "RCPT TO:<rcpt@remote.test>",
            "DATA",
            "QUIT"
        ]
    );
    assert_eq!(
        String::from_utf8_lossy(&t.data),
        "Subject: dots\r\n\r\n..hidden\r\n...two\r\n..\r\nlast\r\nend\r\n.\r\n"
    );
}

#[test]
fn mx_hosts_are_tried_by_preference_and_a_refusing_one_is_skipped() {
    let hosts = [(20, "mx2", 4), (10, "mx1", 3)];
    let m = two_mx("pref.test", hosts, Script::default(), NO_CACHE);
    let (mx2, mx1, port) = (&m.a, &m.b, m.port);
    for _ in 0..3 {
        let reply = send(&m.inst, &m.nexthop, &["a@pref.test"]);
        let r = first(&reply, DeliveryStatus::Sent);
        assert_eq!(
            r.relay.to_string(),
            format!("mx1.pref.test[127.0.0.3]:{port}")
        );
    }
    assert_eq!(mx1.wait_sessions(3).len(), 3);
    assert!(mx2.sessions().is_empty());

    // The best MX host now refuses connections (nothing listens on
    // 127.0.0.5): the next one gets the mail.
    m.dns.set_records(mx(
        "pref.test",
        &[(10, "mx1.pref.test", ip(5)), (20, "mx2.pref.test", ip(4))],
    ));
    std::thread::sleep(Duration::from_millis(1100)); // the resolver's cache (TTL 1)
    let reply = send(&m.inst, &m.nexthop, &["a@pref.test"]);
    let r = first(&reply, DeliveryStatus::Sent);
    assert_eq!(
        r.relay.to_string(),
        format!("mx2.pref.test[127.0.0.4]:{port}")
    );
    assert_eq!(mx2.wait_sessions(1).len(), 1);
}

#[test]
fn equal_preference_mx_hosts_share_the_mail() {
    // Every delivery does its own MX lookup and connection.
    let hosts = [(10, "a", 6), (10, "b", 7)];
    let m = two_mx("share.test", hosts, Script::default(), NO_CACHE);
    let (a, b) = (&m.a, &m.b);
    for _ in 0..20 {
        first(
            &send(&m.inst, &m.nexthop, &["x@share.test"]),
            DeliveryStatus::Sent,
        );
    }
    postern_tests::wait_for(Duration::from_secs(5), || {
        a.sessions().len() + b.sessions().len() == 20
    });
    let (na, nb) = (a.sessions().len(), b.sessions().len());
    assert_eq!(na + nb, 20);
    assert!(na >= 1 && nb >= 1, "a got {na}, b got {nb}");
}

#[test]
fn a_domain_without_mx_is_its_own_mail_exchanger() {
    let server = FakeSmtp::start(ip(8), 0, Script::default());
    let port = server.addr.port();
    let dns = DnsServer::start(vec![Record::a("implicit.test", ip(8))]);
    let inst = agent::start_smtp_client_only(&dns, "");
    let reply = send(
        &inst,
        &format!("implicit.test:{port}"),
        &["u@implicit.test"],
    );
    let r = first(&reply, DeliveryStatus::Sent);
    assert_eq!(
        r.relay.to_string(),
        format!("implicit.test[127.0.0.8]:{port}")
    );
    assert_eq!(server.wait_sessions(1).len(), 1);
}

#[test]
fn null_mx_and_nxdomain_bounce_servfail_defers() {
    let dns = DnsServer::start(vec![
        Record::null_mx("nullmx.test"),
        Record::a("nullmx.test", ip(9)),
        Record::servfail("broken.test"),
    ]);
    let inst = agent::start_smtp_client_only(&dns, "");

    let reply = send(&inst, "nullmx.test", &["u@nullmx.test", "v@nullmx.test"]);
    for r in &reply.results {
        assert_result(
            r,
            DeliveryStatus::Bounced,
            "5.1.0",
            "Domain nullmx.test does not accept mail (nullMX)",
        );
        assert_eq!(r.relay.to_string(), "none");
    }
    assert_eq!(reply.results[1].index, 11);

    let lookups = [
        (
            "nowhere.test",
            DeliveryStatus::Bounced,
            "5.4.4",
            "Host or domain name not found. Name service error for name=nowhere.test type=MX: Host not found",
        ),
        (
            "broken.test",
            DeliveryStatus::Deferred,
            "4.4.3",
            "Host or domain name not found. Name service error for name=broken.test type=MX: Host not found, try again",
        ),
    ];
    for (domain, status, dsn, detail) in lookups {
        let reply = send(&inst, domain, &[&format!("u@{domain}")]);
        assert_result(&reply.results[0], status, dsn, detail);
    }
}

#[test]
fn each_recipient_gets_its_own_rcpt_reply() {
    let script = Script {
        rcpt: HashMap::from([
            (
                "later@mix.test".to_string(),
                "450 4.2.0 <later@mix.test>: Mailbox busy".to_string(),
            ),
            (
                "gone@mix.test".to_string(),
                "550 5.1.1 <gone@mix.test>: User unknown".to_string(),
            ),
        ]),
        ..Default::default()
    };
    let d = direct(10, script, "");
    let port = d.server.addr.port();
    let reply = send(
        &d.inst,
        &d.nexthop,
        &["ok@mix.test", "later@mix.test", "gone@mix.test"],
    );
    let [ok, later, gone] = &reply.results[..] else {
        panic!("{reply:?}")
    };
    assert_eq!((ok.index, ok.status), (10, DeliveryStatus::Sent), "{ok:?}");
    assert_eq!(ok.detail, "250 2.0.0 Ok: queued as FAKE1");
    assert_eq!((later.index, later.status), (11, DeliveryStatus::Deferred));
    assert_result(
        later,
        DeliveryStatus::Deferred,
        "4.2.0",
        "host 127.0.0.10[127.0.0.10] said: 450 4.2.0 <later@mix.test>: Mailbox busy (in reply to RCPT TO command)",
    );
    assert_eq!((gone.index, gone.status), (12, DeliveryStatus::Bounced));
    assert_result(
        gone,
        DeliveryStatus::Bounced,
        "5.1.1",
        "host 127.0.0.10[127.0.0.10] said: 550 5.1.1 <gone@mix.test>: User unknown (in reply to RCPT TO command)",
    );
    assert_eq!(
        gone.relay.to_string(),
        format!("127.0.0.10[127.0.0.10]:{port}")
    );
    // The message went once, to the accepted recipient only.
    let t = &d.server.wait_sessions(1)[0];
    assert_eq!(t.commands.iter().filter(|c| *c == "DATA").count(), 1);
}

#[test]
fn a_4xx_greeting_sends_the_mail_to_the_next_mx() {
    let busy = greeting("421 4.3.2 busy.test Service not available");
    let m = two_mx("greet.test", [(10, "mx1", 11), (20, "mx2", 12)], busy, "");
    let (mx1, mx2, port, inst) = (&m.a, &m.b, m.port, &m.inst);
    let reply = send(inst, &m.nexthop, &["u@greet.test"]);
    let r = first(&reply, DeliveryStatus::Sent);
    assert_eq!(
        r.relay.to_string(),
        format!("mx2.greet.test[127.0.0.12]:{port}")
    );
    assert_eq!(mx1.wait_sessions(1).len(), 1);
    assert_eq!(mx2.wait_sessions(1).len(), 1);

    // With only the busy host, the greeting is the reason for the deferral.
    let reply = send(inst, &format!("[127.0.0.11]:{port}"), &["u@greet.test"]);
    assert_result(
        &reply.results[0],
        DeliveryStatus::Deferred,
        "4.3.2",
        "host 127.0.0.11[127.0.0.11] refused to talk to me: 421 4.3.2 busy.test Service not available",
    );
}

#[test]
fn a_5xx_reply_to_the_final_dot_bounces_every_recipient() {
    let script = Script {
        dot: "554 5.7.1 Message rejected as spam".into(),
        ..Default::default()
    };
    let d = direct(13, script, "");
    let reply = send(&d.inst, &d.nexthop, &["a@spam.test", "b@spam.test"]);
    for r in &reply.results {
        assert_result(
            r,
            DeliveryStatus::Bounced,
            "5.7.1",
            "host 127.0.0.13[127.0.0.13] said: 554 5.7.1 Message rejected as spam (in reply to end of DATA command)",
        );
    }
    assert_eq!(
        d.server.wait_sessions(1)[0].data,
        b"Subject: test\r\n\r\nhello\r\n.\r\n"
    );
}

#[test]
fn pipelining_sends_mail_rcpt_and_data_in_one_go() {
    let script = Script {
        pipelining: true,
        size: Some(10_000_000),
        rcpt: HashMap::from([(
            "no@pipe.test".to_string(),
            "550 5.1.1 <no@pipe.test>: User unknown".to_string(),
        )]),
        ..Default::default()
    };
    let d = direct(14, script, "");
    let reply = deliver(
        &d.inst,
        request(
            &d.nexthop,
            &["a@pipe.test", "no@pipe.test", "b@pipe.test"],
            24,
        ),
        &[MESSAGE],
    );
    let status: Vec<_> = reply.results.iter().map(|r| r.status).collect();
    assert_eq!(
        status,
        [
            DeliveryStatus::Sent,
            DeliveryStatus::Bounced,
            DeliveryStatus::Sent
        ],
        "{reply:?}"
    );
    let t = &d.server.wait_sessions(1)[0];
    assert!(t.pipelined, "{t:?}");
    assert_eq!(
        t.commands,
        [
            "EHLO mail.example.local",
            "MAIL FROM:<sender@origin.test> SIZE=24",
            "RCPT TO:<a@pipe.test>",
            "RCPT TO:<no@pipe.test>",
            "RCPT TO:<b@pipe.test>",
            "DATA",
            "QUIT"
        ]
    );
    assert_eq!(t.data, b"Subject: test\r\n\r\nhello\r\n.\r\n");
}

#[test]
fn helo_is_used_when_ehlo_is_refused() {
    let script = Script {
        no_ehlo: true,
        ..Default::default()
    };
    let d = direct(15, script, r#"smtp_helo_name = "client.example.local""#);
    first(
        &send(&d.inst, &d.nexthop, &["u@old.test"]),
        DeliveryStatus::Sent,
    );
    let t = &d.server.wait_sessions(1)[0];
    assert_eq!(
        t.commands[..3],
        [
            "EHLO client.example.local",
            "HELO client.example.local",
            "MAIL FROM:<sender@origin.test>"
        ]
    );
}

#[test]
fn a_message_over_the_server_size_limit_bounces() {
    let script = Script {
        size: Some(1000),
        ..Default::default()
    };
    let d = direct(16, script, "");
    let big = vec![b'x'; 2000];
    let reply = deliver(
        &d.inst,
        request(&d.nexthop, &["u@size.test"], 2000),
        &[&big],
    );
    assert_result(
        &reply.results[0],
        DeliveryStatus::Bounced,
        "5.3.4",
        "message size 2000 exceeds size limit 1000 of server 127.0.0.16[127.0.0.16]",
    );
    let t = &d.server.wait_sessions(1)[0];
    assert!(!t.commands.iter().any(|c| c.starts_with("MAIL")), "{t:?}");
}

#[test]
fn refused_everywhere_defers_with_the_reason() {
    let port = closed_port(ip(17));
    let dns = DnsServer::start(mx(
        "down.test",
        &[(10, "mx1.down.test", ip(17)), (20, "mx2.down.test", ip(18))],
    ));
    let inst = agent::start_smtp_client_only(&dns, "");
    let reply = send(&inst, &format!("down.test:{port}"), &["u@down.test"]);
    let r = &reply.results[0];
    assert_result(
        r,
        DeliveryStatus::Deferred,
        "4.4.1",
        &format!("connect to mx2.down.test[127.0.0.18]:{port}: Connection refused"),
    );
    assert_eq!(r.relay.to_string(), "none");

    let reply = send(&inst, &format!("[127.0.0.17]:{port}"), &["u@down.test"]);
    assert_eq!(
        reply.results[0].detail,
        format!("connect to 127.0.0.17[127.0.0.17]:{port}: Connection refused")
    );
}

#[test]
fn smtp_bind_address_is_the_source_address() {
    let d = direct(19, Script::default(), r#"smtp_bind_address = "127.0.0.5""#);
    first(
        &send(&d.inst, &d.nexthop, &["u@bind.test"]),
        DeliveryStatus::Sent,
    );
    let t = &d.server.wait_sessions(1)[0];
    assert_eq!(t.peer.unwrap().ip(), ip(5));
}

#[test]
fn mail_for_a_domain_whose_best_mx_is_this_host_loops_back() {
    let dns = DnsServer::start(mx("loop.test", &[(10, "me.loop.test", ip(20))]));
    let inst = agent::start_smtp_client_only(&dns, r#"inet_interfaces = "127.0.0.20""#);
    let reply = send(&inst, "loop.test", &["u@loop.test"]);
    assert_result(
        &reply.results[0],
        DeliveryStatus::Bounced,
        "5.4.6",
        "mail for loop.test loops back to myself",
    );
}

#[test]
fn one_connection_carries_request_after_request_and_sessions_are_reused() {
    let d = direct(21, Script::default(), "");
    agent::runtime().block_on(async {
        let mut conn = agent::delivery_connection(&d.inst, "smtp").await;
        for i in 0..3 {
            let mut req = request(&d.nexthop, &["u@seq.test"], 20);
            req.queue_id = format!("{i:X}").parse().unwrap();
            let reply = agent::delivery_exchange(&mut conn, req, &[MESSAGE]).await;
            first(&reply, DeliveryStatus::Sent);
        }
    });
    // One SMTP session carried all three (the connection cache), RSET
    // before each reuse, and QUIT once idle past the 2s time limit.
    let sessions = d.server.wait_sessions(1);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let verbs: Vec<&str> = sessions[0]
        .commands
        .iter()
        .map(|c| c.split([' ', ':']).next().unwrap())
        .collect();
    assert_eq!(
        verbs,
        [
            "EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT",
            "DATA", "QUIT"
        ]
    );
}

#[test]
fn a_cached_session_the_server_closed_is_replaced() {
    // The server hangs up after each message instead of waiting for QUIT.
    let script = Script {
        dot: "250 2.0.0 Ok: queued as ONCE".into(),
        close_after_dot: true,
        ..Default::default()
    };
    let d = direct(22, script, "");
    for _ in 0..2 {
        first(
            &send(&d.inst, &d.nexthop, &["u@close.test"]),
            DeliveryStatus::Sent,
        );
    }
    assert_eq!(d.server.wait_sessions(2).len(), 2);
}

#[test]
fn without_the_connection_cache_every_delivery_has_its_session() {
    let d = direct(23, Script::default(), NO_CACHE);
    for _ in 0..2 {
        first(
            &send(&d.inst, &d.nexthop, &["u@nocache.test"]),
            DeliveryStatus::Sent,
        );
    }
    let sessions = d.server.wait_sessions(2);
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0].commands.last().unwrap(), "QUIT");
}

#[test]
fn a_silent_server_times_out_and_defers() {
    let script = Script {
        silent: true,
        ..Default::default()
    };
    let d = direct(24, script, r#"smtp_helo_timeout = "1s""#);
    let reply = send(&d.inst, &d.nexthop, &["u@slow.test"]);
    assert_result(
        &reply.results[0],
        DeliveryStatus::Deferred,
        "4.4.2",
        "conversation with 127.0.0.24[127.0.0.24] timed out while receiving the initial server greeting",
    );
}

#[test]
fn eight_bit_mail_says_so_when_the_server_offers_8bitmime() {
    let d = direct(25, Script::default(), "");
    let mut req = request(&d.nexthop, &["u@8bit.test"], 20);
    req.body_8bit = true;
    let body = "Subject: caf\u{e9}\r\n\r\n\u{e9}t\u{e9}\r\n";
    first(
        &deliver(&d.inst, req, &[body.as_bytes()]),
        DeliveryStatus::Sent,
    );
    let t = &d.server.wait_sessions(1)[0];
    assert_eq!(
        t.commands[1],
        "MAIL FROM:<sender@origin.test> BODY=8BITMIME"
    );
    assert_eq!(t.data, format!("{body}.\r\n").as_bytes());
}

#[test]
fn pipelining_many_recipients_goes_in_batches() {
    let script = Script {
        pipelining: true,
        lenient_pipelining: true,
        ..Default::default()
    };
    let d = direct(26, script, "");
    let rcpts: Vec<String> = (0..400)
        .map(|i| format!("recipient{i:04}@many.test"))
        .collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    let reply = send(&d.inst, &d.nexthop, &rcpts);
    assert!(
        reply
            .results
            .iter()
            .all(|r| r.status == DeliveryStatus::Sent),
        "{reply:?}"
    );
    let t = &d.server.wait_sessions(1)[0];
    let n = t
        .commands
        .iter()
        .filter(|c| c.starts_with("RCPT TO:"))
        .count();
    assert_eq!(n, 400);
    assert_eq!(t.data, b"Subject: test\r\n\r\nhello\r\n.\r\n");
}

#[test]
fn smtp_mx_session_limit_stops_after_that_many_sessions() {
    let busy = greeting("421 4.3.2 Service not available");
    let m = two_mx(
        "limit.test",
        [(10, "mx1", 27), (20, "mx2", 28)],
        busy,
        r#"smtp_mx_session_limit = "1""#,
    );
    let (mx1, mx2, port, inst) = (&m.a, &m.b, m.port, &m.inst);
    let reply = send(inst, &m.nexthop, &["u@limit.test"]);
    let r = first(&reply, DeliveryStatus::Deferred);
    assert_eq!(
        r.detail,
        "host mx1.limit.test[127.0.0.27] refused to talk to me: 421 4.3.2 Service not available"
    );
    assert_eq!(
        r.relay.to_string(),
        format!("mx1.limit.test[127.0.0.27]:{port}")
    );
    assert_eq!(mx1.wait_sessions(1).len(), 1);
    assert!(mx2.sessions().is_empty());
}

#[test]
fn refusals_of_the_session_and_of_mail_from() {
    let dns = DnsServer::start(vec![]);
    let inst = agent::start_smtp_client_only(&dns, "");
    let cases = [
        // A 5xx greeting is skipped like a 4xx one (smtp_skip_5xx_greeting):
        // deferred, with the server's words.
        (
            "5xx greeting",
            29,
            greeting("554 5.7.1 no mail from you"),
            &["u@r.test"][..],
            DeliveryStatus::Deferred,
            "4.7.1",
            "host 127.0.0.29[127.0.0.29] refused to talk to me: 554 5.7.1 no mail from you",
        ),
        // MAIL FROM refused: every recipient shares the reply.
        (
            "MAIL FROM refused",
            30,
            Script {
                mail: "553 5.7.1 <sender@origin.test>: Sender address rejected".into(),
                ..Default::default()
            },
            &["a@r.test", "b@r.test"][..],
            DeliveryStatus::Bounced,
            "5.7.1",
            "host 127.0.0.30[127.0.0.30] said: 553 5.7.1 <sender@origin.test>: Sender address \
             rejected (in reply to MAIL FROM command)",
        ),
        // A server that hangs up mid-conversation.
        (
            "hang-up at RCPT",
            31,
            Script {
                hang_up_on: Some("RCPT"),
                ..Default::default()
            },
            &["a@r.test"][..],
            DeliveryStatus::Deferred,
            "4.4.2",
            "lost connection with 127.0.0.31[127.0.0.31] while sending RCPT TO",
        ),
    ];
    for (case, last, script, rcpts, status, dsn, detail) in cases {
        let server = FakeSmtp::start(ip(last), 0, script);
        let nexthop = format!("[{}]:{}", ip(last), server.addr.port());
        let reply = send(&inst, &nexthop, rcpts);
        for r in &reply.results {
            assert_eq!(
                (r.status, r.dsn.to_string().as_str()),
                (status, dsn),
                "{case}: {r:?}"
            );
            assert_eq!(r.detail, detail, "{case}");
        }
    }
}
