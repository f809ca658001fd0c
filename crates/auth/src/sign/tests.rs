use super::*;
use crate::keys::tests::openssl;
use postern_config::Config;
use std::path::Path;
use std::process::Command;

const MESSAGE: &str = "From: Alice <alice@example.org>\r\n\
To: bob@example.net\r\n\
Subject: test\r\n\
Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
Message-ID: <1@example.org>\r\n\
\r\n\
Hello,  world.\r\n\
\r\n";

struct Setup {
    dir: tempfile::TempDir,
    config: Config,
}

/// A config dir with `files` beside master.toml and `main` as `[main]`.
fn setup(main: &str, files: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let config = Config::from_str(
        &format!("[main]\n{main}\n"),
        &dir.path().join("master.toml"),
        &[],
    )
    .unwrap();
    Setup { dir, config }
}

fn rsa_key(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "rsa",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            name,
        ],
    );
}

/// A signer for `signing` (a hash: table's text) and keys `a` (RSA,
/// example.org:sel) and `b` (Ed25519, example.com:ed).
fn signer(signing: &str, extra_main: &str) -> (Setup, DkimSigner) {
    let s = setup(
        &format!(
            "dkim_signing_table = \"texthash:signing\"\n\
             dkim_key_table = \"texthash:keys\"\n{extra_main}"
        ),
        &[
            ("signing", signing),
            ("keys", "a example.org:sel:a.pem\nb example.com:ed:b.pem\n"),
        ],
    );
    rsa_key(s.dir.path(), "a.pem");
    openssl(
        s.dir.path(),
        &["genpkey", "-algorithm", "ed25519", "-out", "b.pem"],
    );
    let signer = DkimSigner::from_params(s.config.main()).unwrap().unwrap();
    (s, signer)
}

#[test]
fn no_signing_table_no_signer() {
    let s = setup("", &[]);
    assert!(DkimSigner::from_params(s.config.main()).unwrap().is_none());
}

#[test]
fn lookup_order_is_address_then_wildcard_then_domain() {
    let (_s, signer) = signer(
        "alice@example.org b\n*@example.org a\n@example.net b\nexample.com a\n",
        "",
    );
    let key = |a| signer.key_for(a).unwrap();
    assert_eq!(key("Alice@Example.org").as_deref(), Some("b"));
    assert_eq!(key("carol@example.org").as_deref(), Some("a"));
    assert_eq!(key("dave@example.net").as_deref(), Some("b"));
    assert_eq!(key("erin@example.com").as_deref(), Some("a"));
    assert_eq!(key("erin@sub.example.com"), None);
}

#[test]
fn regexp_table_serves_wildcards_on_the_whole_address() {
    let s = setup(
        "dkim_signing_table = \"regexp:signing\"\ndkim_key_table = \"texthash:keys\"",
        &[
            ("signing", "/@(.+\\.)?example\\.org$/ a\n"),
            ("keys", "a example.org:sel:a.pem\n"),
        ],
    );
    rsa_key(s.dir.path(), "a.pem");
    let signer = DkimSigner::from_params(s.config.main()).unwrap().unwrap();
    assert_eq!(
        signer.key_for("x@mail.example.org").unwrap().as_deref(),
        Some("a")
    );
    assert_eq!(signer.key_for("x@example.net").unwrap(), None);
}

#[test]
fn signs_by_the_from_header_not_the_envelope() {
    let (_s, signer) = signer("example.org a\n", "");
    let header = signer.sign(MESSAGE.as_bytes()).unwrap().unwrap();
    assert!(header.starts_with(
        "DKIM-Signature: v=1; a=rsa-sha256; s=sel; d=example.org; c=relaxed/relaxed;"
    ));
    assert!(header.ends_with("\r\n"));
    assert!(header.lines().all(|l| l.len() <= 78), "{header}");
    let other = MESSAGE.replace("alice@example.org", "alice@elsewhere.test");
    assert_eq!(signer.sign(other.as_bytes()).unwrap(), None);
    assert_eq!(
        signer.sign(b"Subject: no from\r\n\r\nbody\r\n").unwrap(),
        None
    );
}

#[test]
fn start_up_errors_name_the_entry_the_file_and_the_reason() {
    let run = |keys: &str, files: &[(&str, &str)]| {
        let mut all = vec![("signing", "example.org a\n"), ("keys", keys)];
        all.extend_from_slice(files);
        let s = setup(
            "dkim_signing_table = \"texthash:signing\"\ndkim_key_table = \"texthash:keys\"",
            &all,
        );
        DkimSigner::from_params(s.config.main())
            .unwrap_err()
            .to_string()
    };
    let missing = run("a example.org:sel:nothere.pem\n", &[]);
    assert!(
        missing.contains("dkim_key_table entry \"a\"") && missing.contains("nothere.pem"),
        "{missing}"
    );
    assert!(missing.contains("No such file"), "{missing}");
    let bad_pem = run("a example.org:sel:bad.pem\n", &[("bad.pem", "garbage\n")]);
    assert!(
        bad_pem.contains("bad.pem") && bad_pem.contains("no PEM private key"),
        "{bad_pem}"
    );
    let two_fields = run("a example.org:a.pem\n", &[]);
    assert!(
        two_fields.contains("is not domain:selector:/path/to/key.pem"),
        "{two_fields}"
    );
    let unknown = run("b example.org:sel:b.pem\n", &[("b.pem", "")]);
    assert!(unknown.contains("b.pem"), "{unknown}");
}

