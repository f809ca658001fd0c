//! qmgr alone, with stand-ins for its peers: an instance running only
//! qmgr, enqueueing as smtpd does, and a fake delivery agent on
//! `private/<transport>` that records every request and answers as the
//! test decides. And the other way round, a real delivery agent alone:
//! [`start_smtp_client_only`], and [`deliver`] playing qmgr.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::dns::DnsServer;
use postern_ipc::delivery::{
    DeliveryMessage, DeliveryReply, DeliveryRequest, DeliveryStatus, RecipientResult, Relay,
    SegmentBody,
};
use postern_ipc::qmgr::{Envelope, EnvelopeRecipient, QmgrReply, QmgrRequest};
use postern_ipc::{Connection, FdStream, Protocol};
use tokio::net::{UnixListener, UnixStream};

use crate::{Instance, wait_for};

const IO: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(30);

/// An instance running only qmgr (plus the master), with `main_extra`.
pub fn start_qmgr_only(main_extra: &str) -> Instance {
    Instance::start_only("qmgr", main_extra)
}

/// An instance running only smtp-client, resolving through `dns`, with
/// short SMTP time limits; `main_extra` may override any of them.
pub fn start_smtp_client_only(dns: &DnsServer, main_extra: &str) -> Instance {
    let quoted = |v: &str| format!("\"{v}\"");
    let mut defaults = vec![("dns_servers", quoted(&dns.addr.to_string()))];
    for (name, value) in [
        ("smtp_connect_timeout", "5s"),
        ("smtp_helo_timeout", "10s"),
        ("smtp_mail_timeout", "10s"),
        ("smtp_rcpt_timeout", "10s"),
        ("smtp_data_init_timeout", "10s"),
        ("smtp_data_xfer_timeout", "10s"),
        ("smtp_data_done_timeout", "10s"),
        ("smtp_quit_timeout", "5s"),
    ] {
        defaults.push((name, quoted(value)));
    }
    Instance::start_only("smtp-client", &crate::with_defaults(&defaults, main_extra))
}

/// A connection to the delivery agent on `private/<socket>`, after the
/// hello, as qmgr opens it.
pub async fn delivery_connection(inst: &Instance, socket: &str) -> Connection<UnixStream> {
    let stream = UnixStream::connect(private(inst, socket)).await.unwrap();
    let mut conn = Connection::new(stream);
    conn.client_hello(Protocol::Delivery, IO).await.unwrap();
    conn
}

/// Sends `req`, its body in `chunks` and End, as qmgr does; the reply,
/// which must have a result for every recipient.
pub async fn delivery_exchange(
    conn: &mut Connection<UnixStream>,
    req: DeliveryRequest,
    chunks: &[&[u8]],
) -> DeliveryReply {
    let n = req.recipients.len();
    conn.send(&DeliveryMessage::Request(req)).await.unwrap();
    for c in chunks {
        conn.send(&DeliveryMessage::Body { data: c.to_vec() })
            .await
            .unwrap();
    }
    conn.send(&DeliveryMessage::End).await.unwrap();
    let reply: DeliveryReply = conn.recv_timeout(2 * LONG).await.unwrap().expect("a reply");
    assert_eq!(reply.results.len(), n, "{reply:?}");
    reply
}

