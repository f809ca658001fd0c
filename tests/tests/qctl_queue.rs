//! qctl's postcat and postsuper commands against a whole instance: mail
//! is enqueued through the real smtpd and its next hop
//! (`relayhost = [127.0.0.1]:9`) refuses connections, so every message
//! ends up deferred; then `qctl show`, `requeue` and `delete ALL` act on
//! it and `qctl list` shows the result.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use postern_tests::agent;
use postern_tests::{Instance, SmtpClient, free_port, wait_for};

const LONG: Duration = Duration::from_secs(30);

fn main_config(relayhost: &str) -> String {
    format!(
        "mynetworks = \"127.0.0.0/8\"\n\
         relayhost = \"{relayhost}\"\n\
         minimal_backoff_time = \"1h\"\n\
         maximal_backoff_time = \"2h\"\n\
         queue_run_delay = \"1h\""
    )
}

/// One message through smtpd, waiting for each reply; its queue ID.
fn send(to: SocketAddr, n: usize) -> String {
    let (mut c, greeting) = SmtpClient::connect(to).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting}");
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<sender@client.example>", "250 2.1.0");
    c.expect(&format!("RCPT TO:<far{n}@remote.example>"), "250 2.1.5");
    c.expect("DATA", "354 ");
    c.send_raw(
        format!(
            "Subject: queued {n}\r\nMessage-ID: <q{n}@client.example>\r\n\r\nbody of message {n}\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let queued = c.expect(".", "250 2.0.0 Ok: queued as ");
    c.expect("QUIT", "221");
    queued.trim_end().rsplit(' ').next().unwrap().to_string()
}

fn stdout(inst: &Instance, args: &[&str]) -> String {
    let out = inst.qctl(args);
    assert!(
        out.status.success(),
        "qctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `qctl --json list`, one object per message.
fn listing(inst: &Instance) -> Vec<serde_json::Value> {
    stdout(inst, &["--json", "list"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn entry<'a>(list: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|m| m["queue_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {list:?}"))
}

/// A next hop that accepts connections and never says a word, so an
/// attempt toward it stays in flight (the message stays active).
fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    addr
}

#[test]
fn show_requeue_and_delete_all_act_on_deferred_mail() {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::start_with(
        smtp,
        &Instance::standard_config(smtp, &main_config("[127.0.0.1]:9"), ""),
    );
    let ids: Vec<String> = (1..=3).map(|n| send(inst.smtp, n)).collect();

    // Every message is tried once and deferred with the connect failure.
    let all_deferred = || {
        let list = listing(&inst);
        list.len() == 3
            && list.iter().all(|m| {
                m["queue_name"] == "deferred"
                    && m["recipients"][0]["delay_reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("127.0.0.1"))
            })
    };
    wait_for(LONG, all_deferred);
    assert!(all_deferred(), "{:?}\n{}", listing(&inst), inst.log());

    // show: the envelope, then the message (postcat -q).
    let shown = stdout(&inst, &["show", &ids[0]]);
    let envelope_head = format!("*** ENVELOPE RECORDS deferred/{} ***", ids[0]);
    let contents_head = format!("*** MESSAGE CONTENTS deferred/{} ***", ids[0]);
    let end = format!("*** MESSAGE FILE END deferred/{} ***", ids[0]);
    for needle in [
        envelope_head.as_str(),
        "queue_state: deferred",
        "message_size: ",
        "message_arrival_time: ",
        "delay_reason: ",
        "client_address: 127.0.0.1",
        "helo_name: client.example",
        "sender: sender@client.example",
        "recipient: far1@remote.example",
        "recipient_state: deferred (",
        contents_head.as_str(),
        "Subject: queued 1",
        "body of message 1",
        end.as_str(),
    ] {
        assert!(shown.contains(needle), "no {needle:?} in:\n{shown}");
    }
    assert!(
        shown.find(&contents_head) > shown.find("recipient: far1"),
        "{shown}"
    );
    assert!(!shown.contains('\r'), "postcat prints LF line ends");

    let json: serde_json::Value =
        serde_json::from_str(stdout(&inst, &["--json", "show", &ids[1]]).trim()).unwrap();
    assert_eq!(json["queue_id"], ids[1].as_str());
    assert_eq!(json["queue_name"], "deferred");
    assert_eq!(json["sender"], "sender@client.example");
    assert_eq!(json["recipients"][0]["address"], "far2@remote.example");
    assert_eq!(json["recipients"][0]["state"], "deferred");
    assert!(json["message_size"].as_u64().unwrap() > 0);
    assert!(json["next_try_time"].as_i64().is_some());
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("Subject: queued 2\r\n"),
        "{json}"
    );

    let unknown = inst.qctl(&["show", "0A1B2C3D4E5F"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no such message"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // From now on the next hop takes the connection and never answers,
    // so a requeued message stays active (attempt in flight) and the
    // listing shows it without a reason.
    let silent = silent_server();
    inst.write_config(&Instance::standard_config(
        smtp,
        &main_config(&format!("[127.0.0.1]:{}", silent.port())),
        "",
    ));
    assert!(inst.qctl(&["reload"]).status.success());
    std::thread::sleep(Duration::from_secs(2));

    // requeue ID: active and due now, reasons gone, tried at once.
    assert_eq!(
        stdout(&inst, &["requeue", &ids[0]]).trim(),
        "postsuper: Requeued: 1 message"
    );
    let list = listing(&inst);
    let first = entry(&list, &ids[0]);
    assert_eq!(first["queue_name"], "active", "{first}");
    assert!(
        first["recipients"][0].get("delay_reason").is_none(),
        "{first}"
    );
    assert_eq!(entry(&list, &ids[1])["queue_name"], "deferred");
    let shown = stdout(&inst, &["show", &ids[0]]);
    assert!(shown.contains("queue_state: active"), "{shown}");
    assert!(shown.contains("recipient_state: pending"), "{shown}");
    assert!(!shown.contains("delay_reason"), "{shown}");
    let mailq = stdout(&inst, &["list"]);
    assert!(mailq.contains(&format!("{}*", ids[0])), "{mailq}");

    // requeue ALL, in JSON.
    let json: serde_json::Value =
        serde_json::from_str(stdout(&inst, &["--json", "requeue", "ALL"]).trim()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["requeued"], 3, "{json}");
    assert_eq!(json["message"], "postsuper: Requeued: 3 messages");
    let list = listing(&inst);
    assert_eq!(list.len(), 3);
    for m in &list {
        assert_eq!(m["queue_name"], "active", "{m}");
        assert!(m["recipients"][0].get("delay_reason").is_none(), "{m}");
    }
    assert!(inst.wait_log(&format!("{}: requeued", ids[2]), LONG));

    let bad = inst.qctl(&["requeue", "0A1B2C3D4E5F"]);
    assert!(!bad.status.success());

    // A held message is requeued too (postsuper -r releases it).
    stdout(&inst, &["hold", &ids[2]]);
    assert_eq!(entry(&listing(&inst), &ids[2])["queue_name"], "hold");
    assert_eq!(
        stdout(&inst, &["requeue", &ids[2]]).trim(),
        "postsuper: Requeued: 1 message"
    );
    assert_eq!(entry(&listing(&inst), &ids[2])["queue_name"], "active");

    // delete ALL: everything goes, even with attempts in flight.
    assert_eq!(
        stdout(&inst, &["delete", "ALL"]).trim(),
        "postsuper: Deleted: 3 messages"
    );
    assert_eq!(stdout(&inst, &["list"]).trim(), "Mail queue is empty");
    assert!(listing(&inst).is_empty());
    for id in &ids {
        assert!(
            inst.log().contains(&format!("{id}: removed")),
            "{id}:\n{}",
            inst.log()
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(stdout(&inst, &["--json", "delete", "ALL"]).trim()).unwrap();
    assert_eq!(json["deleted"], 0, "{json}");
    assert_eq!(json["message"], "postsuper: Deleted: 0 messages");

    // The attempts that were in flight end without bringing anything back.
    std::thread::sleep(Duration::from_secs(1));
    assert!(listing(&inst).is_empty());
    let id = send(inst.smtp, 4);
    wait_for(LONG, || listing(&inst).len() == 1);
    assert_eq!(listing(&inst)[0]["queue_id"], id.as_str());
}

/// A listing of any size streams: 20,000 messages (once about 4,000 made
/// one reply frame too big) all appear, in both forms.
#[test]
fn list_streams_a_queue_of_twenty_thousand_messages() {
    const COUNT: usize = 20_000;
    // Only qmgr runs: every first attempt finds no smtp agent and defers
    // for an hour, so the messages stay queued.
    let inst = agent::start_qmgr_only(
        "minimal_backoff_time = \"1h\"\n\
         maximal_backoff_time = \"2h\"\n\
         queue_run_delay = \"1h\"",
    );
    let mut queued = agent::enqueue_many(&inst, COUNT, 16);
    assert_eq!(queued.len(), COUNT);

    let mut listed: Vec<String> = listing(&inst)
        .iter()
        .map(|m| m["queue_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed.len(), COUNT);
    assert!(listed.is_sorted(), "arrival order");
    listed.sort();
    queued.sort();
    assert_eq!(listed, queued);

    let text = stdout(&inst, &["list"]);
    assert!(
        text.starts_with("-Queue ID-  --Size--"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert!(
        text.trim_end().ends_with(&format!("in {COUNT} Requests.")),
        "{}",
        &text[text.len().saturating_sub(200)..]
    );
    assert_eq!(text.matches("@far.example").count(), COUNT);
}
