//! qmgr: receiving into the queue, scheduling, outcomes, bounces and the
//! qctl queue commands. Each test runs the real master with only the qmgr
//! service; the test itself plays the delivery agents by listening on
//! `private/smtp` and `private/local` (no smtp-client or local service is
//! configured, so the master leaves those paths alone), and plays smtpd by
//! enqueueing over `private/qmgr`.

use std::path::PathBuf;
use std::time::Duration;

use postern_ipc::delivery::DeliveryRequest;
use postern_ipc::qmgr::{EnvelopeRecipient, QmgrReply, QmgrRequest};
use postern_ipc::qmgr_admin::{AdminReply, AdminRequest};
use postern_ipc::{Connection, Protocol};
use postern_tests::agent::{
    Action, FakeAgent, enqueue, enqueue_async, private, runtime, start_qmgr_only,
};
use postern_tests::{Instance, free_port, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const LONG: Duration = Duration::from_secs(30);
const IO: Duration = Duration::from_secs(10);

fn rcpt(address: &str) -> EnvelopeRecipient {
    EnvelopeRecipient {
        address: address.into(),
        ..EnvelopeRecipient::default()
    }
}

const BODY: &[u8] =
    b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: test\r\n\r\nHello Bob.\r\n";

/// An agent's answers: notices (from the null sender) are sent, other
/// mail gets `action(request)`.
fn notices_sent(
    action: impl Fn(&DeliveryRequest) -> Action + Send + Sync + 'static,
) -> impl Fn(&DeliveryRequest, usize) -> Action + Send + Sync + 'static {
    move |req, _| {
        if req.sender.is_empty() {
            Action::Sent
        } else {
            action(req)
        }
    }
}

/// Asserts that `text` holds each of `wanted`.
fn assert_contains(text: &str, wanted: &[&str]) {
    for want in wanted {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

fn list(inst: &Instance) -> String {
    let out = inst.qctl(&["list"]);
    postern_tests::assert_success(&out);
    String::from_utf8(out.stdout).unwrap()
}

/// `delay=0.12, delays=0.01/0.01/0/0.1`: every number in Postfix's form.
fn assert_delays(line: &str) {
    let field = |name: &str| -> String {
        let start = line
            .find(name)
            .unwrap_or_else(|| panic!("{name} in {line}"))
            + name.len();
        line[start..].split(',').next().unwrap().to_string()
    };
    // A number, at most two decimals, no trailing zero after the point.
    let is_number = |s: &str| {
        s.parse::<f64>().is_ok()
            && match s.split_once('.') {
                Some((_, d)) => d.len() <= 2 && !d.ends_with('0'),
                None => true,
            }
    };
    assert!(is_number(&field(" delay=")), "{line}");
    let delays = field(" delays=");
    let parts: Vec<&str> = delays.split('/').collect();
    assert_eq!(parts.len(), 4, "{line}");
    assert!(parts.iter().all(|p| is_number(p)), "{line}");
}

#[test]
fn a_sent_message_is_logged_postfix_style_and_removed() {
    let inst = start_qmgr_only("");
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, _| Action::Sent);
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);

    let got = agent.wait_requests(1, &inst);
    let req = &got[0].request;
    assert_eq!(req.queue_id, id);
    assert_eq!(req.sender, "alice@example.org");
    assert_eq!(req.transport, "smtp");
    assert_eq!(req.nexthop, "example.com");
    assert_eq!(req.recipients[0].address, "bob@example.com");
    assert_eq!(got[0].body, BODY);

    let from = inst.wait_log_line(&[&format!("{id}: from=<alice@example.org>")]);
    assert!(
        from.contains(&format!("size={}, nrcpt=1 (queue active)", BODY.len())),
        "{from}"
    );
    let sent = inst.wait_log_line(&[&format!("{id}: to=<bob@example.com>"), "status=sent"]);
    assert!(sent.contains("postern/qmgr["), "{sent}");
    assert!(
        sent.contains(", relay=mx.example.com[127.0.0.1]:25, delay="),
        "{sent}"
    );
    assert!(
        sent.ends_with(", dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4XYZ)"),
        "{sent}"
    );
    assert_delays(&sent);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    assert!(wait_for(LONG, || list(&inst).contains("Mail queue is empty")));
}

