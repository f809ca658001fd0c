//! Session tests: a whole conversation over an in-memory stream against a
//! fake queue, asserting the exact replies.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_config::Config;
use postern_ipc::BODY_CHUNK;
use postern_ipc::qmgr::Envelope;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use crate::queue::{Queue, QueueError};
use crate::session::{Client, Session};
use crate::settings::Settings;

/// What the fake queue saw.
#[derive(Debug, Default)]
struct Seen {
    next: u32,
    current: Option<(String, Vec<u8>)>,
    queued: Vec<(String, Envelope, Vec<u8>)>,
    aborted: u32,
    largest_chunk: usize,
    fail_begin: bool,
    fail_commit: bool,
}

#[derive(Debug, Clone, Default)]
struct FakeQueue(Arc<Mutex<Seen>>);

impl Queue for FakeQueue {
    async fn begin(&mut self) -> Result<String, QueueError> {
        let mut s = self.0.lock().unwrap();
        if s.fail_begin {
            return Err(QueueError::Failed("no queue".into()));
        }
        s.next += 1;
        let id = format!("4XB{}", s.next);
        s.current = Some((id.clone(), Vec::new()));
        Ok(id)
    }

    async fn body(&mut self, data: Vec<u8>) -> Result<(), QueueError> {
        let mut s = self.0.lock().unwrap();
        s.largest_chunk = s.largest_chunk.max(data.len());
        assert!(data.len() <= BODY_CHUNK);
        s.current.as_mut().expect("body after begin").1.extend(data);
        Ok(())
    }

    async fn commit(&mut self, envelope: Envelope) -> Result<String, QueueError> {
        let mut s = self.0.lock().unwrap();
        let (id, body) = s.current.take().expect("commit after begin");
        if s.fail_commit {
            return Err(QueueError::Failed("disk full".into()));
        }
        s.queued.push((id.clone(), envelope, body));
        Ok(id)
    }

    async fn abort(&mut self) {
        let mut s = self.0.lock().unwrap();
        s.current = None;
        s.aborted += 1;
    }

    async fn flush(&mut self) -> Result<(), QueueError> {
        Ok(())
    }
}

const BASE: &str = r#"
myhostname = "mail.example.local"
mydomain = "example.local"
mydestination = "$myhostname, localhost"
mynetworks = "127.0.0.0/8"
relay_domains = "example.local"
smtpd_relay_restrictions = "permit_mynetworks, reject_unauth_destination"
queue_directory = "/nonexistent"
# Not the host's /etc/aliases: a fresh machine has none.
alias_maps = "inline:{ postmaster=root }"
# Most tests send everything at once; sync_* tests turn this back on.
smtpd_forbid_unauth_pipelining = "no"
"#;

fn settings(extra: &str) -> Arc<Settings> {
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
    let overridden: Vec<String> = extra.lines().map(key).collect();
    let base: String = BASE
        .lines()
        .filter(|l| !overridden.contains(&key(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = format!("[main]\n{base}\n{extra}\n");
    let config = Config::from_str(&text, Path::new("/tmp/master.toml"), &[]).unwrap();
    let settings = Settings::from_params(config.main());
    if let Err(e) = &settings.policy {
        panic!("policy: {e}");
    }
    Arc::new(settings)
}

const OUTSIDE: &str = "192.0.2.10";
const INSIDE: &str = "127.0.0.1";

/// A session from `from` running on one end of an in-memory stream; the
/// other end, and the session's task.
fn start(
    settings: Arc<Settings>,
    from: &str,
    queue: FakeQueue,
    shutdown: Option<postern_daemon::Shutdown>,
) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (client, server) = tokio::io::duplex(1 << 16);
    let client_info = Client {
        name: "unknown".into(),
        name_status: crate::peername::NameStatus::Permanent,
        reverse_name: "unknown".into(),
        reverse_status: crate::peername::NameStatus::Permanent,
        addr: from.parse().unwrap(),
        port: 40000,
        local: None,
    };
    let session = Session::new(server, client_info, settings, queue, shutdown);
    (client, tokio::spawn(session.run()))
}

/// A client that waits for each reply before it sends more.
struct Stepwise {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    said: String,
}

impl Stepwise {
    fn new(client: DuplexStream) -> Stepwise {
        let (r, w) = tokio::io::split(client);
        Stepwise {
            r,
            w,
            said: String::new(),
        }
    }

    /// Sends `send`, then reads until all the server said ends with `want`.
    async fn expect(&mut self, send: &str, want: &str) {
        self.w.write_all(send.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        while !self.said.ends_with(want) {
            let n = self.r.read(&mut buf).await.unwrap();
            assert!(n > 0, "{}", self.said);
            self.said.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
    }
}

/// Sends `input` (all at once, as a pipelining client may), closes the
/// write side, and returns everything the server said.
async fn talk_with(
    settings: Arc<Settings>,
    from: &str,
    queue: FakeQueue,
    input: Vec<u8>,
) -> String {
    let (client, task) = start(settings, from, queue, None);
    let (mut r, mut w) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        // The server may hang up first; that is part of some tests.
        let _ = w.write_all(&input).await;
        let _ = w.shutdown().await;
        w
    });
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), r.read_to_end(&mut out))
        .await
        .expect("session ended")
        .unwrap();
    task.await.unwrap();
    drop(writer.await);
    String::from_utf8(out).unwrap()
}

