//! The commands programs call by Postfix's names: qctl run as `newaliases`
//! checks the aliases files alias_database names and reports a broken
//! line with file, line and a sysexits status; run as `mailq` it lists
//! the queue as `qctl list` (postqueue -p) does. `-C` names the
//! configuration, as in Postfix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use postern_tests::{Instance, SmtpClient, bin_dir, free_port, wait_for};

/// qctl under the name `name`: a symbolic link in `dir`.
fn as_command(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(bin_dir().join("qctl"), &link).unwrap();
    link
}

fn run(cmd: &Path, config: &Path) -> Output {
    Command::new(cmd).arg("-C").arg(config).output().unwrap()
}

#[test]
fn newaliases_reports_a_broken_line_with_file_line_and_status() {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(
        smtp,
        &Instance::standard_config(smtp, "alias_database = \"hash:aliases\"", ""),
    );
    let dir = inst.dir.path();
    let newaliases = as_command(dir, "newaliases");
    let aliases = dir.join("aliases");

    std::fs::write(&aliases, "postmaster: root\n# a comment\nbroken line\n").unwrap();
    let out = run(&newaliases, &inst.config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{err}");
    assert!(
        err.contains(&format!(
            "newaliases: fatal: {}:3: expected format: name: value",
            aliases.display()
        )),
        "{err}"
    );

    std::fs::write(&aliases, "postmaster: root\nteam: alice, bob\n").unwrap();
    let out = run(&newaliases, &inst.config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());

    std::fs::remove_file(&aliases).unwrap();
    let out = run(&newaliases, &inst.config);
    assert_eq!(
        out.status.code(),
        Some(66),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mailq_lists_a_deferred_message_as_qctl_list_does() {
    // Relayed to a port nobody listens on: deferred.
    let dead = free_port();
    let inst = Instance::start(
        &format!(
            "mynetworks = \"127.0.0.0/8\"\n\
             relay_domains = \"example.net\"\n\
             transport_maps = \"inline:{{ example.net=smtp:[127.0.0.1]:{dead} }}\""
        ),
        "",
    );
    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    let id = c.telnet_message(
        "<alice@example.com>",
        &["<bob@example.net>"],
        b"Subject: later\r\n\r\nbody\r\n",
    );
    assert!(
        wait_for(Duration::from_secs(30), || {
            let out = inst.qctl(&["list"]);
            String::from_utf8_lossy(&out.stdout).contains("(connect to")
        }),
        "{}",
        inst.log()
    );
    let mailq = as_command(inst.dir.path(), "mailq");
    let out = run(&mailq, &inst.config);
    postern_tests::assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text, String::from_utf8_lossy(&inst.qctl(&["list"]).stdout));
    assert!(
        text.contains(&id) && text.contains("alice@example.com"),
        "{text}"
    );
    assert!(text.contains("bob@example.net"), "{text}");
}

/// `qctl config import` carries a main.cf's parameters over in Postfix's
/// syntax, reports what it leaves out with file and line, and the result
/// passes `master --check`; a line that does not parse stops it with its
/// line, and nothing is written.
#[test]
fn config_import_of_a_main_cf_loads_and_reports_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let main_cf = dir.path().join("main.cf");
    std::fs::write(
        &main_cf,
        "# Postfix\n\
         myhostname = mx.example.com\n\
         mydestination = $myhostname, localhost.$mydomain,\n    localhost\n\
         queue_directory = /var/spool/postfix\n\
         debugger_command = PATH=/bin ddd $daemon_directory/$process_name\n\
         virtual_alias_maps = ldap:/etc/postfix/ldap-aliases.cf\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
         message_size_limit = 20480000\n",
    )
    .unwrap();
    let target = dir.path().join("master.toml");
    let out = postern_tests::qctl(&target, &["config", "import", main_cf.to_str().unwrap()]);
    postern_tests::assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    let at = |line: usize, name: &str| format!("{}:{line}: {name}", main_cf.display());
    assert!(
        err.contains(&format!("{}: Postfix's own", at(5, "queue_directory"))),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{}: Postern has no such parameter",
            at(6, "debugger_command")
        )),
        "{err}"
    );
    assert!(
        err.contains(&at(7, "virtual_alias_maps")) && err.contains("ldap"),
        "{err}"
    );
    std::fs::write(&target, &out.stdout).unwrap();
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(toml.contains("myhostname = \"mx.example.com\""), "{toml}");
    assert!(
        toml.contains("mydestination = \"$myhostname, localhost.$mydomain, localhost\""),
        "{toml}"
    );
    assert!(toml.contains("message_size_limit = \"20480000\""), "{toml}");
    assert!(!toml.contains("ldap"), "{toml}");
    let check = Command::new(bin_dir().join("master"))
        .arg("--check")
        .arg("--config")
        .arg(&target)
        .output()
        .unwrap();
    postern_tests::assert_success(&check);
    let shown = postern_tests::qctl(&target, &["config", "message_size_limit", "myhostname"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("message_size_limit = 20480000"), "{shown}");
    assert!(shown.contains("myhostname = mx.example.com"), "{shown}");

    std::fs::write(
        &main_cf,
        "myhostname = mx.example.com\nthis is not a setting\n",
    )
    .unwrap();
    let out = postern_tests::qctl(&target, &["config", "import", main_cf.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:2:", main_cf.display())), "{err}");
}
