//! Non-SMTP mail through real libmilter filters (testmilter.py): the
//! emulated session Postfix's cleanup gives it, and every outcome as
//! the plain values the caller applies.

mod common;

use common::{TestMilter, first, names};
use postern_milter::MilterSettings;
use postern_milter::nonsmtp::{Judgement, Submission, judge};
use serde_json::{Value, json};

const MESSAGE: &[u8] = b"Subject: hi\r\nX-Drop: me\r\n\r\nbody\r\n";

/// A filter answering every local submission with `profile`.
fn milter(profile: Value) -> TestMilter {
    TestMilter::start(json!({"profiles": {"localhost": profile}}))
}

fn settings(tm: &TestMilter) -> MilterSettings {
    let mut s = MilterSettings::with_milters(vec![tm.spec()]);
    s.daemon_name = "postern-test".into();
    s
}

fn submission(recipients: &[String]) -> Submission<'_> {
    Submission {
        queue_id: "4ABC123",
        hostname: "mx.example.com",
        sender: "s@example.org",
        recipients,
        content: MESSAGE,
    }
}

#[tokio::test]
async fn a_local_submission_looks_like_postfix_s_and_every_change_is_made() {
    let tm = milter(json!({"eom_actions": [
        {"addheader": ["X-Added", "yes"]},
        {"chgheader": ["X-Drop", 1, ""]},
        {"chgfrom": ["<new@example.org>", null]},
        {"addrcpt": ["<more@example.net>"]},
        {"delrcpt": "<old@example.net>"},
        {"quarantine": "looks odd"}
    ]}));
    let rcpts = [
        "old@example.net".to_string(),
        "keep@example.net".to_string(),
    ];
    let judged = judge(&settings(&tm), &submission(&rcpts)).await;
    assert_eq!(
        judged,
        Judgement::Accept {
            content: b"Subject: hi\r\nX-Added: yes\r\n\r\nbody\r\n".to_vec(),
            sender: "new@example.org".into(),
            recipients: vec!["keep@example.net".into(), "more@example.net".into()],
            hold: Some("looks odd".into()),
        }
    );
    let log = tm.wait_closed("localhost", 1);
    assert_eq!(
        names(&log),
        [
            "negotiate",
            "connect",
            "helo",
            "envfrom",
            "envrcpt",
            "envrcpt",
            "data",
            "header",
            "header",
            "eoh",
            "body",
            "eom",
            "close"
        ]
    );
    let connect = first(&log, "connect");
    assert_eq!(connect["args"][1], "inet");
    assert_eq!(connect["args"][2], "('127.0.0.1', 0)");
    assert_eq!(connect["macros"]["j"], "mx.example.com");
    assert_eq!(connect["macros"]["{daemon_addr}"], "127.0.0.1");
    assert_eq!(connect["macros"]["{daemon_name}"], "postern-test");
    assert_eq!(first(&log, "helo")["args"][0], "localhost");
    let mail = first(&log, "envfrom");
    assert_eq!(mail["args"], json!(["s@example.org"]));
    assert_eq!(mail["macros"]["{mail_addr}"], "s@example.org");
    assert_eq!(mail["macros"]["i"], "4ABC123");
    assert_eq!(first(&log, "envrcpt")["args"], json!(["old@example.net"]));
}

#[tokio::test]
async fn a_refused_message_and_a_refused_recipient() {
    let reject = milter(json!({"reply": {"eom": {"code": "554", "xcode": "5.7.0",
                                                  "text": ["no thanks"]}}}));
    let rcpts = ["far@example.net".to_string()];
    let Judgement::Refuse(reply) = judge(&settings(&reject), &submission(&rcpts)).await else {
        panic!("not refused");
    };
    assert_eq!(reply.to_string(), "554 5.7.0 no thanks");

    // A filter may not refuse a recipient of non-SMTP mail: Postfix
    // defers the message as a configuration error.
    let rcpt = milter(json!({"rcpt": {"far@example.net": "reject"}}));
    let Judgement::Refuse(reply) = judge(&settings(&rcpt), &submission(&rcpts)).await else {
        panic!("not refused");
    };
    assert_eq!(reply.to_string(), "451 4.3.5 Server configuration error");

    let discard = milter(json!({"reply": {"envfrom": "discard"}}));
    let judged = judge(&settings(&discard), &submission(&rcpts)).await;
    assert_eq!(judged, Judgement::Discard);
}