async fn talk(extra: &str, from: &str, input: &str) -> (String, FakeQueue) {
    let queue = FakeQueue::default();
    let out = talk_with(
        settings(extra),
        from,
        queue.clone(),
        input.as_bytes().to_vec(),
    )
    .await;
    (out, queue)
}

fn lines(replies: &[&str]) -> String {
    replies.iter().map(|r| format!("{r}\r\n")).collect()
}

const GREETING: &str = "220 mail.example.local ESMTP Postern";

#[tokio::test]
async fn the_guides_telnet_session_is_queued() {
    let input = "helo localhost\r\nmail from: user1@hogehoge.local\r\nrcpt to: user@example.local\r\n\
                 data\r\nSubject: test\r\n\r\nhello\r\n.\r\nquit\r\n";
    let (out, queue) = talk("", OUTSIDE, input).await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "250 mail.example.local",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as 4XB1",
            "221 2.0.0 Bye",
        ])
    );
    let seen = queue.0.lock().unwrap();
    let (id, env, body) = &seen.queued[0];
    assert_eq!(id, "4XB1");
    assert_eq!(env.sender, "user1@hogehoge.local");
    assert_eq!(env.recipients[0].address, "user@example.local");
    let client = env.client.as_ref().unwrap();
    assert_eq!(
        (
            client.name.as_str(),
            client.addr.as_str(),
            client.helo.as_str()
        ),
        ("unknown", OUTSIDE, "localhost")
    );
    assert_eq!(client.protocol, "SMTP");
    let body = String::from_utf8(body.clone()).unwrap();
    assert!(
        body.starts_with(
            "Received: from localhost (unknown [192.0.2.10])\r\n\
             \tby mail.example.local (Postern) with SMTP id 4XB1\r\n\
             \tfor <user@example.local>; "
        ),
        "{body}"
    );
    assert!(
        body.contains("Subject: test\r\nMessage-ID: <4XB1@mail.example.local>\r\nDate: "),
        "{body}"
    );
    assert!(body.ends_with("\r\n\r\nhello\r\n"), "{body}");
}

#[tokio::test]
async fn ehlo_announces_the_extensions() {
    let (out, _) = talk("", INSIDE, "EHLO client.example\r\nQUIT\r\n").await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "250-mail.example.local",
            "250-PIPELINING",
            "250-SIZE 10240000",
            "250-ETRN",
            "250-ENHANCEDSTATUSCODES",
            "250-8BITMIME",
            "250-DSN",
            "250-SMTPUTF8",
            "250 CHUNKING",
            "221 2.0.0 Bye",
        ])
    );
}

