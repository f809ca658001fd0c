//! smtp-client with TLS and SMTP AUTH: the real daemon, driven as qmgr
//! drives it, delivering to fake SMTP servers on 127.0.0.x that speak
//! STARTTLS (rustls, certificates made here with rcgen) and AUTH PLAIN and
//! LOGIN, and record what they saw: the commands, the SNI, whether the TLS
//! session was resumed, who logged in.

use postern_tests::certs::{Ca, self_signed};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_ipc::delivery::{DeliveryRecipient, DeliveryRequest, DeliveryStatus, RecipientResult};
use postern_tests::Instance;
use postern_tests::agent;
use postern_tests::dns::{DnsServer, Record};
use rustls::server::{ServerConfig, ServerConnection};
use rustls::{HandshakeKind, StreamOwned};

// ---------------------------------------------------------------------------
// Certificates
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// A fake SMTP server with STARTTLS and AUTH
// ---------------------------------------------------------------------------

/// How a fake server behaves.
#[derive(Clone, Default)]
struct Script {
    /// Offer STARTTLS with this config.
    tls: Option<Arc<ServerConfig>>,
    /// Answer 220 to STARTTLS, then send garbage instead of a handshake.
    broken_tls: bool,
    /// Answer STARTTLS with this refusal instead.
    refuse_starttls: Option<&'static str>,
    /// AUTH mechanisms offered, e.g. "PLAIN LOGIN"; empty: no AUTH.
    auth: String,
    /// Offer AUTH only after STARTTLS (smtpd_tls_auth_only).
    auth_only_tls: bool,
    /// The one user and password accepted.
    user: String,
    password: String,
}

/// What one SMTP session brought.
#[derive(Clone, Debug, Default)]
struct Transcript {
    /// Command lines, without CRLF; AUTH lines as sent.
    commands: Vec<String>,
    /// The TLS handshake completed.
    tls: bool,
    /// The client's SNI.
    sni: Option<String>,
    /// The TLS session was resumed.
    resumed: bool,
    /// Who logged in, and how.
    login: Option<(String, String)>,
    /// Messages received (final dots answered).
    messages: usize,
}

impl Transcript {
    fn verbs(&self) -> Vec<String> {
        self.commands
            .iter()
            .map(|c| {
                c.split([' ', ':'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase()
            })
            .collect()
    }
}

#[derive(Debug)]
struct FakeSmtp {
    addr: SocketAddr,
    sessions: Arc<Mutex<Vec<Transcript>>>,
}

impl FakeSmtp {
    fn start(ip: Ipv4Addr, script: Script) -> FakeSmtp {
        let listener = TcpListener::bind((ip, 0)).expect("bind fake SMTP server");
        let addr = listener.local_addr().unwrap();
        let sessions = postern_tests::serve_sessions(listener, move |stream| {
            let mut t = Transcript::default();
            let _ = serve(stream, &script, &mut t);
            t
        });
        FakeSmtp { addr, sessions }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn sessions(&self) -> Vec<Transcript> {
        self.sessions.lock().unwrap().clone()
    }

    /// Waits for `n` sessions to end (they record when the client leaves).
    fn wait_sessions(&self, n: usize) -> Vec<Transcript> {
        postern_tests::wait_for(Duration::from_secs(10), || self.sessions().len() >= n);
        self.sessions()
    }
}

/// The connection, plaintext or TLS, with a line buffer.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

struct Lines {
    conn: Conn,
    buf: Vec<u8>,
}

impl Lines {
    /// One line without CRLF; None at EOF.
    fn line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let text = String::from_utf8_lossy(&line);
                return Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()));
            }
            let mut chunk = [0u8; 4096];
            let n = match self.conn.read(&mut chunk) {
                Ok(n) => n,
                // A TLS peer that closes without close_notify.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn say(&mut self, reply: &str) -> io::Result<()> {
        self.conn.write_all(format!("{reply}\r\n").as_bytes())?;
        self.conn.flush()
    }
}

