//! The restriction names of `smtpd_*_restrictions` (Postfix's
//! smtpd_check.c vocabulary): which ones Postern implements, which take a
//! table, and which it refuses, so that load can refuse a list smtpd could
//! not honour (smtpd itself turns the names into checks).

use crate::table::{TableError, check_spec};

/// One restriction name.
#[derive(Clone, Copy, Debug)]
pub struct RestrictionDef {
    pub name: &'static str,
    /// `check_*_access type:table`: the next word is a table.
    pub takes_table: bool,
    /// A Postfix restriction Postern does not implement (DNS blocklists,
    /// policy servers, client certificates, DNS-based access checks...).
    pub unsupported: bool,
}

const fn r(name: &'static str) -> RestrictionDef {
    RestrictionDef {
        name,
        takes_table: false,
        unsupported: false,
    }
}

const fn table(name: &'static str) -> RestrictionDef {
    RestrictionDef {
        takes_table: true,
        ..r(name)
    }
}

const fn no(name: &'static str) -> RestrictionDef {
    RestrictionDef {
        unsupported: true,
        ..r(name)
    }
}

/// Every restriction name Postern knows.
pub static RESTRICTIONS: &[RestrictionDef] = &[
    table("check_client_access"),
    table("check_helo_access"),
    r("check_recipient_maps"),
    table("check_recipient_access"),
    table("check_sender_access"),
    r("defer"),
    r("defer_if_permit"),
    r("defer_if_reject"),
    r("defer_unauth_destination"),
    r("permit"),
    r("permit_auth_destination"),
    r("permit_mynetworks"),
    r("permit_sasl_authenticated"),
    r("reject"),
    r("reject_authenticated_sender_login_mismatch"),
    r("reject_invalid_helo_hostname"),
    r("reject_invalid_hostname"),
    r("reject_known_sender_login_mismatch"),
    r("reject_non_fqdn_helo_hostname"),
    r("reject_non_fqdn_hostname"),
    r("reject_non_fqdn_recipient"),
    r("reject_non_fqdn_sender"),
    r("reject_sender_login_mismatch"),
    r("reject_spf_fail"),
    r("reject_unauth_destination"),
    r("reject_unauth_pipelining"),
    r("reject_unauthenticated_sender_login_mismatch"),
    r("reject_unknown_address"),
    r("reject_unknown_client"),
    r("reject_unknown_client_hostname"),
    r("reject_unknown_helo_hostname"),
    r("reject_unknown_hostname"),
    r("reject_unknown_recipient_domain"),
    r("reject_unknown_reverse_client_hostname"),
    r("reject_unknown_sender_domain"),
    r("reject_unlisted_recipient"),
    r("reject_unlisted_sender"),
    r("warn_if_reject"),
    no("check_ccert_access"),
    no("check_client_a_access"),
    no("check_client_mx_access"),
    no("check_client_ns_access"),
    no("check_helo_a_access"),
    no("check_helo_mx_access"),
    no("check_helo_ns_access"),
    no("check_policy_service"),
    no("check_recipient_a_access"),
    no("check_recipient_mx_access"),
    no("check_recipient_ns_access"),
    no("check_relay_domains"),
    no("check_reverse_client_hostname_access"),
    no("check_sasl_access"),
    no("check_sender_a_access"),
    no("check_sender_mx_access"),
    no("check_sender_ns_access"),
    no("permit_dnswl_client"),
    no("permit_inet_interfaces"),
    no("permit_mx_backup"),
    no("permit_rhswl_client"),
    no("permit_tls_all_clientcerts"),
    no("permit_tls_clientcerts"),
    no("reject_maps_rbl"),
    no("reject_multi_recipient_bounce"),
    no("reject_plaintext_session"),
    no("reject_rbl"),
    no("reject_rbl_client"),
    no("reject_rhsbl_client"),
    no("reject_rhsbl_helo"),
    no("reject_rhsbl_recipient"),
    no("reject_rhsbl_reverse_client"),
    no("reject_rhsbl_sender"),
    no("reject_unknown_forward_client_hostname"),
    no("reject_unlisted_sender_login"),
    no("reject_unverified_recipient"),
    no("reject_unverified_sender"),
    no("sleep"),
];

/// The definition of a restriction name (compared without case).
pub fn lookup(name: &str) -> Option<&'static RestrictionDef> {
    let name = name.to_ascii_lowercase();
    RESTRICTIONS.iter().find(|d| d.name == name)
}

/// Why a restriction list cannot be honoured.
#[derive(Debug, thiserror::Error)]
pub enum RestrictionError {
    #[error("unknown restriction \"{0}\"")]
    Unknown(String),
    #[error("restriction \"{0}\" is not supported by Postern")]
    Unsupported(String),
    #[error("restriction \"{0}\" needs a type:table argument")]
    MissingTable(String),
    #[error(transparent)]
    Table(#[from] TableError),
}

/// Checks a restriction list (split into words) without opening its
/// tables: every name is known and implemented, every table argument a
/// table type Postern has, and other words are `classes` or `type:table`.
pub fn check_list(tokens: &[String], classes: &[String]) -> Result<(), RestrictionError> {
    let mut words = tokens.iter();
    while let Some(word) = words.next() {
        match lookup(word) {
            Some(def) => {
                if def.unsupported {
                    return Err(RestrictionError::Unsupported(word.clone()));
                }
                if def.takes_table {
                    let spec = words
                        .next()
                        .filter(|s| s.contains(':'))
                        .ok_or_else(|| RestrictionError::MissingTable(word.clone()))?;
                    check_spec(spec)?;
                }
            }
            None if word.contains(':') => check_spec(word)?,
            None if classes.contains(word) => {}
            None => return Err(RestrictionError::Unknown(word.clone())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(list: &str, classes: &[&str]) -> Result<(), String> {
        let classes: Vec<String> = classes.iter().map(|c| c.to_string()).collect();
        check_list(&crate::value::split_list(list), &classes).map_err(|e| e.to_string())
    }

    #[test]
    fn names_are_unique() {
        for (i, d) in RESTRICTIONS.iter().enumerate() {
            assert!(
                RESTRICTIONS[i + 1..].iter().all(|e| e.name != d.name),
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn lists() {
        assert!(check("permit_mynetworks, reject_unauth_destination", &[]).is_ok());
        assert!(check("check_client_access hash:/x, PERMIT", &[]).is_ok());
        assert!(check("cidr:/etc/postern/clients, mine", &["mine"]).is_ok());
        assert_eq!(
            check("permit_mynetworks reject_rbl_client zen.example", &[]).unwrap_err(),
            "restriction \"reject_rbl_client\" is not supported by Postern"
        );
        assert_eq!(
            check("permit_mynetwork", &[]).unwrap_err(),
            "unknown restriction \"permit_mynetwork\""
        );
        assert_eq!(
            check("check_sender_access", &[]).unwrap_err(),
            "restriction \"check_sender_access\" needs a type:table argument"
        );
        assert_eq!(
            check("check_sender_access ldap:/etc/ldap.cf", &[]).unwrap_err(),
            "unsupported dictionary type \"ldap\" in table \"ldap:/etc/ldap.cf\""
        );
    }
}
