//! `qctl passwd USER`: adds or changes a user in the `smtpd_sasl_users`
//! table that smtpd's AUTH checks, reading the password from standard input
//! so it never appears in a process listing or shell history. smtpd reads
//! the table again when the file changes: no reload is needed. A name
//! without a realm gets `@$smtpd_sasl_local_domain` when that is set, the
//! name smtpd looks up.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::ValueEnum;
use postern_config::Config;

/// How the password is stored.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Scheme {
    /// argon2id (the default).
    Argon2,
    /// SHA-512 crypt (`$6$`), as `mkpasswd -m sha-512` writes.
    Sha512,
    /// `{plain}secret`: recoverable, needed for CRAM-MD5 only.
    Plain,
}

pub fn run(config: &Config, user: &str, scheme: Scheme) -> anyhow::Result<()> {
    if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("bad user name {user:?}: no spaces or control characters");
    }
    let file = table_file(config)?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("read the password from standard input")?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("empty password on standard input");
    }
    let hash = hash(password, scheme)?;
    // The name smtpd will look up: with smtpd_sasl_local_domain's realm.
    let user = &postern_config::sasl_login_name(config.main(), user);
    let replaced = update_table(&file, user, &hash, &config.main().get("mail_owner"))?;
    println!(
        "{} {user} in {}",
        if replaced { "changed" } else { "added" },
        file.display()
    );
    Ok(())
}

/// The file behind `smtpd_sasl_users` (a `hash:` or `texthash:` table).
fn table_file(config: &Config) -> anyhow::Result<PathBuf> {
    let params = config.main();
    if params.get("smtpd_sasl_users").trim().is_empty() {
        bail!("smtpd_sasl_users is not set: name the user table there first");
    }
    let maps = params.maps("smtpd_sasl_users")?;
    let table = maps
        .tables()
        .first()
        .ok_or_else(|| anyhow!("smtpd_sasl_users names no table"))?;
    table.path().map(Path::to_path_buf).ok_or_else(|| {
        anyhow!(
            "smtpd_sasl_users: {} is not a file this command can edit",
            table.spec()
        )
    })
}

fn hash(password: &str, scheme: Scheme) -> anyhow::Result<String> {
    Ok(match scheme {
        Scheme::Argon2 => {
            use argon2::PasswordHasher as _;
            argon2::Argon2::default()
                .hash_password(password.as_bytes())
                .map_err(|e| anyhow!("argon2: {e}"))?
                .to_string()
        }
        Scheme::Sha512 => {
            use sha_crypt::PasswordHasher as _;
            sha_crypt::ShaCrypt::default()
                .hash_password(password.as_bytes())
                .map_err(|e| anyhow!("sha-512 crypt: {e}"))?
                .to_string()
        }
        Scheme::Plain => format!("{{plain}}{password}"),
    })
}

/// Replaces the user's line (or appends one), keeping every other line and
/// comment, and writes the file atomically with mode 0600 (it holds hashes).
/// Returns whether a line was replaced.
fn update_table(file: &Path, user: &str, hash: &str, mail_owner: &str) -> anyhow::Result<bool> {
    let old = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("read {}", file.display())),
    };
    let mut replaced = false;
    let mut out = String::new();
    for line in old.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        let is_entry = !line.starts_with(char::is_whitespace) && !line.starts_with('#');
        if is_entry && key.eq_ignore_ascii_case(user) {
            if !replaced {
                out.push_str(&format!("{user} {hash}\n"));
            }
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&format!("{user} {hash}\n"));
    }
    let tmp = file.with_extension("qctl-new");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(out.as_bytes())?;
    f.sync_all()?;
    // Keep the owner and mode of an existing table; a new one belongs to
    // mail_owner, as whom smtpd reads it.
    if let Ok(meta) = std::fs::metadata(file) {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(meta.mode() & 0o777))?;
        let _ = nix::unistd::chown(&tmp, Some(meta.uid().into()), Some(meta.gid().into()));
    } else if nix::unistd::Uid::effective().is_root() {
        let (uid, gid) = postern_daemon::privs::mail_owner_ids(mail_owner)?;
        nix::unistd::chown(&tmp, Some(uid), Some(gid))
            .with_context(|| format!("chown {} to {mail_owner}", tmp.display()))?;
    }
    std::fs::rename(&tmp, file).with_context(|| format!("replace {}", file.display()))?;
    Ok(replaced)
}