#[tokio::test]
async fn vrfy_is_off_unless_enabled_and_size_zero_is_bare() {
    let (out, _) = talk("", INSIDE, "VRFY user\r\nQUIT\r\n").await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "502 5.5.1 VRFY command is disabled",
            "221 2.0.0 Bye"
        ])
    );
    let extra = "disable_vrfy_command = \"no\"\nmessage_size_limit = 0";
    let (out, _) = talk(
        extra,
        INSIDE,
        "EHLO x\r\nVRFY <user@example.local>\r\nQUIT\r\n",
    )
    .await;
    assert!(
        out.contains("250-SIZE\r\n250-VRFY\r\n250-ETRN\r\n"),
        "{out}"
    );
    assert!(out.contains("252 2.0.0 <user@example.local>\r\n"), "{out}");
}

#[tokio::test]
async fn pipelined_transactions_get_every_reply_in_order() {
    let input = "EHLO x\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.local>\r\n\
                 RCPT TO:<c@example.local>\r\nDATA\r\none\r\n.\r\n\
                 MAIL FROM:<>\r\nRCPT TO:<d@example.local>\r\nDATA\r\ntwo\r\n.\r\nQUIT\r\n";
    let (out, queue) = talk("", OUTSIDE, input).await;
    let replies: Vec<&str> = out.lines().filter(|l| !l.starts_with("250-")).collect();
    assert_eq!(
        replies,
        [
            GREETING,
            "250 CHUNKING",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as 4XB1",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "250 2.0.0 Ok: queued as 4XB2",
            "221 2.0.0 Bye",
        ]
    );
    let seen = queue.0.lock().unwrap();
    assert_eq!(seen.queued.len(), 2);
    // Two recipients: no `for` clause.
    let first = String::from_utf8_lossy(&seen.queued[0].2).to_string();
    assert!(first.contains("with ESMTP id 4XB1;\r\n\t"), "{first}");
    assert_eq!(seen.queued[1].1.sender, "");
}

#[tokio::test]
async fn commands_out_of_sequence() {
    let input = "RCPT TO:<b@example.local>\r\nDATA\r\nHELO x\r\nMAIL FROM:<a@x.org>\r\n\
                 MAIL FROM:<a@x.org>\r\nDATA\r\nRCPT TO:<u@example.net>\r\nDATA\r\n\
                 RSET\r\nRCPT TO:<b@example.local>\r\nNOOP\r\nQUIT\r\n";
    let (out, _) = talk("", OUTSIDE, input).await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "503 5.5.1 Error: need MAIL command",
            "503 5.5.1 Error: need RCPT command",
            "250 mail.example.local",
            "250 2.1.0 Ok",
            "503 5.5.1 Error: nested MAIL command",
            "554 5.5.1 Error: no valid recipients",
            "554 5.7.1 <u@example.net>: Relay access denied",
            "554 5.5.1 Error: no valid recipients",
            "250 2.0.0 Ok",
            "503 5.5.1 Error: need MAIL command",
            "250 2.0.0 Ok",
            "221 2.0.0 Bye",
        ])
    );
}

#[tokio::test]
async fn mynetworks_may_relay() {
    let input = "HELO x\r\nMAIL FROM:<a@example.local>\r\nRCPT TO:<u@example.net>\r\nQUIT\r\n";
    let (out, _) = talk("", INSIDE, input).await;
    assert!(out.contains("250 2.1.5 Ok\r\n"), "{out}");
}

#[tokio::test]
async fn recipient_limit() {
    let input = "HELO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<a@example.local>\r\n\
                 RCPT TO:<b@example.local>\r\nRCPT TO:<c@example.local>\r\nQUIT\r\n";
    let (out, _) = talk("smtpd_recipient_limit = 2", OUTSIDE, input).await;
    assert!(
        out.ends_with("250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n221 2.0.0 Bye\r\n"),
        "{out}"
    );
}

#[tokio::test]
async fn size_limit_at_mail_and_after_data() {
    let big = "x".repeat(300);
    let input = format!(
        "EHLO x\r\nMAIL FROM:<a@x.org> SIZE=1000\r\nMAIL FROM:<a@x.org> SIZE=50\r\n\
         RCPT TO:<b@example.local>\r\nDATA\r\n{big}\r\n.\r\nNOOP\r\nQUIT\r\n"
    );
    let (out, queue) = talk("message_size_limit = 100", OUTSIDE, &input).await;
    let replies: Vec<&str> = out.lines().filter(|l| !l.starts_with("250-")).collect();
    assert_eq!(
        replies,
        [
            GREETING,
            "250 CHUNKING",
            "552 5.3.4 Message size exceeds fixed limit",
            "250 2.1.0 Ok",
            "250 2.1.5 Ok",
            "354 End data with <CR><LF>.<CR><LF>",
            "552 5.3.4 Message size exceeds fixed limit",
            "250 2.0.0 Ok",
            "221 2.0.0 Bye",
        ]
    );
    let seen = queue.0.lock().unwrap();
    assert!(seen.queued.is_empty());
    assert_eq!(seen.aborted, 1);
}

