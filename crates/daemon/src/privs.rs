//! Dropping root to `mail_owner`, as Postfix daemons do right after start.
//!
//! A daemon started as root by a root master runs as `mail_owner` unless its
//! service is `privileged`. Started by an ordinary user (development, tests),
//! it keeps running as that user: there is nothing to drop.

use nix::unistd::{Gid, Uid, User, setgid, setgroups, setuid};

#[derive(Debug, thiserror::Error)]
pub enum PrivError {
    #[error("mail_owner {0:?} does not exist: create the account (see scripts/install.sh)")]
    NoSuchUser(String),
    #[error("mail_owner {0:?} must not be root")]
    OwnerIsRoot(String),
    #[error("cannot look up mail_owner {0:?}: {1}")]
    Lookup(String, nix::Error),
    #[error("cannot drop privileges to {0:?}: {1}")]
    Drop(String, nix::Error),
}

/// The uid and gid of `mail_owner`, refusing root as Postfix does.
pub fn mail_owner_ids(mail_owner: &str) -> Result<(Uid, Gid), PrivError> {
    let user = User::from_name(mail_owner)
        .map_err(|e| PrivError::Lookup(mail_owner.to_string(), e))?
        .ok_or_else(|| PrivError::NoSuchUser(mail_owner.to_string()))?;
    if user.uid.is_root() {
        return Err(PrivError::OwnerIsRoot(mail_owner.to_string()));
    }
    Ok((user.uid, user.gid))
}

/// Becomes `mail_owner` when running as root and not privileged.
/// Returns whether privileges were dropped.
pub fn drop_privileges(mail_owner: &str, privileged: bool) -> Result<bool, PrivError> {
    if privileged || !Uid::effective().is_root() {
        return Ok(false);
    }
    let (uid, gid) = mail_owner_ids(mail_owner)?;
    let fail = |e| PrivError::Drop(mail_owner.to_string(), e);
    // Order matters: groups and gid while still root, the uid last.
    setgroups(&[gid]).map_err(fail)?;
    setgid(gid).map_err(fail)?;
    setuid(uid).map_err(fail)?;
    Ok(true)
}