#[test]
fn a_queued_message_is_listed_and_survives_a_qmgr_kill() {
    let inst = start_qmgr_only("");
    // The first delivery hangs until qmgr dies; the retry succeeds.
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, n| {
        if n == 0 { Action::Stall } else { Action::Sent }
    });
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    agent.wait_requests(1, &inst);

    let text = list(&inst);
    assert!(
        text.starts_with("-Queue ID-  --Size-- ----Arrival Time---- -Sender/Recipient-------\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{id}*")),
        "active is marked with *: {text}"
    );
    assert!(text.contains("alice@example.org"), "{text}");
    assert!(
        text.contains(&format!("{:42}bob@example.com", "")),
        "{text}"
    );
    assert!(text.contains("-- 1 Kbytes in 1 Request."), "{text}");

    let old = inst.pids("qmgr");
    assert_eq!(old.len(), 1);
    unsafe { libc::kill(old[0] as i32, libc::SIGKILL) };
    assert!(
        wait_for(LONG, || {
            let now = inst.pids("qmgr");
            now.len() == 1 && now != old && inst.all_ready()
        }),
        "qmgr was not restarted:\n{}",
        inst.log()
    );
    let got = agent.wait_requests(2, &inst);
    assert_eq!(
        got[1].request.queue_id, id,
        "recovery delivers the same message"
    );
    inst.wait_log_line(&[&format!("{id}: to=<bob@example.com>"), "status=sent"]);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    assert!(wait_for(LONG, || list(&inst).contains("Mail queue is empty")));
}

#[test]
fn a_deferred_message_is_listed_with_its_reason_and_retried_after_the_backoff() {
    let inst = start_qmgr_only(
        "minimal_backoff_time = \"3s\"\nmaximal_backoff_time = \"10s\"\nqueue_run_delay = \"1s\"",
    );
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, n| {
        if n == 0 {
            Action::Defer("450 4.2.0 <bob@example.com>: mailbox busy")
        } else {
            Action::Sent
        }
    });
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    agent.wait_requests(1, &inst);
    let deferred = inst.wait_log_line(&[&format!("{id}: to=<bob@example.com>"), "status=deferred"]);
    assert!(
        deferred
            .ends_with("dsn=4.2.0, status=deferred (450 4.2.0 <bob@example.com>: mailbox busy)"),
        "{deferred}"
    );

    let text = list(&inst);
    assert!(
        text.contains(&format!("{id} ")),
        "deferred is not marked: {text}"
    );
    assert!(!text.contains(&format!("{id}*")), "{text}");
    assert!(
        text.contains("\n(450 4.2.0 <bob@example.com>: mailbox busy)\n"),
        "{text}"
    );
    let json = inst.qctl(&["--json", "list"]);
    let entry: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(entry["queue_name"], "deferred");
    assert_eq!(entry["queue_id"], id.as_str());
    assert_eq!(entry["recipients"][0]["address"], "bob@example.com");
    assert_eq!(
        entry["recipients"][0]["delay_reason"],
        "450 4.2.0 <bob@example.com>: mailbox busy"
    );

    let got = agent.wait_requests(2, &inst);
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
    inst.wait_log_line(&[&format!("{id}: removed")]);
}

const USER_UNKNOWN: &str = "host mx.example.com[127.0.0.1] said: 550 5.1.1 <bob@example.com>: User unknown (in reply to RCPT TO command)";

