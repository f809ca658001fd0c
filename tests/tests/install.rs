//! scripts/install.sh into a temporary DESTDIR.

use std::path::Path;
use std::process::Command;

use postern_tests::bin_dir;

fn install(destdir: &Path) -> std::process::Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Command::new(root.join("scripts/install.sh"))
        .env("DESTDIR", destdir)
        .env("BUILD_DIR", bin_dir())
        .output()
        .unwrap()
}

#[test]
fn install_stages_binaries_config_and_unit_and_keeps_an_existing_config() {
    let dest = tempfile::tempdir().unwrap();
    let out = install(dest.path());
    postern_tests::assert_success(&out);
    for b in postern_tests::DAEMONS {
        assert!(
            dest.path().join("usr/libexec/postern").join(b).is_file(),
            "{b}"
        );
    }
    assert!(dest.path().join("usr/sbin/qctl").is_file());
    assert!(dest.path().join("usr/libexec/postern/sendmail").is_file());
    assert_eq!(
        std::fs::read_link(dest.path().join("usr/sbin/sendmail")).unwrap(),
        Path::new("../libexec/postern/sendmail")
    );
    for cmd in ["mailq", "newaliases"] {
        let link = dest.path().join("usr/bin").join(cmd);
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../sbin/qctl"),
            "{cmd}"
        );
    }
    assert!(
        dest.path()
            .join("lib/systemd/system/postern.service")
            .is_file()
    );
    let config = dest.path().join("etc/postern/master.toml");
    assert!(config.is_file());

    // The installed config is valid for the installed master.
    let out = Command::new(dest.path().join("usr/libexec/postern/master"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    postern_tests::assert_success(&out);

    // A second install keeps the administrator's edits.
    std::fs::write(&config, "[main]\nmyhostname = \"edited.example\"\n").unwrap();
    let out = install(dest.path());
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[main]\nmyhostname = \"edited.example\"\n"
    );
    assert!(dest.path().join("etc/postern/master.toml.dist").is_file());
}
