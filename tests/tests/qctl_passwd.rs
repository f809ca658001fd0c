//! `qctl passwd` writes the SMTP AUTH user table that smtpd checks, and a
//! changed password takes effect without a reload.

use std::time::Duration;

use postern_tests::{Instance, SmtpClient, wait_for};

fn passwd(inst: &Instance, user: &str, password: &str, scheme: &str) -> std::process::Output {
    let args = ["passwd", "--scheme", scheme, user];
    postern_tests::qctl_with_input(&inst.config, &args, &format!("{password}\n"))
}

fn auth(inst: &Instance, user: &str, password: &str) -> String {
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.cmd("EHLO client.example").unwrap();
    c.cmd(&format!(
        "AUTH PLAIN {}",
        postern_tests::auth_plain(user, password)
    ))
    .unwrap()
}

#[test]
fn qctl_passwd_adds_and_changes_users_that_smtpd_accepts() {
    let smtp = format!("127.0.0.1:{}", postern_tests::free_port())
        .parse()
        .unwrap();
    let main = "smtpd_sasl_auth_enable = \"yes\"\nsmtpd_sasl_users = \"texthash:sasl_users\"";
    let inst = Instance::create(smtp, &Instance::standard_config(smtp, main, ""));
    let table = inst.dir.path().join("sasl_users");
    std::fs::write(&table, "# SMTP AUTH users\nbob {plain}bobsecret\n").unwrap();
    let inst = inst.launch();

    for scheme in ["argon2", "sha512"] {
        let out = passwd(&inst, "alice", &format!("s3cret-{scheme}"), scheme);
        postern_tests::assert_success(&out);
        let text = std::fs::read_to_string(&table).unwrap();
        assert!(
            text.contains("# SMTP AUTH users") && text.contains("bob {plain}bobsecret"),
            "{text}"
        );
        assert_eq!(
            text.lines().filter(|l| l.starts_with("alice ")).count(),
            1,
            "{text}"
        );
        let prefix = if scheme == "argon2" {
            "alice $argon2id$"
        } else {
            "alice $6$"
        };
        assert!(text.contains(prefix), "{text}");
        assert!(
            !text.contains(&format!("s3cret-{scheme}")),
            "no clear text stored"
        );
        // smtpd sees the new password once the table's change is noticed.
        assert!(
            wait_for(Duration::from_secs(10), || auth(
                &inst,
                "alice",
                &format!("s3cret-{scheme}")
            )
            .starts_with("235 2.7.0")),
            "{}",
            inst.log()
        );
    }
    // Each smtpd process notices the changed table on its own (within a
    // second): wait until none accepts the old password any more.
    assert!(
        wait_for(Duration::from_secs(15), || auth(
            &inst,
            "alice",
            "s3cret-argon2"
        )
        .starts_with("535 5.7.8")),
        "{}",
        inst.log()
    );
    // A table is re-checked at most once a second: past that, every
    // process has the new one.
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..4 {
        assert!(auth(&inst, "alice", "s3cret-argon2").starts_with("535 5.7.8"));
    }
    assert!(auth(&inst, "bob", "bobsecret").starts_with("235"));

    let out = passwd(&inst, "carol", "", "argon2");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));
}