#[test]
fn a_bounce_returns_a_delivery_status_notification_to_the_sender() {
    let inst = start_qmgr_only("");
    let agent = FakeAgent::start(
        private(&inst, "smtp"),
        notices_sent(|_| Action::Bounce(USER_UNKNOWN)),
    );
    let bob = EnvelopeRecipient {
        address: "bob@example.com".into(),
        orcpt: Some(postern_envelope::Orcpt::rfc822("bob@example.com")),
        notify: None,
    };
    let id = enqueue(&inst, "alice@example.org", &[bob], BODY);
    let got = agent.wait_requests(2, &inst);
    let dsn = &got[1];
    assert_eq!(dsn.request.sender, "", "bounces use the null sender");
    assert_eq!(dsn.request.recipients[0].address, "alice@example.org");
    let text = String::from_utf8_lossy(&dsn.body);
    assert_contains(
        &text,
        &[
            "From: MAILER-DAEMON@mail.example.local (Mail Delivery System)\r\n",
            "To: alice@example.org\r\n",
            "Content-Type: multipart/report; report-type=delivery-status;",
            "This is the mail system at host mail.example.local.",
            "Content-Type: message/delivery-status\r\n",
            "Reporting-MTA: dns; mail.example.local\r\n",
            "Final-Recipient: rfc822; bob@example.com\r\n",
            "Original-Recipient: rfc822;bob@example.com\r\n",
            "Action: failed\r\n",
            "Status: 5.1.1\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: User unknown\r\n",
            "Content-Type: message/rfc822\r\n",
            "Subject: test\r\n",
        ],
    );
    let bounced = inst.wait_log_line(&[&format!("{id}: to=<bob@example.com>"), "status=bounced"]);
    assert!(bounced.contains("dsn=5.1.1"), "{bounced}");
    let note = inst.wait_log_line(&[&format!("{id}: sender non-delivery notification: ")]);
    let new_id = note.rsplit(' ').next().unwrap();
    assert_eq!(dsn.request.queue_id, new_id);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    inst.wait_log_line(&[&format!("{new_id}: removed")]);
}

#[test]
fn notify_never_suppresses_the_bounce() {
    let inst = start_qmgr_only("");
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, _| Action::Bounce(USER_UNKNOWN));
    let bob = EnvelopeRecipient {
        address: "bob@example.com".into(),
        orcpt: None,
        notify: Some(postern_envelope::Notify::NEVER),
    };
    let id = enqueue(&inst, "alice@example.org", &[bob], BODY);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(agent.received().len(), 1, "no notification was sent");
    assert!(
        !inst.log().contains("non-delivery notification"),
        "{}",
        inst.log()
    );
}

#[test]
fn a_failed_bounce_goes_to_the_postmaster_never_to_the_null_sender() {
    let inst = start_qmgr_only("");
    let smtp = FakeAgent::start(private(&inst, "smtp"), |_, _| Action::Bounce(USER_UNKNOWN));
    // The postmaster's copy fails too: it is dropped, not bounced again.
    let local = FakeAgent::start(private(&inst, "local"), |_, _| {
        Action::Bounce("unknown user: \"postmaster\"")
    });
    let id = enqueue(&inst, "", &[rcpt("bob@example.com")], BODY);

    let notice = &local.wait_requests(1, &inst)[0];
    assert_eq!(notice.request.sender, "double-bounce@mail.example.local");
    // Cleanup's rewriting appends @$myorigin to the bare name.
    assert_eq!(
        notice.request.recipients[0].address,
        "postmaster@mail.example.local"
    );
    assert_eq!(notice.request.transport, "local");
    assert_contains(
        &String::from_utf8_lossy(&notice.body),
        &[
            "Subject: Postmaster Copy: Undelivered Mail",
            "Final-Recipient: rfc822; bob@example.com",
        ],
    );
    inst.wait_log_line(&[&format!("{id}: postmaster non-delivery notification: ")]);
    inst.wait_log_line(&["undeliverable postmaster notification discarded"]);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    assert!(
        wait_for(LONG, || list(&inst).contains("Mail queue is empty")),
        "{}",
        list(&inst)
    );
    for r in smtp.received() {
        assert_eq!(r.request.recipients.len(), 1);
        assert_eq!(
            r.request.recipients[0].address, "bob@example.com",
            "nothing to <>"
        );
    }
    assert!(!inst.log().contains("to=<>"), "{}", inst.log());
}

