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

/// `dpkg` with a scratch root: its own database and account files.
fn dpkg(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new("dpkg")
        .arg(format!("--instdir={}", root.display()))
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["--force-script-chrootless", "--force-depends"])
        .args(args)
        .output()
        .unwrap()
}

/// scripts/package builds a .deb that lintian passes without errors, that
/// provides mail-transport-agent, and that dpkg installs into a scratch
/// root: the files, the mail_owner account and maildrop/ are there and
/// the installed master accepts the installed configuration; a purge
/// removes the queue.
#[test]
fn the_debian_package_passes_lintian_and_installs_into_a_scratch_root() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let out_dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Command::new(root.join("scripts/package"))
        .env("BUILD_DIR", bin_dir())
        .env("OUT_DIR", out_dir.path())
        .output()
        .unwrap();
    postern_tests::assert_success(&out);
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        deb.ends_with("_amd64.deb") || deb.ends_with(".deb"),
        "{deb}"
    );

    let lintian = Command::new("lintian").arg(&deb).output().unwrap();
    let report = String::from_utf8_lossy(&lintian.stdout).to_string();
    assert!(
        !report.lines().any(|l| l.starts_with("E: ")),
        "lintian errors:\n{report}"
    );
    let info = Command::new("dpkg-deb")
        .args(["-f", &deb])
        .output()
        .unwrap();
    let fields = String::from_utf8_lossy(&info.stdout).to_string();
    for field in [
        "Provides: mail-transport-agent",
        "Conflicts: mail-transport-agent",
        "Depends: libc6",
    ] {
        assert!(fields.contains(field), "{fields}");
    }

    let scratch = tempfile::tempdir().unwrap();
    let r = scratch.path();
    std::fs::create_dir_all(r.join("var/lib/dpkg/info")).unwrap();
    std::fs::create_dir_all(r.join("var/lib/dpkg/updates")).unwrap();
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("var/lib/dpkg/status"), "").unwrap();
    for f in ["passwd", "group", "shadow", "gshadow"] {
        std::fs::copy(Path::new("/etc").join(f), r.join("etc").join(f)).unwrap();
    }
    postern_tests::assert_success(&dpkg(r, &["-i", &deb]));
    for b in postern_tests::DAEMONS {
        assert!(r.join("usr/libexec/postern").join(b).is_file(), "{b}");
    }
    assert_eq!(
        std::fs::read_link(r.join("usr/sbin/sendmail")).unwrap(),
        Path::new("../libexec/postern/sendmail")
    );
    let passwd = std::fs::read_to_string(r.join("etc/passwd")).unwrap();
    let account = passwd
        .lines()
        .find(|l| l.starts_with("postern:"))
        .unwrap_or_else(|| panic!("no postern account:\n{passwd}"));
    let uid: u32 = account.split(':').nth(2).unwrap().parse().unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let maildrop = std::fs::metadata(r.join("var/spool/postern/maildrop")).unwrap();
    assert_eq!(maildrop.permissions().mode() & 0o7777, 0o3733);
    assert_eq!(maildrop.uid(), uid);
    let out = Command::new(r.join("usr/libexec/postern/master"))
        .args(["--check", "--config"])
        .arg(r.join("etc/postern/master.toml"))
        .output()
        .unwrap();
    postern_tests::assert_success(&out);

    postern_tests::assert_success(&dpkg(r, &["--purge", "postern"]));
    assert!(!r.join("var/spool/postern").exists());
    assert!(!r.join("usr/sbin/sendmail").exists());
}
