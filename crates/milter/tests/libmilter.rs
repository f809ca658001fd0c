//! The client against real filters: Debian's libmilter through
//! python3-milter (`tests/milters/testmilter.py`). Two filter processes
//! serve the whole file: one negotiating libmilter's defaults, where each
//! test picks its answers by the client host name it connects with, and
//! one negotiating NO*/NR* flags, leading spaces, rejected recipients
//! and macro lists of its own.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{TestMilter, chain, first, names};
use postern_milter::wire::{smfif, smfip};
use postern_milter::{
    ClientAddr, ClientInfo, DefaultAction, ErrorKind, Header, Modification, Offer, Verdict,
};
use serde_json::json;

fn main_milter() -> &'static TestMilter {
    static M: OnceLock<TestMilter> = OnceLock::new();
    M.get_or_init(|| {
        TestMilter::start(json!({
            "profiles": {
                "rcpt.test": {"rcpt": {
                    "<bad@example.org>": "reject",
                    "<later@example.org>": "tempfail",
                    "<multi@example.org>": {"code": "550", "xcode": "5.7.1",
                                            "text": ["first line", "second line"]},
                    "<busy@example.org>": {"code": "452", "xcode": "4.2.2", "text": ["full"]}
                }},
                "shun.test": {"reply": {"connect": {"code": "554", "xcode": "5.7.1",
                                                     "text": ["go away"]}}},
                "trusted.test": {"reply": {"connect": "accept"}},
                "accept-mail.test": {"reply": {"envfrom": "accept"}},
                "edit.test": {"eom_actions": [
                    {"addheader": ["X-Added", "yes"]},
                    {"insheader": ["X-Top", "first", 0]},
                    {"chgheader": ["Subject", 1, "changed"]},
                    {"chgheader": ["X-Drop", 1, ""]},
                    {"chgfrom": ["<new@example.org>", "SIZE=42"]},
                    {"addrcpt": ["<more@example.org>"]},
                    {"addrcpt": ["<par@example.org>", "NOTIFY=NEVER"]},
                    {"delrcpt": "<old@example.org>"}
                ]},
                "body.test": {"eom_actions": [{"replacebody": "new body\r\n"}]},
                "hold.test": {"eom_actions": [{"quarantine": "looks odd"}]},
                "drop.test": {"reply": {"eom": "discard"}},
                "reject-eom.test": {"reply": {"eom": "reject"}},
                "skip.test": {"reply": {"body": "skip"}},
                "hang.test": {"reply": {"data": "hang"}, "hang_seconds": 4},
                "slow.test": {"reply": {"eom": "progress"},
                              "progress": {"count": 4, "interval": 0.6}},
                "chain-reject.test": {"reply": {"envrcpt": "reject"}}
            }
        }))
    })
}

fn flags_milter() -> &'static TestMilter {
    static M: OnceLock<TestMilter> = OnceLock::new();
    M.get_or_init(|| {
        TestMilter::start(json!({
            "actions": ["ADDHDRS", "SETSYMLIST"],
            "no": ["helo"],
            "noreply": ["header", "envrcpt"],
            "leadspace": true,
            "rcpt_rej": true,
            "symlist": {"envfrom": ["{mail_addr}"], "connect": ["j"]}
        }))
    })
}

fn client(host: &str) -> ClientInfo {
    ClientInfo {
        name: host.to_string(),
        addr: ClientAddr::Inet("192.0.2.7:4321".parse().unwrap()),
    }
}

fn macros(name: &str) -> Option<String> {
    let v = match name {
        "j" => "mx.example.com",
        "_" => "unknown [192.0.2.7]",
        "i" => "4XyZ1234",
        "mail_addr" => "a@example.org",
        "rcpt_addr" => "b@example.org",
        "daemon_addr" => "127.0.0.1",
        _ => return None,
    };
    Some(v.to_string())
}

fn no_params() -> Vec<String> {
    Vec::new()
}

fn headers() -> Vec<Header> {
    vec![
        Header::new("From", " a@example.org"),
        Header::new("Subject", " hello\n\tworld"),
    ]
}