#[test]
fn a_message_past_maximal_queue_lifetime_is_returned() {
    let inst = start_qmgr_only(
        "maximal_queue_lifetime = \"2s\"\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\nqueue_run_delay = \"1s\"",
    );
    let agent = FakeAgent::start(
        private(&inst, "smtp"),
        notices_sent(|_| Action::Defer("451 4.3.0 try again later")),
    );
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    inst.wait_log_line(&[&format!(
        "{id}: from=<alice@example.org>, status=expired, returned to sender"
    )]);
    assert_contains(
        &agent.wait_notice(&inst),
        &[
            "message has been in the queue too long",
            "Action: failed\r\nStatus: 4.2.0\r\n",
            "Diagnostic-Code: smtp; 451 4.3.0 try again later",
        ],
    );
    inst.wait_log_line(&[&format!("{id}: removed")]);
}

#[test]
fn hold_release_and_delete_through_qctl() {
    // No agent listens: the attempt defers, never bounces.
    let inst = start_qmgr_only("minimal_backoff_time = \"60s\"");
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    let deferred = inst.wait_log_line(&[&format!("{id}: to=<bob@example.com>"), "status=deferred"]);
    assert!(
        deferred.contains(
            "relay=none, delay="
        ) && deferred.contains(
            "dsn=4.3.0, status=deferred (delivery temporarily suspended: connect to transport private/smtp: No such file or directory)"
        ),
        "{deferred}"
    );

    let out = inst.qctl(&["hold", &id]);
    postern_tests::assert_success(&out);
    inst.wait_log_line(&[&format!("{id}: placed on hold")]);
    assert!(list(&inst).contains(&format!("{id}!")), "{}", list(&inst));

    let out = inst.qctl(&["release", &id]);
    postern_tests::assert_success(&out);
    inst.wait_log_line(&[&format!("{id}: released from hold")]);
    assert!(!list(&inst).contains(&format!("{id}!")), "{}", list(&inst));
    assert!(
        !inst.qctl(&["release", &id]).status.success(),
        "not on hold any more"
    );

    let out = inst.qctl(&["delete", &id]);
    postern_tests::assert_success(&out);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    assert_eq!(list(&inst), "Mail queue is empty\n");
    assert!(!inst.qctl(&["delete", &id]).status.success());
}

#[test]
fn flush_retries_deferred_mail_now() {
    let inst = start_qmgr_only("minimal_backoff_time = \"1h\"\nmaximal_backoff_time = \"2h\"");
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    inst.wait_log_line(&[&format!("{id}: to=<bob@example.com>"), "status=deferred"]);
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, _| Action::Sent);
    let out = inst.qctl(&["flush"]);
    postern_tests::assert_success(&out);
    agent.wait_requests(1, &inst);
    inst.wait_log_line(&[&format!("{id}: removed")]);
}

/// A transport table missing at start refuses mail for the while (the
/// client hears 451); once the file is there it routes, without a reload.
#[test]
fn a_transport_table_that_appears_later_is_used_without_a_reload() {
    let inst = start_qmgr_only("transport_maps = \"hash:transport\"");
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, _| Action::Sent);
    let socket = private(&inst, "qmgr");
    let try_enqueue = || {
        runtime().block_on(enqueue_async(
            &socket,
            "alice@example.org",
            &[rcpt("bob@example.com")],
            BODY,
        ))
    };
    match try_enqueue() {
        QmgrReply::Failed { reason } => assert!(reason.contains("transport"), "{reason}"),
        other => panic!("queued without its transport table: {other:?}"),
    }
    std::fs::write(
        inst.dir.path().join("transport"),
        "example.com smtp:[relay.example.net]\n",
    )
    .unwrap();
    assert!(
        wait_for(LONG, || matches!(try_enqueue(), QmgrReply::Queued { .. })),
        "{}",
        inst.log()
    );
    let got = agent.wait_requests(1, &inst);
    assert_eq!(got[0].request.nexthop, "[relay.example.net]");
}

