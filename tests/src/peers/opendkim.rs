//! opendkim as a signing and verifying milter (Mode sv), with an RSA key
//! made for the test by opendkim-genkey, and the offline check of what it
//! signed: `opendkim -t` reading the public key from a TestPublicKeys
//! file instead of DNS.
//!
//! What it does to a message (opendkim 2.11, relaxed/relaxed):
//! - from a client at 127.0.0.1 (InternalHosts' default) whose From: is
//!   in the signing domain: inserts `DKIM-Signature` first (a header
//!   insert at index 0), then accepts;
//! - from any other client: verifies against the same test key (the
//!   milter reads TestPublicKeys too) and inserts
//!   `Authentication-Results: <j macro>; dkim=pass ...` (or `dkim=fail
//!   reason="signature verification failed" ...`), then accepts; an
//!   unsigned message is accepted unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Listen, MilterSocket, PeerProcess, peer_dir, program, write};

/// The selector of the test key.
pub const SELECTOR: &str = "test";

/// A running opendkim signing for one domain.
#[derive(Debug)]
pub struct OpenDkim {
    /// Where it listens: `smtpd_milters = "{socket}"`.
    pub socket: MilterSocket,
    /// The domain it signs for (d=).
    pub domain: String,
    /// The public key record as DNS would publish it at
    /// `test._domainkey.DOMAIN` (`v=DKIM1; h=sha256; k=rsa; p=...`).
    pub public_key: String,
    /// How long it took until the socket accepted.
    pub startup: Duration,
    dir: PathBuf,
    process: PeerProcess,
    checks: AtomicUsize,
}

/// What `opendkim -t` said of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DkimVerdict {
    /// The signature verified.
    Pass,
    /// The signature did not verify; the reason opendkim gave.
    Fail(String),
    /// The message has no DKIM-Signature.
    Unsigned,
}

impl OpenDkim {
    /// Starts opendkim on a unix socket in `dir/opendkim`, signing mail
    /// from `domain`.
    pub fn start(dir: &Path, domain: &str) -> OpenDkim {
        Self::start_on(dir, domain, Listen::Unix)
    }

    pub fn start_on(dir: &Path, domain: &str, listen: Listen) -> OpenDkim {
        let opendkim = program("opendkim", "opendkim");
        let genkey = program("opendkim-genkey", "opendkim-tools");
        let dir = peer_dir(dir, "opendkim");
        let made = Command::new(&genkey)
            .args(["-b", "1024", "-s", SELECTOR, "-d", domain, "-D"])
            .arg(&dir)
            .output()
            .expect("run opendkim-genkey");
        assert!(
            made.status.success(),
            "opendkim-genkey failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let public_key = txt_record(&std::fs::read_to_string(dir.join("test.txt")).unwrap());
        // The file TestPublicKeys names: DNS name, then the TXT value.
        write(
            &dir.join("public-keys"),
            format!("{SELECTOR}._domainkey.{domain} {public_key}\n"),
        );
        let socket = MilterSocket::new(listen, &dir, "opendkim");
        socket.clear();
        let d = dir.display();
        // No UserID: it runs as whoever runs the test. RequireSafeKeys off:
        // the key lies under /tmp, which others may write.
        write(
            &dir.join("opendkim.conf"),
            format!(
                "Mode sv\n\
                 Canonicalization relaxed/relaxed\n\
                 Domain {domain}\n\
                 Selector {SELECTOR}\n\
                 KeyFile {d}/{SELECTOR}.private\n\
                 TestPublicKeys {d}/public-keys\n\
                 RequireSafeKeys false\n\
                 Socket {}\n\
                 PidFile {d}/opendkim.pid\n\
                 Background no\n\
                 Syslog no\n",
                socket.libmilter_spec()
            ),
        );
        write(
            &dir.join("verify.conf"),
            format!("Mode v\nTestPublicKeys {d}/public-keys\nSyslog no\n"),
        );
        let mut process = PeerProcess::spawn(
            &opendkim,
            &[
                "-f".as_ref(),
                "-x".as_ref(),
                dir.join("opendkim.conf").as_os_str(),
            ],
            dir.join("opendkim.log"),
        );
        let startup = process.wait_ready("its socket accepting", || socket.accepts());
        OpenDkim {
            socket,
            domain: domain.to_string(),
            public_key,
            startup,
            dir,
            process,
            checks: AtomicUsize::new(0),
        }
    }

    /// Checks the DKIM signature of `message` (as delivered, headers and
    /// body) against the test key, offline: `opendkim -t`.
    pub fn verify(&self, message: &[u8]) -> DkimVerdict {
        let n = self.checks.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.join(format!("check-{n}.eml"));
        write(&file, message);
        let out = Command::new(program("opendkim", "opendkim"))
            .arg("-x")
            .arg(self.dir.join("verify.conf"))
            .arg("-t")
            .arg(&file)
            .output()
            .expect("run opendkim -t");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "opendkim -t {} failed ({}):\n{stdout}{stderr}",
            file.display(),
            out.status
        );
        // One line per file: "opendkim: FILE: verification (s=.., d=..,
        // 1024-bit key) succeeded", "... failed: REASON", "message not
        // signed". Its exit code is 0 for all three.
        let prefix = format!("opendkim: {}: ", file.display());
        let said = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| {
                panic!("opendkim -t said nothing of the message:\n{stdout}{stderr}")
            });
        if said == "message not signed" {
            DkimVerdict::Unsigned
        } else if said.starts_with("verification (") && said.ends_with(") succeeded") {
            DkimVerdict::Pass
        } else if let Some((_, reason)) = said
            .strip_prefix("verification (")
            .and_then(|s| s.split_once(") failed: "))
        {
            DkimVerdict::Fail(reason.to_string())
        } else {
            panic!("opendkim -t: unexpected verdict {said:?}")
        }
    }

    /// opendkim's output so far (it logs start-up errors there; Syslog is
    /// off).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Stops it (Drop does too).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The TXT value in opendkim-genkey's zone file stub: its quoted strings
/// joined (`test._domainkey IN TXT ( "v=DKIM1; ..." "p=..." ) ; comment`).
fn txt_record(zone: &str) -> String {
    let inside = zone
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inside, _)| inside)
        .unwrap_or_else(|| panic!("no TXT record in opendkim-genkey's output:\n{zone}"));
    inside.split('"').skip(1).step_by(2).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn txt_record_joins_the_quoted_strings() {
        let zone = "test._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=rsa; \"\n\t  \"p=MIGf\" )  ; ----- DKIM key test for example.test\n";
        assert_eq!(super::txt_record(zone), "v=DKIM1; h=sha256; k=rsa; p=MIGf");
    }
}
