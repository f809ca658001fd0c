//! qmgr scheduling for remote mail: slow start per destination, dead
//! destinations that stop using delivery slots, and delay warnings. As in
//! tests/qmgr.rs the test plays the delivery agent on `private/smtp`,
//! deciding per request (by next hop or sender) what to answer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_ipc::delivery::{
    DeliveryMessage, DeliveryReply, DeliveryRequest, DeliveryStatus, RecipientResult,
};
use postern_ipc::qmgr::{Envelope, EnvelopeRecipient, QmgrReply, QmgrRequest};
use postern_ipc::{Connection, Protocol};
use postern_tests::{Instance, free_port, wait_for};
use tokio::net::{UnixListener, UnixStream};

const LONG: Duration = Duration::from_secs(30);
const IO: Duration = Duration::from_secs(10);
const BODY: &[u8] = b"From: alice@example.org\r\nSubject: test\r\n\r\nHello.\r\n";

/// An instance running only qmgr (plus the master), with `main_extra`.
fn start(main_extra: &str) -> Instance {
    let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = Instance::standard_config(smtp, main_extra, "");
    let mut parts = text.split("\n[[service]]\n");
    let mut config = parts.next().unwrap().to_string();
    for service in parts.filter(|s| s.contains("name = \"qmgr\"")) {
        config.push_str("\n[[service]]\n");
        config.push_str(service);
    }
    Instance::create(smtp, &config).launch()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn private(inst: &Instance, name: &str) -> PathBuf {
    inst.queue_directory().join("private").join(name)
}

async fn enqueue_async(socket: &Path, sender: &str, rcpts: &[EnvelopeRecipient]) -> QmgrReply {
    let mut conn = Connection::new(UnixStream::connect(socket).await.unwrap());
    conn.client_hello(Protocol::Qmgr, IO).await.unwrap();
    let started: QmgrReply = conn.request(&QmgrRequest::Begin, IO).await.unwrap();
    assert!(matches!(started, QmgrReply::Started { .. }), "{started:?}");
    conn.send(&QmgrRequest::Body {
        data: BODY.to_vec(),
    })
    .await
    .unwrap();
    let envelope = Envelope {
        sender: sender.into(),
        recipients: rcpts.to_vec(),
        ..Envelope::default()
    };
    conn.request(&QmgrRequest::Commit { envelope }, IO)
        .await
        .unwrap()
}

fn rcpt(address: &str, notify: &[&str]) -> EnvelopeRecipient {
    EnvelopeRecipient {
        address: address.into(),
        notify: notify.iter().map(|s| s.to_string()).collect(),
        ..EnvelopeRecipient::default()
    }
}

fn enqueue(inst: &Instance, sender: &str, rcpts: &[EnvelopeRecipient]) -> String {
    let socket = private(inst, "qmgr");
    match runtime().block_on(enqueue_async(&socket, sender, rcpts)) {
        QmgrReply::Queued { id } => id,
        other => panic!("not queued: {other:?}\nlog:\n{}", inst.log()),
    }
}

/// What the fake agent answers: status, dsn, text, after a pause.
#[derive(Clone, Debug)]
struct Answer {
    status: DeliveryStatus,
    dsn: &'static str,
    detail: &'static str,
    pause: Duration,
}

fn sent(pause: Duration) -> Answer {
    Answer {
        status: DeliveryStatus::Sent,
        dsn: "2.0.0",
        detail: "250 2.0.0 Ok: queued as 4XYZ",
        pause,
    }
}

const REFUSED: &str = "connect to mx.dead.example[127.0.0.9]:25: Connection refused";

fn refused() -> Answer {
    Answer {
        status: DeliveryStatus::Deferred,
        dsn: "4.4.1",
        detail: REFUSED,
        pause: Duration::ZERO,
    }
}

#[derive(Clone, Debug)]
struct Received {
    request: DeliveryRequest,
    body: Vec<u8>,
    at: Instant,
}

type Decide = dyn Fn(&DeliveryRequest) -> Answer + Send + Sync;

struct Agent {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests being answered now, and the most ever at once.
    busy: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Agent {
    fn start(
        socket: PathBuf,
        decide: impl Fn(&DeliveryRequest) -> Answer + Send + Sync + 'static,
    ) -> Agent {
        let received = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let decide: Arc<Decide> = Arc::new(decide);
        let _ = std::fs::remove_file(&socket);
        let std_listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let (rec, counts) = (received.clone(), busy.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = UnixListener::from_std(std_listener).unwrap();
                while let Ok((stream, _)) = listener.accept().await {
                    let (rec, decide, busy) = (rec.clone(), decide.clone(), counts.clone());
                    tokio::spawn(async move { serve(stream, rec, decide, busy).await });
                }
            })
        });
        Agent { received, busy }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn to_nexthop(&self, nexthop: &str) -> usize {
        self.received()
            .iter()
            .filter(|r| r.request.nexthop == nexthop)
            .count()
    }
}

