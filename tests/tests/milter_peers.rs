//! The harness's real mail filters do their jobs, seen through a milter
//! conversation written here, small on purpose (Postern's own client is
//! crates/milter): opendkim signs so that the signature verifies offline,
//! clamav-milter rejects the test virus and passes clean mail,
//! spamass-milter tags spam and rejects GTUBE.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use postern_tests::peers::clamav::{TEST_VIRUS, TEST_VIRUS_NAME};
use postern_tests::peers::spamassassin::{GTUBE, REJECT_REPLY, TEST_SPAM_WORD};
use postern_tests::peers::{ClamAv, DkimVerdict, Listen, MilterSocket, OpenDkim, SpamAssassin};

/// A client inside opendkim's InternalHosts (it signs their mail).
const INSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// A client outside it (it verifies their mail).
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A message from alice@example.test with `body` (CRLF line ends).
fn message(body: &str) -> String {
    format!(
        "From: Alice <alice@example.test>\r\n\
         To: bob@example.org\r\n\
         Subject: hello\r\n\
         Date: Tue, 02 Dec 2025 10:00:00 +0000\r\n\
         Message-ID: <peers.1@example.test>\r\n\
         \r\n\
         {body}"
    )
}

/// `message` with the header `name: value` first, folds as CRLF: what
/// the MTA would deliver after a header insert at index 0.
fn with_header(name: &str, value: &str, message: &str) -> String {
    format!("{name}: {}\r\n{message}", value.replace('\n', "\r\n"))
}

#[test]
fn opendkim_signs_and_the_signature_verifies_offline() {
    let dir = tempfile::tempdir().unwrap();
    let dkim = OpenDkim::start(dir.path(), "example.test");
    eprintln!("opendkim ready in {:?}", dkim.startup);
    let msg = message("Hello Bob,\r\nthis is a test.\r\n");

    let signed = filter(&dkim.socket, INSIDE, &msg);
    assert_eq!(signed.reply, Reply::Accept, "{}", dkim.log());
    let signature = signed.header("DKIM-Signature").expect("DKIM-Signature");
    for tag in ["d=example.test;", "s=test;", "c=relaxed/relaxed;"] {
        assert!(signature.contains(tag), "{tag} in {signature:?}");
    }
    let delivered = with_header("DKIM-Signature", signature, &msg);
    assert_eq!(dkim.verify(delivered.as_bytes()), DkimVerdict::Pass);
    let tampered = delivered.replace("this is a test", "this is a lie");
    assert_eq!(
        dkim.verify(tampered.as_bytes()),
        DkimVerdict::Fail("signature verification failed".into())
    );
    assert_eq!(dkim.verify(msg.as_bytes()), DkimVerdict::Unsigned);

    // From outside it verifies, with the same test key, and says so.
    for (text, want) in [(&delivered, "dkim=pass"), (&tampered, "dkim=fail")] {
        let checked = filter(&dkim.socket, OUTSIDE, text);
        assert_eq!(checked.reply, Reply::Accept);
        let results = checked.header("Authentication-Results").unwrap();
        assert!(results.contains(want), "{want} in {results:?}");
    }
    let unsigned = filter(&dkim.socket, OUTSIDE, &msg);
    assert_eq!((unsigned.reply, unsigned.headers), (Reply::Accept, vec![]));
}

#[test]
fn opendkim_listens_on_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let dkim = OpenDkim::start_on(dir.path(), "example.test", Listen::Inet);
    assert!(dkim.socket.to_string().starts_with("inet:127.0.0.1:"));
    let signed = filter(&dkim.socket, INSIDE, &message("Hi\r\n"));
    assert!(signed.header("DKIM-Signature").is_some(), "{signed:?}");
}

#[test]
fn clamav_milter_rejects_the_test_virus_and_passes_clean_mail() {
    let dir = tempfile::tempdir().unwrap();
    let clam = ClamAv::start(dir.path());
    eprintln!(
        "clamd ready in {:?}, clamav-milter in {:?}",
        clam.clamd_startup, clam.milter_startup
    );

    let clean = filter(&clam.socket, INSIDE, &message("Nothing to see.\r\n"));
    assert_eq!(clean.reply, Reply::Accept, "{}", clam.log());
    let scanned = clean.header("X-Virus-Scanned").unwrap();
    assert!(scanned.starts_with("clamav-milter "), "{scanned:?}");
    assert_eq!(clean.header("X-Virus-Status"), Some("Clean"));

    let infected = filter(
        &clam.socket,
        INSIDE,
        &message(&format!("Look: {TEST_VIRUS}\r\n")),
    );
    assert_eq!(infected.reply, Reply::Reject, "{}", clam.log());
    let status = format!("Infected ({TEST_VIRUS_NAME})");
    assert_eq!(infected.header("X-Virus-Status"), Some(status.as_str()));
}

