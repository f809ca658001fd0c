//! The parameter table at the edges: every form of configuration Postern
//! cannot honour stops the master before it binds anything, naming file,
//! line and parameter; a table file that is missing fails only the
//! lookups that need it; the two settings seed 003 makes work.

use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

use postern_tests::{Instance, Sink, SmtpClient, free_port, wait_for};

const LONG: Duration = Duration::from_secs(20);

/// Starts a master on the standard config with `main_extra` (and
/// `services_extra`) and expects it to refuse: it exits non-zero at once,
/// its SMTP port never opens, and its message (also that of `master
/// --check`) names master.toml, the line of `key`, `key` and `says`.
fn refused(main_extra: &str, services_extra: &str, key: &str, says: &str) {
    let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = Instance::standard_config(smtp, main_extra, services_extra);
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with(&format!("{key} =")))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{key} is not in the config:\n{text}"));
    let inst = Instance::create(smtp, &text);
    let mut child = inst.master_command().spawn().unwrap();
    let mut status = None;
    assert!(
        wait_for(LONG, || {
            status = child.try_wait().unwrap();
            status.is_some()
        }),
        "the master kept running with {key}"
    );
    assert!(!status.unwrap().success());
    assert!(
        TcpStream::connect(inst.smtp).is_err(),
        "the SMTP port was bound"
    );
    assert!(
        !inst.queue_directory().join("private").exists(),
        "unix services were bound"
    );
    let want = format!("master.toml:{line}: parameter \"{key}\"");
    let stderr = inst.stderr();
    assert!(
        stderr.contains(&want) && stderr.contains(says),
        "want {want:?} and {says:?} in:\n{stderr}"
    );

    let out = postern_tests::master_check(&inst.config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&want) && err.contains(says), "{err}");
}

#[test]
fn a_parameter_postern_does_not_implement_is_refused_unless_it_has_its_default() {
    refused(
        "smtpd_tls_req_ccert = true",
        "",
        "smtpd_tls_req_ccert",
        "not supported by Postern yet: client certificates are never requested",
    );
    refused(
        "smtp_tls_policy_maps = \"hash:tls_policy\"",
        "",
        "smtp_tls_policy_maps",
        "not supported by Postern yet",
    );
    // In a service's options too.
    refused(
        "",
        &format!(
            "\n[[service]]\nname = \"submission\"\ntype = \"inet\"\nlisten = \"127.0.0.1:{}\"\n\
             command = \"smtpd\"\n\n[service.options]\nsmtpd_client_connection_count_limit = 10\n",
            free_port()
        ),
        "smtpd_client_connection_count_limit",
        "connections per client are not limited",
    );
    // Set to its default, it starts.
    let inst = Instance::start(
        "smtpd_tls_req_ccert = \"no\"\nsmtpd_client_connection_rate_limit = 0",
        "",
    );
    assert!(TcpStream::connect(inst.smtp).is_ok());
}

#[test]
fn a_restriction_postern_does_not_implement_is_refused() {
    refused(
        "smtpd_recipient_restrictions = \"permit_mynetworks, check_policy_service \
         inet:127.0.0.1:10023, reject_unauth_destination\"",
        "",
        "smtpd_recipient_restrictions",
        "restriction \"check_policy_service\" is not supported by Postern",
    );
    // A DNS list's result filter is checked at load.
    refused(
        "smtpd_client_restrictions = \"reject_rbl_client zen.example=127.0.0.x\"",
        "",
        "smtpd_client_restrictions",
        "restriction \"reject_rbl_client\": bad DNSBL result filter \"127.0.0.x\"",
    );
    refused(
        "smtpd_client_restrictions = \"permit_mynetwork\"",
        "",
        "smtpd_client_restrictions",
        "unknown restriction \"permit_mynetwork\"",
    );
}

#[test]
fn a_table_type_postern_does_not_have_is_refused() {
    for kind in [
        "ldap",
        "mysql",
        "pgsql",
        "sqlite",
        "memcache",
        "socketmap",
        "tcp",
    ] {
        refused(
            &format!("transport_maps = \"{kind}:/etc/postern/transport.cf\""),
            "",
            "transport_maps",
            &format!("unsupported dictionary type \"{kind}\""),
        );
    }
    refused(
        "smtpd_client_restrictions = \"check_client_access mysql:/etc/postern/clients.cf\"",
        "",
        "smtpd_client_restrictions",
        "unsupported dictionary type \"mysql\"",
    );
    refused(
        "relay_domains = \"example.com, pgsql:/etc/postern/relay.cf\"",
        "",
        "relay_domains",
        "unsupported dictionary type \"pgsql\"",
    );
}

