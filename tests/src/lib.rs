//! Integration-test harness: starts the real `master` (which starts the
//! real daemons) from a master.toml in a temporary directory, on loopback
//! ports, and gives tests the means to talk to it: SMTP over TCP, `qctl`,
//! the mail log.
//!
//! # Layout
//!
//! - [`Instance`]: one running Postern (its directory, config, master).
//! - [`bin_dir`], [`qctl`]: the built binaries.
//! - [`free_port`], [`smtp_greeting`], [`wait_for`]: small tools for tests.
//! - [`SmtpClient`]: a line-by-line SMTP client (optionally from a given
//!   source address, to play a client inside or outside mynetworks).
//! - [`Sink`]: a plain SMTP server that records what it receives, "the
//!   outside" of multi-server scenarios.
//! - [`dns`]: an authoritative DNS server for MX, address and TXT answers.
//! - [`dkim`]: python3-dkim as the outside verifier of DKIM signatures.
//! - [`peers`]: real mail filters (opendkim, clamav-milter,
//!   spamass-milter) as milter peers.
//!
//! The binaries must be built first (`cargo build --workspace`, which
//! `scripts/test` does).

pub mod agent;
pub mod certs;
pub mod dkim;
pub mod dns;
pub mod peers;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The master and the daemons it runs (the programs besides qctl).
pub const DAEMONS: [&str; 7] = [
    "master",
    "smtpd",
    "qmgr",
    "pickup",
    "smtp-client",
    "local-delivery",
    "tlsmgr",
];

/// Where cargo put the binaries: the test executable lives in
/// `target/<profile>/deps`, the binaries one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for bin in DAEMONS.iter().chain(&["qctl", "sendmail"]) {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the workspace first (scripts/test does `cargo build --workspace`)",
            dir.join(bin).display()
        );
    }
    dir
}

/// An unused TCP port on 127.0.0.1 (bound and released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// Connects and reads the first reply line (the greeting).
pub fn smtp_greeting(addr: SocketAddr) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// Runs qctl against a config file.
pub fn qctl(config: &Path, args: &[&str]) -> Output {
    Command::new(bin_dir().join("qctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run qctl")
}

/// `main_extra` after a line `name = value` for each of `defaults` (values
/// as TOML) that `main_extra` does not set itself.
pub fn with_defaults(defaults: &[(&str, String)], main_extra: &str) -> String {
    let set_by_test = |name: &str| {
        main_extra
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == name))
    };
    let mut main = String::new();
    for (name, value) in defaults.iter().filter(|(n, _)| !set_by_test(n)) {
        main.push_str(&format!("{name} = {value}\n"));
    }
    main.push_str(main_extra);
    main
}

/// Serves each connection to `listener` in a thread of its own with
/// `serve`; what a session returns joins the list when it ends.
pub fn serve_sessions<T: Send + 'static>(
    listener: TcpListener,
    serve: impl Fn(TcpStream) -> T + Send + Sync + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<T>>> {
    let sessions = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (list, serve) = (sessions.clone(), std::sync::Arc::new(serve));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (list, serve) = (list.clone(), serve.clone());
            std::thread::spawn(move || {
                let t = serve(stream);
                list.lock().unwrap().push(t);
            });
        }
    });
    sessions
}

/// A multi-line 250 reply of `lines` (`250-` before all but the last),
/// without the final CRLF: an EHLO reply.
pub fn reply_250(lines: &[String]) -> String {
    let last = lines.len().saturating_sub(1);
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("250{}{l}", if i == last { ' ' } else { '-' }))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Asserts that a command succeeded; the message is its stderr.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `master --check --config CONFIG`: the configuration checked, nothing
/// started.
pub fn master_check(config: &Path) -> Output {
    Command::new(bin_dir().join("master"))
        .args(["--check", "--config"])
        .arg(config)
        .output()
        .expect("run master --check")
}