/// Plays qmgr for one request to the agent on `private/<socket>`: its
/// own connection, [`delivery_exchange`]; the reply.
pub fn deliver(
    inst: &Instance,
    socket: &str,
    req: DeliveryRequest,
    chunks: &[&[u8]],
) -> DeliveryReply {
    runtime().block_on(async {
        let mut conn = delivery_connection(inst, socket).await;
        delivery_exchange(&mut conn, req, chunks).await
    })
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `$queue_directory/private/NAME`.
pub fn private(inst: &Instance, name: &str) -> PathBuf {
    inst.queue_directory().join("private").join(name)
}

/// Hands a message to qmgr as smtpd does; the final reply (Queued or
/// Failed, which a full disk can give as early as the Begin).
pub async fn enqueue_async(
    socket: &Path,
    sender: &str,
    rcpts: &[EnvelopeRecipient],
    body: &[u8],
) -> QmgrReply {
    let mut conn = Connection::new(UnixStream::connect(socket).await.unwrap());
    conn.client_hello(Protocol::Qmgr, IO).await.unwrap();
    let started: QmgrReply = conn.request(&QmgrRequest::Begin, IO).await.unwrap();
    match started {
        QmgrReply::Started { .. } => {}
        QmgrReply::Failed { .. } => return started,
        other => panic!("{other:?}"),
    }
    for chunk in body.chunks(postern_ipc::BODY_CHUNK) {
        conn.send(&QmgrRequest::Body {
            data: chunk.to_vec(),
        })
        .await
        .unwrap();
    }
    let envelope = Envelope {
        sender: sender.into(),
        recipients: rcpts.to_vec(),
        ..Envelope::default()
    };
    conn.request(
        &QmgrRequest::Commit {
            envelope: Box::new(envelope),
        },
        IO,
    )
    .await
    .unwrap()
}

/// Enqueues `count` one-recipient messages over `connections` connections
/// at once, each carrying message after message as smtpd's do (so the
/// group commit batches them); their queue IDs.
pub fn enqueue_many(inst: &Instance, count: usize, connections: usize) -> Vec<String> {
    let socket = private(inst, "qmgr");
    let body = b"From: alice@example.org\r\nSubject: many\r\n\r\nHello.\r\n";
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let socket = socket.clone();
            let mine = (c..count).step_by(connections).collect::<Vec<_>>();
            tasks.spawn(async move {
                let mut conn = Connection::new(UnixStream::connect(&socket).await.unwrap());
                conn.client_hello(Protocol::Qmgr, IO).await.unwrap();
                let mut ids = Vec::new();
                for n in mine {
                    let r: QmgrReply = conn.request(&QmgrRequest::Begin, IO).await.unwrap();
                    assert!(matches!(r, QmgrReply::Started { .. }), "{r:?}");
                    conn.send(&QmgrRequest::Body {
                        data: body.to_vec(),
                    })
                    .await
                    .unwrap();
                    let envelope = Envelope {
                        sender: "alice@example.org".into(),
                        recipients: vec![EnvelopeRecipient {
                            address: format!("u{n}@far.example"),
                            ..EnvelopeRecipient::default()
                        }],
                        ..Envelope::default()
                    };
                    match conn
                        .request(
                            &QmgrRequest::Commit {
                                envelope: Box::new(envelope),
                            },
                            LONG,
                        )
                        .await
                    {
                        Ok(QmgrReply::Queued { id }) => ids.push(id.to_string()),
                        other => panic!("message {n}: {other:?}"),
                    }
                }
                ids
            });
        }
        let mut ids = Vec::with_capacity(count);
        while let Some(done) = tasks.join_next().await {
            ids.extend(done.unwrap());
        }
        ids
    })
}

/// Enqueues and returns the queue ID, asserting Queued.
pub fn enqueue(inst: &Instance, sender: &str, rcpts: &[EnvelopeRecipient], body: &[u8]) -> String {
    let socket = private(inst, "qmgr");
    match runtime().block_on(enqueue_async(&socket, sender, rcpts, body)) {
        QmgrReply::Queued { id } => id.to_string(),
        other => panic!("not queued: {other:?}\nlog:\n{}", inst.log()),
    }
}

