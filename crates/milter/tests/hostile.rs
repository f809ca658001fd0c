//! The client against fake filters on raw sockets that hang up, speak
//! garbage, break the protocol or misbehave: each gives a clean error
//! naming the filter, the default action, and no panic.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::chain;
use postern_milter::wire::{smfif, smfir};
use postern_milter::{
    ClientAddr, ClientInfo, DefaultAction, ErrorKind, Header, MilterSpec, Milters, NoMacros,
    Outcome, Verdict,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// What the fake does after a command.
enum Step {
    Send(Vec<u8>),
    Close,
}

/// A reply packet: code and data.
fn packet(code: u8, data: &[u8]) -> Vec<u8> {
    let mut p = ((data.len() + 1) as u32).to_be_bytes().to_vec();
    p.push(code);
    p.extend_from_slice(data);
    p
}

fn optneg(version: u32, actions: u32, protocol: u32) -> Vec<u8> {
    let mut d = Vec::new();
    for n in [version, actions, protocol] {
        d.extend_from_slice(&n.to_be_bytes());
    }
    packet(b'O', &d)
}

/// The fake's default: negotiate everything, answer continue, say
/// nothing to commands that get no reply.
fn standard(command: u8) -> Vec<Step> {
    match command {
        b'O' => vec![Step::Send(optneg(6, 0x1ff, 0))],
        b'D' | b'A' | b'Q' => vec![],
        _ => vec![Step::Send(packet(smfir::CONTINUE, b""))],
    }
}

type Script = Arc<dyn Fn(u8, &[u8]) -> Option<Vec<Step>> + Send + Sync>;

/// A fake filter on a unix socket; `script` answers each command, None
/// meaning [`standard`]. Serves connections until the test ends.
fn fake(
    script: impl Fn(u8, &[u8]) -> Option<Vec<Step>> + Send + Sync + 'static,
) -> (tempfile::TempDir, MilterSpec) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let script: Script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut data = vec![0u8; u32::from_be_bytes(len) as usize];
                    if s.read_exact(&mut data).await.is_err() || data.is_empty() {
                        return;
                    }
                    let steps = script(data[0], &data[1..]).unwrap_or_else(|| standard(data[0]));
                    for step in steps {
                        match step {
                            Step::Send(bytes) => {
                                if s.write_all(&bytes).await.is_err() {
                                    return;
                                }
                            }
                            Step::Close => return,
                        }
                    }
                }
            });
        }
    });
    let mut spec = MilterSpec::new(&format!("unix:{}", path.display())).unwrap();
    spec.command_timeout = Duration::from_secs(5);
    spec.content_timeout = Duration::from_secs(5);
    (dir, spec)
}

fn client() -> ClientInfo {
    ClientInfo {
        name: "client.example".into(),
        addr: ClientAddr::Inet("192.0.2.9:2525".parse().unwrap()),
    }
}

/// The one error of an outcome, as logged, without the filter's name.
fn reason(o: &Outcome, spec: &MilterSpec) -> String {
    assert_eq!(o.errors.len(), 1, "{o:?}");
    let text = o.errors[0].to_string();
    let prefix = format!("milter {}: ", spec.name);
    text.strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{text:?} lacks {prefix:?}"))
        .to_string()
}

/// Connect and MAIL; the MAIL outcome.
async fn through_mail(m: &mut Milters) -> Outcome {
    let o = m.connect(&client(), &NoMacros).await;
    if !o.errors.is_empty() {
        return o;
    }
    m.mail("<a@example.org>", &[], &NoMacros).await
}

#[tokio::test]
async fn a_filter_that_hangs_up_at_once() {
    let (_d, spec) = fake(|_, _| Some(vec![Step::Close]));
    let mut m = chain(vec![spec.clone()]);
    let o = m.connect(&client(), &NoMacros).await;
    assert_eq!(o.verdict, Verdict::Tempfail);
    assert_eq!(o.errors[0].kind, ErrorKind::Io);
    let r = reason(&o, &spec);
    assert!(
        r.starts_with("can't read SMFIC_OPTNEG reply packet header: "),
        "{r}"
    );
    // Skipped, without a new error, for the rest of the session.
    let o = m.helo("x", &NoMacros).await;
    assert_eq!(o.verdict, Verdict::Tempfail);
    assert!(o.errors.is_empty());
    m.quit().await;
}

