//! smtpd with TLS and SMTP AUTH against the real master (scenarios S4 and
//! S5): STARTTLS, the STARTTLS injection defence, AUTH and relay
//! permission, the tarpit on failed logins, SMTPS (wrapper mode) with
//! Python's smtplib and swaks, session resumption with `openssl s_client`
//! across smtpd processes and restarts, certificate errors at startup,
//! `qctl status` certificates and certificate reload.
//!
//! Certificates are made here with rcgen. The external clients need the
//! Debian packages `openssl`, `python3`, `swaks` and `libnet-ssleay-perl`.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_tests::{Instance, TEST_MAIL_OWNER, free_port, wait_for};
use postern_tls::client::AcceptAnyCertificate;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

const LONG: Duration = Duration::from_secs(30);
const HOST: &str = "mail.example.local";

/// `openssl passwd -6 -salt saltsalt secret`: alice's password is "secret".
const ALICE: &str = "alice $6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
/// carol's secret is recoverable, so CRAM-MD5 is offered.
const CAROL: &str = "carol {plain}carolpw";

/// The secured server of S4: TLS may, AUTH only under TLS, relay for
/// authenticated clients only. The test client (127.0.0.1) is outside
/// mynetworks, which lists a network nobody connects from.
const SECURED: &str = r#"mydomain = "example.local"
mydestination = "$myhostname, localhost"
mynetworks = "10.255.255.0/24"
relay_domains = "example.local"
smtpd_relay_restrictions = "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
smtpd_tls_security_level = "may"
smtpd_tls_cert_file = "cert.pem"
smtpd_tls_key_file = "key.pem"
smtpd_tls_auth_only = "yes"
smtpd_sasl_auth_enable = "yes"
smtpd_sasl_users = "hash:sasl_users""#;

/// Ports of one test instance.
struct Ports {
    smtp: SocketAddr,
    smtps: SocketAddr,
}

fn loopback() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// master.toml: `smtp` (2 processes), `smtps` in wrapper mode, and tlsmgr.
/// Lines of `extra` replace the SECURED lines with the same name.
fn config(ports: &Ports, extra: &str) -> String {
    config_with(ports, extra, "")
}

