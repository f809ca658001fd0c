//! Receiving, end to end through the real smtpd, qmgr and local-delivery:
//! SMTP smuggling never splits one DATA into two messages, and no address
//! trick wins relay for an outside client.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_tests::{Instance, SmtpClient, wait_for};

/// An instance delivering `user@example.local` into a Maildir through an
/// alias, and relaying for nobody but `mynetworks`.
fn start(mynetworks: &str) -> (Instance, PathBuf) {
    let smtp = format!("127.0.0.1:{}", postern_tests::free_port())
        .parse()
        .unwrap();
    let inst = Instance::create(smtp, "");
    let mail = inst.dir.path().join("mail");
    std::fs::create_dir(&mail).unwrap();
    // Alias deliveries run as default_privs (nobody).
    std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o777)).unwrap();
    let aliases = inst.dir.path().join("aliases");
    std::fs::write(&aliases, format!("user: {}/user/\n", mail.display())).unwrap();
    let main = format!(
        "mydestination = \"example.local\"\nmynetworks = \"{mynetworks}\"\n\
         alias_maps = \"texthash:{}\"\nrelayhost = \"[127.0.0.1]:9\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, reject_unauth_destination\"",
        aliases.display()
    );
    inst.write_config(&Instance::standard_config(smtp, &main, ""));
    (inst.launch(), mail.join("user/new"))
}

fn delivered(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    out.sort();
    out
}

#[test]
fn smuggling_forms_never_split_one_data_into_two_messages() {
    let (inst, new) = start("127.0.0.0/8");
    // Each body hides a fake end of data followed by a second transaction.
    let forms = ["\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r", "\r\n.\n"];
    for (i, form) in forms.iter().enumerate() {
        let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
        c.expect("EHLO client.example", "250");
        c.expect("MAIL FROM:<a@example.net>", "250");
        c.expect("RCPT TO:<user@example.local>", "250");
        c.expect("DATA", "354");
        let smuggled = format!(
            "Subject: form {i}\r\n\r\nbefore{form}MAIL FROM:<evil@example.net>\r\n\
             RCPT TO:<user@example.local>\r\nDATA\r\nSubject: smuggled {i}\r\n\r\nevil\r\n.\r\n"
        );
        c.send_raw(smuggled.as_bytes()).unwrap();
        let reply = c.read_reply().unwrap();
        assert!(
            reply.starts_with("250 2.0.0 Ok: queued as"),
            "form {form:?}: {reply}"
        );
        // What follows the one real end of data is the client's next command.
        c.expect("QUIT", "221");
    }
    assert!(
        wait_for(Duration::from_secs(30), || delivered(&new).len()
            >= forms.len()),
        "{}",
        inst.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let messages = delivered(&new);
    assert_eq!(
        messages.len(),
        forms.len(),
        "one message per DATA: {messages:#?}"
    );
    for (i, m) in messages.iter().enumerate() {
        assert!(m.contains(&format!("Subject: form {i}")), "{m}");
        // The would-be second message is inside the first, never its own.
        assert!(m.contains(&format!("Subject: smuggled {i}")), "{m}");
        assert!(!m.starts_with("Subject: smuggled"), "{m}");
    }
    assert_eq!(
        inst.log().matches("status=sent").count(),
        forms.len(),
        "{}",
        inst.log()
    );
}

#[test]
fn no_address_trick_wins_relay_for_an_outside_client_and_mynetworks_may_relay() {
    // The client at 127.0.0.1 is outside: mynetworks lists another address.
    let (inst, _) = start("127.0.0.99/32");
    let tricks = [
        "user%example.net@example.local",
        "example.net!user@example.local",
        "\"user@example.net\"@example.local",
        "\"user%example.net\"@example.local",
        "@example.local:user@example.net",
        "user@example.net",
        "user@example.net.",
    ];
    for trick in tricks {
        let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
        c.expect("EHLO client.example", "250");
        c.expect("MAIL FROM:<a@example.net>", "250");
        let reply = c.cmd(&format!("RCPT TO:<{trick}>")).unwrap();
        assert!(
            reply.starts_with("554 5.7.1") || reply.starts_with("550") || reply.starts_with("501"),
            "{trick} must not be relayed: {reply}"
        );
        assert!(!reply.starts_with("250"), "{trick}: {reply}");
        c.expect("QUIT", "221");
    }
    assert!(
        inst.log().contains("NOQUEUE: reject: RCPT from"),
        "{}",
        inst.log()
    );

    // The same server relays for a client in mynetworks.
    let (inst, _) = start("127.0.0.0/8");
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.expect("EHLO client.example", "250");
    c.expect("MAIL FROM:<a@example.local>", "250");
    c.expect("RCPT TO:<user@example.net>", "250 2.1.5");
}

#[test]
fn python_smtplib_and_swaks_deliver_to_the_mailbox() {
    let (inst, new) = start("127.0.0.0/8");
    let port = inst.smtp.port();
    let script = format!(
        "import smtplib\n\
         s = smtplib.SMTP('127.0.0.1', {port})\n\
         s.sendmail('user1@hogehoge.local', ['user@example.local'], \
         'Subject: via smtplib\\r\\n\\r\\nhello from python\\r\\n')\n\
         s.quit()\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    postern_tests::assert_success(&out);

    let swaks = std::process::Command::new("swaks")
        .args(["--server", &format!("127.0.0.1:{port}")])
        .args([
            "--from",
            "user1@hogehoge.local",
            "--to",
            "user@example.local",
        ])
        .args([
            "--header",
            "Subject: via swaks",
            "--body",
            "hello from swaks",
        ])
        .output();
    match swaks {
        Ok(out) => assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(e) => panic!("swaks is needed (CI installs it): {e}"),
    }
    assert!(
        wait_for(Duration::from_secs(30), || delivered(&new).len() >= 2),
        "{}",
        inst.log()
    );
    let all = delivered(&new).join("\n");
    for needle in [
        "Subject: via smtplib",
        "Subject: via swaks",
        "Return-Path: <user1@hogehoge.local>",
        "Delivered-To: user@example.local",
        "Received: from",
    ] {
        assert!(all.contains(needle), "{needle}:\n{all}");
    }
}