/// Writes `frame` on `stream` and asserts (`message`) that qmgr closes the
/// connection without a word.
async fn assert_closed_after(mut stream: UnixStream, frame: &[u8], message: &str) {
    stream.write_all(frame).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(IO, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "{message}");
}

#[test]
fn a_garbled_frame_closes_the_connection_and_qmgr_keeps_serving() {
    let inst = start_qmgr_only("");
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, _| Action::Sent);
    let pids = inst.pids("qmgr");
    let socket = private(&inst, "qmgr");
    runtime().block_on(async {
        let mut conn = Connection::new(UnixStream::connect(&socket).await.unwrap());
        conn.client_hello(Protocol::Qmgr, IO).await.unwrap();
        let garbled = [0, 0, 0, 6, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa];
        assert_closed_after(conn.into_inner(), &garbled, "qmgr closes the connection").await;
    });
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    agent.wait_requests(1, &inst);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    assert_eq!(inst.pids("qmgr"), pids, "no restart");
    assert_eq!(inst.service_status("qmgr").unwrap()["restarts"], 0);
}

/// Each of qmgr's sockets speaks one protocol: a client of the other is
/// refused at the hello with the reason, a garbled frame on the
/// administration socket ends only that connection, and qmgr goes on
/// serving both, a message being received meanwhile included.
#[test]
fn each_qmgr_socket_refuses_the_other_protocol_and_keeps_serving() {
    let inst = start_qmgr_only("");
    let pids = inst.pids("qmgr");
    let enqueue_socket = private(&inst, "qmgr");
    let admin_socket = private(&inst, "qmgr-admin");
    let id = runtime().block_on(async {
        let connect = |path: &PathBuf| {
            let path = path.clone();
            async move { Connection::new(UnixStream::connect(path).await.unwrap()) }
        };
        let mut submitter = connect(&enqueue_socket).await;
        submitter.client_hello(Protocol::Qmgr, IO).await.unwrap();
        let r: QmgrReply = submitter.request(&QmgrRequest::Begin, IO).await.unwrap();
        assert!(matches!(r, QmgrReply::Started { .. }), "{r:?}");
        submitter
            .send(&QmgrRequest::Body {
                data: BODY.to_vec(),
            })
            .await
            .unwrap();

        for (socket, speaks, asked) in [
            (&enqueue_socket, Protocol::Qmgr, Protocol::QmgrAdmin),
            (&admin_socket, Protocol::QmgrAdmin, Protocol::Qmgr),
        ] {
            let e = connect(socket)
                .await
                .client_hello(asked, IO)
                .await
                .unwrap_err()
                .to_string();
            let reason = format!("this socket speaks {speaks}, client asked for {asked}");
            assert!(e.contains(&reason), "{e}");
        }

        let mut admin = connect(&admin_socket).await;
        admin.client_hello(Protocol::QmgrAdmin, IO).await.unwrap();
        let garbled = [0, 0, 0, 4, 0xff, 0xfe, 0xfd, 0xfc];
        let closed = "qmgr closes the garbled connection";
        assert_closed_after(admin.into_inner(), &garbled, closed).await;

        let envelope = postern_ipc::qmgr::Envelope {
            sender: "alice@example.org".into(),
            recipients: vec![rcpt("bob@example.com")],
            ..Default::default()
        };
        match submitter
            .request(
                &QmgrRequest::Commit {
                    envelope: Box::new(envelope),
                },
                IO,
            )
            .await
            .unwrap()
        {
            QmgrReply::Queued { id } => id.to_string(),
            other => panic!("{other:?}"),
        }
    });
    inst.wait_log_line(&["postern-qmgr-admin: cannot decode message"]);
    // No agent listens: the message is deferred and listed.
    assert!(list(&inst).contains(&id), "{}", list(&inst));
    assert_eq!(inst.pids("qmgr"), pids, "no restart");
}

