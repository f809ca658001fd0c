//! clamd with a database of one signature the test defines (no freshclam,
//! no download) and clamav-milter in front of it.
//!
//! What clamav-milter (1.4) does to a message:
//! - clean: adds `X-Virus-Scanned: clamav-milter 1.4.3 at HOSTNAME` and
//!   `X-Virus-Status: Clean`, then accepts (`a`);
//! - holding [`TEST_VIRUS`]: adds the same X-Virus-Scanned and
//!   `X-Virus-Status: Infected (Postern.Test.Virus.UNOFFICIAL)`, then
//!   rejects with a bare SMFIR_REJECT (`r`, no text: the MTA words the
//!   reply, Postfix `550 5.7.1 Command rejected`). With `RejectMsg TEXT`
//!   among the extra lines it answers `y` instead, `550 5.7.1 TEXT` with
//!   `%v` replaced by the virus name.
//!
//! Both headers are added with `h` (AddHeader Replace changes them with
//! `m` when the message already has them).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{Listen, MilterSocket, PeerProcess, peer_dir, program, write};

/// Text whose presence anywhere in a message makes it infected.
pub const TEST_VIRUS: &str = "POSTERN-TEST-VIRUS-7f3a9c";

/// The name clamd reports for [`TEST_VIRUS`] (".UNOFFICIAL": a signature
/// outside ClamAV's own databases).
pub const TEST_VIRUS_NAME: &str = "Postern.Test.Virus.UNOFFICIAL";

/// A running clamd and clamav-milter.
#[derive(Debug)]
pub struct ClamAv {
    /// clamav-milter's socket: `smtpd_milters = "{socket}"`.
    pub socket: MilterSocket,
    /// How long clamd took to load the database and answer PING.
    pub clamd_startup: Duration,
    /// How long clamav-milter took until its socket accepted.
    pub milter_startup: Duration,
    clamd: PeerProcess,
    milter: PeerProcess,
}

impl ClamAv {
    /// Starts both in `dir/clamav`, the milter on a unix socket.
    pub fn start(dir: &Path) -> ClamAv {
        Self::start_with(dir, Listen::Unix, "")
    }

    /// Starts both; `milter_conf` are further clamav-milter.conf lines
    /// (e.g. `RejectMsg Virus %v found`).
    pub fn start_with(dir: &Path, listen: Listen, milter_conf: &str) -> ClamAv {
        let clamd = program("clamd", "clamav-daemon");
        let clamav_milter = program("clamav-milter", "clamav-milter");
        let dir = peer_dir(dir, "clamav");
        let d = dir.display();
        for sub in ["db", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // An extended signature (.ndb): name, target type 0 (any file),
        // offset * (anywhere), the bytes in hex.
        let hex: String = TEST_VIRUS.bytes().map(|b| format!("{b:02x}")).collect();
        write(
            &dir.join("db/postern.ndb"),
            format!("Postern.Test.Virus:0:*:{hex}\n"),
        );
        let clamd_socket = dir.join("clamd.sock");
        let _ = std::fs::remove_file(&clamd_socket);
        // No User: it runs as whoever runs the test.
        write(
            &dir.join("clamd.conf"),
            format!(
                "LocalSocket {d}/clamd.sock\n\
                 DatabaseDirectory {d}/db\n\
                 TemporaryDirectory {d}/tmp\n\
                 PidFile {d}/clamd.pid\n\
                 Foreground yes\n\
                 LogTime yes\n\
                 MaxThreads 4\n"
            ),
        );
        let socket = MilterSocket::new(listen, &dir, "clamav-milter");
        socket.clear();
        write(
            &dir.join("clamav-milter.conf"),
            format!(
                "MilterSocket {}\n\
                 ClamdSocket unix:{d}/clamd.sock\n\
                 PidFile {d}/clamav-milter.pid\n\
                 TemporaryDirectory {d}/tmp\n\
                 Foreground yes\n\
                 OnClean Accept\n\
                 OnInfected Reject\n\
                 OnFail Defer\n\
                 AddHeader Replace\n\
                 LogInfected Basic\n\
                 LogClean Basic\n\
                 {milter_conf}\n",
                socket.libmilter_spec()
            ),
        );
        let conf = |name: &str| dir.join(name).into_os_string();
        let mut clamd = PeerProcess::spawn(
            &clamd,
            &["-c".into(), conf("clamd.conf")],
            dir.join("clamd.log"),
        );
        let clamd_startup = clamd.wait_ready("PONG from clamd", || pong(&clamd_socket));
        let mut milter = PeerProcess::spawn(
            &clamav_milter,
            &["-c".into(), conf("clamav-milter.conf")],
            dir.join("clamav-milter.log"),
        );
        let milter_startup = milter.wait_ready("its socket accepting", || socket.accepts());
        ClamAv {
            socket,
            clamd_startup,
            milter_startup,
            clamd,
            milter,
        }
    }

    /// clamd's and clamav-milter's output so far (the milter logs each
    /// verdict: "Message from <a> to <b> infected by NAME").
    pub fn log(&self) -> String {
        format!(
            "clamd:\n{}\nclamav-milter:\n{}",
            self.clamd.log(),
            self.milter.log()
        )
    }

    /// Stops both (Drop does too).
    pub fn stop(&mut self) {
        self.milter.stop();
        self.clamd.stop();
    }
}

/// Whether clamd at `socket` answers PING (it listens only once its
/// database is loaded).
fn pong(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = String::new();
    s.write_all(b"PING\n").is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.trim_end() == "PONG"
}