#[tokio::test]
async fn too_many_hops() {
    let input = "HELO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\nDATA\r\n\
                 Received: one\r\nReceived: two\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    let (out, queue) = talk("hopcount_limit = 3", OUTSIDE, input).await;
    assert!(
        out.contains("354 End data with <CR><LF>.<CR><LF>\r\n554 5.4.0 Error: too many hops\r\n"),
        "{out}"
    );
    assert!(queue.0.lock().unwrap().queued.is_empty());
    // One fewer Received header passes.
    let input = input.replace("Received: two\r\n", "");
    let (out, _) = talk("hopcount_limit = 3", OUTSIDE, &input).await;
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
}

/// A false end of data (`\n.\n`) followed by a whole second transaction:
/// one message only, with the "smuggled" commands as its content.
const SMUGGLE: &str = "EHLO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\nDATA\r\n\
                       Subject: hi\r\n\r\nhello\n.\nMAIL FROM:<evil@x.org>\r\n\
                       RCPT TO:<victim@example.local>\r\nDATA\r\nsmuggled\r\n.\r\nQUIT\r\n";

#[tokio::test]
async fn smuggling_normalize_keeps_one_message() {
    let (out, queue) = talk("", OUTSIDE, SMUGGLE).await;
    assert_eq!(out.matches("queued as").count(), 1, "{out}");
    assert!(
        out.ends_with("250 2.0.0 Ok: queued as 4XB1\r\n221 2.0.0 Bye\r\n"),
        "{out}"
    );
    let seen = queue.0.lock().unwrap();
    assert_eq!(seen.queued.len(), 1);
    let body = String::from_utf8_lossy(&seen.queued[0].2).to_string();
    assert!(
        body.ends_with("hello\r\n.\r\nMAIL FROM:<evil@x.org>\r\nRCPT TO:<victim@example.local>\r\nDATA\r\nsmuggled\r\n"),
        "{body}"
    );
    assert_eq!(seen.queued[0].1.recipients.len(), 1);
}

#[tokio::test]
async fn smuggling_reject_refuses_and_disconnects() {
    let (out, queue) = talk("smtpd_forbid_bare_newline = \"reject\"", OUTSIDE, SMUGGLE).await;
    assert!(
        out.ends_with(
            "354 End data with <CR><LF>.<CR><LF>\r\n521 5.5.2 mail.example.local Error: bare <LF> received\r\n"
        ),
        "{out}"
    );
    let seen = queue.0.lock().unwrap();
    assert!(seen.queued.is_empty());
    assert_eq!(seen.aborted, 1);
}

#[tokio::test]
async fn bare_newline_no_keeps_lf_but_not_the_false_end() {
    let (out, queue) = talk("smtpd_forbid_bare_newline = \"no\"", OUTSIDE, SMUGGLE).await;
    assert_eq!(out.matches("queued as").count(), 1, "{out}");
    let seen = queue.0.lock().unwrap();
    let body = String::from_utf8_lossy(&seen.queued[0].2).to_string();
    assert!(
        body.contains("hello\n.\nMAIL FROM:<evil@x.org>\r\n"),
        "{body}"
    );
}

#[tokio::test]
async fn bare_newline_command_under_reject() {
    let (out, _) = talk(
        "smtpd_forbid_bare_newline = \"reject\"",
        OUTSIDE,
        "HELO x\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "521 5.5.2 mail.example.local Error: bare <LF> received"
        ])
    );
    // normalize accepts it.
    let (out, _) = talk("", OUTSIDE, "HELO x\nQUIT\n").await;
    assert_eq!(
        out,
        lines(&[GREETING, "250 mail.example.local", "221 2.0.0 Bye"])
    );
}