/// [`config`] with more services.
fn config_with(ports: &Ports, extra: &str, services: &str) -> String {
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
    let replaced: Vec<String> = extra.lines().map(key).collect();
    let main: String = SECURED
        .lines()
        .filter(|l| !replaced.contains(&key(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    format!(
        r#"[main]
myhostname = "{HOST}"
maillog_file = "maillog"
queue_directory = "queue"
mail_owner = "{TEST_MAIL_OWNER}"
service_throttle_time = "2s"
drain_timeout = "5s"
heartbeat_timeout = "5s"
smtpd_peername_lookup = "no"
{main}{extra}

[[service]]
name = "smtp"
type = "inet"
listen = "{}"
command = "smtpd"
process_limit = 2

[[service]]
name = "smtps"
type = "inet"
listen = "{}"
command = "smtpd"
process_limit = 1
options = {{ smtpd_tls_wrappermode = "yes", smtpd_tls_auth_only = "no" }}

[[service]]
name = "tlsmgr"
type = "unix"
listen = "tlsmgr"
command = "tlsmgr"
{services}"#,
        ports.smtp, ports.smtps
    )
}

/// A self-signed ECDSA certificate for `cn`: (cert PEM, key PEM).
fn certificate(cn: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![cn.to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Writes the certificate, key and user table into the instance directory.
fn write_files(dir: &Path) -> String {
    let (cert, key) = certificate(HOST);
    std::fs::write(dir.join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    std::fs::write(dir.join("sasl_users"), format!("{ALICE}\n{CAROL}\n")).unwrap();
    cert
}

fn start(extra: &str) -> (Instance, Ports) {
    let ports = Ports {
        smtp: loopback(),
        smtps: loopback(),
    };
    let inst = Instance::create(ports.smtp, &config(&ports, extra));
    write_files(inst.dir.path());
    (inst.launch(), ports)
}

/// A client config that accepts any server certificate: these tests check
/// smtpd's TLS, not the PKI.
fn client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(&provider)))
        .with_no_client_auth();
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A line-oriented SMTP client over a plain or TLS stream.
struct Smtp<S: Read + Write> {
    r: BufReader<S>,
}

impl<S: Read + Write> Smtp<S> {
    fn try_reply(&mut self) -> std::io::Result<String> {
        postern_tests::read_reply(&mut self.r)
    }

    fn reply(&mut self) -> String {
        self.try_reply().expect("reply")
    }

    fn send(&mut self, bytes: &[u8]) {
        let w = self.r.get_mut();
        w.write_all(bytes).unwrap();
        w.flush().unwrap();
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// After MAIL FROM: RCPT TO friend@example.net, DATA, a short
    /// message and the dot, each reply checked; the queue ID.
    fn queue_to_friend(&mut self, inst: &Instance) -> String {
        assert_eq!(self.cmd("RCPT TO:<friend@example.net>"), "250 2.1.5 Ok\r\n");
        assert_eq!(self.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>\r\n");
        self.send(b"Subject: hi\r\n\r\nhello\r\n");
        let queued = self.cmd(".");
        assert!(
            queued.starts_with("250 2.0.0 Ok: queued as "),
            "{queued}\n{}",
            inst.log()
        );
        queued.trim_end()["250 2.0.0 Ok: queued as ".len()..].to_string()
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Connects in plaintext; the client and the greeting.
fn connect(addr: SocketAddr) -> (Smtp<TcpStream>, String) {
    let mut c = Smtp {
        r: BufReader::new(tcp(addr)),
    };
    let greeting = c.reply();
    (c, greeting)
}

/// Runs the TLS handshake on a plain connection (after `220 Ready`).
fn handshake(sock: TcpStream) -> Smtp<Tls> {
    let name = ServerName::try_from(HOST).unwrap();
    let conn = ClientConnection::new(client_config(), name).unwrap();
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    Smtp {
        r: BufReader::new(tls),
    }
}

fn starttls(mut c: Smtp<TcpStream>) -> Smtp<Tls> {
    assert_eq!(c.cmd("STARTTLS"), "220 2.0.0 Ready to start TLS\r\n");
    assert!(c.r.buffer().is_empty());
    handshake(c.r.into_inner())
}

fn b64(s: &str) -> String {
    postern_tests::base64(s.as_bytes())
}

fn ehlo_keywords(reply: &str) -> Vec<&str> {
    reply.lines().skip(1).map(|l| &l[4..]).collect()
}

#[test]
fn starttls_then_auth_then_relay() {
    let (inst, ports) = start("");
    let (mut c, greeting) = connect(ports.smtp);
    assert_eq!(greeting, format!("220 {HOST} ESMTP Postern\r\n"));
    let ehlo = c.cmd("EHLO client.example");
    let keywords = ehlo_keywords(&ehlo);
    assert!(keywords.contains(&"STARTTLS"), "{ehlo}");
    // smtpd_tls_auth_only: no AUTH in plaintext, neither offered nor taken.
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert_eq!(
        c.cmd(&format!("AUTH PLAIN {}", b64("\0alice\0secret"))),
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    assert_eq!(c.cmd("MAIL FROM:<alice@example.local>"), "250 2.1.0 Ok\r\n");
    assert_eq!(
        c.cmd("RCPT TO:<friend@example.net>"),
        "554 5.7.1 <friend@example.net>: Relay access denied\r\n"
    );
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok\r\n");

    let mut t = starttls(c);
    // A new session: EHLO again, and no STARTTLS any more.
    let ehlo = t.cmd("EHLO client.example");
    let keywords = ehlo_keywords(&ehlo);
    assert!(!keywords.contains(&"STARTTLS"), "{ehlo}");
    assert!(keywords.contains(&"AUTH PLAIN LOGIN CRAM-MD5"), "{ehlo}");
    assert_eq!(t.cmd("STARTTLS"), "554 5.5.1 Error: TLS already active\r\n");
    // Encrypted is not authenticated.
    assert_eq!(t.cmd("MAIL FROM:<alice@example.local>"), "250 2.1.0 Ok\r\n");
    assert_eq!(
        t.cmd("RCPT TO:<friend@example.net>"),
        "554 5.7.1 <friend@example.net>: Relay access denied\r\n"
    );
    assert_eq!(t.cmd("RSET"), "250 2.0.0 Ok\r\n");
    assert_eq!(
        t.cmd(&format!("AUTH PLAIN {}", b64("\0alice\0secret"))),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(
        t.cmd("MAIL FROM:<alice@example.local> AUTH=<>"),
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(t.cmd("RCPT TO:<friend@example.net>"), "250 2.1.5 Ok\r\n");
    assert_eq!(t.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    inst.assert_logged(
        "Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 with cipher ",
    );
    inst.assert_logged("to=<friend@example.net> proto=ESMTPS helo=<client.example>");
    inst.assert_logged("disconnect from unknown[127.0.0.1] ehlo=2 starttls=1/2 auth=1/2 mail=3 rcpt=1/3 rset=2 quit=1 commands=11/15");
}

#[test]
fn failed_logins_are_refused_and_slowed_down() {
    let (inst, ports) = start("");
    let (c, _) = connect(ports.smtp);
    let mut t = starttls(c);
    t.cmd("EHLO client.example");
    let mut took = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        assert_eq!(
            t.cmd(&format!("AUTH PLAIN {}", b64("\0alice\0guess"))),
            "535 5.7.8 Error: authentication failed: authentication failure\r\n"
        );
        took.push(start.elapsed());
    }
    assert!(
        took[1] >= took[0] + Duration::from_millis(300),
        "the second failure was not slower: {took:?}"
    );
    // LOGIN, step by step.
    assert_eq!(t.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(t.cmd(&b64("alice")), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(
        t.cmd(&b64("secret")),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert_eq!(
        t.cmd("AUTH LOGIN"),
        "503 5.5.1 Error: already authenticated\r\n"
    );
    t.cmd("QUIT");
    inst.assert_logged("warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: authentication failure, sasl_username=alice");
}

#[test]
fn plaintext_pipelined_after_starttls_is_never_executed() {
    // Without the synchronization check the bytes reach STARTTLS itself,
    // which must throw them away.
    let (inst, ports) = start("smtpd_forbid_unauth_pipelining = \"no\"");
    let (mut c, _) = connect(ports.smtp);
    c.cmd("EHLO client.example");
    c.send(b"STARTTLS\r\nRSET\r\n");
    assert_eq!(c.reply(), "220 2.0.0 Ready to start TLS\r\n");
    let mut t = handshake(c.r.into_inner());
    // The first reply under TLS answers this EHLO, not the injected RSET.
    let ehlo = t.cmd("EHLO client.example");
    assert!(ehlo.starts_with(&format!("250-{HOST}\r\n")), "{ehlo}");
    assert_eq!(t.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    inst.assert_logged("disconnect from unknown[127.0.0.1] ehlo=2 starttls=1 quit=1 commands=4");

    // With the default smtpd_forbid_unauth_pipelining = yes the client is
    // sent away before any TLS.
    let (inst, ports) = start("");
    let (mut c, _) = connect(ports.smtp);
    c.cmd("EHLO client.example");
    c.send(b"STARTTLS\r\nRSET\r\n");
    assert_eq!(
        c.reply(),
        "554 5.5.0 Error: SMTP protocol synchronization\r\n"
    );
    assert!(c.try_reply().is_err());
    assert!(inst.wait_log("improper command pipelining after STARTTLS", LONG));
}

#[test]
fn encrypt_level_requires_starttls() {
    let (_inst, ports) = start("smtpd_tls_security_level = \"encrypt\"");
    let (mut c, _) = connect(ports.smtp);
    c.cmd("EHLO client.example");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.net>"),
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    let mut t = starttls(c);
    t.cmd("EHLO client.example");
    assert_eq!(t.cmd("MAIL FROM:<a@example.net>"), "250 2.1.0 Ok\r\n");
}

/// Runs a Python script (Debian's python3); its standard output, which
/// must come from a successful run.
fn python(script: &str, inst: &Instance) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        inst.log()
    );
    stdout
}

#[test]
fn smtps_wrapper_mode_with_python_smtplib() {
    let (inst, ports) = start("");
    // smtplib prefers CRAM-MD5, which carol's recoverable secret allows.
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL("127.0.0.1", {port}, context=ctx, timeout=20)
s.ehlo("client.example")
print("auth:", s.esmtp_features.get("auth"))
print("login:", s.login("carol", "carolpw"))
print("mail:", s.mail("carol@example.local")[0])
print("rcpt:", s.rcpt("friend@example.net")[0])
s.quit()
"#,
        port = ports.smtps.port()
    );
    let stdout = python(&script, &inst);
    assert!(stdout.contains(" PLAIN LOGIN CRAM-MD5\n"), "{stdout}");
    assert!(
        stdout.contains("login: (235, b'2.7.0 Authentication successful')"),
        "{stdout}"
    );
    assert!(stdout.contains("mail: 250\nrcpt: 250\n"), "{stdout}");
    assert!(inst.wait_log("Anonymous TLS connection established", LONG));
}

/// swaks against the server; its transcript.
fn swaks(args: &[&str]) -> String {
    let out = Command::new("swaks")
        .args([
            "--from",
            "alice@example.local",
            "--to",
            "friend@example.net",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice",
            "--auth-password",
            "secret",
            "--quit-after",
            "RCPT",
            "--timeout",
            "20",
        ])
        .args(args)
        .output()
        .expect("run swaks");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn swaks_with_starttls_and_with_smtps() {
    let (_inst, ports) = start("");
    let smtp = ports.smtp.to_string();
    let out = swaks(&["--server", &smtp, "--tls"]);
    assert!(out.contains("<-  220 2.0.0 Ready to start TLS"), "{out}");
    assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
    assert!(out.contains("250 2.1.5 Ok"), "{out}");
    let smtps = ports.smtps.to_string();
    let out = swaks(&["--server", &smtps, "--tls-on-connect"]);
    assert!(out.contains("235 2.7.0 Authentication successful"), "{out}");
    assert!(out.contains("250 2.1.5 Ok"), "{out}");
}

/// One `openssl s_client -starttls smtp` session that stays long enough
/// to receive its session tickets; its standard output.
fn s_client(addr: SocketAddr, session_arg: &str, file: &Path) -> String {
    s_client_with(addr, &["-starttls", "smtp"], session_arg, file)
}

/// [`s_client`] with other options than `-starttls smtp`.
fn s_client_with(addr: SocketAddr, options: &[&str], session_arg: &str, file: &Path) -> String {
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string(), "-crlf"])
        .args(options)
        .arg(session_arg)
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    std::thread::sleep(Duration::from_millis(700));
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(b"QUIT\n");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The pids of smtpd processes that logged a TLS session.
fn tls_pids(log: &str) -> std::collections::BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains("Anonymous TLS connection established"))
        .filter_map(|l| {
            let start = l.find("postern/smtpd[")? + "postern/smtpd[".len();
            let len = l[start..].find(']')?;
            Some(l[start..start + len].to_string())
        })
        .collect()
}

#[test]
fn sessions_resume_on_any_process_and_after_a_restart() {
    let (inst, ports) = start("");
    let file = inst.dir.path().join("tls-session");
    let first = s_client(ports.smtp, "-sess_out", &file);
    assert!(first.contains("New, TLSv1.3"), "{first}\n{}", inst.log());
    // Which process accepts is the kernel's choice: the one that made
    // the session is stopped, so the other one must take the next.
    let first_pid: i32 = tls_pids(&inst.log())
        .into_iter()
        .next()
        .expect("a TLS session in the log")
        .parse()
        .unwrap();
    unsafe { libc::kill(first_pid, libc::SIGSTOP) };
    let again = s_client(ports.smtp, "-sess_in", &file);
    unsafe { libc::kill(first_pid, libc::SIGCONT) };
    assert!(again.contains("Reused, TLSv1.3"), "{again}\n{}", inst.log());
    assert_eq!(
        tls_pids(&inst.log()).len(),
        2,
        "no session landed on the other smtpd process:\n{}",
        inst.log()
    );
    for _ in 0..2 {
        let again = s_client(ports.smtp, "-sess_in", &file);
        assert!(again.contains("Reused, TLSv1.3"), "{again}\n{}", inst.log());
    }

    let before = inst.pids("smtp");
    let out = inst.qctl(&["restart", "smtp"]);
    postern_tests::assert_success(&out);
    assert!(wait_for(LONG, || {
        let now = inst.pids("smtp");
        now.len() == 2 && now.iter().all(|p| !before.contains(p)) && inst.all_ready()
    }));
    let after = s_client(ports.smtp, "-sess_in", &file);
    assert!(after.contains("Reused, TLSv1.3"), "{after}\n{}", inst.log());
}

/// `smtpd_tls_session_cache_database` (seed 003, and Debian's main.cf)
/// turns on the server-side cache, so a TLS 1.2 client that takes no
/// ticket resumes by session ID; without it, as in Postfix, the server
/// gives no session ID and only tickets resume. (smtps has one process,
/// so every session meets the same cache.)
#[test]
fn a_session_cache_database_resumes_clients_without_tickets() {
    let no_ticket = ["-tls1_2", "-no_ticket"];
    let (inst, ports) = start("smtpd_tls_session_cache_database = \"btree:smtpd_scache\"");
    let file = inst.dir.path().join("tls-session");
    let first = s_client_with(ports.smtps, &no_ticket, "-sess_out", &file);
    assert!(first.contains("New, TLSv1.2"), "{first}");
    for _ in 0..2 {
        let again = s_client_with(ports.smtps, &no_ticket, "-sess_in", &file);
        assert!(again.contains("Reused, TLSv1.2"), "{again}");
    }

    let (inst, ports) = start("");
    let file = inst.dir.path().join("tls-session");
    let first = s_client_with(ports.smtps, &no_ticket, "-sess_out", &file);
    assert!(first.contains("New, TLSv1.2"), "{first}");
    assert!(first.contains("Session-ID: \n"), "{first}");
}

#[test]
fn status_shows_certificates_and_reload_replaces_them() {
    let (inst, ports) = start("");
    let smtp = inst.service_status("smtp").unwrap();
    let certs = smtp["certificates"].as_array().cloned().unwrap_or_default();
    assert_eq!(certs.len(), 1, "{smtp}");
    assert!(
        certs[0]["subject"].as_str().unwrap().contains(HOST),
        "{smtp}"
    );
    assert!(certs[0]["not_after_unix"].as_i64().unwrap() > 4_000_000_000);
    let text = String::from_utf8_lossy(&inst.qctl(&["status"]).stdout).to_string();
    assert!(text.contains("cert.pem"), "{text}");

    // A new certificate in the same files, then a reload: new sessions
    // get it.
    let (cert, key) = certificate("renewed.example.local");
    std::fs::write(inst.dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(inst.dir.path().join("key.pem"), key).unwrap();
    assert!(inst.qctl(&["reload"]).status.success());
    let renewed = wait_for(LONG, || {
        let (c, _) = connect(ports.smtp);
        let mut c = c;
        c.cmd("EHLO client.example");
        let t = starttls(c);
        let der = t.r.get_ref().conn.peer_certificates().unwrap()[0].clone();
        names_renewed(der.as_ref())
    });
    assert!(renewed, "{}", inst.log());
    assert!(wait_for(LONG, || {
        inst.service_status("smtp").is_some_and(|s| {
            s["certificates"][0]["subject"]
                .as_str()
                .is_some_and(|v| v.contains("renewed.example.local"))
        })
    }));
}

/// Whether the DER certificate names renewed.example.local (a byte search
/// is enough for certificates made here).
fn names_renewed(der: &[u8]) -> bool {
    let needle = b"renewed.example.local";
    der.windows(needle.len()).any(|w| w == needle)
}

/// Kills a master started by hand, and its daemons, at the end.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn bad_key_files_are_fatal_and_throttle_the_service() {
    for (case, expect) in [
        ("mismatch", "fatal: private key in "),
        ("missing", "fatal: cannot read "),
    ] {
        let ports = Ports {
            smtp: loopback(),
            smtps: loopback(),
        };
        let inst = Instance::create(ports.smtp, &config(&ports, ""));
        write_files(inst.dir.path());
        let key = inst.dir.path().join("key.pem");
        match case {
            "mismatch" => std::fs::write(&key, certificate(HOST).1).unwrap(),
            _ => std::fs::remove_file(&key).unwrap(),
        }
        let _master = Group(inst.master_command().spawn().expect("start master"));
        assert!(inst.wait_log(expect, LONG), "{case}: {}", inst.log());
        let fatal = inst
            .log()
            .lines()
            .find(|l| l.contains(expect))
            .unwrap()
            .to_string();
        assert!(fatal.contains(&key.display().to_string()), "{fatal}");
        assert!(
            inst.wait_log("smtpd: bad command startup -- throttling", LONG),
            "{case}: {}",
            inst.log()
        );
    }
}

/// An instance (not started yet) with qmgr, which keeps what it is given:
/// its delivery goes to a closed loopback port and is only deferred.
fn create_with_qmgr(extra: &str) -> (Instance, Ports) {
    let ports = Ports {
        smtp: loopback(),
        smtps: loopback(),
    };
    let qmgr = "\n[[service]]\nname = \"qmgr\"\ntype = \"unix\"\nlisten = \"qmgr\"\ncommand = \"qmgr\"\nwakeup = \"300s\"\n";
    let extra = format!("relayhost = \"[127.0.0.1]:9\"\n{extra}");
    let inst = Instance::create(ports.smtp, &config_with(&ports, &extra, qmgr));
    write_files(inst.dir.path());
    (inst, ports)
}

#[test]
fn authenticated_mail_is_queued_with_the_login_logged() {
    let (inst, ports) = create_with_qmgr("");
    let inst = inst.launch();
    let (c, _) = connect(ports.smtp);
    let mut t = starttls(c);
    t.cmd("EHLO client.example");
    assert_eq!(t.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
    t.cmd(&b64("alice"));
    assert_eq!(
        t.cmd(&b64("secret")),
        "235 2.7.0 Authentication successful\r\n"
    );
    t.cmd("MAIL FROM:<alice@example.local>");
    let id = t.queue_to_friend(&inst);
    assert_eq!(t.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    inst.assert_logged(&format!(
        "{id}: client=unknown[127.0.0.1], sasl_method=LOGIN, sasl_username=alice"
    ));
}

/// Seed 003's settings: `smtpd_tls_loglevel = 1` logs the summary of each
/// handshake (0 logs none), and `smtpd_sasl_local_domain = $myhostname`
/// is the realm of login names given without one: `alice` logs in as
/// `alice@mail.example.local`, the name `qctl passwd alice` writes.
#[test]
fn seed_003_tls_loglevel_and_sasl_local_domain() {
    let (inst, ports) =
        create_with_qmgr("smtpd_tls_loglevel = 1\nsmtpd_sasl_local_domain = \"$myhostname\"");
    // The realm's user, as qctl passwd writes it.
    let out = postern_tests::qctl_with_input(&inst.config, &["passwd", "dave"], "davepw\n");
    assert!(out.status.success());
    let table = std::fs::read_to_string(inst.dir.path().join("sasl_users")).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("dave@mail.example.local ")),
        "{table}"
    );
    let inst = inst.launch();

    let (c, _) = connect(ports.smtp);
    let mut t = starttls(c);
    t.cmd("EHLO client.example");
    // alice is in the table without the realm: as alice@realm she is not.
    assert_eq!(
        t.cmd(&format!("AUTH PLAIN {}", b64("\0alice\0secret"))),
        "535 5.7.8 Error: authentication failed: authentication failure\r\n"
    );
    assert_eq!(
        t.cmd(&format!("AUTH PLAIN {}", b64("\0dave\0davepw"))),
        "235 2.7.0 Authentication successful\r\n"
    );
    t.cmd("MAIL FROM:<dave@example.local>");
    let id = t.queue_to_friend(&inst);
    t.cmd("QUIT");
    inst.assert_logged(&format!(
        "{id}: client=unknown[127.0.0.1], sasl_method=PLAIN, \
                 sasl_username=dave@mail.example.local"
    ));
    assert!(
        inst.log().contains(
            "Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 with cipher "
        ),
        "{}",
        inst.log()
    );

    // Level 0: no summary.
    let (quiet, ports) = start("smtpd_tls_loglevel = 0");
    let (c, _) = connect(ports.smtp);
    let mut t = starttls(c);
    t.cmd("EHLO client.example");
    assert_eq!(t.cmd("QUIT"), "221 2.0.0 Bye\r\n");
    quiet.assert_logged("disconnect from unknown[127.0.0.1]");
    assert!(
        !quiet.log().contains("TLS connection established"),
        "{}",
        quiet.log()
    );
}

/// Seed 003's secured server (S4) from the guide's main.cf and master.cf
/// (smtps with `-o smtpd_tls_wrappermode=yes -o smtpd_sasl_auth_enable=yes`)
/// through `qctl config import`. The adaptations an administrator makes:
/// the certificate paths, the aliases file, and Postern's own SASL user
/// table (smtpd_sasl_users) where the guide runs saslauthd; mynetworks
/// keeps 127.0.0.1 only, so that a client from 127.0.0.77 is the outside.
/// Then what S4 must hold: the banner hides the version, STARTTLS and
/// the size limit are offered, no relay for an outside client, local
/// mail through the aliases file, and SMTPS with AUTH relays.
#[test]
fn s4_from_the_guides_main_cf_and_master_cf_imported() {
    let ip = std::net::Ipv4Addr::new(127, 0, 0, 195);
    let (cert, key) = certificate("mail.example.com");
    let main_cf = "myhostname = mail.example.com\n\
        mydomain = example.com\n\
        myorigin = $mydomain\n\
        inet_interfaces = all\n\
        mydestination = $myhostname, localhost.$mydomain, localhost, $mydomain\n\
        mynetworks = 192.168.0.0/24, 127.0.0.1/32\n\
        relay_domains = $mydestination\n\
        home_mailbox = Maildir/\n\
        smtpd_banner = $myhostname ESMTP unknown\n\
        smtpd_tls_security_level = may\n\
        smtpd_tls_loglevel = 1\n\
        smtpd_tls_cert_file = {dir}/postfix.pem\n\
        smtpd_tls_key_file = {dir}/postfix_noenc.key\n\
        smtpd_tls_session_cache_database = btree:{dir}/smtpd_scache\n\
        smtpd_sasl_auth_enable = yes\n\
        smtpd_sasl_security_options = noanonymous\n\
        smtpd_sasl_local_domain = $myhostname\n\
        smtpd_recipient_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination\n\
        message_size_limit = 10485760\n\
        alias_maps = hash:{dir}/aliases\n";
    let master_cf = format!(
        "{}smtps     inet  n       -       n       -       -       smtpd\n  \
         -o smtpd_tls_wrappermode=yes\n  \
         -o smtpd_sasl_auth_enable=yes\n",
        postern_tests::POSTFIX_MASTER_CF
    );
    let inst = Instance::start_imported(
        ip,
        main_cf,
        &master_cf,
        &[
            ("postfix.pem", &cert),
            ("postfix_noenc.key", &key),
            // smtpd_sasl_local_domain puts logins in the realm.
            ("sasl_users", "carol@mail.example.com {plain}carolpw\n"),
            ("aliases", "user: {dir}/mail/user\n"),
            ("mail/", ""),
        ],
        &["smtpd_sasl_users=hash:{dir}/sasl_users"],
    );
    let (mut c, greeting) =
        postern_tests::SmtpClient::connect_from(std::net::Ipv4Addr::new(127, 0, 0, 77), inst.smtp)
            .unwrap();
    assert_eq!(greeting, "220 mail.example.com ESMTP unknown\r\n");
    let ehlo = c.cmd("EHLO client.example").unwrap();
    assert!(
        ehlo.contains("STARTTLS") && ehlo.contains("SIZE 10485760"),
        "{ehlo}"
    );
    c.expect("MAIL FROM:<spammer@example.net>", "250");
    let relay = c.cmd("RCPT TO:<victim@example.org>").unwrap();
    assert!(
        // Postfix 3's smtpd_relay_restrictions default answers first.
        relay.starts_with("454 4.7.1 <victim@example.org>: Relay access denied"),
        "{relay}"
    );
    c.expect("RCPT TO:<user@example.com>", "250");
    c.expect("DATA", "354");
    c.send_raw(b"Subject: for the aliases file\r\n\r\nhello\r\n")
        .unwrap();
    c.expect(".", "250 2.0.0");
    c.expect("QUIT", "221");
    let mailbox = inst.dir.path().join("mail/user");
    assert!(
        wait_for(LONG, || std::fs::read_to_string(&mailbox)
            .is_ok_and(|m| m.contains("Subject: for the aliases file"))),
        "{}",
        inst.log()
    );

    // SMTPS on 465, AUTH, and relaying for the authenticated user.
    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL("{ip}", 465, context=ctx, timeout=20)
s.ehlo("client.example")
print("login:", s.login("carol", "carolpw")[0])
print("mail:", s.mail("carol@example.com")[0])
print("rcpt:", s.rcpt("friend@example.net")[0])
s.quit()
"#
    );
    let stdout = python(&script, &inst);
    assert!(
        stdout.contains("login: 235\nmail: 250\nrcpt: 250\n"),
        "{stdout}"
    );
}
