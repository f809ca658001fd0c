//! Test helpers: a real libmilter filter (`tests/milters/testmilter.py`
//! on Debian's python3-milter) started once per test file, and its log.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_milter::{MilterSettings, MilterSpec, Milters};
use serde_json::Value;

/// Debian's python, which has the Milter module (the PATH one may not).
const PYTHON: &str = "/usr/bin/python3";

/// A running testmilter.py. It exits when this process does: its stdin
/// is a pipe that closes with us.
pub struct TestMilter {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestMilter {
    /// Starts the filter with `config` (see the script's manual) on a
    /// unix socket in a fresh temporary directory.
    pub fn start(config: Value) -> TestMilter {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("milter.sock");
        let log = dir.path().join("log.jsonl");
        let config_file = dir.path().join("config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/milters/testmilter.py");
        let child = Command::new(PYTHON)
            .arg(script)
            .arg(format!("unix:{}", socket.display()))
            .arg(&config_file)
            .arg(&log)
            .stdin(Stdio::piped())
            .spawn()
            .expect("start testmilter.py with /usr/bin/python3");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "testmilter.py did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        TestMilter {
            child,
            socket,
            log,
            _dir: dir,
        }
    }

    /// The endpoint as a list entry names it.
    pub fn name(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// A spec with Postfix's defaults; tests change what they need.
    pub fn spec(&self) -> MilterSpec {
        MilterSpec::new(&self.name()).unwrap()
    }

    /// Log entries of the sessions whose client was `host`.
    pub fn events(&self, host: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let entries: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let sessions: Vec<&Value> = entries
            .iter()
            .filter(|e| e["host"] == host)
            .map(|e| &e["session"])
            .collect();
        entries
            .iter()
            .filter(|e| sessions.contains(&&e["session"]))
            .cloned()
            .collect()
    }

    /// The log of `host`'s sessions once `sessions` of them have closed.
    pub fn wait_closed(&self, host: &str, sessions: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let events = self.events(host);
            if events.iter().filter(|e| e["event"] == "close").count() >= sessions {
                return events;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no close for {host}: {events:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestMilter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of the events in a log, in order.
pub fn names(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The first entry of `event`.
pub fn first<'a>(events: &'a [Value], event: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == event)
        .unwrap_or_else(|| panic!("no {event} in {events:#?}"))
}

/// A chain of these specs with Postfix's macro lists.
pub fn chain(specs: Vec<MilterSpec>) -> Milters {
    let mut settings = MilterSettings::with_milters(specs);
    settings.daemon_name = "postern-test".into();
    Milters::new(&settings)
}

pub fn arc(spec: MilterSpec) -> Arc<MilterSpec> {
    Arc::new(spec)
}
