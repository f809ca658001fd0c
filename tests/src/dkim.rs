//! Outside signers and judges of DKIM and ARC: Python's dkim package
//! (Debian's python3-dkim, which nobody here wrote), offline, the key
//! record handed to it instead of being looked up; and opendkim's
//! `opendkim-testmsg`, which looks the key up in DNS: it runs in a mount
//! namespace whose /etc/resolv.conf names a test DNS server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::dns::{DnsServer, Record};

/// Debian's python (which has python3-dkim; the pyenv one on PATH may
/// not) running `script` with `args` and `input` on standard input; its
/// output, after asserting that it succeeded.
fn python(script: &str, args: &[&std::ffi::OsStr], input: &[u8]) -> std::process::Output {
    let mut child = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (with python3-dkim: scripts/test installs it)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3-dkim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether python3-dkim verifies `message` (as delivered) with `record`
/// (`v=DKIM1; k=...; p=...`) as the selector's TXT record; files go to
/// `dir`. Its debug log is printed when it does not.
pub fn python_dkim_verifies(message: impl AsRef<[u8]>, record: &str, dir: &Path) -> bool {
    std::fs::write(dir.join("m.eml"), message.as_ref()).unwrap();
    std::fs::write(dir.join("record"), record).unwrap();
    let script = "import sys, dkim, logging\n\
        logging.basicConfig(level=logging.DEBUG)\n\
        rec = open(sys.argv[2], 'rb').read()\n\
        ok = dkim.verify(open(sys.argv[1], 'rb').read(), dnsfunc=lambda n, timeout=5: rec)\n\
        print('pass' if ok else 'fail')\n";
    let out = python(
        script,
        &[
            dir.join("m.eml").as_os_str(),
            dir.join("record").as_os_str(),
        ],
        b"",
    );
    let ok = String::from_utf8_lossy(&out.stdout).trim() == "pass";
    if !ok {
        eprintln!("python3-dkim: {}", String::from_utf8_lossy(&out.stderr));
    }
    ok
}

/// The chain validation python3-dkim's `arc_verify` gives `message` (as
/// delivered) with `record` as every selector's TXT record: `pass`,
/// `fail` or `none`; its debug log is printed unless it passes.
pub fn python_arc_verify(message: impl AsRef<[u8]>, record: &str, dir: &Path) -> String {
    std::fs::write(dir.join("arc.eml"), message.as_ref()).unwrap();
    std::fs::write(dir.join("record"), record).unwrap();
    let script = "import sys, dkim, logging\n\
        logging.basicConfig(level=logging.DEBUG)\n\
        rec = open(sys.argv[2], 'rb').read()\n\
        cv, results, comment = dkim.arc_verify(open(sys.argv[1], 'rb').read(),\n\
            dnsfunc=lambda n, timeout=5: rec)\n\
        print(cv.decode())\n\
        print(comment, file=sys.stderr)\n";
    let out = python(
        script,
        &[
            dir.join("arc.eml").as_os_str(),
            dir.join("record").as_os_str(),
        ],
        b"",
    );
    let cv = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if cv != "pass" {
        eprintln!(
            "python3-dkim arc_verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cv
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run a tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// An RSA key made by openssl in `dir`, and its `_domainkey` TXT record.
pub fn dkim_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("dkim.pem");
    run(Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key));
    let der = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key));
    let mut b64 = Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    b64.stdin.take().unwrap().write_all(&der).unwrap();
    let p = b64.wait_with_output().unwrap().stdout;
    (
        key,
        format!("v=DKIM1; k=rsa; p={}", String::from_utf8(p).unwrap().trim()),
    )
}

/// `message` signed by python3-dkim (Debian's /usr/bin/python3, not the
/// pyenv one on PATH) as `domain` with `selector`, relaxed/simple.
pub fn python_dkim_sign(message: &[u8], key: &Path, selector: &str, domain: &str) -> Vec<u8> {
    let script = "import dkim, sys\n\
        m = sys.stdin.buffer.read()\n\
        k = open(sys.argv[1], 'rb').read()\n\
        s = dkim.sign(m, sys.argv[2].encode(), sys.argv[3].encode(), k,\n\
            include_headers=[b'from', b'to', b'subject', b'message-id'])\n\
        sys.stdout.buffer.write(s + m)\n";
    let args = [key.as_os_str(), selector.as_ref(), domain.as_ref()];
    let out = python(script, &args, message);
    out.stdout
}

/// `message` with the ARC set python3-dkim's `arc_sign` adds as the
/// forwarder `domain` (its authserv-id too), which needs python3-authres.
pub fn python_arc_sign(message: &[u8], key: &Path, selector: &str, domain: &str) -> Vec<u8> {
    let script = "import dkim, sys\n\
        m = sys.stdin.buffer.read()\n\
        k = open(sys.argv[1], 'rb').read()\n\
        d = sys.argv[3].encode()\n\
        h = dkim.arc_sign(m, sys.argv[2].encode(), d, k, d,\n\
            include_headers=[b'from', b'to', b'subject'])\n\
        sys.stdout.buffer.write(b''.join(h) + m)\n";
    let args = [key.as_os_str(), selector.as_ref(), domain.as_ref()];
    let out = python(script, &args, message);
    out.stdout
}

/// Whether `opendkim-testmsg` (opendkim-tools) verifies `message`, with
/// `records` (the selector's `_domainkey` TXT) served by a DNS server on
/// port 53 of a loopback address of its own, which the tool's
/// /etc/resolv.conf names (a bind mount in a private mount namespace).
pub fn opendkim_verifies(message: impl AsRef<[u8]>, records: Vec<Record>, dir: &Path) -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let host = (std::process::id() % 200) as u8 + 20;
    let ip = std::net::Ipv4Addr::new(127, 53, host, NEXT.fetch_add(1, Ordering::Relaxed));
    let dns = DnsServer::start_on((ip, 53).into(), records);
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {ip}\n")).unwrap();
    let mut child = Command::new("unshare")
        .args(["-m", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/resolv.conf && exec opendkim-testmsg")
        .arg(&resolv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare and opendkim-testmsg (opendkim-tools: scripts/test installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message.as_ref())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    drop(dns);
    if !out.status.success() {
        eprintln!(
            "opendkim-testmsg: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}