/// A qmgr service written before the administration socket (one socket
/// in `listen`) still receives and delivers mail, and says at start that
/// qctl cannot reach the queue.
#[test]
fn a_qmgr_service_with_only_the_enqueueing_socket_still_receives_mail() {
    let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let both = "listen = [\"qmgr\", \"qmgr-admin\", \"public/showq\"]";
    let config = Instance::standard_config_only(smtp, "", "qmgr");
    assert!(config.contains(both), "{config}");
    let inst = Instance::create(smtp, &config.replace(both, "listen = \"qmgr\"")).launch();
    inst.wait_log_line(&["service qmgr has no administration socket"]);
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, _| Action::Sent);
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    agent.wait_requests(1, &inst);
    inst.wait_log_line(&[&format!("{id}: removed")]);
    assert!(!private(&inst, "qmgr-admin").exists());
    assert!(!inst.qctl(&["list"]).status.success());
}

#[test]
fn an_abandoned_message_is_not_queued() {
    let inst = start_qmgr_only("");
    let socket = private(&inst, "qmgr");
    runtime().block_on(async {
        let mut conn = Connection::new(UnixStream::connect(&socket).await.unwrap());
        conn.client_hello(Protocol::Qmgr, IO).await.unwrap();
        let r: QmgrReply = conn.request(&QmgrRequest::Begin, IO).await.unwrap();
        assert!(matches!(r, QmgrReply::Started { .. }));
        conn.send(&QmgrRequest::Body {
            data: BODY.to_vec(),
        })
        .await
        .unwrap();
        conn.send(&QmgrRequest::Abort).await.unwrap();
        let mut admin = Connection::new(
            UnixStream::connect(private(&inst, "qmgr-admin"))
                .await
                .unwrap(),
        );
        admin.client_hello(Protocol::QmgrAdmin, IO).await.unwrap();
        let r: AdminReply = admin.request(&AdminRequest::List, IO).await.unwrap();
        assert_eq!(
            r,
            AdminReply::Queue {
                messages: Vec::new()
            }
        );
        // The connection still serves: a request after the abort works.
        let r: QmgrReply = conn.request(&QmgrRequest::Begin, IO).await.unwrap();
        assert!(matches!(r, QmgrReply::Started { .. }));
        // Closing mid-message drops it too.
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(list(&inst), "Mail queue is empty\n");
}

#[test]
fn recipients_are_grouped_by_route_within_the_recipient_limit() {
    let inst = start_qmgr_only("default_destination_recipient_limit = \"2\"");
    let smtp = FakeAgent::start(
        private(&inst, "smtp"),
        notices_sent(|req| {
            if req.nexthop == "example.net" {
                Action::Bounce(USER_UNKNOWN)
            } else {
                Action::Sent
            }
        }),
    );
    let local = FakeAgent::start(private(&inst, "local"), |_, _| Action::Sent);
    let rcpts: Vec<EnvelopeRecipient> = [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.net",
        "e@mail.example.local",
        "f@localhost",
    ]
    .iter()
    .map(|a| rcpt(a))
    .collect();
    let id = enqueue(&inst, "alice@example.org", &rcpts, BODY);
    inst.wait_log_line(&[&format!("{id}: removed")]);

    let mut remote: Vec<(String, Vec<String>)> = smtp
        .received()
        .iter()
        .filter(|r| r.request.queue_id == id)
        .map(|r| {
            let rcpts = r.request.recipients.iter().map(|x| x.address.clone());
            (r.request.nexthop.clone(), rcpts.collect())
        })
        .collect();
    remote.sort();
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        remote,
        [
            (
                "example.com".into(),
                owned(&["a@example.com", "b@example.com"])
            ),
            ("example.com".into(), owned(&["c@example.com"])),
            ("example.net".into(), owned(&["d@example.net"])),
        ]
    );
    let mut locals: Vec<(String, String)> = local
        .received()
        .iter()
        .flat_map(|r| {
            let hop = r.request.nexthop.clone();
            r.request
                .recipients
                .iter()
                .map(move |x| (hop.clone(), x.address.clone()))
        })
        .collect();
    locals.sort();
    // Local mail has one next hop, $myhostname, as trivial-rewrite says.
    assert_eq!(
        locals,
        [
            (
                "mail.example.local".to_string(),
                "e@mail.example.local".to_string()
            ),
            ("mail.example.local".to_string(), "f@localhost".to_string()),
        ]
    );
    // The notification names only the bounced recipient.
    let text = smtp.wait_notice(&inst);
    assert_contains(&text, &["Final-Recipient: rfc822; d@example.net"]);
    assert!(
        !text.contains("Final-Recipient: rfc822; a@example.com"),
        "{text}"
    );
}

#[test]
fn destination_concurrency_is_limited() {
    let inst = start_qmgr_only("default_destination_concurrency_limit = \"1\"");
    let agent = FakeAgent::start(private(&inst, "smtp"), |_, _| {
        Action::SlowSent(Duration::from_millis(300))
    });
    let ids: Vec<String> = (0..3)
        .map(|_| enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY))
        .collect();
    for id in &ids {
        inst.wait_log_line(&[&format!("{id}: removed")]);
    }
    assert_eq!(agent.received().len(), 3);
    assert_eq!(
        agent.max_concurrent(),
        1,
        "one request at a time to example.com"
    );
}

