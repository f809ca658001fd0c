//! smtpd signs mail from mynetworks and authenticated clients with the
//! key `dkim_signing_table` picks for the From: domain (RSA and Ed25519
//! keys made by openssl here), and Python's dkim package (python3-dkim,
//! which nobody here wrote) and opendkim's `opendkim-testmsg` verify what
//! arrives at the next hop. Mail
//! from other clients is not signed; a key file that is missing stops
//! the master at start.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use postern_tests::dkim::{opendkim_verifies, python_dkim_verifies};
use postern_tests::dns::Record;
use postern_tests::{Instance, Sink, SmtpClient, arrived, free_port, wait_for};

const LONG: Duration = Duration::from_secs(40);

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The public key record of `pem`: `v=DKIM1; k=...; p=...`.
fn record(dir: &Path, pem: &str, k: &str) -> String {
    let out = Command::new("openssl")
        .args(["pkey", "-in", pem, "-pubout", "-outform", "DER"])
        .current_dir(dir)
        .output()
        .unwrap();
    let der = out.stdout;
    // Ed25519's record holds the raw 32 bytes, the end of the SPKI.
    let key = if k == "ed25519" {
        der[der.len() - 32..].to_vec()
    } else {
        der
    };
    let p = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&key)?;
            c.wait_with_output()
        })
        .unwrap();
    format!(
        "v=DKIM1; k={k}; p={}",
        String::from_utf8_lossy(&p.stdout).trim()
    )
}

fn send(inst: &Instance, from: Ipv4Addr, domain: &str, subject: &str) {
    let (mut c, _) = SmtpClient::connect_from(from, inst.smtp).unwrap();
    c.expect("EHLO client.example", "250");
    c.expect(&format!("MAIL FROM:<alice@{domain}>"), "250");
    c.expect("RCPT TO:<bob@example.net>", "250");
    c.expect("DATA", "354");
    let msg = format!(
        "From: Alice <alice@{domain}>\r\nTo: bob@example.net\r\nSubject: {subject}\r\n\r\nHello.\r\n"
    );
    c.send_raw(msg.as_bytes()).unwrap();
    c.expect(".", "250 2.0.0");
    c.expect("QUIT", "221");
}

#[test]
fn mail_from_mynetworks_is_signed_and_python_dkim_verifies_it() {
    let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, "");
    let dir = inst.dir.path().to_path_buf();
    let d = dir.as_path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "rsa",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ],
    );
    openssl(d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
    std::fs::write(d.join("signing"), "example.org rsa\nexample.com ed\n").unwrap();
    std::fs::write(
        d.join("keys"),
        format!(
            "rsa example.org:sel:{0}/rsa.pem\ned example.com:sel:{0}/ed.pem\n",
            d.display()
        ),
    )
    .unwrap();
    // The smtpd runs as mail_owner: the keys must be its to read.
    for k in ["rsa.pem", "ed.pem"] {
        let _ = Command::new("chown")
            .arg(postern_tests::TEST_MAIL_OWNER)
            .arg(d.join(k))
            .status();
    }
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    inst.write_config(&Instance::standard_config(
        smtp,
        &format!(
            "mynetworks = \"127.0.0.1/32\"\n\
             relay_domains = \"example.net\"\n\
             transport_maps = \"inline:{{ example.net=smtp:[127.0.0.1]:{} }}\"\n\
             dkim_signing_table = \"texthash:{1}/signing\"\n\
             dkim_key_table = \"texthash:{1}/keys\"",
            sink.addr.port(),
            d.display()
        ),
        "",
    ));
    let inst = inst.launch();

    send(
        &inst,
        Ipv4Addr::new(127, 0, 0, 1),
        "example.org",
        "rsa signed",
    );
    let m = arrived(&sink, "rsa signed", &inst);
    assert!(
        m.data
            .starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=sel; d=example.org;"),
        "{}",
        m.data
    );
    let rsa = record(d, "rsa.pem", "rsa");
    assert!(python_dkim_verifies(&m.data, &rsa, d), "{}", m.data);
    assert!(!python_dkim_verifies(
        m.data.replace("Hello.", "Jello."),
        &rsa,
        d
    ));
    let rsa_dns = || vec![Record::txt("sel._domainkey.example.org", &rsa)];
    assert!(opendkim_verifies(&m.data, rsa_dns(), d), "{}", m.data);
    assert!(!opendkim_verifies(
        m.data.replace("Hello.", "Jello."),
        rsa_dns(),
        d
    ));
    inst.wait_log_line(&["DKIM-Signature field added (s=sel, d=example.org)"]);

    send(
        &inst,
        Ipv4Addr::new(127, 0, 0, 1),
        "example.com",
        "ed25519 signed",
    );
    let m = arrived(&sink, "ed25519 signed", &inst);
    assert!(m.data.contains("a=ed25519-sha256"), "{}", m.data);
    let ed = record(d, "ed.pem", "ed25519");
    assert!(python_dkim_verifies(&m.data, &ed, d), "{}", m.data);
    let ed_dns = vec![Record::txt("sel._domainkey.example.com", &ed)];
    assert!(opendkim_verifies(&m.data, ed_dns, d), "{}", m.data);

    // Mail from a client outside mynetworks (to a relay domain, which
    // anyone may send to) is inbound mail: not signed.
    send(
        &inst,
        Ipv4Addr::new(127, 0, 0, 2),
        "example.org",
        "from outside",
    );
    let m = arrived(&sink, "from outside", &inst);
    assert!(!m.data.contains("DKIM-Signature"), "{}", m.data);
}

