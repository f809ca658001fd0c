//! The filtering gateway (scenario S5, seed 004) end to end: access table
//! actions that change what happens to the message (HOLD, DISCARD,
//! REDIRECT, BCC, FILTER, PREPEND), and the after-queue `content_filter`
//! of FILTER_README, whose filter hands the mail back through a second
//! smtpd service on 127.0.0.1 with `content_filter =` and
//! `receive_override_options`.
//!
//! Each test runs a whole Postern; [`Sink`]s play the mail server behind
//! the gateway and the content filter.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_tests::{Instance, Sink, SmtpClient, free_port, wait_for};

const LONG: Duration = Duration::from_secs(40);

/// An instance with `files` written to its directory before the start;
/// `{dir}` in `main_extra` and in the files stands for the directory.
fn start(main_extra: &str, services_extra: &str, files: &[(&str, &str)]) -> Instance {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, "");
    let dir = inst.dir.path().display().to_string();
    for (name, text) in files {
        std::fs::write(inst.dir.path().join(name), text.replace("{dir}", &dir)).unwrap();
    }
    inst.write_config(&Instance::standard_config(
        smtp,
        &main_extra.replace("{dir}", &dir),
        services_extra,
    ));
    inst.launch()
}

/// `[main]` of a gateway that relays example.net to the `lan` sink for
/// clients on 127.0.0.0/8, then `extra`.
fn relay_to(lan: &Sink, extra: &str) -> String {
    format!(
        "mynetworks = \"127.0.0.0/8\"\n\
         relay_domains = \"example.net\"\n\
         transport_maps = \"inline:{{ example.net=smtp:[127.0.0.1]:{} }}\"\n{extra}",
        lan.addr.port()
    )
}

/// Sends one message from a mynetworks client; the queue ID.
fn send(to: SocketAddr, sender: &str, rcpts: &[&str], subject: &str) -> String {
    let (mut c, greeting) = SmtpClient::connect(to).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    let body = format!("Subject: {subject}\r\nFrom: <{sender}>\r\n\r\nHello.\r\n");
    c.telnet_message(sender, rcpts, body.as_bytes())
}

fn listing(inst: &Instance) -> Vec<serde_json::Value> {
    let out = inst.qctl(&["--json", "list"]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_subject<'a>(
    sink: &'a [postern_tests::SinkMessage],
    subject: &str,
) -> Vec<&'a postern_tests::SinkMessage> {
    let needle = format!("Subject: {subject}\r\n");
    sink.iter().filter(|m| m.data.contains(&needle)).collect()
}