/// Connect, HELO, MAIL and one RCPT, each answered Continue.
async fn envelope(m: &mut postern_milter::Milters, host: &str) {
    for o in [
        m.connect(&client(host), &macros).await,
        m.helo("client.example", &macros).await,
        m.mail("<a@example.org>", &["SIZE=100".to_string()], &macros)
            .await,
        m.rcpt("<b@example.org>", &no_params(), &macros).await,
    ] {
        assert_eq!(o.verdict, Verdict::Continue, "{o:?}");
        assert!(o.errors.is_empty(), "{o:?}");
    }
}

#[tokio::test]
async fn every_stage_arrives_with_its_macros() {
    let tm = main_milter();
    let mut m = chain(vec![tm.spec()]);
    envelope(&mut m, "plain.test").await;
    let n = m.milters()[0].negotiated().unwrap().clone();
    assert_eq!(n.version, 6);
    assert!(n.has(smfip::SKIP));
    assert!(n.allows(smfif::CHGBODY) && n.allows(smfif::QUARANTINE));
    assert_eq!(
        m.unknown("XYZZY now", &macros).await.verdict,
        Verdict::Continue
    );
    assert_eq!(m.data(&macros).await.verdict, Verdict::Continue);
    let body = vec![b'x'; 150_000];
    let done = m
        .message(&headers(), &[&b"line\r\n"[..], &body[..], b"\r\n"], &macros)
        .await;
    assert_eq!(done.verdict, Verdict::Continue);
    assert!(done.modifications.is_empty() && done.errors.is_empty());
    assert!(m.abort().await.is_empty());
    m.quit().await;

    let log = tm.wait_closed("plain.test", 1);
    assert_eq!(
        names(&log),
        [
            "negotiate",
            "connect",
            "helo",
            "envfrom",
            "envrcpt",
            "unknown",
            "data",
            "header",
            "header",
            "eoh",
            "body",
            "body",
            "body",
            "eom",
            "close"
        ]
    );
    let connect = first(&log, "connect");
    assert_eq!(connect["args"][0], "plain.test");
    assert_eq!(connect["args"][1], "inet");
    assert_eq!(connect["args"][2], "('192.0.2.7', 4321)");
    assert_eq!(connect["macros"]["j"], "mx.example.com");
    assert_eq!(connect["macros"]["{daemon_name}"], "postern-test");
    assert_eq!(connect["macros"]["v"], "Postern");
    assert_eq!(connect["macros"]["{daemon_addr}"], "127.0.0.1");
    let mail = first(&log, "envfrom");
    assert_eq!(mail["args"], json!(["<a@example.org>", "SIZE=100"]));
    assert_eq!(mail["macros"]["{mail_addr}"], "a@example.org");
    assert_eq!(mail["macros"]["i"], "4XyZ1234");
    let rcpt = first(&log, "envrcpt");
    assert_eq!(rcpt["macros"]["{rcpt_addr}"], "b@example.org");
    assert_eq!(first(&log, "unknown")["args"][0], "XYZZY now");
    let header = first(&log, "header");
    assert_eq!(header["args"], json!(["From", "a@example.org"]));
    let subject = &log
        .iter()
        .filter(|e| e["event"] == "header")
        .nth(1)
        .unwrap()["args"];
    assert_eq!(subject, &json!(["Subject", "hello\n\tworld"]));
    let chunks: Vec<&str> = log
        .iter()
        .filter(|e| e["event"] == "body")
        .map(|e| e["args"][0].as_str().unwrap())
        .collect();
    assert_eq!(chunks, ["65535", "65535", "18938"]);
    assert!(
        first(&log, "body")["args"][1]
            .as_str()
            .unwrap()
            .starts_with("line\r\nxxx")
    );
}

#[tokio::test]
async fn replies_per_recipient() {
    let tm = main_milter();
    let mut m = chain(vec![tm.spec()]);
    envelope(&mut m, "rcpt.test").await;
    let bad = m.rcpt("<bad@example.org>", &no_params(), &macros).await;
    assert_eq!(bad.verdict, Verdict::Reject);
    assert_eq!(
        bad.verdict.reply().unwrap().to_string(),
        "550 5.7.1 Command rejected"
    );
    let later = m.rcpt("<later@example.org>", &no_params(), &macros).await;
    assert_eq!(
        later.verdict.reply().unwrap().to_string(),
        "451 4.7.1 Service unavailable - try again later"
    );
    let multi = m.rcpt("<multi@example.org>", &no_params(), &macros).await;
    assert_eq!(
        multi.verdict.reply().unwrap().to_string(),
        "550-5.7.1 first line\n550 5.7.1 second line"
    );
    let busy = m.rcpt("<busy@example.org>", &no_params(), &macros).await;
    assert_eq!(busy.verdict.reply().unwrap().to_string(), "452 4.2.2 full");
    // A refused recipient changes nothing for the next one.
    let ok = m.rcpt("<fine@example.org>", &no_params(), &macros).await;
    assert_eq!(ok.verdict, Verdict::Continue);
    m.quit().await;
}