#[test]
fn signing_table_naming_a_missing_key_is_a_start_up_error() {
    let s = setup(
        "dkim_signing_table = \"texthash:signing\"\ndkim_key_table = \"texthash:keys\"",
        &[
            ("signing", "example.org nokey\n"),
            ("keys", "a example.org:sel:a.pem\n"),
        ],
    );
    rsa_key(s.dir.path(), "a.pem");
    let err = DkimSigner::from_params(s.config.main())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"nokey\""), "{err}");
}

/// python3-dkim's verdict on `message`, the key record served by dnsfunc.
fn python_dkim_verifies(message: &[u8], record: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.eml"), message).unwrap();
    std::fs::write(dir.path().join("record"), record).unwrap();
    let script = "import sys, dkim\n\
        rec = open(sys.argv[2], 'rb').read()\n\
        msg = open(sys.argv[1], 'rb').read()\n\
        ok = dkim.verify(msg, dnsfunc=lambda name, timeout=5: rec)\n\
        print('pass' if ok else 'fail')\n";
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path().join("m.eml"))
        .arg(dir.path().join("record"))
        .output()
        .expect("run /usr/bin/python3 (python3-dkim)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python3-dkim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    said.trim() == "pass"
}

fn signed(signer: &DkimSigner, message: &str) -> Vec<u8> {
    let header = signer.sign(message.as_bytes()).unwrap().unwrap();
    format!("{header}{message}").into_bytes()
}

fn record(s: &Setup, name: &str) -> String {
    let entries = read_key_table(s.config.main()).unwrap();
    entries
        .iter()
        .find(|e| e.name == name)
        .unwrap()
        .key
        .dns_record()
}

/// Where mail-auth folds depends on the lengths of the tags (the `h=`
/// list follows the headers present), so signatures of messages with and
/// without a Message-ID and with subjects of many lengths must all verify.
#[test]
fn python_dkim_verifies_whatever_the_header_lengths() {
    let (s, signer) = signer("example.org a\n", "");
    let dir = tempfile::tempdir().unwrap();
    let mut messages = Vec::new();
    for n in 0..24 {
        let subject = "x".repeat(n * 3);
        let with_id = MESSAGE.replace("Subject: test", &format!("Subject: {subject}"));
        let without_id = with_id.replace("Message-ID: <1@example.org>\r\n", "");
        for m in [with_id, without_id] {
            messages.push(signed(&signer, &m));
        }
    }
    let record = record(&s, "a");
    for (i, m) in messages.iter().enumerate() {
        std::fs::write(dir.path().join(format!("m{i}.eml")), m).unwrap();
    }
    std::fs::write(dir.path().join("record"), &record).unwrap();
    let script = "import sys, dkim, glob\n\
        rec = open(sys.argv[1] + '/record', 'rb').read()\n\
        bad = [f for f in sorted(glob.glob(sys.argv[1] + '/m*.eml'))\n\
               if not dkim.verify(open(f, 'rb').read(), dnsfunc=lambda n, timeout=5: rec)]\n\
        print(' '.join(bad) or 'pass')\n";
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .output()
        .expect("run /usr/bin/python3 (python3-dkim)");
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        said.trim(),
        "pass",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_dkim_verifies_rsa_and_ed25519_signatures() {
    let (s, signer) = signer("example.org a\nexample.com b\n", "");
    let rsa = signed(&signer, MESSAGE);
    assert!(python_dkim_verifies(&rsa, &record(&s, "a")));
    let tampered = String::from_utf8(rsa.clone())
        .unwrap()
        .replace("Hello", "Jello");
    assert!(!python_dkim_verifies(tampered.as_bytes(), &record(&s, "a")));

    let ed = signed(&signer, &MESSAGE.replace("example.org", "example.com"));
    assert!(String::from_utf8_lossy(&ed).contains("a=ed25519-sha256"));
    assert!(python_dkim_verifies(&ed, &record(&s, "b")));
}

#[test]
fn python_dkim_verifies_simple_canonicalization() {
    let (s, signer) = signer(
        "example.org a\n",
        "dkim_canonicalization = \"simple/simple\"\n",
    );
    let rsa = signed(&signer, MESSAGE);
    assert!(String::from_utf8_lossy(&rsa).contains("c=simple/simple"));
    assert!(python_dkim_verifies(&rsa, &record(&s, "a")));
}

#[test]
fn opendkim_verifies_rsa_signatures() {
    let (s, signer) = signer("example.org a\n", "");
    let d = s.dir.path();
    std::fs::write(
        d.join("public-keys"),
        format!("sel._domainkey.example.org {}\n", record(&s, "a")),
    )
    .unwrap();
    std::fs::write(
        d.join("verify.conf"),
        format!(
            "Mode v\nTestPublicKeys {}/public-keys\nSyslog no\n",
            d.display()
        ),
    )
    .unwrap();
    std::fs::write(d.join("m.eml"), signed(&signer, MESSAGE)).unwrap();
    let out = Command::new("/usr/sbin/opendkim")
        .arg("-x")
        .arg(d.join("verify.conf"))
        .arg("-t")
        .arg(d.join("m.eml"))
        .output()
        .expect("run opendkim -t");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("verification (") && said.contains("succeeded"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