fn serve(stream: TcpStream, script: &Script, t: &mut Transcript) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut io = Lines {
        conn: Conn::Plain(stream),
        buf: Vec::new(),
    };
    io.say("220 fake.test ESMTP")?;
    while let Some(cmd) = io.line()? {
        t.commands.push(cmd.clone());
        let upper = cmd.to_ascii_uppercase();
        let verb = upper.split(' ').next().unwrap_or("").to_string();
        match verb.as_str() {
            "EHLO" => {
                let mut lines = vec!["fake.test".to_string(), "PIPELINING".into()];
                if script.tls.is_some() && !t.tls {
                    lines.push("STARTTLS".into());
                }
                if !script.auth.is_empty() && (t.tls || !script.auth_only_tls) {
                    lines.push(format!("AUTH {}", script.auth));
                }
                io.say(&postern_tests::reply_250(&lines))?;
            }
            "STARTTLS" if script.refuse_starttls.is_some() => {
                io.say(script.refuse_starttls.unwrap())?;
            }
            "STARTTLS" if script.tls.is_some() && !t.tls => {
                io.say("220 2.0.0 Ready to start TLS")?;
                let Conn::Plain(mut tcp) = io.conn else {
                    unreachable!()
                };
                if script.broken_tls {
                    tcp.write_all(b"this is not a TLS server hello\r\n")?;
                    return Ok(());
                }
                let mut tls =
                    ServerConnection::new(script.tls.clone().unwrap()).map_err(io::Error::other)?;
                while tls.is_handshaking() {
                    tls.complete_io(&mut tcp)?;
                }
                t.tls = true;
                t.sni = tls.server_name().map(String::from);
                t.resumed = tls.handshake_kind() == Some(HandshakeKind::Resumed);
                io = Lines {
                    conn: Conn::Tls(Box::new(StreamOwned::new(tls, tcp))),
                    buf: Vec::new(),
                };
            }
            "AUTH" if !script.auth.is_empty() => {
                let words: Vec<&str> = cmd.split(' ').collect();
                let login = match words.get(1).map(|m| m.to_ascii_uppercase()).as_deref() {
                    Some("PLAIN") => {
                        let token = match words.get(2) {
                            Some(tok) => tok.to_string(),
                            None => {
                                io.say("334 ")?;
                                io.line()?.unwrap_or_default()
                            }
                        };
                        let plain = decode64(&token);
                        let parts: Vec<&[u8]> = plain.split(|&b| b == 0).collect();
                        (parts.len() == 3).then(|| {
                            (
                                "PLAIN".to_string(),
                                String::from_utf8_lossy(parts[1]).to_string(),
                                String::from_utf8_lossy(parts[2]).to_string(),
                            )
                        })
                    }
                    Some("LOGIN") => {
                        io.say("334 VXNlcm5hbWU6")?;
                        let user = decode64(&io.line()?.unwrap_or_default());
                        io.say("334 UGFzc3dvcmQ6")?;
                        let pass = decode64(&io.line()?.unwrap_or_default());
                        Some((
                            "LOGIN".to_string(),
                            String::from_utf8_lossy(&user).to_string(),
                            String::from_utf8_lossy(&pass).to_string(),
                        ))
                    }
                    _ => None,
                };
                match login {
                    Some((mech, user, pass)) if user == script.user && pass == script.password => {
                        t.login = Some((mech, user));
                        io.say("235 2.7.0 Authentication successful")?;
                    }
                    _ => io.say("535 5.7.8 Error: authentication failed: bad credentials")?,
                }
            }
            "DATA" => {
                io.say("354 End data with <CR><LF>.<CR><LF>")?;
                while let Some(l) = io.line()? {
                    if l == "." {
                        break;
                    }
                }
                t.messages += 1;
                io.say("250 2.0.0 Ok: queued as TLS1")?;
            }
            "QUIT" => {
                io.say("221 2.0.0 Bye")?;
                return Ok(());
            }
            "MAIL" | "RCPT" | "RSET" => io.say("250 2.0.0 Ok")?,
            _ => io.say("502 5.5.2 Error: command not recognized")?,
        }
    }
    Ok(())
}