#[tokio::test]
async fn a_refusal_at_connect_answers_the_whole_session() {
    let tm = main_milter();
    let mut m = chain(vec![tm.spec()]);
    let o = m.connect(&client("shun.test"), &macros).await;
    assert_eq!(o.verdict.reply().unwrap().to_string(), "554 5.7.1 go away");
    let helo = m.helo("client.example", &macros).await;
    assert_eq!(helo.verdict, o.verdict);
    let mail = m.mail("<a@example.org>", &no_params(), &macros).await;
    assert_eq!(mail.verdict, o.verdict);
    m.quit().await;
    let log = tm.wait_closed("shun.test", 1);
    assert_eq!(names(&log), ["negotiate", "connect", "close"]);
}

#[tokio::test]
async fn accept_ends_the_session_or_the_message() {
    let tm = main_milter();
    let mut m = chain(vec![tm.spec()]);
    assert_eq!(
        m.connect(&client("trusted.test"), &macros).await.verdict,
        Verdict::Continue
    );
    envelope_after_connect(&mut m).await;
    m.quit().await;
    let log = tm.wait_closed("trusted.test", 1);
    assert_eq!(names(&log), ["negotiate", "connect", "close"]);

    let mut m = chain(vec![tm.spec()]);
    assert_eq!(
        m.connect(&client("accept-mail.test"), &macros)
            .await
            .verdict,
        Verdict::Continue
    );
    // Accepted at MAIL: nothing more of this message goes out.
    for round in 0..2 {
        let mail = m.mail("<a@example.org>", &no_params(), &macros).await;
        assert_eq!(mail.verdict, Verdict::Continue, "round {round}");
        assert_eq!(
            m.rcpt("<b@example.org>", &no_params(), &macros)
                .await
                .verdict,
            Verdict::Continue
        );
        let done = m.message(&headers(), &[b"hi\r\n"], &macros).await;
        assert_eq!(done.verdict, Verdict::Continue);
        assert!(m.abort().await.is_empty());
    }
    m.quit().await;
    let log = tm.wait_closed("accept-mail.test", 1);
    assert_eq!(
        names(&log),
        ["negotiate", "connect", "envfrom", "envfrom", "close"]
    );
}

async fn envelope_after_connect(m: &mut postern_milter::Milters) {
    assert_eq!(
        m.helo("c.example", &macros).await.verdict,
        Verdict::Continue
    );
    assert_eq!(
        m.mail("<a@example.org>", &no_params(), &macros)
            .await
            .verdict,
        Verdict::Continue
    );
    assert_eq!(m.data(&macros).await.verdict, Verdict::Continue);
    assert_eq!(
        m.message(&headers(), &[b"x\r\n"], &macros).await.verdict,
        Verdict::Continue
    );
}

#[tokio::test]
async fn modifications_at_end_of_message() {
    let tm = main_milter();
    let mut m = chain(vec![tm.spec()]);
    envelope(&mut m, "edit.test").await;
    let done = m.message(&headers(), &[b"hi\r\n"], &macros).await;
    assert_eq!(done.verdict, Verdict::Continue);
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    let s = |t: &str| t.to_string();
    assert_eq!(
        done.modifications,
        [
            Modification::AddHeader {
                name: s("X-Added"),
                value: s(" yes")
            },
            Modification::InsertHeader {
                index: 0,
                name: s("X-Top"),
                value: s(" first")
            },
            Modification::ChangeHeader {
                index: 1,
                name: s("Subject"),
                value: s(" changed")
            },
            Modification::ChangeHeader {
                index: 1,
                name: s("X-Drop"),
                value: s("")
            },
            Modification::ChangeSender {
                sender: s("<new@example.org>"),
                args: Some(s("SIZE=42"))
            },
            Modification::AddRecipient {
                recipient: s("<more@example.org>"),
                args: None
            },
            Modification::AddRecipient {
                recipient: s("<par@example.org>"),
                args: Some(s("NOTIFY=NEVER"))
            },
            Modification::DeleteRecipient(s("<old@example.org>")),
        ]
    );
    m.quit().await;

    let mut m = chain(vec![tm.spec()]);
    envelope(&mut m, "body.test").await;
    let done = m.message(&headers(), &[b"old body\r\n"], &macros).await;
    assert_eq!(
        done.modifications,
        [Modification::ReplaceBody(b"new body\r\n".to_vec())]
    );
    m.quit().await;
}

