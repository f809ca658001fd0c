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

use postern_ipc::delivery::{
    DeliveryMessage, DeliveryRecipient, DeliveryReply, DeliveryRequest, DeliveryStatus,
    RecipientResult,
};
use postern_ipc::{Connection, Protocol};
use postern_tests::dns::{DnsServer, Record};
use postern_tests::{Instance, free_port};
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
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let s2 = sessions.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (script, sessions) = (script.clone(), s2.clone());
                std::thread::spawn(move || {
                    let mut t = Transcript::default();
                    let _ = serve(stream, &script, &mut t);
                    sessions.lock().unwrap().push(t);
                });
            }
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
                let last = lines.len() - 1;
                let reply: Vec<String> = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
                    .collect();
                io.say(&reply.join("\r\n"))?;
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

/// The master with the smtp-client service only; `main_extra` is added
/// to `[main]`.
fn postern(dns: &DnsServer, main_extra: &str) -> Instance {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = format!(
        r#"[main]
myhostname = "mail.example.local"
maillog_file = "maillog"
queue_directory = "queue"
mail_owner = "{owner}"
service_throttle_time = "2s"
drain_timeout = "5s"
heartbeat_timeout = "5s"
dns_servers = "{dns}"
smtp_connect_timeout = "5s"
smtp_helo_timeout = "10s"
smtp_mail_timeout = "10s"
smtp_rcpt_timeout = "10s"
smtp_data_init_timeout = "10s"
smtp_data_xfer_timeout = "10s"
smtp_data_done_timeout = "10s"
smtp_quit_timeout = "5s"
{main_extra}

[[service]]
name = "smtp-client"
type = "unix"
listen = "smtp"
command = "smtp-client"
"#,
        owner = postern_tests::TEST_MAIL_OWNER,
        dns = dns.addr,
    );
    Instance::start_with(smtp, &config)
}

/// Turns the connection cache off, so each delivery connects anew.
const NO_CACHE: &str = r#"smtp_connection_cache_on_demand = "no""#;

const MESSAGE: &[u8] = b"Subject: tls\r\n\r\nhello\r\n";

