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
//!
//! The binaries must be built first (`cargo build --workspace`, which
//! `scripts/test` does).

pub mod dns;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where cargo put the binaries: the test executable lives in
/// `target/<profile>/deps`, the binaries one level up.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    for bin in [
        "master",
        "smtpd",
        "qmgr",
        "smtp-client",
        "local-delivery",
        "tlsmgr",
        "qctl",
    ] {
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
        ];
        let set_by_test = |name: &str| {
            main_extra
                .lines()
                .any(|l| l.split('=').next().is_some_and(|k| k.trim() == name))
        };
        let mut main = String::new();
        for (name, value) in defaults.iter().filter(|(n, _)| !set_by_test(n)) {
            main.push_str(&format!("{name} = {value}\n"));
        }
        format!(
            r#"[main]
{main}{main_extra}

[[service]]
name = "smtp"
type = "inet"
listen = "{smtp}"
command = "smtpd"
process_limit = 2

[[service]]
name = "qmgr"
type = "unix"
listen = "qmgr"
command = "qmgr"
wakeup = "300s"

[[service]]
name = "smtp-client"
type = "unix"
listen = "smtp"
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

    /// Writes the config and starts the master; waits until every service
    /// has all its processes ready.
    pub fn start(main_extra: &str, services_extra: &str) -> Instance {
        let smtp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        Self::start_with(
            smtp,
            &Self::standard_config(smtp, main_extra, services_extra),
        )
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

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        wait_for(limit, || self.log().contains(needle))
    }

    pub fn queue_directory(&self) -> PathBuf {
        self.dir.path().join("queue")
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

/// A small SMTP client for tests: send a line, read a (multi-line) reply.
#[derive(Debug)]
pub struct SmtpClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl SmtpClient {
    pub fn connect(addr: SocketAddr) -> std::io::Result<(SmtpClient, String)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
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
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, all));
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return Ok(all);
            }
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends `line` + CRLF and returns the reply.
    pub fn cmd(&mut self, line: &str) -> std::io::Result<String> {
        self.writer.write_all(format!("{line}\r\n").as_bytes())?;
        self.read_reply()
    }
}
