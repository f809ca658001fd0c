//! DKIM signing (RFC 6376; Ed25519 from RFC 8463) with opendkim's
//! SigningTable and KeyTable under Postfix-style names.
//!
//! * `dkim_signing_table` maps the address of the message's From: header
//!   (as opendkim's SigningTable does, not the envelope sender) to a key
//!   name. A `hash:`-style table is asked for `user@domain`, then
//!   `*@domain`, then `@domain`, then `domain`; a `regexp:` or `pcre:`
//!   table is asked for the whole address only and takes the place of
//!   opendkim's `refile:` wildcards. The first table with an answer wins;
//!   the answer's first word is the key name.
//! * `dkim_key_table` maps a key name to `domain:selector:/path/to/key.pem`
//!   (opendkim's KeyTable). Every key it names is read when the signer is
//!   built, so a missing or unreadable key stops the daemon at start
//!   instead of sending unsigned mail. Its keys must be listable: a
//!   `hash:`-style or `inline:` table.
//! * `dkim_canonicalization` (`relaxed/relaxed`) and `dkim_signed_headers`
//!   (opendkim's list; only the headers a message has are signed, and
//!   From: always).
//!
//! Where Postern differs from opendkim: no `refile:` type (use `regexp:`),
//! no `%` domain and no inline key data in the key table, one signature per
//! message.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use mail_auth::common::crypto::DkimKey as SecretKey;
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{Canonicalization, DkimSigner as MailAuthSigner, Done};
use postern_config::Params;
use postern_config::table::{Maps, TableError};

use crate::keys::{DkimKey, KeyAlgorithm, KeyError};

/// Why signing cannot be set up, or a message cannot be signed.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{param}: {source}")]
    Table {
        param: &'static str,
        source: TableError,
    },
    #[error(
        "dkim_key_table: table \"{spec}\" cannot list its keys; use a hash:, texthash: or inline: table"
    )]
    KeyTableNotListable { spec: String },
    #[error(
        "dkim_key_table entry \"{name}\": \"{value}\" is not domain:selector:/path/to/key.pem: {reason}"
    )]
    BadKeyEntry {
        name: String,
        value: String,
        reason: &'static str,
    },
    #[error("dkim_key_table entry \"{name}\": {}: {source}", path.display())]
    Key {
        name: String,
        path: PathBuf,
        source: KeyError,
    },
    #[error(
        "dkim_signing_table: \"{address}\" names key \"{name}\", which dkim_key_table does not have"
    )]
    UnknownKey { address: String, name: String },
    #[error("arc_sealing_key: dkim_key_table has no key \"{name}\"")]
    UnknownSealingKey { name: String },
    #[error("arc_sealing_key: key \"{name}\" is not an RSA key (ARC signs with rsa-sha256)")]
    SealingKeyNotRsa { name: String },
    #[error("dkim signature with key \"{name}\": {reason}")]
    Sign { name: String, reason: String },
}

/// One `dkim_key_table` entry with its key read.
#[derive(Debug)]
pub struct KeyEntry {
    /// The key name (lower case, as hash: tables fold keys).
    pub name: String,
    /// The signing domain, `d=`.
    pub domain: String,
    /// The selector, `s=`.
    pub selector: String,
    pub path: PathBuf,
    pub key: DkimKey,
}

impl KeyEntry {
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.key.algorithm()
    }

    /// The zone-file line that publishes this key.
    pub fn zone_record(&self) -> String {
        self.key.zone_record(&self.domain, &self.selector)
    }
}