#[tokio::test]
async fn bdat_chunks_are_raw() {
    let input = "EHLO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\n\
                 BDAT 16\r\nSubject: a\r\n\r\n.\nBDAT 5 LAST\r\nb\r\n\r\nQUIT\r\n";
    let (out, queue) = talk("", OUTSIDE, input).await;
    assert!(
        out.ends_with(
            "250 2.1.5 Ok\r\n250 2.0.0 Ok: 16 bytes\r\n250 2.0.0 Ok: queued as 4XB1\r\n221 2.0.0 Bye\r\n"
        ),
        "{out}"
    );
    let seen = queue.0.lock().unwrap();
    let body = String::from_utf8_lossy(&seen.queued[0].2).to_string();
    assert!(body.ends_with("\r\n\r\n.\nb\r\n\r\n"), "{body:?}");
    assert!(
        body.contains("Subject: a\r\nMessage-ID: <4XB1@mail.example.local>\r\n"),
        "{body}"
    );
}

#[tokio::test]
async fn bdat_without_transaction_is_discarded() {
    let input = "EHLO x\r\nBDAT 12 LAST\r\nQUIT\r\nXXXX\r\nNOOP\r\nQUIT\r\n";
    let (out, _) = talk("", OUTSIDE, input).await;
    assert!(
        out.ends_with("503 5.5.1 Error: need RCPT command\r\n250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n"),
        "{out}"
    );
}

#[tokio::test]
async fn hard_error_limit_disconnects() {
    let input = "FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n";
    let extra = "smtpd_hard_error_limit = 3\nsmtpd_soft_error_limit = 10";
    let (out, _) = talk(extra, OUTSIDE, input).await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "502 5.5.2 Error: command not recognized",
            "502 5.5.2 Error: command not recognized",
            "502 5.5.2 Error: command not recognized",
            "421 4.7.0 mail.example.local Error: too many errors",
        ])
    );
}

#[tokio::test]
async fn idle_client_times_out() {
    let settings = settings("smtpd_timeout = \"1s\"");
    let (client, task) = start(settings, OUTSIDE, FakeQueue::default(), None);
    let (mut r, _w) = tokio::io::split(client);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    task.await.unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        lines(&[
            GREETING,
            "421 4.4.2 mail.example.local Error: timeout exceeded"
        ])
    );
}

#[tokio::test]
async fn queue_failures_defer() {
    let input = "HELO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\nDATA\r\n\
                 MAIL FROM:<a@x.org>\r\nQUIT\r\n";
    let queue = FakeQueue::default();
    queue.0.lock().unwrap().fail_begin = true;
    let out = talk_with(settings(""), OUTSIDE, queue, input.as_bytes().to_vec()).await;
    assert!(
        out.ends_with(
            "451 4.3.0 Error: queue file write error\r\n250 2.1.0 Ok\r\n221 2.0.0 Bye\r\n"
        ),
        "{out}"
    );

    let input =
        "HELO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n";
    let queue = FakeQueue::default();
    queue.0.lock().unwrap().fail_commit = true;
    let out = talk_with(
        settings(""),
        OUTSIDE,
        queue.clone(),
        input.as_bytes().to_vec(),
    )
    .await;
    assert!(
        out.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n451 4.3.0 Error: queue file write error\r\n221 2.0.0 Bye\r\n"),
        "{out}"
    );
    assert!(queue.0.lock().unwrap().queued.is_empty());
}

#[tokio::test]
async fn long_command_lines_are_refused() {
    let input = format!("HELO {}\r\nQUIT\r\n", "a".repeat(3000));
    let (out, _) = talk("", OUTSIDE, &input).await;
    assert_eq!(
        out,
        lines(&[GREETING, "500 5.5.2 Error: line too long", "221 2.0.0 Bye"])
    );
}

#[tokio::test]
async fn large_messages_stream_in_bounded_chunks() {
    let line = format!("{}\r\n", "y".repeat(998));
    let body = line.repeat(300);
    let input = format!(
        "EHLO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\nDATA\r\n\r\n{body}.\r\nQUIT\r\n"
    );
    let (out, queue) = talk("", OUTSIDE, &input).await;
    assert!(out.contains("250 2.0.0 Ok: queued as 4XB1"), "{out}");
    let seen = queue.0.lock().unwrap();
    assert_eq!(seen.largest_chunk, BODY_CHUNK);
    assert!(String::from_utf8_lossy(&seen.queued[0].2).ends_with(&body));
}