/// What the fake agent does with a request.
#[derive(Clone, Debug)]
pub enum Action {
    Sent,
    /// Answer Sent after a pause (a slow destination).
    SlowSent(Duration),
    /// Deferred, 4.2.0, with this text.
    Defer(&'static str),
    /// Bounced, 5.1.1, with this text.
    Bounce(&'static str),
    /// Any answer, after a pause.
    Reply {
        status: DeliveryStatus,
        dsn: &'static str,
        detail: &'static str,
        pause: Duration,
    },
    /// Never answer (a delivery in flight when qmgr dies).
    Stall,
}

/// A request the fake agent got, with its body and when.
#[derive(Clone, Debug)]
pub struct Received {
    pub request: DeliveryRequest,
    pub body: Vec<u8>,
    pub at: Instant,
}

type Decide = dyn Fn(&DeliveryRequest, usize) -> Action + Send + Sync;

/// A delivery agent on a socket, answering per `decide(request, n)` where
/// n counts the requests before this one. Every recipient gets the same
/// answer, relayed by `mx.NEXTHOP[127.0.0.1]:25`.
#[derive(Debug)]
pub struct FakeAgent {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests being answered now, and the most ever at once.
    busy: Arc<(AtomicUsize, AtomicUsize)>,
}

impl FakeAgent {
    pub fn start(
        socket: PathBuf,
        decide: impl Fn(&DeliveryRequest, usize) -> Action + Send + Sync + 'static,
    ) -> FakeAgent {
        let received = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let decide: Arc<Decide> = Arc::new(decide);
        let _ = std::fs::remove_file(&socket);
        let std_listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        // qmgr runs as mail_owner; the test may be root.
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
        FakeAgent { received, busy }
    }

    /// The most requests it was answering at once.
    pub fn max_concurrent(&self) -> usize {
        self.busy.1.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The requests, once there are at least `n` (within 30 s).
    pub fn wait_requests(&self, n: usize, inst: &Instance) -> Vec<Received> {
        assert!(
            wait_for(LONG, || self.received().len() >= n),
            "agent got {} request(s), wanted {n}\nlog:\n{}",
            self.received().len(),
            inst.log()
        );
        self.received()
    }

    /// The body of the first request from the null sender (a bounce or
    /// delay notice), once there is one (within 30 s).
    pub fn wait_notice(&self, inst: &Instance) -> String {
        let notice = || {
            self.received()
                .into_iter()
                .find(|r| r.request.sender.is_empty())
        };
        assert!(
            wait_for(LONG, || notice().is_some()),
            "no notice; log:\n{}",
            inst.log()
        );
        String::from_utf8_lossy(&notice().unwrap().body).into_owned()
    }

    /// How many requests went to `nexthop`.
    pub fn to_nexthop(&self, nexthop: &str) -> usize {
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
    // As the real agents do: a body in the queue's segment files comes
    // as passed descriptors.
    let mut conn = Connection::new(FdStream::new(stream));
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
                Ok(Some(DeliveryMessage::Segments { extents })) => {
                    let mut segments = SegmentBody::take(extents, &mut conn).unwrap();
                    while let Some(piece) = segments.next_piece().unwrap() {
                        body.extend_from_slice(&piece);
                    }
                }
                Ok(Some(DeliveryMessage::End)) => break,
                _ => return,
            }
        }
        let n = {
            let mut r = rec.lock().unwrap();
            r.push(Received {
                request: request.clone(),
                body,
                at: Instant::now(),
            });
            r.len() - 1
        };
        let now = busy.0.fetch_add(1, Ordering::SeqCst) + 1;
        busy.1.fetch_max(now, Ordering::SeqCst);
        let sent = (
            DeliveryStatus::Sent,
            "2.0.0",
            "250 2.0.0 Ok: queued as 4XYZ",
        );
        let (answer, pause) = match decide(&request, n) {
            Action::Sent => (sent, Duration::ZERO),
            Action::SlowSent(pause) => (sent, pause),
            Action::Defer(t) => ((DeliveryStatus::Deferred, "4.2.0", t), Duration::ZERO),
            Action::Bounce(t) => ((DeliveryStatus::Bounced, "5.1.1", t), Duration::ZERO),
            Action::Reply {
                status,
                dsn,
                detail,
                pause,
            } => ((status, dsn, detail), pause),
            Action::Stall => {
                std::future::pending::<()>().await;
                return;
            }
        };
        tokio::time::sleep(pause).await;
        busy.0.fetch_sub(1, Ordering::SeqCst);
        let (status, dsn, detail) = answer;
        let reply = DeliveryReply {
            results: request
                .recipients
                .iter()
                .map(|r| RecipientResult {
                    index: r.index,
                    status,
                    dsn: dsn.parse().expect("the fake agent answers valid codes"),
                    relay: Relay::Remote {
                        host: format!("mx.{}", request.nexthop),
                        ip: std::net::Ipv4Addr::LOCALHOST.into(),
                        port: 25,
                    },
                    detail: detail.into(),
                    remote_reply: quoted_reply(detail),
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

/// What smtp-client sends along with a fake answer's text: the reply it
/// quotes (`host h said: 550 ... (in reply to RCPT TO command)`), or the
/// text itself when it is a reply (`451 4.3.0 try again later`).
fn quoted_reply(detail: &str) -> Option<String> {
    let reply = match detail.split_once(" said: ") {
        Some((_, said)) => said
            .rsplit_once(" (in reply to ")
            .map_or(said, |(reply, _)| reply),
        None => detail,
    };
    let code = reply.as_bytes().get(..4)?;
    (code[..3].iter().all(u8::is_ascii_digit) && code[3] == b' ').then(|| reply.to_string())
}