/// Every entry of `dkim_key_table`, in key-name order, keys read. An
/// empty list when the parameter is empty.
pub fn read_key_table(params: &Params) -> Result<Vec<KeyEntry>, DkimError> {
    let maps = params
        .maps("dkim_key_table")
        .map_err(|source| DkimError::Table {
            param: "dkim_key_table",
            source,
        })?;
    let mut entries = Vec::new();
    for table in maps.tables() {
        let listed = table.entries().map_err(|source| DkimError::Table {
            param: "dkim_key_table",
            source,
        })?;
        let Some(listed) = listed else {
            return Err(DkimError::KeyTableNotListable {
                spec: table.spec().to_string(),
            });
        };
        for (name, value) in listed {
            // The first table with a name wins, as a lookup would.
            if entries.iter().any(|e: &KeyEntry| e.name == name) {
                continue;
            }
            entries.push(parse_key_entry(params, &name, &value)?);
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn parse_key_entry(params: &Params, name: &str, value: &str) -> Result<KeyEntry, DkimError> {
    let bad = |reason| DkimError::BadKeyEntry {
        name: name.to_string(),
        value: value.to_string(),
        reason,
    };
    let mut fields = value.trim().splitn(3, ':');
    let (Some(domain), Some(selector), Some(file)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(bad("it needs three fields separated by ':'"));
    };
    let (domain, selector, file) = (domain.trim(), selector.trim(), file.trim());
    if domain.is_empty() || selector.is_empty() || file.is_empty() {
        return Err(bad("a field is empty"));
    }
    let path = params.base_dir().join(file);
    let key = DkimKey::from_pem_file(&path).map_err(|source| DkimError::Key {
        name: name.to_string(),
        path: path.clone(),
        source,
    })?;
    Ok(KeyEntry {
        name: name.to_string(),
        domain: domain.to_ascii_lowercase(),
        selector: selector.to_string(),
        path,
        key,
    })
}

/// Reads the DKIM tables and keys of `[main]` and of every service as
/// smtpd will, so that a missing or unreadable key stops the master at
/// start (or refuses a reload), naming master.toml's line and the key.
pub fn check_config(config: &postern_config::Config) -> Result<(), postern_config::ConfigError> {
    config.check_each_service(|params| {
        DkimSigner::from_params(params).map(drop).map_err(|e| {
            let param = match &e {
                DkimError::Table { param, .. } => param,
                _ => "dkim_key_table",
            };
            (param.to_string(), e.to_string())
        })
    })
}

/// Signs outgoing mail with the key `dkim_signing_table` picks for the
/// message's From: address.
pub struct DkimSigner {
    signing_table: Maps,
    /// Key name to a signer with that key's d=, s=, c= and h= set.
    signers: HashMap<String, MailAuthSigner<SecretKey, Done>>,
}

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<_> = self.signers.keys().collect();
        names.sort();
        f.debug_struct("DkimSigner")
            .field("signing_table", &self.signing_table)
            .field("keys", &names)
            .finish()
    }
}

/// `message` with a DKIM-Signature on top when `params`'
/// dkim_signing_table has a key for its From: address, for mail Postern
/// makes or picks up itself (notices, local submissions). The keys were
/// checked when the master started; one that cannot be used now leaves
/// the message unsigned, with a warning naming `what`, rather than
/// undelivered.
pub fn sign_or_warn(params: &Params, message: Vec<u8>, what: &str) -> Vec<u8> {
    let signer = match DkimSigner::from_params(params) {
        Ok(Some(signer)) => signer,
        Ok(None) => return message,
        Err(e) => {
            tracing::warn!("{what}: DKIM signing unusable: {e}");
            return message;
        }
    };
    match signer.sign(&message) {
        Ok(Some(header)) => [header.into_bytes(), message].concat(),
        Ok(None) => message,
        Err(e) => {
            tracing::warn!("{what}: DKIM signing failed: {e}");
            message
        }
    }
}

impl DkimSigner {
    /// The signer `params` configure; `None` when `dkim_signing_table` is
    /// empty. Reads every key of `dkim_key_table`.
    pub fn from_params(params: &Params) -> Result<Option<DkimSigner>, DkimError> {
        let signing_table =
            params
                .maps("dkim_signing_table")
                .map_err(|source| DkimError::Table {
                    param: "dkim_signing_table",
                    source,
                })?;
        if signing_table.is_empty() {
            return Ok(None);
        }
        let (header_c, body_c) = canonicalization(&params.get("dkim_canonicalization"));
        let mut headers = params.list("dkim_signed_headers");
        if !headers.iter().any(|h| h.eq_ignore_ascii_case("from")) {
            // RFC 6376 section 5.4: From: must be signed.
            headers.insert(0, "From".to_string());
        }
        let mut signers = HashMap::new();
        for entry in read_key_table(params)? {
            let signer = MailAuthSigner::from_key(entry.key.into_secret())
                .domain(entry.domain)
                .selector(entry.selector)
                .headers(headers.iter().cloned())
                .header_canonicalization(header_c)
                .body_canonicalization(body_c);
            signers.insert(entry.name, signer);
        }
        let signer = DkimSigner {
            signing_table,
            signers,
        };
        signer.check_listed_names()?;
        Ok(Some(signer))
    }

    /// A signing table whose entries can be listed must name only keys
    /// the key table has: found at start rather than at the first message.
    fn check_listed_names(&self) -> Result<(), DkimError> {
        for table in self.signing_table.tables() {
            let Ok(Some(entries)) = table.entries() else {
                continue;
            };
            for (address, value) in entries {
                let name = key_name(&value);
                if !self.signers.contains_key(&name) {
                    return Err(DkimError::UnknownKey { address, name });
                }
            }
        }
        Ok(())
    }

    /// The key name `dkim_signing_table` gives `address` (`user@domain`),
    /// if any.
    pub fn key_for(&self, address: &str) -> Result<Option<String>, DkimError> {
        let address = address.trim().to_lowercase();
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let table_err = |source| DkimError::Table {
            param: "dkim_signing_table",
            source,
        };
        for table in self.signing_table.tables() {
            let found = if table.is_pattern() {
                table.lookup(&address).map_err(table_err)?
            } else {
                let mut found = None;
                for key in [
                    address.clone(),
                    format!("*@{domain}"),
                    format!("@{domain}"),
                    domain.to_string(),
                ] {
                    if key.ends_with('@') || key.is_empty() {
                        continue;
                    }
                    if let Some(v) = table.lookup(&key).map_err(table_err)? {
                        found = Some(v);
                        break;
                    }
                }
                found
            };
            if let Some(value) = found {
                return Ok(Some(key_name(&value)));
            }
        }
        Ok(None)
    }

    /// The `DKIM-Signature:` header (folded, CRLF-terminated) to prepend
    /// to `message` (headers and body, CRLF line ends), or `None` when the
    /// message has no From: address or the signing table has no key for
    /// it. An error is a table that fails (defer the message) or a key the
    /// key table lacks.
    pub fn sign(&self, message: &[u8]) -> Result<Option<String>, DkimError> {
        let Some(address) = from_address(message) else {
            return Ok(None);
        };
        let Some(name) = self.key_for(&address)? else {
            return Ok(None);
        };
        let Some(signer) = self.signers.get(&name) else {
            return Err(DkimError::UnknownKey { address, name });
        };
        let signature = signer.sign(message).map_err(|e| DkimError::Sign {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Some(unfold_last_tag(signature.to_header())))
    }
}

/// mail-auth may fold between the end of the `b=` value and the final
/// `;`. Verifiers delete the `b=` value but not always the white space
/// after it (python3-dkim keeps it), so they hash `b= ;` where the signer
/// hashed `b=;`, and the signature fails for messages whose lengths put a
/// fold there. The fold is taken out.
fn unfold_last_tag(header: String) -> String {
    match header.strip_suffix("\r\n\t;\r\n") {
        Some(rest) => format!("{rest};\r\n"),
        None => header,
    }
}

/// The key name in a signing table value: its first word, folded as the
/// key table's keys are.
fn key_name(value: &str) -> String {
    value.split_whitespace().next().unwrap_or("").to_lowercase()
}

/// `c=` as header and body canonicalization; a lone word is the header's
/// and the body is simple (RFC 6376 section 3.5).
fn canonicalization(value: &str) -> (Canonicalization, Canonicalization) {
    let parse = |w: &str| {
        if w.trim().eq_ignore_ascii_case("simple") {
            Canonicalization::Simple
        } else {
            Canonicalization::Relaxed
        }
    };
    match value.split_once('/') {
        Some((h, b)) => (parse(h), parse(b)),
        None => (parse(value), Canonicalization::Simple),
    }
}

/// The first address of the first From: header.
fn from_address(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let address = parsed.from()?.first()?.address()?;
    address.contains('@').then(|| address.to_string())
}

#[cfg(test)]
mod tests;