#[test]
fn a_malformed_value_is_refused() {
    refused(
        "message_size_limit = \"10M\"",
        "",
        "message_size_limit",
        "invalid integer value \"10M\"",
    );
    refused(
        "smtpd_timeout = \"5 minutes\"",
        "",
        "smtpd_timeout",
        "invalid time value \"5 minutes\"",
    );
    refused(
        "smtpd_helo_required = \"perhaps\"",
        "",
        "smtpd_helo_required",
        "invalid boolean value \"perhaps\"",
    );
    refused(
        "smtpd_tls_security_level = \"required\"",
        "",
        "smtpd_tls_security_level",
        "invalid value \"required\"",
    );
    refused(
        "smtpd_forbid_bare_newline = \"sometimes\"",
        "",
        "smtpd_forbid_bare_newline",
        "invalid value \"sometimes\"",
    );
    // A TLS protocol list is checked at load, not when the first
    // smtp-client or smtpd process builds its TLS config.
    refused(
        "smtp_tls_mandatory_protocols = \"<=TLSv1.1\"",
        "",
        "smtp_tls_mandatory_protocols",
        "allows neither TLSv1.2 nor TLSv1.3",
    );
    refused(
        "smtpd_tls_protocols = \"!SSLv2, TLSv4\"",
        "",
        "smtpd_tls_protocols",
        "unknown protocol \"TLSv4\"",
    );
}

/// Postfix's surrogate table: with `alias_maps` naming a file that is not
/// there (the default `hash:/etc/aliases` on a fresh machine), mail that
/// does not need it flows, a local recipient is answered 451 4.3.5, and
/// the table's absence is logged once.
#[test]
fn a_missing_alias_table_fails_only_local_recipients() {
    let sink = Sink::start(Ipv4Addr::LOCALHOST, 0);
    let smtp = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let text = Instance::standard_config(
        smtp,
        &format!(
            "alias_maps = \"hash:no-such-aliases\"\nmydestination = \"localhost\"\n\
             mynetworks = \"127.0.0.0/8\"\nrelayhost = \"[127.0.0.1]:{}\"",
            sink.addr.port()
        ),
        "",
    )
    .replacen("process_limit = 2", "process_limit = 1", 1);
    let inst = Instance::start_with(smtp, &text);

    let (mut c, _) = SmtpClient::connect(inst.smtp).unwrap();
    c.expect("EHLO client.example.org", "250");
    c.expect("MAIL FROM:<sender@example.org>", "250");
    assert_eq!(
        c.cmd("RCPT TO:<user@localhost>").unwrap(),
        "451 4.3.5 Server configuration error\r\n"
    );
    c.expect("RCPT TO:<far@example.net>", "250");
    c.expect("DATA", "354");
    c.expect("Subject: relayed\r\n\r\nhello\r\n.", "250");
    c.expect("QUIT", "221");

    let got = sink.wait_messages(1, LONG);
    assert_eq!(got.len(), 1, "{}", inst.log());
    assert_eq!(got[0].recipients, vec!["far@example.net"]);

    let path = inst.dir.path().join("no-such-aliases");
    let warning = format!(
        "warning: hash:no-such-aliases is unavailable. open database {}: No such file or directory",
        path.display()
    );
    assert!(
        wait_for(LONG, || inst.log().contains(&warning)),
        "{}",
        inst.log()
    );
    assert_eq!(
        inst.log().matches(&warning).count(),
        1,
        "logged once:\n{}",
        inst.log()
    );
}

/// `qctl config -n` is what is in force: [main] and -o settings, each
/// service's options in postconf -P's form, and no unknown parameter that
/// nothing reads (warned about instead); -x expands as postconf -x does.
#[test]
fn qctl_config_n_shows_what_is_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.toml");
    std::fs::write(
        &file,
        "[main]\nmyhostname = \"mx.example.org\"\nmynetwork = \"10.0.0.0/8\"\n\
         my_restrictions = \"permit_sasl_authenticated, reject\"\n\
         smtpd_banner = \"$myhostname ready\"\n\n\
         [[service]]\nname = \"submission\"\ntype = \"inet\"\nlisten = \"2587\"\n\
         command = \"smtpd\"\n\n[service.options]\n\
         smtpd_client_restrictions = \"$my_restrictions\"\nsyslog_name = \"postern/submission\"\n",
    )
    .unwrap();
    let out = postern_tests::qctl(&file, &["-o", "syslog_name=run", "config", "-n"]);
    postern_tests::assert_success(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "my_restrictions = permit_sasl_authenticated, reject\n\
         myhostname = mx.example.org\n\
         smtpd_banner = $myhostname ready\n\
         syslog_name = run\n\
         submission/inet/smtpd_client_restrictions = $my_restrictions\n"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unused parameter: mynetwork=10.0.0.0/8"),
        "{err}"
    );
    let out = postern_tests::qctl(&file, &["config", "-n", "-x"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("smtpd_banner = mx.example.org ready\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "submission/inet/smtpd_client_restrictions = permit_sasl_authenticated, reject\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("submission/inet/syslog_name = postern/submission\n"),
        "{text}"
    );
}