#[tokio::test]
async fn nothing_listening() {
    let dir = tempfile::tempdir().unwrap();
    let spec = MilterSpec::new(&format!("unix:{}/none.sock", dir.path().display())).unwrap();
    let mut m = chain(vec![spec.clone()]);
    let o = m.connect(&client(), &NoMacros).await;
    assert_eq!(o.errors[0].kind, ErrorKind::Connect);
    assert_eq!(
        o.errors[0].to_string(),
        format!(
            "connect to Milter service {}: No such file or directory",
            spec.name
        )
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let spec = MilterSpec::new(&format!("inet:127.0.0.1:{port}")).unwrap();
    let mut m = chain(vec![spec]);
    let o = m.connect(&client(), &NoMacros).await;
    assert_eq!(
        o.errors[0].to_string(),
        format!("connect to Milter service inet:127.0.0.1:{port}: Connection refused")
    );
}

#[tokio::test]
async fn garbage_instead_of_a_packet() {
    let (_d, spec) = fake(|c, _| {
        (c == b'O').then(|| vec![Step::Send(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())])
    });
    let mut m = chain(vec![spec.clone()]);
    let o = m.connect(&client(), &NoMacros).await;
    assert_eq!(o.errors[0].kind, ErrorKind::Protocol);
    assert_eq!(
        reason(&o, &spec),
        "unreasonable packet length: 1213486160 > 1048576"
    );
}

#[tokio::test]
async fn bad_lengths_and_truncated_packets() {
    let cases: Vec<(Vec<Step>, &str)> = vec![
        (vec![Step::Send(vec![0, 0, 0, 0])], "bad packet length: 0"),
        (
            vec![Step::Send((2u32 << 20).to_be_bytes().to_vec())],
            "unreasonable packet length: 2097152 > 1048576",
        ),
        (
            vec![Step::Send(vec![0, 0, 0, 10, b'h', b'a']), Step::Close],
            "EOF while reading data: unexpected end of file",
        ),
        (
            vec![Step::Send(vec![0, 0, 0, 10]), Step::Close],
            "EOF while reading command code: unexpected end of file",
        ),
        (
            vec![Step::Send(vec![0, 0]), Step::Close],
            "can't read SMFIC_MAIL reply packet header: unexpected end of file",
        ),
        (
            vec![Step::Send(packet(b'Z', b""))],
            "unexpected filter response (unknown filter reply) after event SMFIC_MAIL",
        ),
        (
            vec![Step::Send(packet(smfir::CONTINUE, b"xyz"))],
            "reply SMFIR_CONTINUE was followed by 3 data bytes",
        ),
        (
            vec![Step::Send(packet(smfir::ADDHEADER, b"X\0v\0"))],
            "unexpected filter response SMFIR_ADDHEADER after event SMFIC_MAIL",
        ),
        (
            vec![Step::Send(optneg(6, 0, 0))],
            "unexpected filter response SMFIC_OPTNEG after event SMFIC_MAIL",
        ),
    ];
    for (steps, want) in cases {
        let steps = std::sync::Mutex::new(Some(steps));
        let (_d, spec) =
            fake(move |c, _| (c == b'M').then(|| steps.lock().unwrap().take().unwrap_or_default()));
        let mut m = chain(vec![spec.clone()]);
        let o = through_mail(&mut m).await;
        assert_eq!(o.verdict, Verdict::Tempfail, "{want}");
        assert_eq!(reason(&o, &spec), want);
        // The session goes on, the filter standing for tempfail.
        let o = m.rcpt("<b@example.org>", &[], &NoMacros).await;
        assert_eq!(o.verdict, Verdict::Tempfail);
        assert!(o.errors.is_empty());
        m.quit().await;
    }
}

#[tokio::test]
async fn negotiation_conflicts() {
    for (answer, want) in [
        (
            optneg(7, 0, 0),
            "protocol version 7 conflict with MTA protocol version 6",
        ),
        (
            optneg(6, 1 << 12, 0),
            "request mask 0x1000 conflict with MTA request mask 0x1ff",
        ),
        (
            packet(b'c', b""),
            "unexpected reply \"c\" in initial handshake",
        ),
        (
            packet(b'O', b"\0\0\0\x06"),
            "input packet too short for network long",
        ),
    ] {
        let answer = std::sync::Mutex::new(Some(answer));
        let (_d, spec) = fake(move |c, _| {
            (c == b'O').then(|| {
                vec![Step::Send(
                    answer.lock().unwrap().take().unwrap_or_default(),
                )]
            })
        });
        let mut m = chain(vec![spec.clone()]);
        let o = m.connect(&client(), &NoMacros).await;
        assert_eq!(reason(&o, &spec), want);
    }
}

#[tokio::test]
async fn modifications_need_their_action() {
    // Negotiated: add headers only.
    let (_d, spec) = fake(|c, _| match c {
        b'O' => Some(vec![Step::Send(optneg(6, smfif::ADDHDRS, 0))]),
        b'E' => Some(vec![
            Step::Send(packet(smfir::ADDHEADER, b"X-Ok\0yes\0")),
            Step::Send(packet(smfir::DELRCPT, b"<b@example.org>\0")),
            Step::Send(packet(smfir::CONTINUE, b"")),
        ]),
        _ => None,
    });
    let mut m = chain(vec![spec.clone()]);
    through_mail(&mut m).await;
    let done = m
        .message(&[Header::new("Subject", " x")], &[b"hi\r\n"], &NoMacros)
        .await;
    assert_eq!(done.verdict, Verdict::Tempfail);
    assert!(
        done.modifications.is_empty(),
        "a failed filter's edits are dropped"
    );
    assert_eq!(done.errors.len(), 1);
    assert_eq!(
        done.errors[0].reason,
        "unexpected filter response SMFIR_DELRCPT after event SMFIC_BODYEOB (action not negotiated)"
    );
}

#[tokio::test]
async fn a_malformed_reply_code_is_a_configuration_error() {
    let (_d, spec) = fake(|c, _| {
        (c == b'R').then(|| {
            vec![Step::Send(packet(
                smfir::REPLYCODE,
                b"250 2.0.0 fine, thanks\0",
            ))]
        })
    });
    let mut m = chain(vec![spec.clone()]);
    through_mail(&mut m).await;
    let o = m.rcpt("<b@example.org>", &[], &NoMacros).await;
    assert_eq!(o.errors[0].kind, ErrorKind::Misbehaved);
    assert_eq!(reason(&o, &spec), "malformed reply: 250 2.0.0 fine, thanks");
    assert_eq!(
        o.verdict.reply().unwrap().to_string(),
        "451 4.3.5 Server configuration problem - try again later"
    );
}

#[tokio::test]
async fn a_filter_that_closes_mid_message() {
    let (_d, spec) = fake(|c, _| (c == b'L').then(|| vec![Step::Close]));
    let mut spec = spec;
    spec.default_action = DefaultAction::Quarantine;
    let mut m = chain(vec![spec.clone()]);
    through_mail(&mut m).await;
    let done = m
        .message(
            &[Header::new("Subject", " x"), Header::new("To", " y")],
            &[b"hi\r\n"],
            &NoMacros,
        )
        .await;
    assert_eq!(done.verdict, Verdict::Quarantine("default_action".into()));
    assert_eq!(done.errors.len(), 1);
    assert!(
        done.errors[0]
            .reason
            .starts_with("can't read SMFIC_HEADER reply packet header: "),
        "{:?}",
        done.errors
    );
}

#[tokio::test]
async fn random_replies_never_panic() {
    for seed in 1..40u32 {
        let (_d, mut spec) = fake(move |c, d| {
            if c == b'O' {
                return None;
            }
            if matches!(c, b'D' | b'A' | b'Q') {
                return Some(vec![]);
            }
            // A reply drawn from the seed and the command.
            let mut x = seed.wrapping_mul(2_654_435_761) ^ u32::from(c) ^ d.len() as u32;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            let code = b"+-abcdfmprt4hiyqse2lOZ"[next() as usize % 22];
            let len = next() as usize % 24;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut p = packet(code, &data);
            if next() % 5 == 0 {
                p.truncate(next() as usize % p.len());
                return Some(vec![Step::Send(p), Step::Close]);
            }
            Some(vec![Step::Send(p)])
        });
        spec.command_timeout = Duration::from_millis(300);
        spec.content_timeout = Duration::from_millis(300);
        let mut m = chain(vec![spec]);
        let _ = m.connect(&client(), &NoMacros).await;
        let _ = m.helo("x", &NoMacros).await;
        let _ = m.mail("<a@example.org>", &[], &NoMacros).await;
        let _ = m.rcpt("<b@example.org>", &[], &NoMacros).await;
        let _ = m.data(&NoMacros).await;
        let _ = m
            .message(&[Header::new("A", " b")], &[b"c\r\n"], &NoMacros)
            .await;
        let _ = m.abort().await;
        m.quit().await;
    }
}

#[tokio::test]
async fn the_wire_bytes_of_a_session() {
    // What Postern sends, byte for byte, for connect and MAIL.
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let (_d, spec) = fake(move |c, d| {
        let mut p = vec![c];
        p.extend_from_slice(d);
        log.lock().unwrap().push(p);
        None
    });
    let mut m = chain(vec![spec]);
    let macros = |n: &str| (n == "j").then(|| "mx.example".to_string());
    m.connect(&client(), &macros).await;
    m.mail("<a@example.org>", &["SIZE=10".to_string()], &macros)
        .await;
    m.quit().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], b"O\0\0\0\x06\0\0\x01\xff\0\x1f\xff\xff");
    assert_eq!(
        seen[1],
        b"DCj\0mx.example\0{daemon_name}\0postern-test\0v\0Postern\0"
    );
    assert_eq!(seen[2], b"Cclient.example\0\x34\x09\xdd192.0.2.9\0");
    assert_eq!(seen[3], b"DM");
    assert_eq!(seen[4], b"M<a@example.org>\0SIZE=10\0");
    assert_eq!(seen[5], b"Q");
}