async fn serve(
    stream: UnixStream,
    rec: Arc<Mutex<Vec<Received>>>,
    decide: Arc<Decide>,
    busy: Arc<(AtomicUsize, AtomicUsize)>,
) {
    let mut conn = Connection::new(stream);
    if conn.server_hello(Protocol::Delivery, IO).await.is_err() {
        return;
    }
    loop {
        let request = match conn.recv::<DeliveryMessage>().await {
            Ok(Some(DeliveryMessage::Request(r))) => r,
            _ => return,
        };
        let mut body = Vec::new();
        loop {
            match conn.recv::<DeliveryMessage>().await {
                Ok(Some(DeliveryMessage::Body { data })) => body.extend_from_slice(&data),
                Ok(Some(DeliveryMessage::End)) => break,
                _ => return,
            }
        }
        rec.lock().unwrap().push(Received {
            request: request.clone(),
            body,
            at: Instant::now(),
        });
        let now = busy.0.fetch_add(1, Ordering::SeqCst) + 1;
        busy.1.fetch_max(now, Ordering::SeqCst);
        let answer = decide(&request);
        tokio::time::sleep(answer.pause).await;
        busy.0.fetch_sub(1, Ordering::SeqCst);
        let reply = DeliveryReply {
            results: request
                .recipients
                .iter()
                .map(|r| RecipientResult {
                    index: r.index,
                    status: answer.status,
                    dsn: answer.dsn.into(),
                    relay: format!("mx.{}[127.0.0.1]:25", request.nexthop),
                    detail: answer.detail.into(),
                    connect_secs: 0.01,
                    transmit_secs: 0.02,
                })
                .collect(),
        };
        if conn.send(&reply).await.is_err() {
            return;
        }
    }
}

fn count_lines(inst: &Instance, needles: &[&str]) -> usize {
    inst.log()
        .lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .count()
}

#[test]
fn a_destination_starts_slow_and_grows_to_the_limit() {
    let inst = start(
        "initial_destination_concurrency = \"2\"\ndefault_destination_concurrency_limit = \"6\"",
    );
    let pause = Duration::from_millis(800);
    let agent = Agent::start(private(&inst, "smtp"), move |_| sent(pause));
    for i in 0..24 {
        enqueue(
            &inst,
            "alice@example.org",
            &[rcpt(&format!("u{i}@slow.example"), &[])],
        );
    }
    assert!(
        wait_for(LONG, || count_lines(&inst, &["status=sent"]) >= 24),
        "{}",
        inst.log()
    );
    let got = agent.received();
    let first = got[0].at;
    // Only the initial two went out before the first answers came back.
    let early = got.iter().filter(|r| r.at < first + pause / 2).count();
    assert!(early <= 2, "{early} requests before any answer");
    let most = agent.busy.1.load(Ordering::SeqCst);
    assert!(most > 2 && most <= 6, "at most {most} at once");
}

#[test]
fn a_dead_destination_is_deferred_without_tying_up_slots() {
    let inst = start("minimal_backoff_time = \"60s\"\nmaximal_backoff_time = \"120s\"");
    let agent = Agent::start(private(&inst, "smtp"), |r| {
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
    assert!(
        wait_for(LONG, || count_lines(
            &inst,
            &["@good.example>", "status=sent"]
        ) >= 30),
        "{}",
        inst.log()
    );
    assert!(
        wait_for(LONG, || count_lines(
            &inst,
            &["@dead.example>", "status=deferred"]
        ) >= 30),
        "{}",
        inst.log()
    );
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
    let inst = start(
        "delay_warning_time = \"1s\"\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\nqueue_run_delay = \"1s\"",
    );
    // Mail to far.example is always deferred (a 4.2.0 reply from the
    // remote, so the destination stays alive); notifications are sent.
    let agent = Agent::start(private(&inst, "smtp"), |r| {
        if r.nexthop == "far.example" {
            Answer {
                status: DeliveryStatus::Deferred,
                dsn: "4.2.0",
                detail: "host mx.far.example[127.0.0.1] said: 450 4.2.0 try later (in reply to RCPT TO command)",
                pause: Duration::ZERO,
            }
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
        assert!(
            wait_for(LONG, || count_lines(
                &inst,
                &[&format!("{id}: to=<bob@far.example>"), "status=deferred"]
            ) >= 4),
            "{}",
            inst.log()
        );
    }
    assert!(
        wait_for(LONG, || count_lines(
            &inst,
            &[&format!("{wants}: to=<bob@far.example>")]
        ) >= attempts + 2),
        "{}",
        inst.log()
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

    let notices: Vec<Received> = agent
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