/// Runs qctl against a config file with `input` on its standard input.
pub fn qctl_with_input(config: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(bin_dir().join("qctl"))
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run qctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Makes `dir/mail`, which anyone may write (deliveries through aliases
/// run as default_privs), in `dir`, which anyone may enter; its path.
pub fn mail_dir(dir: &Path) -> PathBuf {
    let mail = dir.join("mail");
    std::fs::create_dir(&mail).unwrap();
    std::fs::set_permissions(&mail, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    mail
}

/// `toml` (a master.toml) with each `name = value` of `settings` in
/// `[main]`, in place of a line setting the same name, as an
/// administrator edits the file.
fn with_settings(toml: &str, settings: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut in_main = false;
    for line in toml.lines() {
        if line.starts_with('[') {
            in_main = line.trim() == "[main]";
            if in_main {
                out.push_str(line);
                out.push('\n');
                for (n, v) in settings {
                    out.push_str(&format!("{n} = {v}\n"));
                }
                continue;
            }
        }
        let name = line.split('=').next().unwrap_or("").trim();
        if in_main && settings.iter().any(|(n, _)| n == name) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The services of a Postfix master.cf as Debian installs it (those
/// Postern runs, and `pickup`), for [`Instance::start_imported`].
pub const POSTFIX_MASTER_CF: &str = "\
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       y       1000?   1       tlsmgr
rewrite   unix  -       -       y       -       -       trivial-rewrite
bounce    unix  -       -       y       -       0       bounce
smtp      unix  -       -       y       -       -       smtp
relay     unix  -       -       y       -       -       smtp
local     unix  -       n       n       -       -       local
";

/// The account tests give daemons when they run as root.
pub const TEST_MAIL_OWNER: &str = "nobody";

/// One Postern instance: a directory with master.toml, a queue directory
/// and a mail log, and the master process.
#[derive(Debug)]
pub struct Instance {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub smtp: SocketAddr,
    master: Option<Child>,
}

impl Instance {
    /// [`Instance::standard_config`] keeping only the service named
    /// `service`: tests of one daemon do not depend on the others.
    pub fn standard_config_only(smtp: SocketAddr, main_extra: &str, service: &str) -> String {
        let config = Instance::standard_config(smtp, main_extra, "");
        let mut blocks = config.split("\n[[service]]\n");
        let mut out = blocks.next().unwrap_or_default().to_string();
        let wanted = format!("name = \"{service}\"\n");
        for block in blocks.filter(|b| b.starts_with(&wanted)) {
            out.push_str("\n[[service]]\n");
            out.push_str(block);
        }
        out
    }

    /// A config with the standard services: `smtp` on a free port and the
    /// internal unix services; `main_extra` and `services_extra` are TOML
    /// appended to `[main]` and after the services.
    pub fn standard_config(smtp: SocketAddr, main_extra: &str, services_extra: &str) -> String {
        // Test defaults, unless main_extra sets the same parameter.
        let defaults = [
            ("myhostname", "\"mail.example.local\"".to_string()),
            ("maillog_file", "\"maillog\"".to_string()),
            ("queue_directory", "\"queue\"".to_string()),
            ("mail_owner", format!("\"{TEST_MAIL_OWNER}\"")),
            ("service_throttle_time", "\"2s\"".to_string()),
            ("drain_timeout", "\"5s\"".to_string()),
            ("heartbeat_timeout", "\"5s\"".to_string()),
            // The instance's own (empty) aliases file: a fresh machine has
            // no /etc/aliases, and a missing table fails local recipients.
            ("alias_maps", "\"hash:aliases\"".to_string()),
            // Clients come from loopback, whose names the resolver fixes
            // (RFC 6761); tests of the lookup turn it on with their DNS.
            ("smtpd_peername_lookup", "\"no\"".to_string()),
        ];
        let main = with_defaults(&defaults, main_extra);
        format!(
            r#"[main]
{main}

[[service]]
name = "smtp"
type = "inet"
listen = "{smtp}"
command = "smtpd"
process_limit = 2

[[service]]
name = "qmgr"
type = "unix"
listen = ["qmgr", "qmgr-admin", "public/showq"]
command = "qmgr"
wakeup = "300s"

[[service]]
name = "pickup"
type = "unix"
listen = "public/pickup"
command = "pickup"
wakeup = "60s"

[[service]]
name = "smtp-client"
type = "unix"
listen = "smtp"
command = "smtp-client"

[[service]]
name = "relay"
type = "unix"
listen = "relay"
command = "smtp-client"

[[service]]
name = "local"
type = "unix"
listen = "local"
command = "local-delivery"
privileged = true

[[service]]
name = "tlsmgr"
type = "unix"
listen = "tlsmgr"
command = "tlsmgr"
{services_extra}
"#
        )
    }

    /// Starts an instance whose smtpd listens on `ip` port 25 and whose
    /// outgoing connections leave from `ip` (inet_interfaces and
    /// smtp_bind_address, unless `main_extra` sets them), so that several
    /// instances on 127.0.0.x play separate servers. Port 25 needs root.
    ///
    /// `files` are written into the instance's directory before the start
    /// (tables the config names must exist); a name ending in `/` is made
    /// a directory anyone may write (mailboxes written as default_privs).
    /// `{dir}` in `main_extra` and in file contents stands for the
    /// directory.
    pub fn start_at(ip: std::net::Ipv4Addr, main_extra: &str, files: &[(&str, &str)]) -> Instance {
        let smtp = SocketAddr::from((ip, 25));
        let inst = Self::create(smtp, "");
        let dir = inst.dir.path().display().to_string();
        inst.write_files(files);
        let own_ip = format!("\"{ip}\"");
        let main = with_defaults(
            &[
                ("inet_interfaces", own_ip.clone()),
                ("smtp_bind_address", own_ip),
            ],
            &main_extra.replace("{dir}", &dir),
        );
        inst.write_config(&Self::standard_config(smtp, &main, ""));
        inst.launch()
    }

    /// Starts an instance from a Postfix configuration, as an administrator
    /// switching over would: `main_cf` and `master_cf` (Postfix syntax;
    /// [`POSTFIX_MASTER_CF`] is the usual one) go through `qctl config
    /// import`, and the master.toml it prints runs, listening on `ip` port
    /// 25. What only the test decides is then set in its `[main]`, as an
    /// administrator adapts the paths: the queue, log and mail_owner of
    /// the harness, `inet_interfaces` and `smtp_bind_address` (`ip`), and
    /// `overrides` (`name=value`). The result must pass `master --check`.
    /// `files` and `{dir}` work as in [`Instance::start_at`]. The import's
    /// report (standard error) is kept in `import.report`.
    pub fn start_imported(
        ip: std::net::Ipv4Addr,
        main_cf: &str,
        master_cf: &str,
        files: &[(&str, &str)],
        overrides: &[&str],
    ) -> Instance {
        let inst = Self::create(SocketAddr::from((ip, 25)), "");
        let dir = inst.dir.path().display().to_string();
        inst.write_files(files);
        let main_path = inst.dir.path().join("main.cf");
        let master_path = inst.dir.path().join("master.cf");
        std::fs::write(&main_path, main_cf.replace("{dir}", &dir)).unwrap();
        std::fs::write(&master_path, master_cf).unwrap();
        let out = qctl(
            &inst.config,
            &[
                "config",
                "import",
                main_path.to_str().unwrap(),
                master_path.to_str().unwrap(),
            ],
        );
        assert_success(&out);
        std::fs::write(inst.dir.path().join("import.report"), &out.stderr).unwrap();
        let own_ip = format!("\"{ip}\"");
        let owner = format!("\"{TEST_MAIL_OWNER}\"");
        let mut settings: Vec<(String, String)> = [
            ("queue_directory", "\"queue\""),
            ("maillog_file", "\"maillog\""),
            ("service_throttle_time", "\"2s\""),
            ("drain_timeout", "\"5s\""),
            ("heartbeat_timeout", "\"5s\""),
            ("mail_owner", owner.as_str()),
            ("inet_interfaces", own_ip.as_str()),
            ("smtp_bind_address", own_ip.as_str()),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        for o in overrides {
            let (n, v) = o.split_once('=').expect("name=value");
            settings.push((n.to_string(), format!("{:?}", v.replace("{dir}", &dir))));
        }
        let toml = with_settings(&String::from_utf8_lossy(&out.stdout), &settings);
        inst.write_config(&toml);
        let check = Command::new(bin_dir().join("master"))
            .arg("--check")
            .arg("--config")
            .arg(&inst.config)
            .output()
            .unwrap();
        assert_success(&check);
        inst.launch()
    }

    /// What `qctl config import` reported for [`Instance::start_imported`].
    pub fn import_report(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("import.report")).unwrap_or_default()
    }

    /// Writes `files` into the directory: `{dir}` in contents is the
    /// directory; a name ending in `/` is a directory anyone may write.
    fn write_files(&self, files: &[(&str, &str)]) {
        let dir = self.dir.path().display().to_string();
        for (name, content) in files {
            let path = self.dir.path().join(name);
            if name.ends_with('/') {
                std::fs::create_dir_all(&path).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o1777)).unwrap();
            } else {
                std::fs::write(&path, content.replace("{dir}", &dir)).unwrap();
            }
        }
    }

    /// Writes the config and starts the master; waits until every service
    /// has all its processes ready.
    pub fn start(main_extra: &str, services_extra: &str) -> Instance {
        let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_with(
            smtp,
            &Self::standard_config(smtp, main_extra, services_extra),
        )
    }

    /// Starts an instance running only `service`
    /// ([`Instance::standard_config_only`]) on a free port.
    pub fn start_only(service: &str, main_extra: &str) -> Instance {
        let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_with(smtp, &Self::standard_config_only(smtp, main_extra, service))
    }

    pub fn start_with(smtp: SocketAddr, config_text: &str) -> Instance {
        let inst = Self::create(smtp, config_text);
        inst.launch()
    }

    /// Writes the directory and config without starting anything.
    pub fn create(smtp: SocketAddr, config_text: &str) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("postern-test")
            .tempdir()
            .unwrap();
        // Daemons that dropped to mail_owner must reach the queue directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let config = dir.path().join("master.toml");
        std::fs::write(&config, config_text).unwrap();
        std::fs::write(dir.path().join("aliases"), "").unwrap();
        Instance {
            dir,
            config,
            smtp,
            master: None,
        }
    }

    /// Starts the master with `daemon_directory` set to the build output.
    pub fn launch(self) -> Instance {
        self.launch_with_args(&[])
    }

    /// Starts the master with extra command-line arguments.
    pub fn launch_with_args(mut self, args: &[&str]) -> Instance {
        let child = self
            .master_command()
            .args(args)
            .spawn()
            .expect("start master");
        self.master = Some(child);
        assert!(
            self.wait_all_ready(Duration::from_secs(30)),
            "services did not become ready; log:\n{}\nstderr:\n{}",
            self.log(),
            self.stderr()
        );
        self
    }

    /// The command line that starts this instance's master.
    pub fn master_command(&self) -> Command {
        let mut cmd = Command::new(bin_dir().join("master"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("-o")
            .arg(format!("daemon_directory={}", bin_dir().display()))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(self.dir.path().join("master.stdout")).unwrap())
            .stderr(std::fs::File::create(self.dir.path().join("master.stderr")).unwrap())
            // Its own process group, so Drop can remove every daemon at once.
            .process_group(0);
        // A test process killed before Drop runs (a timeout, ^C) takes its
        // masters with it, and their daemons follow their master: nothing
        // is left holding a test's ports. The signal follows the thread
        // that spawns the master, so start it on the test's own thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd
    }

    pub fn master_pid(&self) -> Option<u32> {
        self.master.as_ref().map(Child::id)
    }

    /// Waits for the master process to exit; returns whether it did.
    pub fn wait_master_exit(&mut self, limit: Duration) -> bool {
        let Some(child) = self.master.as_mut() else {
            return true;
        };
        let exited = wait_for(limit, || matches!(child.try_wait(), Ok(Some(_))));
        if exited {
            self.master = None;
        }
        exited
    }

    /// `qctl` with this instance's config.
    pub fn qctl(&self, args: &[&str]) -> Output {
        qctl(&self.config, args)
    }

    /// `qctl restart SERVICE`, asserted to succeed; then waits until the
    /// service runs one process, a new one, and every service is ready.
    pub fn restart_service(&self, service: &str) {
        let before = self.pids(service);
        assert_success(&self.qctl(&["restart", service]));
        assert!(
            wait_for(Duration::from_secs(30), || {
                let now = self.pids(service);
                now.len() == 1 && !before.contains(&now[0]) && self.all_ready()
            }),
            "{service} was not restarted; log:\n{}",
            self.log()
        );
    }

    /// `qctl --json status`, parsed.
    pub fn status(&self) -> Option<serde_json::Value> {
        let out = self.qctl(&["--json", "status"]);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The pids of a service's processes.
    pub fn pids(&self, service: &str) -> Vec<u32> {
        self.service_status(service)
            .and_then(|s| {
                s["processes"].as_array().map(|ps| {
                    ps.iter()
                        .filter_map(|p| p["pid"].as_u64())
                        .map(|p| p as u32)
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    pub fn service_status(&self, service: &str) -> Option<serde_json::Value> {
        self.status()?["services"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == service)
            .cloned()
    }

    /// Every service runs `process_limit` ready, non-draining processes.
    pub fn all_ready(&self) -> bool {
        let Some(status) = self.status() else {
            return false;
        };
        status["services"].as_array().is_some_and(|services| {
            services.iter().all(|s| {
                let procs = s["processes"].as_array().cloned().unwrap_or_default();
                let live = procs
                    .iter()
                    .filter(|p| p["ready"] == true && p["draining"] == false)
                    .count();
                live as u64 == s["process_limit"].as_u64().unwrap_or(0)
            })
        })
    }

    pub fn wait_all_ready(&self, limit: Duration) -> bool {
        wait_for(limit, || self.all_ready())
    }

    /// The mail log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// The master's stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.stderr")).unwrap_or_default()
    }

    /// The first log line holding every needle.
    pub fn log_line_with(&self, needles: &[&str]) -> Option<String> {
        self.log()
            .lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_string)
    }

    /// Waits up to 30 s for a log line holding every needle; panics with
    /// the log if none appears.
    pub fn wait_log_line(&self, needles: &[&str]) -> String {
        let mut found = None;
        wait_for(Duration::from_secs(30), || {
            found = self.log_line_with(needles);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no log line with {needles:?}:\n{}", self.log()))
    }

    /// Waits up to 30 s until the log contains `needle`; panics with the
    /// log if it does not.
    pub fn assert_logged(&self, needle: &str) {
        assert!(
            self.wait_log(needle, Duration::from_secs(30)),
            "no {needle:?} in the log:\n{}",
            self.log()
        );
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_for(limit, || self.log().contains(needle))
    }

    pub fn queue_directory(&self) -> PathBuf {
        self.dir.path().join("queue")
    }

    /// Runs `sendmail -C <config> ARGS` with `stdin` as its input, as
    /// `uid` (its primary group too, no supplementary groups) when given.
    pub fn sendmail(&self, args: &[&str], stdin: &[u8], uid: Option<u32>) -> Output {
        let mut cmd = Command::new(bin_dir().join("sendmail"));
        cmd.arg("-C")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(uid) = uid {
            let gid = nix::unistd::User::from_uid(uid.into())
                .ok()
                .flatten()
                .map_or(uid, |u| u.gid.as_raw());
            cmd.uid(uid).gid(gid);
        }
        let mut child = cmd.spawn().expect("run sendmail");
        let mut input = child.stdin.take().unwrap();
        // A refusal may come before all input is read.
        let _ = input.write_all(stdin);
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Rewrites master.toml.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join("master.toml.new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// Sends a signal to the master.
    pub fn signal_master(&self, sig: i32) {
        if let Some(pid) = self.master_pid() {
            unsafe { libc::kill(pid as i32, sig) };
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.master.take() {
            let pgid = child.id() as i32;
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

/// Reads one SMTP reply from `r`, continuation lines joined, CRLFs kept.
pub fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, all));
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return Ok(all);
        }
    }
}

/// A small SMTP client for tests: send a line, read a (multi-line) reply.
#[derive(Debug)]
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    pub fn connect(addr: SocketAddr) -> std::io::Result<(SmtpClient, String)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        Self::greeted(stream)
    }

    /// Connects from the local address `source` (any 127.0.0.x works on
    /// Linux loopback), to play a client in or out of mynetworks.
    pub fn connect_from(
        source: std::net::Ipv4Addr,
        addr: SocketAddr,
    ) -> std::io::Result<(SmtpClient, String)> {
        use nix::sys::socket::{
            AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket,
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrIn::from(std::net::SocketAddrV4::new(source, 0)),
        )?;
        let SocketAddr::V4(v4) = addr else {
            return Err(std::io::Error::other("IPv4 only"));
        };
        connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4))?;
        Self::greeted(TcpStream::from(fd))
    }

    fn greeted(stream: TcpStream) -> std::io::Result<(SmtpClient, String)> {
        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
        let writer = stream.try_clone()?;
        let mut client = SmtpClient {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = client.read_reply()?;
        Ok((client, greeting))
    }

    /// Reads one reply, joining continuation lines.
    pub fn read_reply(&mut self) -> std::io::Result<String> {
        read_reply(&mut self.reader)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends `line` and asserts the reply starts with `want`; the reply.
    pub fn expect(&mut self, line: &str, want: &str) -> String {
        let reply = self.cmd(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(
            reply.starts_with(want),
            "{line} -> {reply:?}, want {want:?}"
        );
        reply
    }

    /// The guide's telnet session: `helo localhost`, MAIL FROM, RCPT TO
    /// for each of `rcpts`, DATA, `body`, the final dot and QUIT, each
    /// reply checked; the queue ID from the reply to the dot.
    pub fn telnet_message(&mut self, sender: &str, rcpts: &[&str], body: &[u8]) -> String {
        self.helo_mail(sender, "250 2.1.0 Ok");
        for r in rcpts {
            self.expect(&format!("rcpt to: {r}"), "250 2.1.5 Ok");
        }
        self.expect("data", "354 End data with <CR><LF>.<CR><LF>");
        self.send_raw(body).unwrap();
        let queued = self.expect(".", "250 2.0.0 Ok: queued as ");
        self.expect("quit", "221 2.0.0 Bye");
        queued
            .trim_end()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The reply to `rcpt to: RCPT` after `helo localhost` and MAIL FROM;
    /// then QUIT.
    pub fn rcpt_reply(mut self, sender: &str, rcpt: &str) -> String {
        self.helo_mail(sender, "250 ");
        let reply = self.cmd(&format!("rcpt to: {rcpt}")).unwrap();
        let _ = self.cmd("quit");
        reply
    }

    fn helo_mail(&mut self, sender: &str, mail_reply: &str) {
        self.expect("helo localhost", "250 ");
        self.expect(&format!("mail from: {sender}"), mail_reply);
    }

    /// Sends each command and asserts that its reply is exactly the one
    /// given (CRLF included).
    pub fn dialog(&mut self, steps: &[(&str, &str)]) {
        for (line, want) in steps {
            let reply = self.cmd(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(reply, *want, "reply to {line}");
        }
    }

    /// Sends `line` + CRLF and returns the reply.
    pub fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }
}

/// The message with `Subject: subject` once `sink` has it (waiting up
/// to 40 s; the instance's log is shown when it does not come).
pub fn arrived(sink: &Sink, subject: &str, inst: &Instance) -> SinkMessage {
    let needle = format!("Subject: {subject}\r\n");
    let find = || {
        sink.messages()
            .into_iter()
            .find(|m| m.data.contains(&needle))
    };
    assert!(
        wait_for(Duration::from_secs(40), || find().is_some()),
        "{subject} did not arrive:\n{}",
        inst.log()
    );
    find().unwrap()
}

/// One message a [`Sink`] accepted.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    /// The client's address (whose smtp_bind_address it was).
    pub peer: SocketAddr,
    pub helo: String,
    /// MAIL FROM address without the brackets; empty for `<>`.
    pub sender: String,
    /// Accepted RCPT TO addresses, without the brackets.
    pub recipients: Vec<String>,
    /// The content, dot-stuffing undone, CRLF line ends.
    pub data: String,
}

/// A plain SMTP server standing for "the outside": it accepts whatever
/// arrives (EHLO without extensions, one thread per connection) and
/// records it. [`Sink::set_rcpt_reply`] makes it refuse recipients, say
/// with a 4xx, until told otherwise.
#[derive(Debug, Clone)]
pub struct Sink {
    pub addr: SocketAddr,
    messages: std::sync::Arc<std::sync::Mutex<Vec<SinkMessage>>>,
    rcpt_reply: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Sink {
    /// Listens on `ip` at `port` (25 needs root; 0 picks a free port).
    pub fn start(ip: std::net::Ipv4Addr, port: u16) -> Sink {
        let listener = TcpListener::bind((ip, port))
            .unwrap_or_else(|e| panic!("bind sink on {ip}:{port}: {e}"));
        let sink = Sink {
            addr: listener.local_addr().unwrap(),
            messages: Default::default(),
            rcpt_reply: std::sync::Arc::new(std::sync::Mutex::new("250 2.1.5 Ok".into())),
        };
        let s = sink.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = s.session(stream);
                });
            }
        });
        sink
    }

    /// The reply to each later RCPT TO (`250 2.1.5 Ok` at first).
    pub fn set_rcpt_reply(&self, reply: &str) {
        *self.rcpt_reply.lock().unwrap() = reply.to_string();
    }

    pub fn messages(&self) -> Vec<SinkMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub fn wait_messages(&self, n: usize, limit: Duration) -> Vec<SinkMessage> {
        wait_for(limit, || self.messages.lock().unwrap().len() >= n);
        self.messages()
    }

    fn session(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let peer = stream.peer_addr()?;
        let mut w = stream.try_clone()?;
        let mut r = BufReader::new(stream);
        let say = |w: &mut TcpStream, text: &str| w.write_all(format!("{text}\r\n").as_bytes());
        say(&mut w, "220 sink.test ESMTP")?;
        let (mut helo, mut sender, mut rcpts) = (String::new(), String::new(), Vec::new());
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let cmd = line.trim_end().to_string();
            let upper = cmd.to_ascii_uppercase();
            let arg = |prefix: &str| {
                cmd[prefix.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            };
            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                helo = cmd[4..].trim().to_string();
                say(&mut w, "250 sink.test")?;
            } else if upper.starts_with("MAIL FROM:") {
                sender = arg("MAIL FROM:");
                rcpts.clear();
                say(&mut w, "250 2.1.0 Ok")?;
            } else if upper.starts_with("RCPT TO:") {
                let reply = self.rcpt_reply.lock().unwrap().clone();
                if reply.starts_with('2') {
                    rcpts.push(arg("RCPT TO:"));
                }
                say(&mut w, &reply)?;
            } else if upper == "DATA" {
                if rcpts.is_empty() {
                    say(&mut w, "554 5.5.1 Error: no valid recipients")?;
                    continue;
                }
                say(&mut w, "354 End data with <CR><LF>.<CR><LF>")?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 {
                        return Ok(());
                    }
                    if line.trim_end_matches(['\r', '\n']) == "." {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mut all = self.messages.lock().unwrap();
                all.push(SinkMessage {
                    peer,
                    helo: helo.clone(),
                    sender: sender.clone(),
                    recipients: std::mem::take(&mut rcpts),
                    data,
                });
                let n = all.len();
                drop(all);
                say(&mut w, &format!("250 2.0.0 Ok: queued as SINK{n}"))?;
            } else if upper == "QUIT" {
                say(&mut w, "221 2.0.0 Bye")?;
                return Ok(());
            } else if upper == "RSET" {
                rcpts.clear();
                say(&mut w, "250 2.0.0 Ok")?;
            } else {
                say(&mut w, "250 2.0.0 Ok")?;
            }
        }
    }
}

/// The initial response of `AUTH PLAIN` for `user` and `password`.
pub fn auth_plain(user: &str, password: &str) -> String {
    base64(format!("\0{user}\0{password}").as_bytes())
}

/// `bytes` in base64 with padding, as SMTP AUTH sends them.
pub fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
