//! `qctl dkim keygen` writes a key only its owner reads, never over an
//! existing one, and prints a record that verifies the key's signatures
//! (python3-dkim says so); `qctl dkim show` lists dkim_key_table.

use std::os::unix::fs::PermissionsExt as _;

use postern_config::Config;
use postern_tests::dkim::python_dkim_verifies;

const MESSAGE: &str = "From: alice@example.org\r\nTo: bob@example.net\r\n\
Subject: hi\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n";

/// The TXT text of a zone line `NAME. IN TXT "a" "b"`, strings joined.
fn record_text(line: &str) -> String {
    let (_, strings) = line.split_once(" IN TXT ").expect("a TXT line");
    strings
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

#[test]

fn keygen_writes_a_private_key_whose_record_verifies_and_show_lists_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = d.join("master.toml");
    // As root, qctl gives the key to mail_owner (which must not be root).
    let me = if nix::unistd::Uid::current().is_root() {
        "nobody".to_string()
    } else {
        nix::unistd::User::from_uid(nix::unistd::Uid::current())
            .unwrap()
            .unwrap()
            .name
    };
    let owner = nix::unistd::User::from_name(&me).unwrap().unwrap().uid;
    std::fs::write(
        &config,
        format!("[main]\nmail_owner = \"{me}\"\ndkim_signing_table = \"inline:{{ example.org=rsa, example.com=ed }}\"\n\
         dkim_key_table = \"texthash:keys\"\n"),
    )
    .unwrap();
    std::fs::write(d.join("keys"), "").unwrap();
    let dir_arg = d.to_str().unwrap();

    let mut records = Vec::new();
    for (domain, algorithm) in [("example.org", "rsa"), ("example.com", "ed25519")] {
        let args = [
            "dkim",
            "keygen",
            domain,
            "sel",
            "--algorithm",
            algorithm,
            "--directory",
            dir_arg,
        ];
        let out = postern_tests::qctl(&config, &args);
        postern_tests::assert_success(&out);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let key = d.join(format!("{domain}.sel.pem"));
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(std::fs::metadata(&key).unwrap().uid(), owner.as_raw());
        let line = stdout
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "sel._domainkey.{domain}. IN TXT \"v=DKIM1; k={algorithm}; p="
                ))
            })
            .unwrap_or_else(|| panic!("no record in {stdout}"));
        assert!(line.split('"').all(|s| s.len() <= 255), "{line}");
        records.push(record_text(line));

        // A second keygen leaves the key alone.
        let before = std::fs::read(&key).unwrap();
        let again = postern_tests::qctl(&config, &args);
        assert!(!again.status.success());
        assert!(String::from_utf8_lossy(&again.stderr).contains("not replaced"));
        assert_eq!(std::fs::read(&key).unwrap(), before);
    }
    std::fs::write(
        d.join("keys"),
        "rsa example.org:sel:example.org.sel.pem\ned example.com:sel:example.com.sel.pem\n",
    )
    .unwrap();

    // Signatures made with the keys verify against the printed records.
    let cfg = Config::load(&config, &[]).unwrap();
    let signer = postern_auth::DkimSigner::from_params(cfg.main())
        .unwrap()
        .unwrap();
    for (domain, record) in ["example.org", "example.com"].iter().zip(&records) {
        let message = MESSAGE.replace("example.org", domain);
        let header = signer.sign(message.as_bytes()).unwrap().unwrap();
        let signed = format!("{header}{message}");
        assert!(
            python_dkim_verifies(signed.as_bytes(), record, d),
            "{signed}"
        );
    }

    let out = postern_tests::qctl(&config, &["dkim", "show"]);
    postern_tests::assert_success(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("ed domain=example.com selector=sel algorithm=ed25519 file="),
        "{shown}"
    );
    assert!(
        shown.contains("rsa domain=example.org selector=sel algorithm=rsa file="),
        "{shown}"
    );
    for record in &records {
        let shown_records: Vec<String> = shown
            .lines()
            .filter(|l| l.contains(" IN TXT "))
            .map(record_text)
            .collect();
        assert!(shown_records.contains(record), "{shown}");
    }
}
