//! `qctl dkim keygen` and `qctl dkim show`: make DKIM keys and print the
//! DNS records that publish them (opendkim-genkey's job, and a listing of
//! dkim_key_table).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use postern_auth::DkimKey;
use postern_config::Config;

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

/// Writes `DIR/DOMAIN.SELECTOR.pem` (mode 0600; mail_owner's when run as
/// root, since smtpd reads it as mail_owner) and prints the TXT record.
/// An existing file is never replaced: its record may be published.
pub fn keygen(
    config: &Config,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    bits: u32,
    directory: &Path,
) -> anyhow::Result<()> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let path = directory.join(format!("{domain}.{selector}.pem"));
    let (key, pem) = match algorithm {
        // ring cannot make RSA keys; opendkim-genkey asks openssl too.
        Algorithm::Rsa => {
            if bits < 1024 {
                bail!("--bits {bits}: RSA keys for DKIM have at least 1024 bits");
            }
            let pem = openssl_rsa(bits)?;
            (DkimKey::from_pem(pem.as_bytes())?, pem)
        }
        Algorithm::Ed25519 => DkimKey::generate_ed25519()?,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| {
            format!(
                "create {} (an existing key is not replaced)",
                path.display()
            )
        })?;
    file.write_all(pem.as_bytes())?;
    file.sync_all()?;
    if nix::unistd::Uid::effective().is_root() {
        let mail_owner = config.main().get("mail_owner");
        let (uid, gid) = postern_daemon::privs::mail_owner_ids(&mail_owner)?;
        nix::unistd::chown(&path, Some(uid), Some(gid))
            .with_context(|| format!("chown {} to {mail_owner}", path.display()))?;
    }
    println!("# private key: {}", path.display());
    println!(
        "# dkim_key_table entry: {domain} {domain}:{selector}:{}",
        path.display()
    );
    println!("{}", key.zone_record(&domain, selector));
    Ok(())
}

fn openssl_rsa(bits: u32) -> anyhow::Result<String> {
    let out = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt"])
        .arg(format!("rsa_keygen_bits:{bits}"))
        .output()
        .context("run openssl genpkey")?;
    if !out.status.success() {
        bail!(
            "openssl genpkey: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Lists dkim_key_table's keys and their records.
pub fn show(config: &Config, json: bool) -> anyhow::Result<()> {
    let entries = postern_auth::read_key_table(config.main())?;
    if json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "name": e.name,
                    "domain": e.domain,
                    "selector": e.selector,
                    "algorithm": e.algorithm().to_string(),
                    "file": e.path,
                    "record": e.zone_record(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for e in &entries {
        println!(
            "{} domain={} selector={} algorithm={} file={}",
            e.name,
            e.domain,
            e.selector,
            e.algorithm(),
            e.path.display()
        );
        println!("  {}", e.zone_record());
    }
    Ok(())
}

/// The default --directory: where opendkim-genkey writes, the current one.
pub fn default_directory() -> PathBuf {
    PathBuf::from(".")
}
