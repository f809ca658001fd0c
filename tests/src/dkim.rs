//! Python's dkim package (Debian's python3-dkim, which nobody here
//! wrote) as the outside judge of Postern's DKIM signatures, offline: the
//! key record is handed to it instead of being looked up.

use std::path::Path;
use std::process::Command;

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
    // Debian's python has the module; the pyenv one on PATH may not.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir.join("m.eml"))
        .arg(dir.join("record"))
        .output()
        .expect("run /usr/bin/python3 (python3-dkim)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir.join("arc.eml"))
        .arg(dir.join("record"))
        .output()
        .expect("run /usr/bin/python3 (python3-dkim)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
