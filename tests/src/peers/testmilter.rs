//! `tests/milters/testmilter.py`: a milter on Debian's libmilter
//! (python3-milter) that answers and modifies as its JSON configuration
//! says, per client host, and logs every event it gets as JSON lines.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Listen, MilterSocket, PeerProcess, peer_dir};

/// Debian's python, which has the Milter module (the PATH one may not).
const PYTHON: &str = "/usr/bin/python3";

/// A running testmilter.py on 127.0.0.1.
#[derive(Debug)]
pub struct TestMilter {
    pub socket: MilterSocket,
    log: PathBuf,
    process: PeerProcess,
}

impl TestMilter {
    /// Starts the filter with `config` (the script's manual says what it
    /// may hold) on a loopback port.
    pub fn start(dir: &Path, config: &Value) -> TestMilter {
        let dir = peer_dir(dir, "testmilter");
        let socket = MilterSocket::new(Listen::Inet, &dir, "testmilter");
        let log = dir.join("events.jsonl");
        let config_file = dir.join("config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("milters/testmilter.py");
        let args = [
            script.display().to_string(),
            socket.libmilter_spec(),
            config_file.display().to_string(),
            log.display().to_string(),
        ];
        let mut process = PeerProcess::spawn(Path::new(PYTHON), &args, dir.join("testmilter.log"));
        process.wait_ready("testmilter.py", || socket.accepts());
        TestMilter {
            socket,
            log,
            process,
        }
    }

    /// The events of the sessions whose client the MTA named `host`
    /// (`[127.0.0.5]` for a client without a name).
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

    pub fn log(&self) -> String {
        self.process.log()
    }
}