#[tokio::test]
async fn dot_stuffing_is_removed() {
    let input = "HELO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\nDATA\r\n\
                 \r\n..leading dot\r\n.\r\nQUIT\r\n";
    let (_, queue) = talk("", OUTSIDE, input).await;
    let seen = queue.0.lock().unwrap();
    assert!(String::from_utf8_lossy(&seen.queued[0].2).ends_with("\r\n\r\n.leading dot\r\n"));
}

#[tokio::test]
async fn non_smtp_clients_are_sent_away() {
    let (out, _) = talk("", OUTSIDE, "GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "221 2.7.0 Error: I can break rules, too. Goodbye."
        ])
    );
}

#[tokio::test]
async fn helo_required() {
    let (out, _) = talk(
        "smtpd_helo_required = \"yes\"",
        OUTSIDE,
        "MAIL FROM:<a@x.org>\r\nQUIT\r\n",
    )
    .await;
    assert_eq!(
        out,
        lines(&[
            GREETING,
            "503 5.5.1 Error: send HELO/EHLO first",
            "221 2.0.0 Bye"
        ])
    );
}

#[tokio::test]
async fn shutdown_lets_the_transaction_finish() {
    let (stop, shutdown) = postern_daemon::Shutdown::new();
    let queue = FakeQueue::default();
    let (client, task) = start(settings(""), OUTSIDE, queue.clone(), Some(shutdown));
    let mut c = Stepwise::new(client);
    c.expect("", "ESMTP Postern\r\n").await;
    c.expect("HELO x\r\nMAIL FROM:<a@x.org>\r\n", "250 2.1.0 Ok\r\n")
        .await;
    stop.send(true).unwrap();
    c.expect("RCPT TO:<b@example.local>\r\n", "250 2.1.5 Ok\r\n")
        .await;
    c.expect(
        "DATA\r\nhi\r\n.\r\n",
        "250 2.0.0 Ok: queued as 4XB1\r\n421 4.3.2 Service shutting down, closing transmission channel\r\n",
    )
    .await;
    task.await.unwrap();
    assert_eq!(queue.0.lock().unwrap().queued.len(), 1);
}

#[test]
fn disconnect_counts_follow_postfix() {
    let mut c = crate::session::Counts::default();
    assert_eq!(c.summary(), " commands=0/0");
    for (verb, ok) in [
        ("ehlo", true),
        ("mail", true),
        ("rcpt", false),
        ("rcpt", true),
        ("quit", true),
    ] {
        c.record(verb, ok);
    }
    assert_eq!(c.summary(), " ehlo=1 mail=1 rcpt=1/2 quit=1 commands=4/5");
}

#[tokio::test]
async fn refused_at_connect_without_delay_reject() {
    let extra =
        "smtpd_delay_reject = \"no\"\nsmtpd_client_restrictions = \"permit_mynetworks, reject\"";
    let (out, _) = talk(extra, OUTSIDE, "HELO x\r\nQUIT\r\n").await;
    let replies: Vec<&str> = out.lines().collect();
    assert_eq!(replies.len(), 3, "{out}");
    assert!(replies[0].starts_with("554 5.7.1 "), "{out}");
    assert_eq!(
        replies[1..],
        [
            "503 5.7.0 Error: access denied for unknown[192.0.2.10]",
            "221 2.0.0 Bye"
        ]
    );
    let (out, _) = talk(extra, INSIDE, "HELO x\r\nQUIT\r\n").await;
    assert!(out.starts_with(GREETING), "{out}");
}

const SYNC: &str = "smtpd_forbid_unauth_pipelining = \"yes\"";

#[tokio::test]
async fn sync_pipelining_after_helo_is_refused() {
    let (out, queue) = talk(SYNC, OUTSIDE, "HELO x\r\nMAIL FROM:<a@x.org>\r\n").await;
    assert_eq!(
        out,
        lines(&[GREETING, "554 5.5.0 Error: SMTP protocol synchronization"])
    );
    assert!(queue.0.lock().unwrap().queued.is_empty());
}