#[test]
fn access_actions_hold_discard_redirect_bcc_filter_and_prepend_do_what_they_say() {
    let lan = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let scanner = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let inst = start(
        &relay_to(
            &lan,
            "smtpd_recipient_restrictions = \"check_recipient_access hash:{dir}/access, \
             permit_mynetworks, reject_unauth_destination\"",
        ),
        "",
        &[(
            "access",
            &format!(
                "hold@example.net HOLD\n\
                 quarantine@example.net HOLD suspicious recipient\n\
                 discard@example.net DISCARD\n\
                 redirect@example.net REDIRECT abuse@example.net\n\
                 bcc@example.net BCC archive@example.net\n\
                 prepend@example.net PREPEND X-Tag: tagged by access\n\
                 filter@example.net FILTER smtp:[127.0.0.1]:{}\n\
                 warn@example.net WARN looks odd\n",
                scanner.addr.port()
            ),
        )],
    );

    // HOLD: queued, on hold, delivered only once released.
    let held = send(inst.smtp, "a@client.example", &["hold@example.net"], "held");
    let line = inst.wait_log_line(&["NOQUEUE: hold: RCPT from", "<hold@example.net>"]);
    assert!(
        line.contains("<hold@example.net>: Recipient address triggers HOLD action; from=<a@client.example> to=<hold@example.net> proto=SMTP helo=<localhost>"),
        "{line}"
    );
    let text = send(
        inst.smtp,
        "a@client.example",
        &["quarantine@example.net"],
        "q",
    );
    inst.wait_log_line(&[
        "hold:",
        "<quarantine@example.net>: Recipient address suspicious recipient;",
    ]);
    let list = listing(&inst);
    for id in [&held, &text] {
        let m = list
            .iter()
            .find(|m| m["queue_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{id}: {list:?}"));
        assert_eq!(m["queue_name"], "hold", "{m}");
    }
    let mailq = String::from_utf8_lossy(&inst.qctl(&["list"]).stdout).into_owned();
    assert!(mailq.contains(&format!("{held}!")), "{mailq}");

    // WARN only logs.
    send(
        inst.smtp,
        "a@client.example",
        &["warn@example.net"],
        "warned",
    );
    inst.wait_log_line(&[
        "NOQUEUE: warn: RCPT from",
        "looks odd;",
        "to=<warn@example.net>",
    ]);

    // DISCARD: "queued", then gone.
    let discarded = send(
        inst.smtp,
        "a@client.example",
        &["discard@example.net"],
        "dropped",
    );
    inst.wait_log_line(&[
        "discard: RCPT from",
        "<discard@example.net>: Recipient address triggers DISCARD action",
    ]);

    // REDIRECT, BCC, PREPEND, FILTER.
    send(
        inst.smtp,
        "a@client.example",
        &["redirect@example.net"],
        "redirected",
    );
    send(
        inst.smtp,
        "a@client.example",
        &["bcc@example.net"],
        "copied",
    );
    send(
        inst.smtp,
        "a@client.example",
        &["prepend@example.net"],
        "tagged",
    );
    send(
        inst.smtp,
        "a@client.example",
        &["filter@example.net"],
        "scanned",
    );
    inst.wait_log_line(&[
        "filter: RCPT from",
        &format!("triggers FILTER smtp:[127.0.0.1]:{}", scanner.addr.port()),
    ]);

    // warned, redirected, copied (2 recipients, 1 message), tagged.
    let got = lan.wait_messages(4, LONG);
    let redirected = by_subject(&got, "redirected");
    assert_eq!(redirected.len(), 1, "{}", inst.log());
    assert_eq!(redirected[0].recipients, ["abuse@example.net"]);
    inst.wait_log_line(&[
        "to=<abuse@example.net>",
        "orig_to=<redirect@example.net>",
        "status=sent",
    ]);
    let copied = by_subject(&got, "copied");
    let mut rcpts: Vec<String> = copied.iter().flat_map(|m| m.recipients.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["archive@example.net", "bcc@example.net"],
        "{}",
        inst.log()
    );
    let tagged = by_subject(&got, "tagged");
    assert_eq!(tagged.len(), 1);
    assert!(
        tagged[0]
            .data
            .starts_with("X-Tag: tagged by access\r\nReceived: from localhost"),
        "PREPEND goes before our Received header:\n{}",
        tagged[0].data
    );
    assert_eq!(by_subject(&got, "warned").len(), 1);
    let scanned = scanner.wait_messages(1, LONG);
    assert_eq!(scanned[0].recipients, ["filter@example.net"]);
    assert!(by_subject(&lan.messages(), "scanned").is_empty());

    // Nothing of the held or discarded mail arrived; releasing the held
    // one delivers it.
    assert!(by_subject(&lan.messages(), "held").is_empty());
    assert!(by_subject(&lan.messages(), "dropped").is_empty());
    assert!(
        !listing(&inst)
            .iter()
            .any(|m| m["queue_id"] == discarded.as_str()),
        "a discarded message is not queued"
    );
    let out = inst.qctl(&["release", &held]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_for(LONG, || by_subject(&lan.messages(), "held").len() == 1),
        "{}",
        inst.log()
    );
}

/// The example master.toml's re-injection service, switched on as its
/// comment says (the "# " removed), listening on `at`.
fn example_reinjection_service(at: SocketAddr) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let example = std::fs::read_to_string(root.join("master.toml")).unwrap();
    let block: Vec<&str> = example
        .lines()
        .skip_while(|l| *l != "# [[service]]")
        .take_while(|l| l.starts_with("# "))
        .map(|l| &l[2..])
        .collect();
    let text = block.join("\n");
    assert!(
        text.contains("name = \"reinject\"") && text.contains("127.0.0.1:10026"),
        "{text}"
    );
    format!("\n{}\n", text.replace("127.0.0.1:10026", &at.to_string()))
}

