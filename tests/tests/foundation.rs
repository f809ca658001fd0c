//! The foundation: master, daemons, their sockets and life cycle, qctl.
//! Every test starts the real master from a temporary master.toml.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use postern_tests::{Instance, SmtpClient, bin_dir, free_port, qctl, smtp_greeting, wait_for};

const LONG: Duration = Duration::from_secs(20);

#[test]
fn master_starts_every_service_and_smtpd_greets_with_the_banner() {
    let inst = Instance::start("", "");
    let status = inst.status().expect("status");
    let names: Vec<&str> = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "local",
            "pickup",
            "qmgr",
            "relay",
            "smtp",
            "smtp-client",
            "tlsmgr"
        ]
    );
    assert_eq!(
        inst.pids("smtp").len(),
        2,
        "process_limit = 2 gives two smtpd processes"
    );

    let greeting = smtp_greeting(inst.smtp).unwrap();
    assert_eq!(greeting, "220 mail.example.local ESMTP Postern\r\n");
    assert!(inst.log().contains("postern/master["), "{}", inst.log());
    assert!(
        inst.log().contains("daemon started -- version"),
        "{}",
        inst.log()
    );

    // Unix services listen where master.toml says, under private/.
    for name in ["qmgr", "smtp", "local", "tlsmgr", "master"] {
        assert!(
            inst.queue_directory().join("private").join(name).exists(),
            "private/{name}"
        );
    }
    let mode = std::fs::metadata(inst.queue_directory().join("private")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.permissions().mode() & 0o777, 0o700);
    // pickup's trigger is public; maildrop/ takes files from anyone.
    assert!(inst.queue_directory().join("public/pickup").exists());
    let mode = std::fs::metadata(inst.queue_directory().join("maildrop")).unwrap();
    assert_eq!(mode.permissions().mode() & 0o7777, 0o3733);
}

#[test]
fn human_status_lists_services_and_processes() {
    let inst = Instance::start("", "");
    let out = inst.qctl(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("master pid"), "{text}");
    for pid in inst.pids("smtp") {
        assert!(text.contains(&format!("pid {pid}")), "{text}");
    }
    assert!(text.contains("ready"), "{text}");
}

#[test]
fn a_second_master_on_the_same_queue_directory_is_refused() {
    let inst = Instance::start("", "");
    let out = inst.master_command().output().unwrap();
    assert!(!out.status.success());
    let err = std::fs::read_to_string(inst.dir.path().join("master.stderr")).unwrap() + &inst.log();
    assert!(err.contains("already running"), "{err}");
    // The first one is untouched.
    assert!(smtp_greeting(inst.smtp).unwrap().starts_with("220 "));
    assert!(inst.all_ready());
}

#[test]
fn a_killed_process_is_restarted_and_the_exit_is_reported() {
    let inst = Instance::start("", "");
    let before = inst.pids("smtp");
    let victim = before[0];
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    assert!(wait_for(LONG, || {
        let now = inst.pids("smtp");
        now.len() == 2 && !now.contains(&victim) && inst.all_ready()
    }));
    let s = inst.service_status("smtp").unwrap();
    assert_eq!(s["restarts"], 1);
    assert_eq!(s["last_exit"], "killed by signal 9");
    assert!(s["throttled_until_unix"].is_null());
    assert!(
        inst.log()
            .contains(&format!("smtpd pid {victim} killed by signal 9")),
        "{}",
        inst.log()
    );
    assert!(smtp_greeting(inst.smtp).unwrap().starts_with("220 "));
}