#[tokio::test]
async fn sync_data_must_wait_for_354_but_mail_rcpt_may_pipeline() {
    let input = "MAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\nDATA\r\nhi\r\n.\r\n";
    let (client, task) = start(settings(SYNC), OUTSIDE, FakeQueue::default(), None);
    let mut c = Stepwise::new(client);
    c.expect("", "ESMTP Postern\r\n").await;
    c.expect("EHLO x\r\n", "250 CHUNKING\r\n").await;
    // MAIL and RCPT may be followed by more; DATA may not.
    c.expect(
        input,
        "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n554 5.5.0 Error: SMTP protocol synchronization\r\n",
    )
    .await;
    task.await.unwrap();
}

#[tokio::test]
async fn ipv6_clients_appear_as_address_literals() {
    let input = "EHLO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@example.local>\r\n\
                 RCPT TO:<c@example.local>\r\nDATA\r\n\r\nhi\r\n.\r\nQUIT\r\n";
    let (_, queue) = talk("", "2001:db8::5", input).await;
    let seen = queue.0.lock().unwrap();
    let body = String::from_utf8_lossy(&seen.queued[0].2).to_string();
    assert!(
        body.starts_with(
            "Received: from x (unknown [IPv6:2001:db8::5])\r\n\
             \tby mail.example.local (Postern) with ESMTP id 4XB1;\r\n\t"
        ),
        "{body}"
    );
    assert_eq!(
        seen.queued[0].1.client.as_ref().unwrap().addr,
        "2001:db8::5"
    );
}