#[test]
fn a_missing_key_file_stops_the_start_with_its_name() {
    let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, "");
    let d = inst.dir.path();
    std::fs::write(d.join("signing"), "example.org rsa\n").unwrap();
    std::fs::write(
        d.join("keys"),
        format!("rsa example.org:sel:{}/absent.pem\n", d.display()),
    )
    .unwrap();
    inst.write_config(&Instance::standard_config(
        smtp,
        &format!(
            "dkim_signing_table = \"texthash:{0}/signing\"\n\
             dkim_key_table = \"texthash:{0}/keys\"",
            d.display()
        ),
        "",
    ));
    let out = postern_tests::master_check(&inst.config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("absent.pem") && err.contains("dkim_key_table"),
        "{err}"
    );
}

/// internal_mail_filter_classes = bounce: qmgr signs the non-delivery
/// notice with the key for its From: domain (MAILER-DAEMON@myhostname),
/// as opendkim signs bounces that Postfix sends through its milters; with
/// the class not named, the notice goes unsigned.
#[test]
fn bounces_are_signed_when_internal_mail_filter_classes_names_them() {
    for (classes, signed) in [("bounce", true), ("notify", false)] {
        let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let inst = Instance::create(smtp, "");
        let d = inst.dir.path().to_path_buf();
        openssl(&d, &["genpkey", "-algorithm", "ed25519", "-out", "ed.pem"]);
        std::fs::write(d.join("signing"), "mail.example.local ed\n").unwrap();
        std::fs::write(
            d.join("keys"),
            format!("ed mail.example.local:notices:{}/ed.pem\n", d.display()),
        )
        .unwrap();
        let _ = Command::new("chown")
            .arg(postern_tests::TEST_MAIL_OWNER)
            .arg(d.join("ed.pem"))
            .status();
        let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
        inst.write_config(&Instance::standard_config(
            smtp,
            &format!(
                "mynetworks = \"127.0.0.0/8\"\n\
                 relay_domains = \"example.net, nowhere.example\"\n\
                 transport_maps = \"inline:{{ example.net=smtp:[127.0.0.1]:{0}, \
                 {{ nowhere.example=error:no such place }} }}\"\n\
                 dkim_signing_table = \"texthash:{1}/signing\"\n\
                 dkim_key_table = \"texthash:{1}/keys\"\n\
                 internal_mail_filter_classes = \"{classes}\"",
                sink.addr.port(),
                d.display()
            ),
            "",
        ));
        let inst = inst.launch();
        let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
        c.expect("EHLO client.example", "250");
        c.expect("MAIL FROM:<sender@example.net>", "250");
        c.expect("RCPT TO:<someone@nowhere.example>", "250");
        c.expect("DATA", "354");
        c.send_raw(b"From: <sender@example.net>\r\nSubject: doomed\r\n\r\nbody\r\n")
            .unwrap();
        c.expect(".", "250");
        c.expect("QUIT", "221");
        assert!(
            wait_for(LONG, || !sink.messages().is_empty()),
            "no bounce:\n{}",
            inst.log()
        );
        let bounce = &sink.messages()[0];
        assert_eq!(bounce.recipients, ["sender@example.net"]);
        assert!(bounce.data.contains("no such place"), "{}", bounce.data);
        if signed {
            assert!(
                bounce.data.starts_with(
                    "DKIM-Signature: v=1; a=ed25519-sha256; s=notices; d=mail.example.local;"
                ),
                "{}",
                bounce.data
            );
            let record = record(&d, "ed.pem", "ed25519");
            assert!(
                python_dkim_verifies(&bounce.data, &record, &d),
                "{}",
                bounce.data
            );
        } else {
            assert!(!bounce.data.contains("DKIM-Signature"), "{}", bounce.data);
        }
    }
}
