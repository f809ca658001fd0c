//! spamd with local rules only (no DNS, no Bayes, no auto-learning) and
//! spamass-milter in front of it, reaching spamd through spamc on a unix
//! socket.
//!
//! spamass-milter runs with `-m` (headers only: body, Subject and
//! Content-Type stay as they were) and `-r 15` (reject from score 15).
//! spamd's site configuration is the system's .pre files (which load the
//! plugins) and a local.cf of the test's own: required_score 5,
//! report_safe 0, and a rule [`TEST_SPAM_WORD`] worth 10 points. So
//! (SpamAssassin 4.0, spamass-milter 0.4):
//! - clean mail: `X-Spam-Status: No, score=S required=5.0 tests=...`,
//!   `X-Spam-Level: *...` (one star a point), `X-Spam-Checker-Version:
//!   SpamAssassin 4.0.1 (2024-03-25) on HOSTNAME`, then continue (`c`,
//!   not accept);
//! - [`TEST_SPAM_WORD`] (tagged, not rejected): `X-Spam-Flag: YES`,
//!   `X-Spam-Status: Yes, score=...`, `X-Spam-Report`, `X-Spam-Level`,
//!   `X-Spam-Checker-Version`, then continue;
//! - [`GTUBE`] (score 1000): `X-Spam-Flag: YES` and `X-Spam-Status: Yes,
//!   ...` added, then the reply `550 5.7.1 Blocked by SpamAssassin` (`y`).
//!
//! Header values may be folded (`\n\t`). Other rules add a few points
//! (a Date: days in the past scores 2.6), far from either threshold.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{Listen, MilterSocket, PeerProcess, peer_dir, program, write};

/// The Generic Test for Unsolicited Bulk Email: SpamAssassin scores a
/// body holding it 1000.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// A body word the test's own rule scores 10: spam, tagged but below the
/// reject score.
pub const TEST_SPAM_WORD: &str = "postern-test-spam-word";

/// spamass-milter's `-r`: messages scoring at least this are rejected.
pub const REJECT_SCORE: u32 = 15;

/// The reply spamass-milter gives a rejected message.
pub const REJECT_REPLY: &str = "550 5.7.1 Blocked by SpamAssassin";

const LOCAL_CF: &str = "\
required_score 5
report_safe 0
use_bayes 0
bayes_auto_learn 0
skip_rbl_checks 1
dns_available no
body POSTERN_TEST_SPAM /postern-test-spam-word/
score POSTERN_TEST_SPAM 10
describe POSTERN_TEST_SPAM the Postern tests' own spam word
";

/// A running spamd and spamass-milter.
#[derive(Debug)]
pub struct SpamAssassin {
    /// spamass-milter's socket: `smtpd_milters = "{socket}"`.
    pub socket: MilterSocket,
    /// How long spamd took until it answered PING (its rules compiled).
    pub spamd_startup: Duration,
    /// How long spamass-milter took until its socket accepted.
    pub milter_startup: Duration,
    spamd: PeerProcess,
    milter: PeerProcess,
}

impl SpamAssassin {
    /// Starts both in `dir/spamassassin`, the milter on a unix socket.
    pub fn start(dir: &Path) -> SpamAssassin {
        Self::start_on(dir, Listen::Unix)
    }

    pub fn start_on(dir: &Path, listen: Listen) -> SpamAssassin {
        let spamd = program("spamd", "spamd");
        let spamass_milter = program("spamass-milter", "spamass-milter");
        program("spamc", "spamc");
        let dir = peer_dir(dir, "spamassassin");
        let site = dir.join("site");
        let home = dir.join("home");
        for d in [&site, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        // spamd's children run as nobody when the test runs as root: they
        // write their state under the home directory.
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        copy_pre_files(Path::new("/etc/spamassassin"), &site);
        write(&site.join("local.cf"), LOCAL_CF);
        let spamd_socket = dir.join("spamd.sock");
        let _ = std::fs::remove_file(&spamd_socket);
        let path = |name: &Path| name.display().to_string();
        let mut spamd_args = vec![
            "--local".to_string(),
            "--nouser-config".to_string(),
            format!("--siteconfigpath={}", path(&site)),
            format!("--socketpath={}", path(&spamd_socket)),
            format!("--pidfile={}", path(&dir.join("spamd.pid"))),
            format!("--helper-home-dir={}", path(&home)),
            "--syslog=stderr".to_string(),
            "--max-children=2".to_string(),
        ];
        if unsafe { libc::geteuid() } == 0 {
            // As root spamd would fall back to nobody with a warning; say so.
            spamd_args.push("--username=nobody".to_string());
        }
        let mut spamd = PeerProcess::spawn(&spamd, &spamd_args, dir.join("spamd.log"));
        let spamd_startup = spamd.wait_ready("PONG from spamd", || pong(&spamd_socket));
        let socket = MilterSocket::new(listen, &dir, "spamass-milter");
        socket.clear();
        let milter_args = [
            "-p".to_string(),
            socket.libmilter_spec(),
            "-P".to_string(),
            path(&dir.join("spamass-milter.pid")),
            "-m".to_string(),
            "-r".to_string(),
            REJECT_SCORE.to_string(),
            // spamc's own options: spamd's socket.
            "--".to_string(),
            "-U".to_string(),
            path(&spamd_socket),
        ];
        let mut milter = PeerProcess::spawn(
            &spamass_milter,
            &milter_args,
            dir.join("spamass-milter.log"),
        );
        let milter_startup = milter.wait_ready("its socket accepting", || socket.accepts());
        SpamAssassin {
            socket,
            spamd_startup,
            milter_startup,
            spamd,
            milter,
        }
    }

    /// spamd's and spamass-milter's output so far (spamd logs each
    /// result line: "result: Y 1000 - GTUBE,...").
    pub fn log(&self) -> String {
        format!(
            "spamd:\n{}\nspamass-milter:\n{}",
            self.spamd.log(),
            self.milter.log()
        )
    }

    /// Stops both (Drop does too).
    pub fn stop(&mut self) {
        self.milter.stop();
        self.spamd.stop();
    }
}

/// Copies the .pre files (the loadplugin lines; without them spamd
/// cannot scan) from `from` into `to`.
fn copy_pre_files(from: &Path, to: &Path) {
    let entries = std::fs::read_dir(from)
        .unwrap_or_else(|e| panic!("{}: {e} (package spamassassin)", from.display()));
    let mut copied = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".pre") {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert!(
        copied > 0,
        "no .pre files in {} (package spamassassin)",
        from.display()
    );
}

/// Whether spamd at `socket` answers PING (its children are ready).
fn pong(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let mut answer = String::new();
    s.write_all(b"PING SPAMC/1.5\r\n\r\n").is_ok()
        && s.read_to_string(&mut answer).is_ok()
        && answer.starts_with("SPAMD/")
        && answer.contains(" PONG")
}