/// SMTP AUTH without TLS (smtpd_tls_auth_only = no): users in a table
/// file that lives as long as the returned handle.
fn auth_config(users: &str, extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sasl_users");
    std::fs::write(&path, users).unwrap();
    let config = format!(
        "smtpd_sasl_auth_enable = \"yes\"\n\
         smtpd_sasl_users = \"hash:{}\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination\"\n\
         {extra}",
        path.display()
    );
    (dir, config)
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// `openssl passwd -6 -salt saltsalt secret`
const SECRET_HASH: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

#[tokio::test]
async fn auth_plain_allows_relay_and_marks_the_envelope() {
    let (_dir, extra) = auth_config(&format!("alice {SECRET_HASH}\n"), "");
    let input = format!(
        "EHLO client\r\nAUTH PLAIN {}\r\nMAIL FROM:<alice@example.local> AUTH=<>\r\n\
         RCPT TO:<bob@example.net>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
        b64("\0alice\0secret")
    );
    let (out, queue) = talk(&extra, OUTSIDE, &input).await;
    assert!(
        out.contains("250-ETRN\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"),
        "{out}"
    );
    assert!(
        out.contains("235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
        "{out}"
    );
    let seen = queue.0.lock().unwrap();
    let (_, envelope, body) = &seen.queued[0];
    let client = envelope.client.as_ref().unwrap();
    assert_eq!(client.protocol, "ESMTPA");
    assert_eq!(client.sasl_username.as_deref(), Some("alice"));
    assert!(String::from_utf8_lossy(body).contains("with ESMTPA id"));
}

#[tokio::test]
async fn auth_failures_login_and_relay_refusal() {
    let (_dir, extra) = auth_config(&format!("alice {SECRET_HASH}\nbob {{plain}}pw\n"), "");
    let input = format!(
        "EHLO client\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<bob@example.net>\r\nRSET\r\n\
         AUTH PLAIN {}\r\nAUTH LOGIN\r\n{}\r\n{}\r\nAUTH LOGIN\r\n*\r\nAUTH CRAM-MD5 =\r\n\
         AUTH LOGIN {}\r\n{}\r\nAUTH PLAIN\r\nQUIT\r\n",
        b64("\0alice\0wrong"),
        b64("alice"),
        b64("nope"),
        b64("bob"),
        b64("pw"),
    );
    let (out, _) = talk(&extra, OUTSIDE, &input).await;
    // With a {plain} entry, CRAM-MD5 is offered too.
    assert!(out.contains("250-AUTH PLAIN LOGIN CRAM-MD5\r\n"), "{out}");
    let tail = lines(&[
        "554 5.7.1 <bob@example.net>: Relay access denied",
        "250 2.0.0 Ok",
        "535 5.7.8 Error: authentication failed: authentication failure",
        "334 VXNlcm5hbWU6",
        "334 UGFzc3dvcmQ6",
        "535 5.7.8 Error: authentication failed: authentication failure",
        "334 VXNlcm5hbWU6",
        "501 5.7.0 Authentication aborted",
        "535 5.7.8 Error: authentication failed: authentication failure",
        "334 UGFzc3dvcmQ6",
        "235 2.7.0 Authentication successful",
        "503 5.5.1 Error: already authenticated",
        "221 2.0.0 Bye",
    ]);
    assert!(out.ends_with(&tail), "{out}");
}

#[tokio::test]
async fn auth_only_and_encrypt_without_tls() {
    let (_dir, extra) = auth_config(
        &format!("alice {SECRET_HASH}\n"),
        "smtpd_tls_auth_only = \"yes\"",
    );
    let input = format!(
        "EHLO client\r\nAUTH PLAIN {}\r\nSTARTTLS\r\nQUIT\r\n",
        b64("\0alice\0secret")
    );
    let (out, _) = talk(&extra, OUTSIDE, &input).await;
    assert!(!out.contains("AUTH"), "{out}");
    assert!(
        out.ends_with(&lines(&[
            "538 5.7.11 Encryption required for requested authentication mechanism",
            "502 5.5.1 Error: command not implemented",
            "221 2.0.0 Bye",
        ])),
        "{out}"
    );

    let (out, _) = talk(
        "smtpd_tls_security_level = \"encrypt\"",
        INSIDE,
        "EHLO client\r\nMAIL FROM:<a@x.org>\r\nNOOP\r\nAUTH PLAIN =\r\nQUIT\r\n",
    )
    .await;
    assert!(
        out.ends_with(&lines(&[
            "530 5.7.0 Must issue a STARTTLS command first",
            "250 2.0.0 Ok",
            "530 5.7.0 Must issue a STARTTLS command first",
            "221 2.0.0 Bye",
        ])),
        "{out}"
    );

    // AUTH= on MAIL needs AUTH to be enabled.
    let (out, _) = talk(
        "",
        INSIDE,
        "EHLO client\r\nMAIL FROM:<a@x.org> AUTH=<>\r\nQUIT\r\n",
    )
    .await;
    assert!(
        out.contains("503 5.5.4 Error: authentication disabled\r\n"),
        "{out}"
    );
}

#[tokio::test]
async fn sender_login_maps_guard_the_postmaster_address() {
    let dir = tempfile::tempdir().unwrap();
    let logins = dir.path().join("sender_logins");
    std::fs::write(&logins, "postmaster@example.local alice\n").unwrap();
    let (_users, extra) = auth_config(
        "alice {plain}a\nbob {plain}b\n",
        &format!(
            "smtpd_sender_login_maps = \"hash:{}\"\n\
             smtpd_sender_restrictions = \"reject_sender_login_mismatch\"",
            logins.display()
        ),
    );
    let session = |auth: Option<&str>| {
        let login = auth.map_or(String::new(), |a| format!("AUTH PLAIN {}\r\n", b64(a)));
        format!(
            "EHLO client\r\n{login}MAIL FROM:<postmaster@example.local>\r\n\
             RCPT TO:<user@example.local>\r\nQUIT\r\n"
        )
    };
    let (out, _) = talk(&extra, OUTSIDE, &session(None)).await;
    assert!(
        out.contains(
            "553 5.7.1 <postmaster@example.local>: Sender address rejected: not logged in\r\n"
        ),
        "{out}"
    );
    let (out, _) = talk(&extra, OUTSIDE, &session(Some("\0bob\0b"))).await;
    assert!(out.contains(
        "553 5.7.1 <postmaster@example.local>: Sender address rejected: not owned by user bob\r\n"
    ), "{out}");
    let (out, _) = talk(&extra, OUTSIDE, &session(Some("\0alice\0a"))).await;
    assert!(
        out.contains("235 2.7.0 Authentication successful\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"),
        "{out}"
    );
}