#[test]
fn the_queue_survives_a_graceful_qmgr_restart() {
    let inst = start_qmgr_only("minimal_backoff_time = \"1h\"\nmaximal_backoff_time = \"2h\"");
    let id = enqueue(&inst, "alice@example.org", &[rcpt("bob@example.com")], BODY);
    inst.wait_log_line(&[&format!("{id}: to=<bob@example.com>"), "status=deferred"]);
    inst.restart_service("qmgr");
    let text = list(&inst);
    assert!(text.contains(&format!("{id} ")), "{text}");
    assert!(
        text.contains("(delivery temporarily suspended: connect to transport private/smtp"),
        "{text}"
    );
}

/// Unmounts the tmpfs under a test queue (lazily: daemons may still be
/// exiting).
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_full_disk_answers_failed_and_keeps_nothing() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPED: needs root to mount a tmpfs");
        return;
    }
    let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = Instance::standard_config(smtp, "minimal_backoff_time = \"1h\"", "");
    let mut parts = text.split("\n[[service]]\n");
    let mut config = parts.next().unwrap().to_string();
    for service in parts.filter(|s| s.contains("name = \"qmgr\"")) {
        config.push_str("\n[[service]]\n");
        config.push_str(service);
    }
    let created = Instance::create(smtp, &config);
    let store = created.queue_directory().join("queue");
    std::fs::create_dir_all(&store).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&store)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    }
    let _mount = Mount(store.clone());
    let owner = nix::unistd::User::from_name(postern_tests::TEST_MAIL_OWNER)
        .unwrap()
        .unwrap();
    nix::unistd::chown(&store, Some(owner.uid), Some(owner.gid)).unwrap();
    let inst = created.launch();

    let socket = private(&inst, "qmgr");
    let body: Vec<u8> = b"Subject: big\r\n\r\n"
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'x', 1 << 20))
        .collect();
    let mut queued = Vec::new();
    let mut failed = None;
    let rt = runtime();
    for _ in 0..200 {
        match rt.block_on(enqueue_async(
            &socket,
            "alice@example.org",
            &[rcpt("bob@example.com")],
            &body,
        )) {
            QmgrReply::Queued { id } => queued.push(id.to_string()),
            QmgrReply::Failed { reason } => {
                failed = Some(reason);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let reason = failed.expect("a 24 MiB queue must fill up");
    assert!(!reason.is_empty());
    assert!(!queued.is_empty(), "the first messages fit");
    // Whatever qmgr does next (keep serving, or restart to reopen a store
    // whose fdatasync failed), every listed message is one it said Queued.
    let out = inst.qctl(&["--json", "list"]);
    if out.status.success() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = entry["queue_id"].as_str().unwrap().to_string();
            assert!(queued.contains(&id), "{id} was never queued");
        }
    }
}
