//! Test helpers: a real libmilter filter (`tests/milters/testmilter.py`
//! on Debian's python3-milter) started once per test file, and its log.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_milter::{MilterSettings, MilterSpec, Milters};
use serde_json::Value;

/// The test filter (`tests/milters/testmilter.py`, the integration
/// harness's own) in a temporary directory of its own, on a loopback
/// port. It ends with the test process.
pub struct TestMilter {
    milter: postern_tests::peers::TestMilter,
    _dir: tempfile::TempDir,
}

impl TestMilter {
    /// Starts the filter with `config` (see the script's manual).
    pub fn start(config: Value) -> TestMilter {
        let dir = tempfile::tempdir().unwrap();
        let milter = postern_tests::peers::TestMilter::start(dir.path(), &config);
        TestMilter { milter, _dir: dir }
    }

    /// The endpoint as a list entry names it.
    pub fn name(&self) -> String {
        self.milter.socket.to_string()
    }

    /// A spec with Postfix's defaults; tests change what they need.
    pub fn spec(&self) -> MilterSpec {
        MilterSpec::new(&self.name()).unwrap()
    }

    /// Log entries of the sessions whose client was `host`.
    pub fn events(&self, host: &str) -> Vec<Value> {
        self.milter.events(host)
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