/// A before-answer content filter as FILTER_README's advanced example
/// has it (amavisd's way): it takes a message over SMTP, adds a header,
/// sends it on to `reinject` and answers with what that said, so the
/// first queue ID's log line names the second. Counts what it took.
fn proxy_filter(reinject: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Vec<String>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let _ = proxy_session(stream, reinject, &log);
            });
        }
    });
    (addr, seen)
}

fn proxy_session(
    stream: std::net::TcpStream,
    reinject: SocketAddr,
    log: &Mutex<Vec<Vec<String>>>,
) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    w.write_all(b"220 filter.local ESMTP\r\n")?;
    let (mut sender, mut rcpts) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let arg = || {
            line[line.find(':').map_or(0, |i| i + 1)..]
                .trim()
                .to_string()
        };
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250 filter.local\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            sender = arg();
            rcpts.clear();
            w.write_all(b"250 2.1.0 Ok\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpts.push(arg());
            w.write_all(b"250 2.1.5 Ok\r\n")?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n")?;
            // The content as sent, dot-stuffing and all, up to the dot.
            let mut data = String::new();
            loop {
                line.clear();
                r.read_line(&mut line)?;
                if line == ".\r\n" || line.is_empty() {
                    break;
                }
                data.push_str(&line);
            }
            log.lock().unwrap().push(rcpts.clone());
            let (mut c, _) = SmtpClient::connect(reinject)?;
            c.expect("ehlo filter.local", "250");
            c.expect(&format!("mail from:{sender}"), "250");
            for rcpt in &rcpts {
                c.expect(&format!("rcpt to:{rcpt}"), "250");
            }
            c.expect("data", "354");
            c.send_raw(b"X-Filtered: clean\r\n")?;
            c.send_raw(data.as_bytes())?;
            let reply = c.cmd(".")?;
            let _ = c.cmd("quit");
            w.write_all(reply.as_bytes())?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 Ok\r\n")?;
        }
    }
}