#[test]
fn clamav_milter_words_its_reply_with_reject_msg() {
    let dir = tempfile::tempdir().unwrap();
    let clam = ClamAv::start_with(dir.path(), Listen::Inet, "RejectMsg Virus %v found");
    let infected = filter(&clam.socket, INSIDE, &message(&format!("{TEST_VIRUS}\r\n")));
    assert_eq!(
        infected.reply,
        Reply::Text(format!("550 5.7.1 Virus {TEST_VIRUS_NAME} found"))
    );
}

#[test]
fn spamass_milter_tags_spam_and_rejects_gtube() {
    let dir = tempfile::tempdir().unwrap();
    let spam = SpamAssassin::start(dir.path());
    eprintln!(
        "spamd ready in {:?}, spamass-milter in {:?}",
        spam.spamd_startup, spam.milter_startup
    );

    let clean = filter(&spam.socket, INSIDE, &message("Hello Bob.\r\n"));
    assert_eq!(clean.reply, Reply::Continue, "{}", spam.log());
    let status = clean.header("X-Spam-Status").unwrap();
    assert!(status.starts_with("No, score="), "{status:?}");
    assert_eq!(clean.header("X-Spam-Flag"), None);

    let tagged = filter(
        &spam.socket,
        INSIDE,
        &message(&format!("Buy {TEST_SPAM_WORD} now.\r\n")),
    );
    assert_eq!(tagged.reply, Reply::Continue, "{}", spam.log());
    assert_eq!(tagged.header("X-Spam-Flag"), Some("YES"));
    let status = tagged.header("X-Spam-Status").unwrap();
    assert!(
        status.starts_with("Yes, score=") && status.contains("POSTERN_TEST_SPAM"),
        "{status:?}"
    );

    let gtube = filter(&spam.socket, INSIDE, &message(&format!("{GTUBE}\r\n")));
    assert_eq!(
        gtube.reply,
        Reply::Text(REJECT_REPLY.into()),
        "{}",
        spam.log()
    );
    assert_eq!(gtube.header("X-Spam-Flag"), Some("YES"));
}

#[test]
#[should_panic(expected = "postern-no-such-filter is not installed: apt-get install some-package")]
fn a_missing_program_fails_the_start_by_name() {
    postern_tests::peers::program("postern-no-such-filter", "some-package");
}

// A milter conversation (Sendmail's milter protocol, version 6), just
// enough to drive a filter through one message.

/// How a filter ended the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Continue,
    Accept,
    Reject,
    TempFail,
    Discard,
    /// SMFIR_REPLYCODE: a full SMTP reply.
    Text(String),
}

/// What a filter decided, and the headers it added or inserted.
#[derive(Debug)]
struct Verdict {
    reply: Reply,
    headers: Vec<(String, String)>,
}

impl Verdict {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// All actions offered; all protocol steps may be skipped or left
/// unanswered, but headers come without their leading space
/// (SMFIP_HDR_LEADSPC not offered).
/// How long a filter may take to answer (spamd's first scan is slow).
const IO_LIMIT: Duration = Duration::from_secs(30);

const ACTIONS: u32 = 0x1ff;
const PROTOCOL: u32 = 0x0f_ffff;

/// Sends `message` from a client at `client` (MAIL FROM alice, RCPT TO
/// bob) through the filter at `socket`; its reply and header additions.
fn filter(socket: &MilterSocket, client: Ipv4Addr, message: &str) -> Verdict {
    let mut stream: Box<dyn Stream> = match socket {
        MilterSocket::Unix(path) => {
            let s = UnixStream::connect(path).unwrap();
            s.set_read_timeout(Some(IO_LIMIT)).unwrap();
            Box::new(s)
        }
        MilterSocket::Inet(port) => {
            let s = TcpStream::connect(("127.0.0.1", *port)).unwrap();
            s.set_read_timeout(Some(IO_LIMIT)).unwrap();
            Box::new(s)
        }
    };
    send(
        &mut stream,
        b'O',
        &[6, ACTIONS, PROTOCOL].map(u32::to_be_bytes).concat(),
    );
    let (code, data) = receive(&mut stream);
    assert_eq!(code, b'O', "option negotiation");
    let protocol = u32::from_be_bytes(data[8..12].try_into().unwrap());
    let mut milter = Milter { stream, protocol };

    let (headers, body) = message.split_once("\r\n\r\n").expect("headers and body");
    let ip = client.to_string();
    let mut steps: Vec<(u8, Vec<u8>, u32, u32)> = Vec::new();
    let connect = [
        &b"client.example\0"[..],
        b"4",
        &25u16.to_be_bytes(),
        ip.as_bytes(),
        b"\0",
    ];
    steps.push((b'C', connect.concat(), 0x1, 0x1000));
    steps.push((b'H', cstrings(&["client.example"]), 0x2, 0x2000));
    steps.push((b'M', cstrings(&["<alice@example.test>"]), 0x4, 0x4000));
    steps.push((b'R', cstrings(&["<bob@example.org>"]), 0x8, 0x8000));
    for (name, value) in unfold(headers) {
        steps.push((b'L', cstrings(&[&name, &value]), 0x20, 0x80));
    }
    steps.push((b'N', vec![], 0x40, 0x4_0000));
    for chunk in body.as_bytes().chunks(65535) {
        steps.push((b'B', chunk.to_vec(), 0x10, 0x8_0000));
    }
    let client_name = format!("client.example [{ip}]");
    milter.macros(b'C', &["j", "mail.example.test", "_", &client_name]);
    for (command, data, skip, no_reply) in steps {
        if command == b'M' {
            milter.macros(b'M', &["i", "4PEERS1"]);
        }
        if let Some(reply) = milter.step(command, &data, skip, no_reply) {
            return Verdict {
                reply,
                headers: vec![],
            };
        }
    }
    let verdict = milter.end_of_message();
    send(&mut milter.stream, b'Q', &[]);
    verdict
}

struct Milter {
    stream: Box<dyn Stream>,
    /// The protocol flags the filter asked for.
    protocol: u32,
}

impl Milter {
    fn macros(&mut self, command: u8, pairs: &[&str]) {
        let data = [vec![command], cstrings(pairs)].concat();
        send(&mut self.stream, b'D', &data);
    }

