//! qmgr scheduling for remote mail: slow start per destination, dead
//! destinations that stop using delivery slots, and delay warnings. As in
//! tests/qmgr.rs the test plays the delivery agent on `private/smtp`,
//! deciding per request (by next hop or sender) what to answer.

use std::time::Duration;

use postern_ipc::delivery::DeliveryStatus;
use postern_ipc::qmgr::EnvelopeRecipient;
use postern_tests::agent::{self, Action, FakeAgent, private, start_qmgr_only};
use postern_tests::{Instance, wait_for};

const LONG: Duration = Duration::from_secs(30);
const BODY: &[u8] = b"From: alice@example.org\r\nSubject: test\r\n\r\nHello.\r\n";

fn rcpt(address: &str, notify: &[&str]) -> EnvelopeRecipient {
    EnvelopeRecipient {
        address: address.into(),
        // The keywords as smtpd parses them: none given, NEVER, or flags.
        notify: (!notify.is_empty()).then(|| postern_envelope::Notify {
            success: notify.contains(&"SUCCESS"),
            failure: notify.contains(&"FAILURE"),
            delay: notify.contains(&"DELAY"),
        }),
        ..EnvelopeRecipient::default()
    }
}

fn enqueue(inst: &Instance, sender: &str, rcpts: &[EnvelopeRecipient]) -> String {
    agent::enqueue(inst, sender, rcpts, BODY)
}

fn sent(pause: Duration) -> Action {
    Action::SlowSent(pause)
}

const REFUSED: &str = "connect to mx.dead.example[127.0.0.9]:25: Connection refused";

fn refused() -> Action {
    Action::Reply {
        status: DeliveryStatus::Deferred,
        dsn: "4.4.1",
        detail: REFUSED,
        pause: Duration::ZERO,
    }
}

/// Waits until at least `n` log lines hold every needle; panics with the
/// log if they do not within 30 s.
fn wait_lines(inst: &Instance, needles: &[&str], n: usize) {
    assert!(
        wait_for(LONG, || count_lines(inst, needles) >= n),
        "fewer than {n} lines with {needles:?}:\n{}",
        inst.log()
    );
}