#[tokio::test]
async fn quarantine_discard_and_reject_at_end() {
    let tm = main_milter();
    for (host, want) in [
        ("hold.test", Verdict::Quarantine("looks odd".into())),
        ("drop.test", Verdict::Discard),
        ("reject-eom.test", Verdict::Reject),
    ] {
        let mut m = chain(vec![tm.spec()]);
        envelope(&mut m, host).await;
        let done = m.message(&headers(), &[b"hi\r\n"], &macros).await;
        assert_eq!(done.verdict, want, "{host}");
        // The session goes on with the next message.
        assert!(m.abort().await.is_empty());
        let again = m.mail("<a@example.org>", &no_params(), &macros).await;
        assert_eq!(again.verdict, Verdict::Continue, "{host}");
        m.quit().await;
    }
}

#[tokio::test]
async fn skip_ends_the_body_early() {
    let tm = main_milter();
    let mut m = chain(vec![tm.spec()]);
    envelope(&mut m, "skip.test").await;
    let body = vec![b'y'; 200_000];
    let done = m.message(&headers(), &[&body[..]], &macros).await;
    assert_eq!(done.verdict, Verdict::Continue);
    m.quit().await;
    let log = tm.wait_closed("skip.test", 1);
    assert_eq!(log.iter().filter(|e| e["event"] == "body").count(), 1);
    assert!(names(&log).contains(&"eom".to_string()));
}

#[tokio::test]
async fn a_hanging_filter_times_out_into_the_default_action() {
    let tm = main_milter();
    let mut spec = tm.spec();
    spec.command_timeout = Duration::from_secs(1);
    let mut m = chain(vec![spec]);
    envelope(&mut m, "hang.test").await;
    let started = Instant::now();
    let o = m.data(&macros).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(o.verdict, Verdict::Tempfail);
    assert_eq!(o.errors.len(), 1);
    assert_eq!(o.errors[0].kind, ErrorKind::Io);
    assert_eq!(
        o.errors[0].to_string(),
        format!(
            "milter {}: can't read SMFIC_DATA reply packet header: Connection timed out",
            tm.name()
        )
    );
    // For the rest of the session the filter stands for tempfail, and
    // says so only once.
    assert!(m.abort().await.is_empty());
    let mail = m.mail("<a@example.org>", &no_params(), &macros).await;
    assert_eq!(mail.verdict, Verdict::Tempfail);
    assert!(mail.errors.is_empty());
    assert!(m.milters()[0].has_failed());
    m.quit().await;

    let mut spec = tm.spec();
    spec.command_timeout = Duration::from_secs(1);
    spec.default_action = DefaultAction::Accept;
    let mut m = chain(vec![spec]);
    envelope(&mut m, "hang.test").await;
    let o = m.data(&macros).await;
    assert_eq!(o.verdict, Verdict::Continue);
    assert_eq!(o.errors.len(), 1);
    m.quit().await;
}

#[tokio::test]
async fn progress_extends_the_timeout() {
    let tm = main_milter();
    let mut spec = tm.spec();
    spec.content_timeout = Duration::from_secs(1);
    let mut m = chain(vec![spec]);
    envelope(&mut m, "slow.test").await;
    let started = Instant::now();
    let done = m.message(&headers(), &[b"hi\r\n"], &macros).await;
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    assert_eq!(done.verdict, Verdict::Continue);
    assert!(started.elapsed() >= Duration::from_secs(2));
    m.quit().await;
}