#[test]
fn smtpd_killed_five_times_in_ten_seconds_keeps_answering_and_is_never_throttled() {
    // Postfix throttles only a command whose new processes fail before
    // they serve; a process killed after it was ready is replaced at once.
    let inst = Instance::start("", "");
    let mut killed = Vec::new();
    for round in 0..5 {
        let began = std::time::Instant::now();
        assert!(
            wait_for(Duration::from_secs(2), || {
                let s = inst.service_status("smtp");
                s.and_then(|s| s["processes"].as_array().cloned())
                    .is_some_and(|ps| ps.len() == 2 && ps.iter().all(|p| p["ready"] == true))
            }),
            "round {round}: smtpd processes not ready\n{}",
            inst.log()
        );
        let victims = inst.pids("smtp");
        for pid in &victims {
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        killed.extend(victims);
        let killed_at = std::time::Instant::now();
        let greeting = smtp_greeting(inst.smtp).unwrap();
        let took = killed_at.elapsed();
        assert!(greeting.starts_with("220 "), "round {round}: {greeting}");
        assert!(
            took < Duration::from_secs(2),
            "round {round}: the greeting took {took:?}\n{}",
            inst.log()
        );
        std::thread::sleep(Duration::from_secs(2).saturating_sub(began.elapsed()));
    }
    let s = inst.service_status("smtp").unwrap();
    assert!(s["throttled_until_unix"].is_null(), "{s}");
    assert_eq!(s["restarts"], 10, "{s}");
    let log = inst.log();
    assert!(!log.contains("throttling"), "{log}");
    for pid in killed {
        assert!(
            log.contains(&format!("smtpd pid {pid} killed by signal 9")),
            "{log}"
        );
    }
}

#[test]
fn a_service_that_cannot_start_is_throttled() {
    // A command that exits at once, found through a per-service override.
    let inst0 = tempfile::tempdir().unwrap();
    let script = inst0.path().join("broken");
    std::fs::write(&script, "#!/bin/sh\nexit 3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(inst0.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let extra = format!(
        r#"
[[service]]
name = "broken"
type = "inet"
listen = "127.0.0.1:{port}"
command = "{}"
"#,
        script.display()
    );
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, &Instance::standard_config(smtp, "", &extra));
    let mut child = inst.master_command().spawn().unwrap();
    let throttled = wait_for(LONG, || {
        inst.service_status("broken")
            .is_some_and(|s| !s["throttled_until_unix"].is_null())
    });
    let log = inst.log();
    let _ = child.kill();
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
    assert!(throttled, "{log}");
    assert!(
        log.contains("broken: bad command startup -- throttling"),
        "{log}"
    );
    assert!(log.contains("exit status 3"), "{log}");
}

#[test]
fn restart_replaces_processes_without_refusing_a_connection() {
    let inst = Instance::start("", "");
    let before = inst.pids("smtp");
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served, failed, addr) =
            (stop.clone(), served.clone(), failed.clone(), inst.smtp);
        clients.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match smtp_greeting(addr) {
                    Ok(g) if g.starts_with("220 ") => served.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let out = inst.qctl(&["restart", "smtp"]);
    postern_tests::assert_success(&out);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let after = inst.pids("smtp");
    assert!(wait_for(LONG, || {
        let now = inst.pids("smtp");
        now.len() == 2 && now.iter().all(|p| !before.contains(p))
    }));
    assert!(
        after.iter().any(|p| !before.contains(p)),
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "connections refused or unanswered during restart"
    );
    assert!(served.load(Ordering::Relaxed) > 20);
    assert_eq!(inst.service_status("smtp").unwrap()["restarts"], 1);
}

#[test]
fn an_exclusive_unix_service_restarts_on_the_same_socket() {
    let inst = Instance::start("", "");
    inst.restart_service("qmgr");
    // Same socket path, now served by the new process: the hello succeeds.
    let path = inst.queue_directory().join("private/qmgr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut conn = postern_ipc::Connection::new(stream);
        conn.client_hello(postern_ipc::Protocol::Qmgr, Duration::from_secs(5))
            .await
            .unwrap();
        // The wrong protocol on the same socket is refused.
        let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let mut conn = postern_ipc::Connection::new(stream);
        assert!(
            conn.client_hello(postern_ipc::Protocol::Tlsmgr, Duration::from_secs(5))
                .await
                .is_err()
        );
    });
}