/// Base64 without padding checks (what the client sends is checked by
/// comparing the decoded result).
fn decode64(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim().bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Postern with only smtp-client, and qmgr's side of the delivery protocol
// ---------------------------------------------------------------------------

/// Turns the connection cache off, so each delivery connects anew.
const NO_CACHE: &str = r#"smtp_connection_cache_on_demand = "no""#;

const MESSAGE: &[u8] = b"Subject: tls\r\n\r\nhello\r\n";

/// Acts as qmgr: one request for `rcpt` to `nexthop`; the one result.
fn deliver(inst: &Instance, nexthop: &str, rcpt: &str) -> RecipientResult {
    let req = DeliveryRequest {
        queue_id: "4715".parse().unwrap(),
        sender: "sender@origin.test".into(),
        recipients: vec![DeliveryRecipient {
            index: 0,
            address: rcpt.into(),
            ..Default::default()
        }],
        transport: "smtp".into(),
        nexthop: nexthop.into(),
        size: MESSAGE.len() as u64,
        ..Default::default()
    };
    let reply = agent::deliver(inst, "smtp", req, &[MESSAGE]);
    reply.results.into_iter().next().unwrap()
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn sent(r: &RecipientResult) {
    assert_eq!(r.status, DeliveryStatus::Sent, "{r:?}");
}

/// Asserts a deferral with this enhanced status code and text.
fn deferred(r: &RecipientResult, dsn: &str, detail: &str) {
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, dsn);
    assert_eq!(r.detail, detail);
}

/// A fake server on 127.0.0.`last` offering STARTTLS with `tls`.
fn tls_server(last: u8, tls: Arc<ServerConfig>) -> FakeSmtp {
    let script = Script {
        tls: Some(tls),
        ..Default::default()
    };
    FakeSmtp::start(ip(last), script)
}

/// `host`, the one MX host of `domain`, at 127.0.0.`last`.
fn mx(domain: &str, host: &str, last: u8) -> [Record; 2] {
    [Record::mx(domain, 10, host), Record::a(host, ip(last))]
}

/// `[127.0.0.N]:port` of `server`.
fn literal(server: &FakeSmtp) -> String {
    format!("[{}]:{}", server.addr.ip(), server.port())
}

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

#[test]
fn may_uses_starttls_with_the_mx_name_and_resumes_the_session() {
    let server = tls_server(101, self_signed("mx.may.test"));
    let dns = DnsServer::start(mx("may.test", "mx.may.test", 101).into());
    let main = format!("smtp_tls_security_level = \"may\"\n{NO_CACHE}");
    let inst = agent::start_smtp_client_only(&dns, &main);
    let nexthop = format!("may.test:{}", server.port());
    for _ in 0..2 {
        sent(&deliver(&inst, &nexthop, "a@may.test"));
    }
    let sessions = server.wait_sessions(2);
    for t in &sessions {
        assert!(t.tls, "{t:?}");
        assert_eq!(t.sni.as_deref(), Some("mx.may.test"));
        assert_eq!(
            t.verbs(),
            ["EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
        );
        assert_eq!(t.messages, 1);
    }
    // The second connection resumed the first one's TLS session.
    assert!(sessions.iter().any(|t| t.resumed), "{sessions:?}");
    inst.assert_logged(&format!(
        "Untrusted TLS connection established to mx.may.test[127.0.0.101]:{}: TLSv1.3 with cipher ",
        server.port()
    ));
}

#[test]
fn may_without_starttls_sends_in_plaintext_and_no_sni_for_an_address() {
    let plain = FakeSmtp::start(ip(102), Script::default());
    let literal_server = tls_server(103, self_signed("whatever.test"));
    let dns = DnsServer::start(vec![]);
    let inst = agent::start_smtp_client_only(&dns, "smtp_tls_security_level = \"may\"");
    sent(&deliver(&inst, &literal(&plain), "a@plain.test"));
    let t = &plain.wait_sessions(1)[0];
    assert!(!t.tls);
    assert_eq!(t.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);

    // An address literal: TLS, but no server name to send.
    sent(&deliver(&inst, &literal(&literal_server), "a@literal.test"));
    let t = &literal_server.wait_sessions(1)[0];
    assert!(t.tls, "{t:?}");
    assert_eq!(t.sni, None);
}

#[test]
fn may_tries_again_in_plaintext_after_a_failed_handshake() {
    let server = FakeSmtp::start(
        ip(104),
        Script {
            tls: Some(self_signed("mx.broken.test")),
            broken_tls: true,
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![]);
    let inst = agent::start_smtp_client_only(&dns, "smtp_tls_security_level = \"may\"");
    sent(&deliver(&inst, &literal(&server), "a@broken.test"));
    let sessions = server.wait_sessions(2);
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let (first, second) = if sessions[0].verbs().contains(&"STARTTLS".into()) {
        (&sessions[0], &sessions[1])
    } else {
        (&sessions[1], &sessions[0])
    };
    assert_eq!(first.verbs(), ["EHLO", "STARTTLS"]);
    assert_eq!(second.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);
    assert_eq!(second.messages, 1);
}

#[test]
fn encrypt_defers_without_starttls_and_accepts_any_certificate() {
    let plain = FakeSmtp::start(ip(105), Script::default());
    let tls = tls_server(106, self_signed("some.other.name"));
    let dns = DnsServer::start(mx("plain.test", "mx.plain.test", 105).into());
    let inst = agent::start_smtp_client_only(&dns, "smtp_tls_security_level = \"encrypt\"");
    let nexthop = format!("plain.test:{}", plain.port());
    deferred(
        &deliver(&inst, &nexthop, "a@plain.test"),
        "4.7.4",
        "TLS is required, but was not offered by host mx.plain.test[127.0.0.105]",
    );
    let t = &plain.wait_sessions(1)[0];
    assert!(!t.verbs().contains(&"MAIL".into()), "{t:?}");

    // A certificate for another name is good enough for encrypt.
    sent(&deliver(&inst, &literal(&tls), "a@tls.test"));
    assert!(tls.wait_sessions(1)[0].tls);
}

#[test]
fn verify_checks_the_ca_and_the_host_name() {
    let ca = Ca::new("Postern Test CA");
    let other_ca = Ca::new("Someone Else's CA");
    let good = tls_server(107, ca.server("mx.good.test"));
    let untrusted = tls_server(108, other_ca.server("mx.untrusted.test"));
    let misnamed = tls_server(109, ca.server("not-the-mx.test"));
    let mut records = Vec::new();
    for (domain, last) in [("good", 107), ("untrusted", 108), ("misnamed", 109)] {
        records.extend(mx(
            &format!("{domain}.test"),
            &format!("mx.{domain}.test"),
            last,
        ));
    }
    let dns = DnsServer::start(records);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let inst = agent::start_smtp_client_only(
        &dns,
        &format!("smtp_tls_security_level = \"verify\"\nsmtp_tls_CAfile = \"{ca_file}\""),
    );

    sent(&deliver(
        &inst,
        &format!("good.test:{}", good.port()),
        "a@good.test",
    ));
    let t = &good.wait_sessions(1)[0];
    assert_eq!(t.sni.as_deref(), Some("mx.good.test"));
    assert_eq!(t.messages, 1);
    inst.assert_logged(&format!(
        "Verified TLS connection established to mx.good.test[127.0.0.107]:{}: TLSv1.3",
        good.port()
    ));

    let refused = [
        ("untrusted", &untrusted, "Server certificate not trusted"),
        ("misnamed", &misnamed, "Server certificate not verified"),
    ];
    for (domain, server, detail) in refused {
        let nexthop = format!("{domain}.test:{}", server.port());
        let r = deliver(&inst, &nexthop, &format!("a@{domain}.test"));
        deferred(&r, "4.7.5", detail);
    }
    for s in [&untrusted, &misnamed] {
        let t = &s.wait_sessions(1)[0];
        assert_eq!(t.messages, 0, "{t:?}");
        assert!(!t.tls, "{t:?}");
    }
}

#[test]
fn none_ignores_starttls_and_a_refused_starttls_is_plaintext_or_deferral() {
    let offered = tls_server(115, self_signed("mx.none.test"));
    let refusing = FakeSmtp::start(
        ip(116),
        Script {
            tls: Some(self_signed("mx.refusing.test")),
            refuse_starttls: Some("454 4.7.0 TLS not available due to local problem"),
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![]);
    let none = agent::start_smtp_client_only(&dns, "");
    sent(&deliver(&none, &literal(&offered), "a@none.test"));
    let t = &offered.wait_sessions(1)[0];
    assert_eq!(t.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);
    drop(none);

    // may: the refusal leaves the session in plaintext.
    let may = agent::start_smtp_client_only(&dns, "smtp_tls_security_level = \"may\"");
    let refusing_hop = literal(&refusing);
    sent(&deliver(&may, &refusing_hop, "a@refusing.test"));
    let t = &refusing.wait_sessions(1)[0];
    assert_eq!(
        t.verbs(),
        ["EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", "QUIT"]
    );
    drop(may);

    // encrypt: the refusal is the reason.
    let encrypt = agent::start_smtp_client_only(&dns, "smtp_tls_security_level = \"encrypt\"");
    deferred(
        &deliver(&encrypt, &refusing_hop, "a@refusing.test"),
        "4.7.0",
        "TLS is required, but host 127.0.0.116[127.0.0.116] refused to start TLS: \
         454 4.7.0 TLS not available due to local problem",
    );
}

#[test]
fn a_cached_session_stays_tls() {
    let server = tls_server(110, self_signed("mx.cache.test"));
    let dns = DnsServer::start(vec![]);
    let inst = agent::start_smtp_client_only(&dns, "smtp_tls_security_level = \"encrypt\"");
    for _ in 0..2 {
        sent(&deliver(&inst, &literal(&server), "a@cache.test"));
    }
    // One session carried both messages, over TLS throughout.
    let sessions = server.wait_sessions(1);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let t = &sessions[0];
    assert!(t.tls);
    assert_eq!(t.messages, 2);
    assert_eq!(
        t.verbs(),
        [
            "EHLO", "STARTTLS", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA",
            "QUIT"
        ]
    );
}

// ---------------------------------------------------------------------------
// AUTH
// ---------------------------------------------------------------------------

fn auth_script(mechs: &str, tls: bool) -> Script {
    Script {
        tls: tls.then(|| self_signed("smtp.isp.test")),
        auth: mechs.into(),
        auth_only_tls: tls,
        user: "relay-user@isp.test".into(),
        password: "s3cret pass".into(),
        ..Default::default()
    }
}

/// A fake AUTH server on 127.0.0.`last` by `script`, and Postern with
/// SMTP AUTH on, its passwords in a texthash map holding `passwords`
/// (`{port}` stands for the server's port), and `main_extra`.
struct AuthSetup {
    server: FakeSmtp,
    inst: Instance,
    _dns: DnsServer,
    _dir: tempfile::TempDir,
}

fn auth_setup(
    last: u8,
    script: Script,
    records: Vec<Record>,
    passwords: &str,
    main_extra: &str,
) -> AuthSetup {
    let server = FakeSmtp::start(ip(last), script);
    let dns = DnsServer::start(records);
    let dir = tempfile::tempdir().unwrap();
    let passwords = passwords.replace("{port}", &server.port().to_string());
    let map = write(dir.path(), "sasl_passwd", &passwords);
    let inst = agent::start_smtp_client_only(
        &dns,
        &format!(
            "smtp_sasl_auth_enable = \"yes\"\nsmtp_sasl_password_maps = \"texthash:{map}\"\n\
             {main_extra}"
        ),
    );
    AuthSetup {
        server,
        inst,
        _dns: dns,
        _dir: dir,
    }
}

#[test]
fn auth_plain_after_starttls_with_the_password_from_the_map() {
    let a = auth_setup(
        111,
        auth_script("LOGIN PLAIN", true),
        vec![],
        "# the relayhost\n[127.0.0.111]:{port} relay-user@isp.test:s3cret pass\n\
         [127.0.0.111] wrong:wrong\n",
        "smtp_tls_security_level = \"may\"",
    );
    sent(&deliver(&a.inst, &literal(&a.server), "a@far.test"));
    let t = &a.server.wait_sessions(1)[0];
    assert_eq!(
        t.login,
        Some(("PLAIN".to_string(), "relay-user@isp.test".to_string()))
    );
    assert_eq!(
        t.verbs(),
        [
            "EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL", "RCPT", "DATA", "QUIT"
        ]
    );
}

#[test]
fn auth_login_in_plaintext_when_the_security_options_allow_it() {
    // Found by the host name without brackets or port.
    let a = auth_setup(
        112,
        auth_script("LOGIN", false),
        vec![],
        "127.0.0.112 relay-user@isp.test:s3cret pass\n",
        "smtp_sasl_security_options = \"noanonymous\"",
    );
    sent(&deliver(&a.inst, &literal(&a.server), "a@far.test"));
    let t = &a.server.wait_sessions(1)[0];
    assert!(!t.tls);
    assert_eq!(
        t.login,
        Some(("LOGIN".to_string(), "relay-user@isp.test".to_string()))
    );
}

#[test]
fn a_wrong_password_defers() {
    let a = auth_setup(
        113,
        auth_script("PLAIN", true),
        vec![],
        "[127.0.0.113]:{port} relay-user@isp.test:guess\n",
        "smtp_tls_security_level = \"encrypt\"",
    );
    let r = deliver(&a.inst, &literal(&a.server), "a@far.test");
    // 535 5.7.8 deferred, as Postfix's smtp_sasl_auth_soft_bounce does.
    deferred(
        &r,
        "4.7.8",
        "SASL authentication failed; server 127.0.0.113[127.0.0.113] said: \
         535 5.7.8 Error: authentication failed: bad credentials",
    );
    let t = &a.server.wait_sessions(1)[0];
    assert_eq!(t.login, None);
    assert!(!t.verbs().contains(&"MAIL".into()), "{t:?}");
}

#[test]
fn no_auth_over_plaintext_by_default_and_none_without_a_password() {
    let a = auth_setup(
        114,
        auth_script("PLAIN LOGIN", false),
        vec![
            Record::a("known.isp.test", ip(114)),
            Record::a("stranger.isp.test", ip(114)),
        ],
        "[known.isp.test] relay-user@isp.test:s3cret pass\n",
        "",
    );
    let port = a.server.port();
    // A password, but only plaintext mechanisms on a plaintext
    // connection: noplaintext forbids them, and the mail waits.
    deferred(
        &deliver(&a.inst, &format!("[known.isp.test]:{port}"), "a@far.test"),
        "4.7.0",
        "SASL authentication failed: server known.isp.test[127.0.0.114] offered no \
         compatible authentication mechanisms for this type of connection security",
    );
    let t = &a.server.wait_sessions(1)[0];
    assert!(!t.verbs().contains(&"AUTH".into()), "{t:?}");

    // No password for this server: no AUTH, the mail goes as to a stranger.
    sent(&deliver(
        &a.inst,
        &format!("[stranger.isp.test]:{port}"),
        "a@far.test",
    ));
    let sessions = a.server.wait_sessions(2);
    let t = sessions.last().unwrap();
    assert_eq!(t.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);
}