fn count_lines(inst: &Instance, needles: &[&str]) -> usize {
    inst.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[test]
fn a_destination_starts_slow_and_grows_to_the_limit() {
    let inst = start_qmgr_only(
        "initial_destination_concurrency = \"2\"\ndefault_destination_concurrency_limit = \"6\"",
    );
    let pause = Duration::from_millis(800);
    let agent = FakeAgent::start(private(&inst, "smtp"), move |_, _| sent(pause));
    for i in 0..24 {
        enqueue(
            &inst,
            "alice@example.org",
            &[rcpt(&format!("u{i}@slow.example"), &[])],
        );
    }
    wait_lines(&inst, &["status=sent"], 24);
    let got = agent.received();
    let first = got[0].at;
    // Only the initial two went out before the first answers came back.
    let early = got.iter().filter(|r| r.at < first + pause / 2).count();
    assert!(early <= 2, "{early} requests before any answer");
    let most = agent.max_concurrent();
    assert!(most > 2 && most <= 6, "at most {most} at once");
}

#[test]
fn a_dead_destination_is_deferred_without_tying_up_slots() {
    let inst = start_qmgr_only("minimal_backoff_time = \"60s\"\nmaximal_backoff_time = \"120s\"");
    let agent = FakeAgent::start(private(&inst, "smtp"), |r, _| {
        if r.nexthop == "dead.example" {
            refused()
        } else {
            sent(Duration::from_millis(20))
        }
    });
    let mut dead = Vec::new();
    for i in 0..30 {
        dead.push(enqueue(
            &inst,
            "alice@example.org",
            &[rcpt(&format!("u{i}@dead.example"), &[])],
        ));
        enqueue(
            &inst,
            "alice@example.org",
            &[rcpt(&format!("u{i}@good.example"), &[])],
        );
    }
    wait_lines(&inst, &["@good.example>", "status=sent"], 30);
    wait_lines(&inst, &["@dead.example>", "status=deferred"], 30);
    // initial_destination_concurrency (5) failures bring the window down
    // to 1 and the cohort limit (1) kills it: no more requests after that.
    let asked = agent.to_nexthop("dead.example");
    assert!(
        (1..=5).contains(&asked),
        "{asked} requests to the dead destination"
    );
    let suspended = count_lines(
        &inst,
        &[
            "@dead.example>",
            "relay=none",
            &format!("status=deferred (delivery temporarily suspended: {REFUSED})"),
        ],
    );
    assert!(suspended >= 30 - asked, "{}", inst.log());
    let listing = String::from_utf8(inst.qctl(&["list"]).stdout).unwrap();
    assert!(
        listing.contains("delivery temporarily suspended: connect to mx.dead.example"),
        "{listing}"
    );
    assert!(count_lines(&inst, &["smtp:dead.example: destination is dead"]) >= 1);

    // qctl flush revives it: it is asked again.
    assert!(inst.qctl(&["flush"]).status.success());
    assert!(
        wait_for(LONG, || agent.to_nexthop("dead.example") > asked),
        "{}",
        inst.log()
    );
    let _ = dead;
}

#[test]
fn a_delay_warning_goes_once_to_senders_who_want_it() {
    let inst = start_qmgr_only(
        "delay_warning_time = \"1s\"\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\nqueue_run_delay = \"1s\"",
    );
    // Mail to far.example is always deferred (a 4.2.0 reply from the
    // remote, so the destination stays alive); notifications are sent.
    let agent = FakeAgent::start(private(&inst, "smtp"), |r, _| {
        if r.nexthop == "far.example" {
            Action::Defer(
                "host mx.far.example[127.0.0.1] said: 450 4.2.0 try later (in reply to RCPT TO command)",
            )
        } else {
            sent(Duration::ZERO)
        }
    });
    let wants = enqueue(&inst, "alice@example.org", &[rcpt("bob@far.example", &[])]);
    let failure_only = enqueue(
        &inst,
        "carol@example.org",
        &[rcpt("bob@far.example", &["FAILURE"])],
    );
    let null = enqueue(&inst, "", &[rcpt("bob@far.example", &[])]);

    inst.wait_log_line(&[&format!("{wants}: sender delay notification: ")]);
    // A restarted qmgr reads the warned state from the queue.
    let before = inst.pids("qmgr");
    assert!(inst.qctl(&["restart", "qmgr"]).status.success());
    assert!(wait_for(LONG, || {
        let now = inst.pids("qmgr");
        now.len() == 1 && now != before && inst.all_ready()
    }));
    let attempts = count_lines(&inst, &[&format!("{wants}: to=<bob@far.example>")]);
    // Several more attempts of each: still only one warning.
    for id in [&wants, &failure_only, &null] {
        wait_lines(
            &inst,
            &[&format!("{id}: to=<bob@far.example>"), "status=deferred"],
            4,
        );
    }
    wait_lines(
        &inst,
        &[&format!("{wants}: to=<bob@far.example>")],
        attempts + 2,
    );
    assert_eq!(
        count_lines(&inst, &[&format!("{wants}: sender delay notification")]),
        1
    );
    assert_eq!(
        count_lines(
            &inst,
            &[&format!("{failure_only}: sender delay notification")]
        ),
        0
    );
    assert_eq!(
        count_lines(&inst, &[&format!("{null}: sender delay notification")]),
        0
    );

    let notices: Vec<agent::Received> = agent
        .received()
        .into_iter()
        .filter(|r| r.request.sender.is_empty() && r.request.nexthop == "example.org")
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(
        notices[0].request.recipients[0].address,
        "alice@example.org"
    );
    let text = String::from_utf8_lossy(&notices[0].body);
    for want in [
        "Subject: Delayed Mail (still being retried)\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Final-Recipient: rfc822; bob@far.example\r\n",
        "Action: delayed\r\nStatus: 4.2.0\r\n",
        "Diagnostic-Code: smtp; 450 4.2.0 try later\r\n",
        "Content-Type: text/rfc822-headers\r\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("Hello."), "the body is not returned");
    // The state survives in the queue: `qctl show` still says deferred.
    let show = String::from_utf8(inst.qctl(&["show", &wants]).stdout).unwrap();
    assert!(show.contains("deferred"), "{show}");
}