#[test]
fn restart_of_an_unknown_service_fails_clearly() {
    let inst = Instance::start("", "");
    let out = inst.qctl(&["restart", "nosuch"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such service: nosuch"));
}

#[test]
fn reload_adds_and_removes_services_and_refuses_a_broken_file() {
    let inst = Instance::start("", "");
    let port = free_port();
    let extra = format!(
        "[[service]]\nname = \"smtp2\"\ntype = \"inet\"\nlisten = \"127.0.0.1:{port}\"\ncommand = \"smtpd\"\noptions = {{ smtpd_banner = \"$myhostname second\" }}\n"
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    inst.write_config(&Instance::standard_config(inst.smtp, "", &extra));
    let out = inst.qctl(&["reload"]);
    postern_tests::assert_success(&out);
    assert!(wait_for(LONG, || inst.all_ready() && inst.pids("smtp2").len() == 1));
    assert_eq!(
        smtp_greeting(addr).unwrap(),
        "220 mail.example.local second\r\n"
    );
    assert!(inst.log().contains("reload -- version"));

    // A broken file is refused and everything keeps running.
    inst.write_config("[main]\nmessage_size_limit = \"lots\"\n");
    let out = inst.qctl(&["reload"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("message_size_limit"), "{err}");
    assert!(smtp_greeting(addr).unwrap().starts_with("220 "));

    // SIGHUP with the service gone: it stops and its port closes.
    inst.write_config(&Instance::standard_config(inst.smtp, "", ""));
    inst.signal_master(libc::SIGHUP);
    assert!(wait_for(LONG, || inst.service_status("smtp2").is_none()));
    assert!(wait_for(LONG, || TcpStream::connect(addr).is_err()));
    assert!(smtp_greeting(inst.smtp).unwrap().starts_with("220 "));
}

#[test]
fn reload_passes_new_parameters_to_running_daemons() {
    let inst = Instance::start("", "");
    let pids = inst.pids("smtp");
    let text = Instance::standard_config(
        inst.smtp,
        "smtpd_banner = \"$myhostname ESMTP reloaded\"",
        "",
    );
    inst.write_config(&text);
    assert!(inst.qctl(&["reload"]).status.success());
    assert!(wait_for(LONG, || {
        smtp_greeting(inst.smtp).is_ok_and(|g| g == "220 mail.example.local ESMTP reloaded\r\n")
    }));
    assert_eq!(
        inst.pids("smtp"),
        pids,
        "an unchanged service keeps its processes"
    );
}

#[test]
fn sigterm_lets_open_sessions_finish_then_the_master_exits() {
    let mut inst = Instance::start("", "");
    let (mut session, greeting) = SmtpClient::connect(inst.smtp).unwrap();
    assert!(greeting.starts_with("220 "));
    inst.signal_master(libc::SIGTERM);
    // The open session is told to come back later once the drain starts,
    // rather than being cut off mid-command.
    let reply = session.read_reply().unwrap();
    assert!(reply.starts_with("421 4.3.2"), "{reply}");
    assert!(inst.wait_master_exit(LONG), "master did not exit");
    assert!(TcpStream::connect(inst.smtp).is_err());
    assert!(
        inst.log().contains("terminating on signal 15"),
        "{}",
        inst.log()
    );
    assert!(!inst.queue_directory().join("pid/master.pid").exists());
}

#[test]
fn qctl_stop_waits_for_the_master_and_qctl_then_reports_it_is_not_running() {
    let mut inst = Instance::start("", "");
    let out = inst.qctl(&["stop"]);
    postern_tests::assert_success(&out);
    assert!(inst.wait_master_exit(LONG));
    let out = inst.qctl(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running"), "{err}");
    let out = inst.qctl(&["--json", "status"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn a_daemon_that_stops_answering_is_killed_and_replaced() {
    let inst = Instance::start("heartbeat_timeout = \"2s\"", "");
    let victim = inst.pids("tlsmgr")[0];
    unsafe { libc::kill(victim as i32, libc::SIGSTOP) };
    assert!(wait_for(LONG, || {
        let now = inst.pids("tlsmgr");
        now.len() == 1 && now[0] != victim && inst.all_ready()
    }));
    assert!(
        inst.log()
            .contains(&format!("pid {victim} stopped sending heartbeats")),
        "{}",
        inst.log()
    );
}

#[test]
fn daemons_exit_when_the_master_dies() {
    let mut inst = Instance::start("", "");
    let pids = inst.pids("smtp");
    let master = inst.master_pid().unwrap();
    unsafe { libc::kill(master as i32, libc::SIGKILL) };
    assert!(inst.wait_master_exit(LONG));
    assert!(wait_for(LONG, || pids
        .iter()
        .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()
            || std::fs::read_to_string(format!("/proc/{p}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))));
}

#[test]
fn command_line_overrides_reach_the_children() {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, &Instance::standard_config(smtp, "", ""))
        .launch_with_args(&["-o", "smtpd_banner=$myhostname ESMTP from the command line"]);
    assert_eq!(
        smtp_greeting(smtp).unwrap(),
        "220 mail.example.local ESMTP from the command line\r\n"
    );
    assert!(inst.all_ready());
}

#[test]
fn master_check_validates_and_names_file_line_and_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[main]\nmyhostname = \"a.example\"\nmynetwork = \"127.0.0.0/8\"\n",
    )
    .unwrap();
    let out = postern_tests::master_check(&good);
    postern_tests::assert_success(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mynetwork") && err.contains("warning"),
        "unknown parameter warned: {err}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[main]\nmyhostname = \"a.example\"\n\nmessage_size_limit = \"10M\"\n",
    )
    .unwrap();
    let out = postern_tests::master_check(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:4") && err.contains("message_size_limit") && err.contains("10M"),
        "{err}"
    );
}

#[test]
fn qctl_config_prints_parameters_like_postconf() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("master.toml");
    std::fs::write(
        &file,
        "[main]\nmyhostname = \"mx.example.org\"\nrelay_domains = [\"a.example\", \"b.example\"]\n",
    )
    .unwrap();
    let out = qctl(&file, &["config", "-n"]);
    postern_tests::assert_success(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("myhostname = mx.example.org"), "{text}");
    assert!(!text.contains("mydestination"), "-n hides defaults: {text}");
    let out = qctl(&file, &["config", "-x", "mydestination", "mydomain"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mydestination = mx.example.org, localhost.example.org, localhost"),
        "{text}"
    );
    assert!(text.contains("mydomain = example.org"), "{text}");
    let out = qctl(
        &file,
        &[
            "-o",
            "mydomain=other.example",
            "config",
            "-x",
            "mydestination",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("localhost.other.example"));
    let out = qctl(&file, &["config", "nosuch_parameter"]);
    assert!(!out.status.success());
}

#[test]
fn children_drop_to_mail_owner_when_started_as_root() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (CI runs as root)");
        return;
    }
    let inst = Instance::start("", "");
    let owner = nix::unistd::User::from_name(postern_tests::TEST_MAIL_OWNER)
        .unwrap()
        .unwrap();
    let uid_of = |pid: u32| -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    for pid in inst.pids("smtp").into_iter().chain(inst.pids("qmgr")) {
        assert_eq!(
            uid_of(pid),
            owner.uid.as_raw(),
            "pid {pid} runs as mail_owner"
        );
    }
    // `privileged = true` keeps root, like master.cf's unpriv = n.
    for pid in inst.pids("local") {
        assert_eq!(uid_of(pid), 0);
    }
}

#[test]
fn a_daemon_started_by_hand_explains_itself() {
    let out = std::process::Command::new(bin_dir().join("smtpd"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("started by the Postern master"));
}

#[test]
fn garbled_frames_end_the_connection_and_the_daemons_keep_serving() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let inst = Instance::start("", "");
    let tlsmgr_before = inst.pids("tlsmgr");
    let cases: [&[u8]; 3] = [
        // A length prefix far over the maximum frame.
        &[0xff, 0xff, 0xff, 0xff, 1, 2, 3],
        // A plausible length followed by garbage that is no hello.
        &[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x99],
        // Half a length prefix, then the peer goes away.
        &[0, 0],
    ];
    for socket in ["private/tlsmgr", "private/master"] {
        for bytes in cases {
            let mut s = UnixStream::connect(inst.queue_directory().join(socket)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            s.write_all(bytes).unwrap();
            if bytes.len() == 2 {
                drop(s);
                continue;
            }
            // The daemon answers at most a refusal, then closes: read to EOF.
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        }
    }
    // Nothing crashed or restarted, and both still serve a proper client.
    assert_eq!(inst.pids("tlsmgr"), tlsmgr_before);
    assert_eq!(inst.service_status("tlsmgr").unwrap()["restarts"], 0);
    assert!(inst.status().is_some(), "the control socket still answers");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(inst.queue_directory().join("private/tlsmgr"))
            .await
            .unwrap();
        let mut conn = postern_ipc::Connection::new(stream);
        conn.client_hello(postern_ipc::Protocol::Tlsmgr, Duration::from_secs(5))
            .await
            .unwrap();
    });
    let log = inst.log();
    assert!(
        log.contains("warning: postern-tlsmgr:") || log.contains("warning: control connection:"),
        "{log}"
    );
}

#[test]
fn master_daemon_mode_detaches_and_stops_on_request() {
    let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let inst = Instance::create(smtp, &Instance::standard_config(smtp, "", ""));
    let status = inst.master_command().arg("--daemon").status().unwrap();
    assert!(status.success(), "the foreground part exits once detached");
    assert!(inst.wait_all_ready(LONG), "{}", inst.log());
    assert!(smtp_greeting(smtp).unwrap().starts_with("220 "));
    let out = inst.qctl(&["stop"]);
    postern_tests::assert_success(&out);
    assert!(wait_for(LONG, || TcpStream::connect(smtp).is_err()));
}