#[tokio::test]
async fn the_first_refusal_ends_the_chain() {
    let tm = main_milter();
    // A filter that is not there (default accept), then two live ones.
    let mut missing = postern_milter::MilterSpec::new("unix:/nonexistent/milter.sock").unwrap();
    missing.default_action = DefaultAction::Accept;
    let mut m = chain(vec![missing, tm.spec(), tm.spec()]);
    let o = m.connect(&client("chain-reject.test"), &macros).await;
    assert_eq!(o.verdict, Verdict::Continue);
    assert_eq!(o.errors.len(), 1);
    assert_eq!(
        o.errors[0].to_string(),
        "connect to Milter service unix:/nonexistent/milter.sock: No such file or directory"
    );
    // libmilter answers nothing out of SMTP order: MAIL comes first.
    let o = m.mail("<a@example.org>", &no_params(), &macros).await;
    assert_eq!(o.verdict, Verdict::Continue, "{o:?}");
    let o = m.rcpt("<b@example.org>", &no_params(), &macros).await;
    assert_eq!(o.verdict, Verdict::Reject, "{o:?}");
    assert!(o.errors.is_empty());
    m.quit().await;
    let log = tm.wait_closed("chain-reject.test", 2);
    assert_eq!(log.iter().filter(|e| e["event"] == "envrcpt").count(), 1);
}

#[tokio::test]
async fn an_older_protocol_sends_only_its_events() {
    let tm = main_milter();
    let mut spec = tm.spec();
    spec.protocol = Offer::parse("2").unwrap();
    let mut m = chain(vec![spec]);
    envelope(&mut m, "v2.test").await;
    assert_eq!(m.milters()[0].negotiated().unwrap().version, 2);
    assert_eq!(m.unknown("XYZZY", &macros).await.verdict, Verdict::Continue);
    assert_eq!(m.data(&macros).await.verdict, Verdict::Continue);
    assert_eq!(
        m.message(&headers(), &[b"hi\r\n"], &macros).await.verdict,
        Verdict::Continue
    );
    m.quit().await;
    let log = tm.wait_closed("v2.test", 1);
    let n = names(&log);
    assert!(
        !n.contains(&"data".to_string()) && !n.contains(&"unknown".to_string()),
        "{n:?}"
    );
    assert!(n.contains(&"eom".to_string()));
}

#[tokio::test]
async fn negotiated_flags_and_macro_lists_are_obeyed() {
    let tm = flags_milter();
    let mut m = chain(vec![tm.spec()]);
    let o = m.connect(&client("flags.test"), &macros).await;
    assert_eq!(o.verdict, Verdict::Continue, "{o:?}");
    let n = m.milters()[0].negotiated().unwrap().clone();
    for f in [
        smfip::NOHELO,
        smfip::NR_HDR,
        smfip::NR_RCPT,
        smfip::HDR_LEADSPC,
        smfip::RCPT_REJ,
    ] {
        assert!(n.has(f), "{f:#x} in {:#x}", n.protocol);
    }
    assert_eq!(n.actions, smfif::ADDHDRS | smfif::SETSYMLIST);
    assert!(m.milters()[0].wants_rejected_recipients());
    assert_eq!(
        m.helo("c.example", &macros).await.verdict,
        Verdict::Continue
    );
    assert_eq!(
        m.mail("<a@example.org>", &no_params(), &macros)
            .await
            .verdict,
        Verdict::Continue
    );
    // No reply is read for RCPT: the next command finds the stream in step.
    assert_eq!(
        m.rcpt("<b@example.org>", &no_params(), &macros)
            .await
            .verdict,
        Verdict::Continue
    );
    let rejected = m
        .rejected_rcpt("<nobody@example.org>", &no_params(), &macros)
        .await;
    assert_eq!(rejected.verdict, Verdict::Continue);
    let done = m.message(&headers(), &[b"hi\r\n"], &macros).await;
    assert_eq!(done.verdict, Verdict::Continue);
    assert!(done.errors.is_empty(), "{:?}", done.errors);
    m.quit().await;

    let log = tm.wait_closed("flags.test", 1);
    let n = names(&log);
    assert!(!n.contains(&"helo".to_string()), "{n:?}");
    assert_eq!(log.iter().filter(|e| e["event"] == "envrcpt").count(), 2);
    let connect = first(&log, "connect");
    assert_eq!(connect["macros"], json!({"j": "mx.example.com"}));
    // libmilter keeps earlier stages' macros visible, so only this
    // stage's own names tell: i is in the configured list, not the
    // filter's.
    let mail = first(&log, "envfrom");
    assert_eq!(mail["macros"]["{mail_addr}"], "a@example.org");
    assert!(mail["macros"].get("i").is_none(), "{mail}");
    assert_eq!(
        first(&log, "header")["args"],
        json!(["From", " a@example.org"])
    );
}