/// Acts as qmgr: one request for `rcpt` to `nexthop`; the one result.
fn deliver(inst: &Instance, nexthop: &str, rcpt: &str) -> RecipientResult {
    let socket = inst.queue_directory().join("private").join("smtp");
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply: DeliveryReply = rt.block_on(async move {
        let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let mut conn = Connection::new(stream);
        conn.client_hello(Protocol::Delivery, Duration::from_secs(10))
            .await
            .unwrap();
        conn.send(&DeliveryMessage::Request(req)).await.unwrap();
        conn.send(&DeliveryMessage::Body {
            data: MESSAGE.to_vec(),
        })
        .await
        .unwrap();
        conn.send(&DeliveryMessage::End).await.unwrap();
        conn.recv_timeout(Duration::from_secs(60))
            .await
            .unwrap()
            .expect("a reply")
    });
    assert_eq!(reply.results.len(), 1, "{reply:?}");
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

// ---------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------

#[test]
fn may_uses_starttls_with_the_mx_name_and_resumes_the_session() {
    let server = FakeSmtp::start(
        ip(101),
        Script {
            tls: Some(self_signed("mx.may.test")),
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![
        Record::mx("may.test", 10, "mx.may.test"),
        Record::a("mx.may.test", ip(101)),
    ]);
    let inst = postern(
        &dns,
        &format!("smtp_tls_security_level = \"may\"\n{NO_CACHE}"),
    );
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
    let line = format!(
        "Untrusted TLS connection established to mx.may.test[127.0.0.101]:{}: TLSv1.3 with cipher ",
        server.port()
    );
    assert!(
        inst.wait_log(&line, Duration::from_secs(5)),
        "{}",
        inst.log()
    );
}

#[test]
fn may_without_starttls_sends_in_plaintext_and_no_sni_for_an_address() {
    let plain = FakeSmtp::start(ip(102), Script::default());
    let literal = FakeSmtp::start(
        ip(103),
        Script {
            tls: Some(self_signed("whatever.test")),
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![]);
    let inst = postern(&dns, "smtp_tls_security_level = \"may\"");
    sent(&deliver(
        &inst,
        &format!("[127.0.0.102]:{}", plain.port()),
        "a@plain.test",
    ));
    let t = &plain.wait_sessions(1)[0];
    assert!(!t.tls);
    assert_eq!(t.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);

    // An address literal: TLS, but no server name to send.
    sent(&deliver(
        &inst,
        &format!("[127.0.0.103]:{}", literal.port()),
        "a@literal.test",
    ));
    let t = &literal.wait_sessions(1)[0];
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
    let inst = postern(&dns, "smtp_tls_security_level = \"may\"");
    let r = deliver(
        &inst,
        &format!("[127.0.0.104]:{}", server.port()),
        "a@broken.test",
    );
    sent(&r);
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
    let tls = FakeSmtp::start(
        ip(106),
        Script {
            tls: Some(self_signed("some.other.name")),
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![
        Record::mx("plain.test", 10, "mx.plain.test"),
        Record::a("mx.plain.test", ip(105)),
    ]);
    let inst = postern(&dns, "smtp_tls_security_level = \"encrypt\"");
    let r = deliver(
        &inst,
        &format!("plain.test:{}", plain.port()),
        "a@plain.test",
    );
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, "4.7.4");
    assert_eq!(
        r.detail,
        "TLS is required, but was not offered by host mx.plain.test[127.0.0.105]"
    );
    let t = &plain.wait_sessions(1)[0];
    assert!(!t.verbs().contains(&"MAIL".into()), "{t:?}");

    // A certificate for another name is good enough for encrypt.
    sent(&deliver(
        &inst,
        &format!("[127.0.0.106]:{}", tls.port()),
        "a@tls.test",
    ));
    assert!(tls.wait_sessions(1)[0].tls);
}

#[test]
fn verify_checks_the_ca_and_the_host_name() {
    let ca = Ca::new("Postern Test CA");
    let other_ca = Ca::new("Someone Else's CA");
    let good = FakeSmtp::start(
        ip(107),
        Script {
            tls: Some(ca.server("mx.good.test")),
            ..Default::default()
        },
    );
    let untrusted = FakeSmtp::start(
        ip(108),
        Script {
            tls: Some(other_ca.server("mx.untrusted.test")),
            ..Default::default()
        },
    );
    let misnamed = FakeSmtp::start(
        ip(109),
        Script {
            tls: Some(ca.server("not-the-mx.test")),
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![
        Record::mx("good.test", 10, "mx.good.test"),
        Record::a("mx.good.test", ip(107)),
        Record::mx("untrusted.test", 10, "mx.untrusted.test"),
        Record::a("mx.untrusted.test", ip(108)),
        Record::mx("misnamed.test", 10, "mx.misnamed.test"),
        Record::a("mx.misnamed.test", ip(109)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = write(dir.path(), "ca.pem", &ca.pem());
    let inst = postern(
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
    let line = format!(
        "Verified TLS connection established to mx.good.test[127.0.0.107]:{}: TLSv1.3",
        good.port()
    );
    assert!(
        inst.wait_log(&line, Duration::from_secs(5)),
        "{}",
        inst.log()
    );

    let r = deliver(
        &inst,
        &format!("untrusted.test:{}", untrusted.port()),
        "a@untrusted.test",
    );
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, "4.7.5");
    assert_eq!(r.detail, "Server certificate not trusted");

    let r = deliver(
        &inst,
        &format!("misnamed.test:{}", misnamed.port()),
        "a@misnamed.test",
    );
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, "4.7.5");
    assert_eq!(r.detail, "Server certificate not verified");
    for s in [&untrusted, &misnamed] {
        let t = &s.wait_sessions(1)[0];
        assert_eq!(t.messages, 0, "{t:?}");
        assert!(!t.tls, "{t:?}");
    }
}

#[test]
fn none_ignores_starttls_and_a_refused_starttls_is_plaintext_or_deferral() {
    let offered = FakeSmtp::start(
        ip(115),
        Script {
            tls: Some(self_signed("mx.none.test")),
            ..Default::default()
        },
    );
    let refusing = FakeSmtp::start(
        ip(116),
        Script {
            tls: Some(self_signed("mx.refusing.test")),
            refuse_starttls: Some("454 4.7.0 TLS not available due to local problem"),
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![]);
    let none = postern(&dns, "");
    sent(&deliver(
        &none,
        &format!("[127.0.0.115]:{}", offered.port()),
        "a@none.test",
    ));
    let t = &offered.wait_sessions(1)[0];
    assert_eq!(t.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);
    drop(none);

    // may: the refusal leaves the session in plaintext.
    let may = postern(&dns, "smtp_tls_security_level = \"may\"");
    let refusing_hop = format!("[127.0.0.116]:{}", refusing.port());
    sent(&deliver(&may, &refusing_hop, "a@refusing.test"));
    let t = &refusing.wait_sessions(1)[0];
    assert_eq!(
        t.verbs(),
        ["EHLO", "STARTTLS", "MAIL", "RCPT", "DATA", "QUIT"]
    );
    drop(may);

    // encrypt: the refusal is the reason.
    let encrypt = postern(&dns, "smtp_tls_security_level = \"encrypt\"");
    let r = deliver(&encrypt, &refusing_hop, "a@refusing.test");
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, "4.7.0");
    assert_eq!(
        r.detail,
        "TLS is required, but host 127.0.0.116[127.0.0.116] refused to start TLS: \
         454 4.7.0 TLS not available due to local problem"
    );
}

#[test]
fn a_cached_session_stays_tls() {
    let server = FakeSmtp::start(
        ip(110),
        Script {
            tls: Some(self_signed("mx.cache.test")),
            ..Default::default()
        },
    );
    let dns = DnsServer::start(vec![]);
    let inst = postern(&dns, "smtp_tls_security_level = \"encrypt\"");
    let nexthop = format!("[127.0.0.110]:{}", server.port());
    for _ in 0..2 {
        sent(&deliver(&inst, &nexthop, "a@cache.test"));
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

#[test]
fn auth_plain_after_starttls_with_the_password_from_the_map() {
    let server = FakeSmtp::start(ip(111), auth_script("LOGIN PLAIN", true));
    let port = server.port();
    let dns = DnsServer::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let map = write(
        dir.path(),
        "sasl_passwd",
        &format!(
            "# the relayhost\n[127.0.0.111]:{port} relay-user@isp.test:s3cret pass\n\
             [127.0.0.111] wrong:wrong\n"
        ),
    );
    let inst = postern(
        &dns,
        &format!(
            "smtp_tls_security_level = \"may\"\nsmtp_sasl_auth_enable = \"yes\"\n\
             smtp_sasl_password_maps = \"texthash:{map}\""
        ),
    );
    sent(&deliver(
        &inst,
        &format!("[127.0.0.111]:{port}"),
        "a@far.test",
    ));
    let t = &server.wait_sessions(1)[0];
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
    let server = FakeSmtp::start(ip(112), auth_script("LOGIN", false));
    let port = server.port();
    let dns = DnsServer::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    // Found by the host name without brackets or port.
    let map = write(
        dir.path(),
        "sasl_passwd",
        "127.0.0.112 relay-user@isp.test:s3cret pass\n",
    );
    let inst = postern(
        &dns,
        &format!(
            "smtp_sasl_auth_enable = \"yes\"\nsmtp_sasl_password_maps = \"texthash:{map}\"\n\
             smtp_sasl_security_options = \"noanonymous\""
        ),
    );
    sent(&deliver(
        &inst,
        &format!("[127.0.0.112]:{port}"),
        "a@far.test",
    ));
    let t = &server.wait_sessions(1)[0];
    assert!(!t.tls);
    assert_eq!(
        t.login,
        Some(("LOGIN".to_string(), "relay-user@isp.test".to_string()))
    );
}

#[test]
fn a_wrong_password_defers() {
    let server = FakeSmtp::start(ip(113), auth_script("PLAIN", true));
    let port = server.port();
    let dns = DnsServer::start(vec![]);
    let dir = tempfile::tempdir().unwrap();
    let map = write(
        dir.path(),
        "sasl_passwd",
        &format!("[127.0.0.113]:{port} relay-user@isp.test:guess\n"),
    );
    let inst = postern(
        &dns,
        &format!(
            "smtp_tls_security_level = \"encrypt\"\nsmtp_sasl_auth_enable = \"yes\"\n\
             smtp_sasl_password_maps = \"texthash:{map}\""
        ),
    );
    let r = deliver(&inst, &format!("[127.0.0.113]:{port}"), "a@far.test");
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    // 535 5.7.8 deferred, as Postfix's smtp_sasl_auth_soft_bounce does.
    assert_eq!(r.dsn, "4.7.8");
    assert_eq!(
        r.detail,
        "SASL authentication failed; server 127.0.0.113[127.0.0.113] said: \
         535 5.7.8 Error: authentication failed: bad credentials"
    );
    let t = &server.wait_sessions(1)[0];
    assert_eq!(t.login, None);
    assert!(!t.verbs().contains(&"MAIL".into()), "{t:?}");
}

#[test]
fn no_auth_over_plaintext_by_default_and_none_without_a_password() {
    let server = FakeSmtp::start(ip(114), auth_script("PLAIN LOGIN", false));
    let port = server.port();
    let dns = DnsServer::start(vec![
        Record::a("known.isp.test", ip(114)),
        Record::a("stranger.isp.test", ip(114)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let map = write(
        dir.path(),
        "sasl_passwd",
        "[known.isp.test] relay-user@isp.test:s3cret pass\n",
    );
    let inst = postern(
        &dns,
        &format!("smtp_sasl_auth_enable = \"yes\"\nsmtp_sasl_password_maps = \"texthash:{map}\""),
    );
    // A password, but only plaintext mechanisms on a plaintext
    // connection: noplaintext forbids them, and the mail waits.
    let r = deliver(&inst, &format!("[known.isp.test]:{port}"), "a@far.test");
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, "4.7.0");
    assert_eq!(
        r.detail,
        "SASL authentication failed: server known.isp.test[127.0.0.114] offered no \
         compatible authentication mechanisms for this type of connection security"
    );
    let t = &server.wait_sessions(1)[0];
    assert!(!t.verbs().contains(&"AUTH".into()), "{t:?}");

    // No password for this server: no AUTH, the mail goes as to a stranger.
    sent(&deliver(
        &inst,
        &format!("[stranger.isp.test]:{port}"),
        "a@far.test",
    ));
    let sessions = server.wait_sessions(2);
    let t = sessions.last().unwrap();
    assert_eq!(t.verbs(), ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]);
}