    /// Sends one step unless the filter asked to skip it; `Some` when
    /// its answer ends the conversation.
    fn step(&mut self, command: u8, data: &[u8], skip: u32, no_reply: u32) -> Option<Reply> {
        if self.protocol & skip != 0 {
            return None;
        }
        send(&mut self.stream, command, data);
        if self.protocol & no_reply != 0 {
            return None;
        }
        match receive(&mut self.stream) {
            (b'c' | b's', _) => None,
            (code, data) => Some(final_reply(code, &data)),
        }
    }

    /// Sends end-of-message and collects modifications up to the final
    /// reply.
    fn end_of_message(&mut self) -> Verdict {
        send(&mut self.stream, b'E', &[]);
        let mut headers = Vec::new();
        loop {
            let (code, data) = receive(&mut self.stream);
            match code {
                b'p' => {}
                b'h' => headers.push(name_value(&data)),
                b'i' | b'm' => headers.push(name_value(&data[4..])),
                _ => {
                    return Verdict {
                        reply: final_reply(code, &data),
                        headers,
                    };
                }
            }
        }
    }
}

fn final_reply(code: u8, data: &[u8]) -> Reply {
    match code {
        b'c' => Reply::Continue,
        b'a' => Reply::Accept,
        b'r' => Reply::Reject,
        b't' => Reply::TempFail,
        b'd' => Reply::Discard,
        b'y' => {
            Reply::Text(String::from_utf8_lossy(data.strip_suffix(b"\0").unwrap_or(data)).into())
        }
        other => panic!("unexpected milter reply {:?} {data:?}", other as char),
    }
}

/// A header's name and value from `name\0value\0`.
fn name_value(data: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let name = parts.next().unwrap_or_default().to_string();
    (name, parts.next().unwrap_or_default().to_string())
}

/// Each string followed by NUL.
fn cstrings(strings: &[&str]) -> Vec<u8> {
    strings
        .iter()
        .flat_map(|s| [s.as_bytes(), b"\0"].concat())
        .collect()
}

/// Header lines as (name, value), folded lines joined with their CRLF,
/// the space after the colon dropped.
fn unfold(headers: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in headers.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = out.last_mut().expect("a header before a folded line");
            last.1.push_str("\r\n");
            last.1.push_str(line);
        } else {
            let (name, value) = line.split_once(':').expect("name: value");
            out.push((name.to_string(), value.trim_start().to_string()));
        }
    }
    out
}

fn send(stream: &mut Box<dyn Stream>, command: u8, data: &[u8]) {
    let len = u32::try_from(data.len() + 1).unwrap();
    let packet = [&len.to_be_bytes()[..], &[command], data].concat();
    stream.write_all(&packet).expect("write to milter");
}

fn receive(stream: &mut Box<dyn Stream>) -> (u8, Vec<u8>) {
    let mut len = [0; 4];
    stream.read_exact(&mut len).expect("read from milter");
    let mut packet = vec![0; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut packet).expect("read from milter");
    let data = packet.split_off(1);
    (packet[0], data)
}
