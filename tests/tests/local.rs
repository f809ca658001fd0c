//! local-delivery through the master: each test starts a real Postern,
//! acts as qmgr on `private/local` (Request, Body chunks, End), and checks
//! the reply and the mailboxes and files written in the test's directory.
//!
//! Mailboxes point into the temporary directory: the spool via
//! mail_spool_directory (so `root` lands in `<tmp>/spool/root`), aliases
//! via alias_maps, virtual mailboxes under `<tmp>/vmail`. Alias files and
//! commands run as default_privs (nobody) under a root master, so their
//! targets live in a world-writable `<tmp>/out`.
//!
//! Only the `local` service runs: forwarding to other domains is checked
//! against a qmgr stand-in listening on `private/qmgr`, so these tests do
//! not depend on the real qmgr.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_ipc::delivery::{
    DeliveryRecipient, DeliveryReply, DeliveryRequest, DeliveryStatus, RecipientResult,
};
use postern_ipc::{BODY_CHUNK, Connection, Protocol};
use postern_tests::agent;
use postern_tests::{Instance, free_port};

const T: Duration = Duration::from_secs(30);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A running instance with the spool, alias file and output directory
/// in its temporary directory.
struct Local {
    inst: Instance,
}

impl Local {
    /// Starts with `extra` appended to [main]; `{dir}` in it stands for
    /// the instance's directory.
    fn start(extra: &str) -> Local {
        let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let inst = Instance::create(smtp, "");
        let dir = inst.dir.path().display().to_string();
        let main = format!(
            "mail_spool_directory = \"spool\"\n{}",
            extra.replace("{dir}", &dir)
        );
        // Only the `local` service: these tests play qmgr themselves.
        inst.write_config(&Instance::standard_config_only(smtp, &main, "local"));
        let l = Local {
            inst: inst.launch(),
        };
        std::fs::create_dir_all(l.path("spool")).unwrap();
        std::fs::create_dir_all(l.path("out")).unwrap();
        // Alias files and commands run as nobody.
        std::fs::set_permissions(l.path("out"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        std::fs::write(l.path("aliases"), "").unwrap();
        l
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.inst.dir.path().join(rel)
    }

    fn aliases(&self, text: &str) {
        std::fs::write(self.path("aliases"), text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}\nlog:\n{}", self.inst.log()))
    }

    /// Delivers `messages` one after another on one connection.
    fn deliver_all(&self, messages: &[(&str, &[&str], &str)]) -> Vec<DeliveryReply> {
        let messages: Vec<(String, Vec<String>, String)> = messages
            .iter()
            .map(|(s, r, b)| {
                (
                    s.to_string(),
                    r.iter().map(|r| r.to_string()).collect(),
                    b.to_string(),
                )
            })
            .collect();
        // Each recipient's class, as qmgr's router would send it.
        let config = postern_config::Config::load(&self.inst.config, &[]).unwrap();
        let router = postern_routing::Router::from_params(config.main()).unwrap();
        agent::runtime().block_on(async move {
            let mut conn = agent::delivery_connection(&self.inst, "local").await;
            let mut replies = Vec::new();
            for (n, (sender, rcpts, body)) in messages.into_iter().enumerate() {
                let req = DeliveryRequest {
                    queue_id: format!("7E57{n}").parse().unwrap(),
                    sender,
                    recipients: rcpts
                        .into_iter()
                        .enumerate()
                        .map(|(i, address)| DeliveryRecipient {
                            index: i + 10,
                            class: router.resolve(&address).unwrap().class,
                            address,
                            ..Default::default()
                        })
                        .collect(),
                    transport: "local".into(),
                    nexthop: "localhost".into(),
                    size: body.len() as u64,
                    ..Default::default()
                };
                let chunks: Vec<&[u8]> = body.as_bytes().chunks(BODY_CHUNK).collect();
                replies.push(agent::delivery_exchange(&mut conn, req, &chunks).await);
            }
            replies
        })
    }

    fn deliver(&self, sender: &str, rcpts: &[&str], body: &str) -> DeliveryReply {
        self.deliver_all(&[(sender, rcpts, body)]).remove(0)
    }

    /// Delivers to one recipient; its result, asserted to be Sent.
    fn deliver_sent(&self, sender: &str, rcpt: &str, body: &str) -> RecipientResult {
        let r = self.deliver(sender, &[rcpt], body).results.remove(0);
        assert_eq!(r.status, DeliveryStatus::Sent, "{r:?}\n{}", self.inst.log());
        r
    }
}

fn message(subject: &str, body: &str) -> String {
    format!("From: a@example.org\r\nSubject: {subject}\r\n\r\n{body}")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn mbox_delivery_appends_from_lines_quotes_and_two_messages() {
    let l = Local::start("");
    let replies = l.deliver_all(&[
        (
            "a@example.org",
            &["root@localhost"],
            &message("one", "From the start\r\nsecond line\r\n"),
        ),
        ("", &["ROOT@mail.example.local"], &message("two", "bye\r\n")),
    ]);
    for reply in &replies {
        let r = &reply.results[0];
        assert_eq!(r.index, 10);
        assert_eq!(r.status, DeliveryStatus::Sent, "{r:?}\n{}", l.inst.log());
        assert_eq!(
            (r.dsn.to_string().as_str(), r.relay.to_string().as_str()),
            ("2.0.0", "local")
        );
        assert_eq!(r.detail, "delivered to mailbox");
    }
    let mbox = l.read("spool/root");
    assert!(mbox.starts_with("From a@example.org  "), "{mbox}");
    assert_eq!(mbox.matches("\nFrom MAILER-DAEMON  ").count(), 1, "{mbox}");
    assert!(
        mbox.contains("\nReturn-Path: <a@example.org>\nDelivered-To: root@localhost\nFrom: a@example.org\nSubject: one\n\n>From the start\nsecond line\n\nFrom MAILER-DAEMON  "),
        "{mbox}"
    );
    assert!(
        mbox.ends_with("Return-Path: <>\nDelivered-To: ROOT@mail.example.local\nFrom: a@example.org\nSubject: two\n\nbye\n\n"),
        "{mbox}"
    );
    assert!(!l.path("spool/root.lock").exists());
    let mode = std::fs::metadata(l.path("spool/root")).unwrap().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Spooled bodies do not outlive their request.
    assert!(files_in(&l.inst.queue_directory().join("tmp-local")).is_empty());
}

#[test]
fn virtual_maildir_delivery_is_atomic_and_large_bodies_arrive_whole() {
    let l = Local::start(
        "recipient_delimiter = \"+\"\n\
         virtual_mailbox_domains = \"virtual.example\"\n\
         virtual_mailbox_maps = \"hash:vmailbox\"\n\
         virtual_mailbox_base = \"vmail\"\n",
    );
    std::fs::write(
        l.path("vmailbox"),
        "alice@virtual.example  alice/Maildir/\n\
         bob@virtual.example    bob.mbox\n\
         @virtual.example       catchall/\n",
    )
    .unwrap();
    std::fs::create_dir(l.path("vmail")).unwrap();
    // Written as mail_owner (nobody in tests).
    std::fs::set_permissions(l.path("vmail"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let big = "0123456789abcdef".repeat(16 * 1024); // 256 KiB, several chunks
    let body = message("big", &format!("{big}\r\n"));
    let reply = l.deliver(
        "s@example.org",
        &[
            "alice+box@virtual.example",
            "bob@Virtual.Example",
            "other@virtual.example",
        ],
        &body,
    );
    let texts: Vec<_> = reply
        .results
        .iter()
        .map(|r| (r.index, r.status, r.detail.as_str()))
        .collect();
    assert_eq!(
        texts,
        [
            (10, DeliveryStatus::Sent, "delivered to maildir"),
            (11, DeliveryStatus::Sent, "delivered to mailbox"),
            (12, DeliveryStatus::Sent, "delivered to maildir"),
        ],
        "{}",
        l.inst.log()
    );
    let md = l.path("vmail/alice/Maildir");
    let new = files_in(&md.join("new"));
    assert_eq!(new.len(), 1);
    assert!(files_in(&md.join("tmp")).is_empty());
    assert!(md.join("cur").is_dir());
    let text = std::fs::read_to_string(&new[0]).unwrap();
    assert!(
        text.starts_with("Return-Path: <s@example.org>\nDelivered-To: alice+box@virtual.example\nFrom: a@example.org\nSubject: big\n\n"),
        "{}",
        &text[..200]
    );
    assert!(text.ends_with(&format!("\n{big}\n")));
    assert_eq!(files_in(&l.path("vmail/catchall/new")).len(), 1);
    let mbox = l.read("vmail/bob.mbox");
    assert!(mbox.starts_with("From s@example.org  "));
    if is_root() {
        let owner = std::fs::metadata(&new[0]).unwrap().uid();
        assert_eq!(owner, 65534, "virtual mailboxes belong to mail_owner");
    }

    // A domain with no catch-all: unknown user.
    std::fs::write(l.path("vmailbox"), "alice@virtual.example alice/Maildir/\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // tables re-check once a second
    let reply = l.deliver("", &["nobody-here@virtual.example"], &message("x", "x\r\n"));
    let r = &reply.results[0];
    assert_eq!(r.status, DeliveryStatus::Bounced);
    assert_eq!(r.dsn, "5.1.1");
    assert_eq!(r.detail, "unknown user: \"nobody-here@virtual.example\"");
}

#[test]
fn aliases_expand_lists_includes_files_and_continuation_lines() {
    let l = Local::start("");
    let out = l.path("out");
    std::fs::write(l.path("staff.list"), "root\n# a comment\nfiler\n").unwrap();
    l.aliases(&format!(
        "# the aliases file\n\
         team: root,\n\
         \x20   {out}/team.mbox,\n\
         \t:include:{inc}\n\
         filer: {out}/filer.mbox\n\
         postmaster: root\n\
         bit-bucket: /dev/null\n",
        out = out.display(),
        inc = l.path("staff.list").display()
    ));
    let r = l.deliver_sent("a@example.org", "team@localhost", &message("t", "hi\r\n"));
    assert_eq!(
        r.detail,
        format!(
            "delivered to mailbox, delivered to file: {o}/team.mbox, delivered to file: {o}/filer.mbox",
            o = out.display()
        )
    );
    let team = l.read("out/team.mbox");
    assert!(team.contains("Delivered-To: team@localhost\n"), "{team}");
    assert!(l.read("out/filer.mbox").ends_with("hi\n\n"));
    // root is reached twice (directly and through the include): one copy.
    assert_eq!(l.read("spool/root").matches("Subject: t\n").count(), 1);
    if is_root() {
        let owner = std::fs::metadata(out.join("team.mbox")).unwrap().uid();
        assert_eq!(owner, 65534, "alias files are written as default_privs");
    }

    let reply = l.deliver(
        "",
        &["postmaster@localhost", "bit-bucket@localhost"],
        &message("pm", "x\r\n"),
    );
    assert_eq!(reply.results[0].detail, "delivered to mailbox");
    assert_eq!(reply.results[1].detail, "delivered to file: /dev/null");
    assert_eq!(l.read("spool/root").matches("Subject: pm\n").count(), 1);
}

#[test]
fn recipient_delimiter_tries_the_extension_alias_then_the_user() {
    let l = Local::start("recipient_delimiter = \"+\"\n");
    let special = l.path("out/special.mbox");
    l.aliases(&format!("root+special: {}\n", special.display()));
    let reply = l.deliver(
        "a@example.org",
        &["root+special@localhost", "root+other@localhost"],
        &message("ext", "x\r\n"),
    );
    assert_eq!(
        reply.results[0].detail,
        format!("delivered to file: {}", special.display())
    );
    assert_eq!(reply.results[1].detail, "delivered to mailbox");
    assert!(
        l.read("spool/root")
            .contains("Delivered-To: root+other@localhost\n")
    );
    assert!(
        l.read("out/special.mbox")
            .contains("Delivered-To: root+special@localhost\n")
    );
}

#[test]
fn unknown_users_bounce_with_5_1_1() {
    let l = Local::start("");
    let reply = l.deliver(
        "a@example.org",
        &["No.Such.User@localhost"],
        &message("u", "x\r\n"),
    );
    let r = &reply.results[0];
    assert_eq!(r.status, DeliveryStatus::Bounced);
    assert_eq!(r.dsn, "5.1.1");
    assert_eq!(r.detail, "unknown user: \"no.such.user\"");
    assert_eq!(r.relay.to_string(), "local");

    // A quoted local part is unquoted before the lookup.
    let reply = l.deliver(
        "a@example.org",
        &["\"root\"@localhost", "\"no such\"@localhost"],
        &message("q", "x\r\n"),
    );
    assert_eq!(reply.results[0].detail, "delivered to mailbox");
    assert_eq!(reply.results[1].detail, "unknown user: \"no such\"");
}

#[test]
fn a_delivered_to_header_for_the_recipient_is_a_forwarding_loop() {
    let l = Local::start("");
    let body = "Delivered-To: root@localhost\r\nSubject: loop\r\n\r\nx\r\n";
    let reply = l.deliver(
        "a@example.org",
        &["Root@localhost", "root@mail.example.local"],
        body,
    );
    let r = &reply.results[0];
    assert_eq!(r.status, DeliveryStatus::Bounced);
    assert_eq!(r.dsn, "5.4.6");
    assert_eq!(r.detail, "mail forwarding loop for Root@localhost");
    // Another address of the same user has not seen the message yet.
    assert_eq!(reply.results[1].status, DeliveryStatus::Sent);
}

#[test]
fn mailbox_size_limit_bounces_with_5_2_2_and_leaves_the_mailbox_alone() {
    let l = Local::start("mailbox_size_limit = 2000\n");
    let small = l.deliver("a@example.org", &["root@localhost"], &message("s", "x\r\n"));
    assert_eq!(small.results[0].status, DeliveryStatus::Sent);
    let before = l.read("spool/root");
    let big = message("b", &"y".repeat(5000));
    let reply = l.deliver("a@example.org", &["root@localhost"], &big);
    let r = &reply.results[0];
    assert_eq!(r.status, DeliveryStatus::Bounced, "{r:?}");
    assert_eq!(r.dsn, "5.2.2");
    assert_eq!(
        r.detail,
        format!(
            "cannot update mailbox {} for user root. error writing message: File too large",
            l.path("spool/root").display()
        )
    );
    assert_eq!(l.read("spool/root"), before);
}

#[test]
fn a_command_alias_gets_the_message_and_exit_75_defers() {
    let l = Local::start("");
    let piped = l.path("out/piped");
    l.aliases(&format!(
        "pipe: \"|cat > {}\"\n\
         tempfail: \"|echo busy; exit 75\"\n\
         broken: |exit 1\n",
        piped.display()
    ));
    let reply = l.deliver(
        "a@example.org",
        &["pipe@localhost", "tempfail@localhost", "broken@localhost"],
        &message("cmd", "From here\r\n"),
    );
    let r = &reply.results;
    assert_eq!(
        r[0].status,
        DeliveryStatus::Sent,
        "{:?}\n{}",
        r[0],
        l.inst.log()
    );
    assert_eq!(
        r[0].detail,
        format!("delivered to command: cat > {}", piped.display())
    );
    let text = l.read("out/piped");
    assert!(text.starts_with("From a@example.org  "), "{text}");
    assert!(
        text.ends_with(
            "Delivered-To: pipe@localhost\nFrom: a@example.org\nSubject: cmd\n\nFrom here\n"
        ),
        "{text}"
    );
    if is_root() {
        assert_eq!(std::fs::metadata(&piped).unwrap().uid(), 65534);
    }
    assert_eq!(r[1].status, DeliveryStatus::Deferred);
    assert_eq!(r[1].dsn, "4.3.0");
    assert_eq!(r[1].detail, "temporary failure. Command output: busy");
    assert_eq!(r[2].status, DeliveryStatus::Bounced);
    assert_eq!(r[2].dsn, "5.3.0");
    assert_eq!(r[2].detail, "Command died with status 1: \"exit 1\"");
}

#[test]
fn a_missing_alias_database_defers() {
    let l = Local::start("");
    std::fs::remove_file(l.path("aliases")).unwrap();
    let reply = l.deliver("a@example.org", &["root@localhost"], &message("x", "x\r\n"));
    let r = &reply.results[0];
    assert_eq!(r.status, DeliveryStatus::Deferred);
    assert_eq!(
        (r.dsn.to_string().as_str(), r.detail.as_str()),
        ("4.3.0", "alias database unavailable")
    );
}

/// Plays qmgr on `private/qmgr` for one enqueue; returns the body and
/// envelope it received.
fn fake_qmgr(sock: PathBuf) -> std::thread::JoinHandle<(Vec<u8>, postern_ipc::qmgr::Envelope)> {
    use postern_ipc::qmgr::{QmgrReply, QmgrRequest};
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::UnixListener::from_std(listener).unwrap();
            let (s, _) = tokio::time::timeout(T, listener.accept())
                .await
                .unwrap()
                .unwrap();
            let mut c = Connection::new(s);
            c.server_hello(Protocol::Qmgr, T).await.unwrap();
            let mut body = Vec::new();
            loop {
                match c.recv_timeout::<QmgrRequest>(T).await.unwrap().unwrap() {
                    QmgrRequest::Begin => {
                        c.send(&QmgrReply::Started {
                            id: "4E3E3A".parse().unwrap(),
                        })
                        .await
                        .unwrap();
                    }
                    QmgrRequest::Body { data } => body.extend(data),
                    QmgrRequest::Commit { envelope } => {
                        c.send(&QmgrReply::Queued {
                            id: "4F0D12345678".parse().unwrap(),
                        })
                        .await
                        .unwrap();
                        return (body, *envelope);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
    })
}

#[test]
fn an_alias_to_another_domain_is_forwarded_through_qmgr() {
    let l = Local::start("");
    l.aliases("far: root, someone@example.net, Other@Example.ORG\n");
    let qmgr = fake_qmgr(l.inst.queue_directory().join("private/qmgr"));
    let r = l.deliver_sent("s@example.org", "far@localhost", &message("fwd", "x\r\n"));
    assert_eq!(r.detail, "delivered to mailbox, forwarded as 4F0D12345678");
    let (body, envelope) = qmgr.join().unwrap();
    assert_eq!(
        String::from_utf8(body).unwrap(),
        format!("Delivered-To: far@localhost\r\n{}", message("fwd", "x\r\n"))
    );
    assert_eq!(envelope.sender, "s@example.org");
    let rcpts: Vec<_> = envelope
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(rcpts, ["someone@example.net", "Other@Example.ORG"]);
    assert!(
        l.read("spool/root")
            .contains("Delivered-To: far@localhost\n")
    );
}

#[test]
fn forwarding_without_qmgr_defers() {
    let l = Local::start("");
    l.aliases("far: someone@example.net\n");
    let reply = l.deliver(
        "s@example.org",
        &["far@localhost"],
        &message("fwd", "x\r\n"),
    );
    let r = &reply.results[0];
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, "4.3.0");
    assert!(
        r.detail.starts_with("cannot forward mail: connect to "),
        "{r:?}"
    );
}

#[test]
fn a_locked_mailbox_defers_and_a_stale_lock_is_broken() {
    let l = Local::start("deliver_lock_attempts = \"2\"\ndeliver_lock_delay = \"1s\"\n");
    std::fs::write(l.path("spool/root.lock"), "").unwrap();
    let reply = l.deliver("a@example.org", &["root@localhost"], &message("l", "x\r\n"));
    let r = &reply.results[0];
    assert_eq!(r.status, DeliveryStatus::Deferred, "{r:?}");
    assert_eq!(r.dsn, "4.2.0");
    assert_eq!(
        r.detail,
        format!(
            "cannot update mailbox {spool}/root for user root. unable to create lock file {spool}/root.lock: File exists",
            spool = l.path("spool").display()
        )
    );
    assert!(
        l.path("spool/root.lock").exists(),
        "someone else's lock stays"
    );
    assert!(!l.path("spool/root").exists() || l.read("spool/root").is_empty());

    // A lock file older than stale_lock_time is left over from a crash.
    let old = std::time::SystemTime::now() - Duration::from_secs(600);
    std::fs::File::options()
        .write(true)
        .open(l.path("spool/root.lock"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let reply = l.deliver("a@example.org", &["root@localhost"], &message("l", "x\r\n"));
    assert_eq!(reply.results[0].status, DeliveryStatus::Sent);
    assert!(!l.path("spool/root.lock").exists());
}

#[test]
fn mailbox_command_replaces_the_mailbox_and_sees_the_environment() {
    let l = Local::start(
        "recipient_delimiter = \"+\"\n\
         mailbox_command = \"cat > {dir}/out/mc-$USER-$EXTENSION\"\n",
    );
    let r = l.deliver_sent(
        "a@example.org",
        "root+box@localhost",
        &message("mc", "x\r\n"),
    );
    assert_eq!(
        r.detail,
        format!(
            "delivered to command: cat > {}/out/mc-$USER-$EXTENSION",
            l.inst.dir.path().display()
        )
    );
    let text = l.read("out/mc-root-box");
    assert!(text.starts_with("From a@example.org  "), "{text}");
    assert!(
        text.contains("\nDelivered-To: root+box@localhost\n"),
        "{text}"
    );
    assert!(!l.path("spool/root").exists());
}

#[test]
fn an_owner_alias_becomes_the_sender_of_its_list() {
    let l = Local::start("");
    l.aliases("list: root, member@example.net\nowner-list: root\n");
    let qmgr = fake_qmgr(l.inst.queue_directory().join("private/qmgr"));
    let r = l.deliver_sent("s@example.org", "list@localhost", &message("ol", "x\r\n"));
    assert_eq!(r.detail, "delivered to mailbox, forwarded as 4F0D12345678");
    let (_, envelope) = qmgr.join().unwrap();
    assert_eq!(envelope.sender, "owner-list@mail.example.local");
    let mbox = l.read("spool/root");
    assert!(
        mbox.starts_with("From owner-list@mail.example.local  "),
        "{mbox}"
    );
    assert!(
        mbox.contains("\nReturn-Path: <owner-list@mail.example.local>\n"),
        "{mbox}"
    );
}

/// A Unix account made for one test (needs root), with its home under
/// `parent`; `userdel` removes it again when the test ends.
struct UnixUser {
    name: String,
    uid: u32,
    gid: u32,
    home: PathBuf,
}

impl UnixUser {
    fn create(parent: &Path) -> UnixUser {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "pt{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let home = parent.join(&name);
        let status = std::process::Command::new("useradd")
            .args(["-M", "-N", "-s", "/usr/sbin/nologin", "-d"])
            .arg(&home)
            .arg(&name)
            .status()
            .expect("run useradd");
        assert!(status.success(), "useradd {name}: {status}");
        let user = nix::unistd::User::from_name(&name)
            .unwrap()
            .expect("the new account");
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        std::fs::create_dir_all(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(uid), Some(gid)).unwrap();
        UnixUser {
            name,
            uid,
            gid,
            home,
        }
    }

    /// Writes a file in the home, owned by the user.
    fn write(&self, rel: &str, text: &str) {
        let path = self.home.join(rel);
        std::fs::write(&path, text).unwrap();
        std::os::unix::fs::chown(&path, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl Drop for UnixUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .status();
    }
}

#[test]
fn a_unix_user_gets_mail_in_the_home_mailbox_owned_by_them() {
    if !is_root() {
        eprintln!("skipped: creating a Unix account needs root");
        return;
    }
    for home_mailbox in ["Maildir/", "Mailbox"] {
        let l = Local::start(&format!("home_mailbox = \"{home_mailbox}\""));
        std::fs::create_dir_all(l.path("home")).unwrap();
        let user = UnixUser::create(&l.path("home"));
        let rcpt = format!("{}@localhost", user.name);
        let r = l.deliver_sent("a@example.org", &rcpt, &message("hi", "hello\r\n"));
        let file = if home_mailbox.ends_with('/') {
            assert_eq!(r.detail, "delivered to maildir");
            let new = files_in(&user.home.join("Maildir/new"));
            assert_eq!(new.len(), 1, "{new:?}");
            assert!(files_in(&user.home.join("Maildir/tmp")).is_empty());
            new[0].clone()
        } else {
            assert_eq!(r.detail, "delivered to mailbox");
            user.home.join("Mailbox")
        };
        let meta = std::fs::metadata(&file).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o777),
            (user.uid, 0o600),
            "{file:?}"
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains(&format!("Delivered-To: {rcpt}\n")) && text.contains("Subject: hi\n"),
            "{text}"
        );
    }
}

#[test]
fn a_unix_users_forward_file_delivers_with_their_rights() {
    if !is_root() {
        eprintln!("skipped: creating a Unix account needs root");
        return;
    }
    let l = Local::start("home_mailbox = \"Maildir/\"");
    std::fs::create_dir_all(l.path("home")).unwrap();
    let user = UnixUser::create(&l.path("home"));
    let home = user.home.display();
    // A file, a command, and a copy kept in the user's own mailbox.
    user.write(
        ".forward",
        &format!("{home}/copy\n\"|id -u > {home}/uid\"\n\\{}\n", user.name),
    );
    let rcpt = format!("{}@localhost", user.name);
    l.deliver_sent("a@example.org", &rcpt, &message("fwd", "hello\r\n"));

    let copy = user.home.join("copy");
    assert_eq!(std::fs::metadata(&copy).unwrap().uid(), user.uid);
    assert!(
        std::fs::read_to_string(&copy)
            .unwrap()
            .contains("Subject: fwd\n")
    );
    let ran_as = std::fs::read_to_string(user.home.join("uid")).unwrap();
    assert_eq!(ran_as.trim(), user.uid.to_string(), "the command's uid");
    assert_eq!(files_in(&user.home.join("Maildir/new")).len(), 1);
}