/// FILTER_README's after-queue filter: smtpd queues, qmgr sends to the
/// filter on [127.0.0.1]:port, the filter adds a header and hands the
/// message back to the example's re-injection service on 127.0.0.1,
/// whose `content_filter =` keeps it from going round again.
#[test]
fn content_filter_round_trip_delivers_once_and_does_not_loop() {
    let lan = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let reinject: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let (filter, seen) = proxy_filter(reinject);
    let inst = start(
        &relay_to(
            &lan,
            &format!(
                "virtual_alias_maps = \"inline:{{ alias@example.net=real@example.net }}\"\n\
                 content_filter = \"smtp:[127.0.0.1]:{}\"\n\
                 receive_override_options = \"no_address_mappings\"",
                filter.port()
            ),
        ),
        &example_reinjection_service(reinject),
        &[],
    );
    assert!(inst.wait_all_ready(LONG), "{}", inst.log());
    let first = send(
        inst.smtp,
        "a@client.example",
        &["alias@example.net"],
        "filtered",
    );

    // The filter gets the message with the original recipient (address
    // mappings wait until it comes back), and the first ID's log line
    // names the second: the queue history is in the log.
    let line = inst.wait_log_line(&[
        &format!("{first}: to=<alias@example.net>"),
        &format!("relay=127.0.0.1[127.0.0.1]:{}", filter.port()),
        "status=sent",
    ]);
    assert_eq!(
        seen.lock().unwrap().clone(),
        [vec!["<alias@example.net>".to_string()]]
    );
    let second = line
        .split("queued as ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no new queue ID in {line}"))
        .trim()
        .to_string();
    assert_ne!(first, second);

    // Delivered once, after the virtual alias, and never to the filter
    // again.
    let got = lan.wait_messages(1, LONG);
    assert_eq!(got[0].recipients, ["real@example.net"], "{}", inst.log());
    assert!(
        got[0].data.starts_with("Received: from filter.local")
            && got[0]
                .data
                .contains("X-Filtered: clean\r\nReceived: from localhost"),
        "{}",
        got[0].data
    );
    inst.wait_log_line(&[
        &format!("{second}: to=<real@example.net>"),
        "orig_to=<alias@example.net>",
        "status=sent",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(seen.lock().unwrap().len(), 1, "looped:\n{}", inst.log());
    assert_eq!(lan.messages().len(), 1);
    // Both queue IDs are in the log, the second with the filter as client.
    inst.wait_log_line(&[&format!("{second}: client=unknown[127.0.0.1]")]);
}

/// Sends `data` (headers and body, CRLF) to `rcpt`; the reply to the dot.
fn send_data(to: SocketAddr, rcpt: &str, data: &str) -> String {
    let (mut c, _) = SmtpClient::connect(to).unwrap();
    c.expect("ehlo client.example", "250");
    c.expect("mail from:<a@client.example>", "250");
    c.expect(&format!("rcpt to:<{rcpt}>"), "250");
    c.expect("data", "354");
    c.send_raw(data.as_bytes()).unwrap();
    let reply = c.cmd(".").unwrap();
    let _ = c.cmd("quit");
    reply
}

#[test]
fn header_checks_and_body_checks_actions_on_real_messages() {
    let lan = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let scanner = Sink::start(std::net::Ipv4Addr::LOCALHOST, 0);
    let inst = start(
        &relay_to(
            &lan,
            "header_checks = \"regexp:{dir}/header_checks\"\n\
             body_checks = \"pcre:{dir}/body_checks\"",
        ),
        "",
        &[
            (
                "header_checks",
                &format!(
                    "/^Subject: reject me/ REJECT no thanks\n\
                     /^Subject: tempfail me/ REJECT 4.7.1 try later\n\
                     /^Subject: folded.*second line/ REJECT folded header matched\n\
                     /^Subject: warn me/ WARN suspicious subject\n\
                     /^Subject: hold me/ HOLD held by header\n\
                     /^Subject: discard me/ DISCARD dropped by header\n\
                     /^Subject: filter me/ FILTER smtp:[127.0.0.1]:{}\n\
                     /^Subject: redirect me/ REDIRECT abuse@example.net\n\
                     /^Subject: bcc me/ BCC archive@example.net\n\
                     /^Subject: prepend me/ PREPEND X-Prepended: yes\n\
                     /^Subject: replace me/ REPLACE Subject: replaced\n\
                     /^Subject: ok me/ OK\n\
                     /^Subject: dunno me/ DUNNO\n\
                     /^X-Secret:/ IGNORE\n",
                    scanner.addr.port()
                ),
            ),
            (
                "body_checks",
                "/^BODY-REJECT/ REJECT body refused\n\
                 /^replace this line$/ REPLACE replaced line\n\
                 /^body-warn/ WARN body warning\n",
            ),
        ],
    );
    let msg = |subject: &str, body: &str| {
        format!(
            "Subject: {subject}\r\nX-Secret: s3cret\r\nFrom: <a@client.example>\r\n\r\n{body}\r\n"
        )
    };
    let to = "user@example.net";

    // REJECT, with and without an enhanced status code; a folded header
    // is matched joined.
    let r = send_data(inst.smtp, to, &msg("reject me", "x"));
    assert_eq!(r.trim_end(), "550 5.7.1 no thanks");
    let line = inst.wait_log_line(&["reject: header Subject: reject me from unknown[127.0.0.1]"]);
    assert!(line.contains("from=<a@client.example> to=<user@example.net> proto=ESMTP helo=<client.example>: 5.7.1 no thanks"), "{line}");
    let r = send_data(inst.smtp, to, &msg("tempfail me", "x"));
    assert!(r.starts_with("451 4.7.1 try later"), "{r}");
    let r = send_data(
        inst.smtp,
        to,
        "Subject: folded\r\n second line\r\n\r\nx\r\n",
    );
    assert!(r.starts_with("550 5.7.1 folded header matched"), "{r}");
    // body_checks REJECT.
    let r = send_data(inst.smtp, to, &msg("fine", "first\r\nBODY-REJECT here"));
    assert!(r.starts_with("550 5.7.1 body refused"), "{r}");
    inst.wait_log_line(&["reject: body BODY-REJECT here from unknown[127.0.0.1]"]);

    // Accepted ones: WARN, HOLD, DISCARD, FILTER, REDIRECT, BCC, PREPEND,
    // REPLACE, OK, DUNNO, IGNORE, body REPLACE and WARN.
    for s in [
        "warn me",
        "ok me",
        "dunno me",
        "prepend me",
        "replace me",
        "redirect me",
        "bcc me",
    ] {
        let r = send_data(
            inst.smtp,
            to,
            &msg(s, "body-warn line\r\nreplace this line\r\nlast"),
        );
        assert!(r.starts_with("250 2.0.0 Ok: queued as"), "{s}: {r}");
    }
    let held = send_data(inst.smtp, to, &msg("hold me", "x"));
    let held = held.trim_end().rsplit(' ').next().unwrap().to_string();
    let discarded = send_data(inst.smtp, to, &msg("discard me", "x"));
    assert!(
        discarded.starts_with("250 2.0.0 Ok: queued as"),
        "{discarded}"
    );
    send_data(inst.smtp, to, &msg("filter me", "x"));

    inst.wait_log_line(&[
        "warning: header Subject: warn me from unknown[127.0.0.1]",
        ": suspicious subject",
    ]);
    inst.wait_log_line(&[
        "warning: body body-warn line from unknown[127.0.0.1]",
        ": body warning",
    ]);
    inst.wait_log_line(&["hold: header Subject: hold me", ": held by header"]);
    inst.wait_log_line(&["discard: header Subject: discard me", ": dropped by header"]);

    let got = lan.wait_messages(7, LONG);
    let one = |subject: &str| {
        let m = by_subject(&got, subject);
        assert_eq!(m.len(), 1, "{subject}: {got:?}\n{}", inst.log());
        m[0].clone()
    };
    for s in ["warn me", "ok me", "dunno me"] {
        let m = one(s);
        assert!(
            !m.data.contains("X-Secret"),
            "IGNORE removes the header:\n{}",
            m.data
        );
        assert!(
            m.data.contains("\r\nreplaced line\r\n") && !m.data.contains("replace this line"),
            "{}",
            m.data
        );
    }
    let m = one("prepend me");
    assert!(
        m.data
            .contains("X-Prepended: yes\r\nSubject: prepend me\r\n"),
        "{}",
        m.data
    );
    assert_eq!(one("replaced").recipients, [to]);
    assert_eq!(one("redirect me").recipients, ["abuse@example.net"]);
    let mut bcc = one("bcc me").recipients;
    bcc.sort();
    assert_eq!(bcc, ["archive@example.net", to]);
    let scanned = scanner.wait_messages(1, LONG);
    assert!(
        scanned[0].data.contains("Subject: filter me"),
        "{}",
        inst.log()
    );
    assert!(by_subject(&got, "hold me").is_empty() && by_subject(&got, "discard me").is_empty());
    let list = listing(&inst);
    assert_eq!(list.len(), 1, "only the held message stays: {list:?}");
    assert_eq!(list[0]["queue_id"], held.as_str());
    assert_eq!(list[0]["queue_name"], "hold");
}

#[test]
fn a_broken_pattern_in_a_checks_table_stops_the_start_with_file_and_line() {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, "");
    let dir = inst.dir.path().display().to_string();
    std::fs::write(
        inst.dir.path().join("hc"),
        "/^Subject: ok/ WARN fine\n/^Subject: (broken/ REJECT\n",
    )
    .unwrap();
    inst.write_config(&Instance::standard_config(
        smtp,
        &format!("header_checks = \"regexp:{dir}/hc\""),
        "",
    ));
    let out = postern_tests::master_check(&inst.config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("header_checks") && err.contains(&format!("{dir}/hc:2")),
        "{err}"
    );
}
