//! The restriction names of `smtpd_*_restrictions` (Postfix's
//! smtpd_check.c vocabulary): which ones Postern implements, which take a
//! table, and which it refuses, so that load can refuse a list smtpd could
//! not honour (smtpd itself turns the names into checks).

use crate::dnsbl::DnsblSite;
use crate::policy_server::PolicyServer;
use crate::table::{TableError, check_spec};

/// What the word after a restriction name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    None,
    /// `check_*_access type:table`.
    Table,
    /// `reject_rbl_client domain[=filter]` and the other DNS lists.
    Dnsbl,
    /// `check_policy_service endpoint` or `{ endpoint, name=value... }`.
    PolicyServer,
    /// `sleep seconds`.
    Seconds,
}

/// One restriction name.
#[derive(Clone, Copy, Debug)]
pub struct RestrictionDef {
    pub name: &'static str,
    pub arg: Arg,
    /// A Postfix restriction Postern does not implement (client
    /// certificates, DNS-based access checks...).
    pub unsupported: bool,
}

const fn r(name: &'static str) -> RestrictionDef {
    RestrictionDef {
        name,
        arg: Arg::None,
        unsupported: false,
    }
}

const fn with(name: &'static str, arg: Arg) -> RestrictionDef {
    RestrictionDef { arg, ..r(name) }
}

const fn table(name: &'static str) -> RestrictionDef {
    with(name, Arg::Table)
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
    table("check_reverse_client_hostname_access"),
    r("reject_unknown_forward_client_hostname"),
    with("reject_rbl_client", Arg::Dnsbl),
    with("reject_rhsbl_client", Arg::Dnsbl),
    with("reject_rhsbl_reverse_client", Arg::Dnsbl),
    with("reject_rhsbl_sender", Arg::Dnsbl),
    with("reject_rhsbl_helo", Arg::Dnsbl),
    with("reject_rhsbl_recipient", Arg::Dnsbl),
    with("permit_dnswl_client", Arg::Dnsbl),
    with("permit_rhswl_client", Arg::Dnsbl),
    with("sleep", Arg::Seconds),
    no("check_ccert_access"),
    no("check_client_a_access"),
    no("check_client_mx_access"),
    no("check_policy_service"),
    no("check_client_ns_access"),
    no("check_helo_a_access"),
    no("check_helo_mx_access"),
    no("check_helo_ns_access"),
    no("check_recipient_a_access"),
    no("check_recipient_mx_access"),
    no("check_recipient_ns_access"),
    no("check_relay_domains"),
    no("check_sasl_access"),
    no("check_sender_a_access"),
    no("check_sender_mx_access"),
    no("check_sender_ns_access"),
    no("permit_inet_interfaces"),
    no("permit_mx_backup"),
    no("permit_tls_all_clientcerts"),
    no("permit_tls_clientcerts"),
    no("reject_maps_rbl"),
    no("reject_multi_recipient_bounce"),
    no("reject_plaintext_session"),
    no("reject_rbl"),
    no("reject_unlisted_sender_login"),
    no("reject_unverified_recipient"),
    no("reject_unverified_sender"),
];

/// The argument of `sleep`: whole seconds (Postfix's limit is an int).
pub fn parse_sleep(text: &str) -> Result<std::time::Duration, String> {
    text.parse::<u32>()
        .map(|s| std::time::Duration::from_secs(s.into()))
        .map_err(|_| format!("bad number of seconds \"{text}\""))
}

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
    #[error("restriction \"{0}\" needs {1}")]
    MissingArg(String, &'static str),
    #[error("restriction \"{0}\": {1}")]
    BadArg(String, String),
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
                let mut arg = |what| {
                    words
                        .next()
                        .ok_or_else(|| RestrictionError::MissingArg(word.clone(), what))
                };
                let bad = |e| RestrictionError::BadArg(word.clone(), e);
                match def.arg {
                    Arg::None => {}
                    Arg::Table => {
                        let spec = words
                            .next()
                            .filter(|s| s.contains(':'))
                            .ok_or_else(|| RestrictionError::MissingTable(word.clone()))?;
                        check_spec(spec)?;
                    }
                    Arg::Dnsbl => {
                        DnsblSite::parse(arg("a DNS list domain")?, false).map_err(bad)?;
                    }
                    Arg::PolicyServer => {
                        PolicyServer::check(arg("a policy server")?).map_err(bad)?;
                    }
                    Arg::Seconds => {
                        let n = arg("a number of seconds")?;
                        parse_sleep(n).map_err(bad)?;
                    }
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
        assert!(
            check(
                "permit_mynetworks reject_rbl_client zen.example=127.0.0.[2..11]",
                &[]
            )
            .is_ok()
        );
        assert_eq!(
            check("reject_rbl_client", &[]).unwrap_err(),
            "restriction \"reject_rbl_client\" needs a DNS list domain"
        );
        assert_eq!(
            check("reject_rhsbl_sender dbl.example=127.0.1", &[]).unwrap_err(),
            "restriction \"reject_rhsbl_sender\": bad DNSBL result filter \"127.0.1\" in \
             \"dbl.example=127.0.1\""
        );
        assert!(check("sleep 2", &[]).is_ok());
        assert!(check("sleep x", &[]).is_err());
        assert_eq!(
            check("permit_mynetworks check_ccert_access hash:/x", &[]).unwrap_err(),
            "restriction \"check_ccert_access\" is not supported by Postern"
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
