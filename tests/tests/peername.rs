//! smtpd's client name lookup (`smtpd_peername_lookup = yes`) against the
//! tests' DNS server. Loopback addresses have fixed names in the resolver
//! (RFC 6761: `localhost`), so the clients come from 192.0.2.x addresses
//! put on `lo` in a network namespace of the test's own (`unshare -n`,
//! root): the test runs itself again inside it. A PTR name confirmed by
//! its A record names the
//! client in the log and in Received; a PTR name whose A record lists
//! another address is `unknown` (with Postfix's warning), and so is a
//! client with no PTR or whose lookup times out; reject_unknown_client_hostname
//! answers the first with unknown_client_reject_code and the timeout with
//! 450, as Postfix does.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use postern_tests::dns::{DnsServer, Record, reverse_name};
use postern_tests::{Instance, SmtpClient, wait_for};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

/// Runs `inner` again in a new network namespace with the clients'
/// addresses on its loopback interface.
#[test]
fn client_names_are_looked_up_confirmed_and_checked() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root for a network namespace");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "ip link set lo up && for a in 21 22 23 24; do ip addr add 192.0.2.$a/32 dev lo; done && \
         exec {} --exact inner --include-ignored --nocapture",
        exe.display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run inside a network namespace by client_names_are_looked_up_confirmed_and_checked"]
fn inner() {
    let (good, forged, silent, bare) = (ip(21), ip(22), ip(23), ip(24));
    let dns = DnsServer::start(vec![
        Record::ptr(IpAddr::V4(good), "good.example.net."),
        Record::a("good.example.net", good),
        Record::ptr(IpAddr::V4(forged), "forged.example.net."),
        Record::a("forged.example.net", ip(99)),
        Record::unanswered(&reverse_name(IpAddr::V4(silent))),
    ]);
    let inst = Instance::start(
        &format!(
            "smtpd_peername_lookup = \"yes\"\n\
             dns_servers = \"{}\"\n\
             mail_spool_directory = \"spool\"\n\
             unknown_client_reject_code = \"550\"\n\
             smtpd_client_restrictions = \"reject_unknown_client_hostname\"",
            dns.addr
        ),
        "",
    );
    let spool = inst.dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::set_permissions(&spool, std::fs::Permissions::from_mode(0o1777)).unwrap();

    // Confirmed: the name in the log and in Received.
    let (mut c, _) = SmtpClient::connect_from(good, inst.smtp).unwrap();
    inst.assert_logged("connect from good.example.net[192.0.2.21]");
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<a@example.net>", "250");
    c.expect("RCPT TO:<root@mail.example.local>", "250");
    c.expect("DATA", "354");
    c.send_raw(b"Subject: named\r\n\r\nx\r\n").unwrap();
    c.expect(".", "250");
    c.expect("QUIT", "221");
    inst.assert_logged("connect from good.example.net[192.0.2.21]");
    let mbox = spool.join("root");
    assert!(
        wait_for(Duration::from_secs(30), || std::fs::read_to_string(&mbox)
            .is_ok_and(|m| m.contains("Subject: named"))),
        "{}",
        inst.log()
    );
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert!(
        text.contains("Received: from client.example (good.example.net [192.0.2.21])"),
        "{text}"
    );

    // A PTR whose name lists another address, and no PTR at all: unknown,
    // refused with unknown_client_reject_code.
    for (from, name) in [(forged, "forged.example.net"), (bare, "")] {
        let (mut c, _) = SmtpClient::connect_from(from, inst.smtp).unwrap();
        c.expect("EHLO client.example", "250");
        c.expect("MAIL FROM:<a@example.net>", "250");
        let reply = c.cmd("RCPT TO:<root@mail.example.local>").unwrap();
        assert_eq!(
            reply,
            format!("550 5.7.25 Client host rejected: cannot find your hostname, [{from}]\r\n"),
            "{}",
            inst.log()
        );
        inst.assert_logged(&format!("connect from unknown[{from}]"));
        if !name.is_empty() {
            inst.assert_logged(&format!(
                "warning: hostname {name} does not resolve to address {from}"
            ));
        }
    }

    // DNS does not answer: unknown, and a temporary refusal.
    let (mut c, _) = SmtpClient::connect_from(silent, inst.smtp).unwrap();
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<a@example.net>", "250");
    let reply = c.cmd("RCPT TO:<root@mail.example.local>").unwrap();
    assert_eq!(
        reply,
        format!("450 4.7.25 Client host rejected: cannot find your hostname, [{silent}]\r\n")
    );
}
