//! Restriction names: parsing a Postfix restriction list (a parameter value
//! or the right-hand side of an access table entry) into [`Restriction`]s.
//! Which names exist, and which Postern refuses, is
//! [`postern_config::restrictions`]; load checks parameter values against
//! it, so here only names inside access table results can be unknown.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use postern_config::dnsbl::DnsblSite;
use postern_config::{Table, TableError, restrictions};

/// Which access check a bare `type:table` in a list stands for, and which
/// one a `check_*_access` restriction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AccessKind {
    Client,
    Helo,
    Sender,
    Recipient,
    /// check_reverse_client_hostname_access: the PTR name, verified or not.
    ReverseClient,
}

/// Which name a DNS list is asked about, and what a listing means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DnsList {
    /// reject_rbl_client: the client address.
    RblClient,
    /// reject_rhsbl_client: the verified client name.
    RhsblClient,
    /// reject_rhsbl_reverse_client: the PTR name.
    RhsblReverseClient,
    RhsblHelo,
    RhsblSender,
    RhsblRecipient,
    /// permit_dnswl_client: a listed address is permitted.
    DnswlClient,
    /// permit_rhswl_client: a listed client name is permitted.
    RhswlClient,
}

impl DnsList {
    /// An allowlist: a listing permits.
    pub(super) fn permits(self) -> bool {
        matches!(self, DnsList::DnswlClient | DnsList::RhswlClient)
    }
}

/// One restriction, with its table already opened.
#[derive(Debug, Clone)]
pub(super) enum Restriction {
    Permit,
    Reject,
    Defer,
    DeferIfPermit,
    DeferIfReject,
    /// Turns a reject by the next restriction into a logged warning.
    WarnIfReject,
    PermitMynetworks,
    PermitSaslAuthenticated,
    PermitAuthDestination,
    RejectUnauthDestination,
    DeferUnauthDestination,
    RejectUnlistedRecipient,
    RejectUnlistedSender,
    RejectUnknownClientHostname,
    RejectUnknownReverseClientHostname,
    /// A PTR name whose addresses do not list the client.
    RejectUnknownForwardClientHostname,
    RejectInvalidHeloHostname,
    RejectNonFqdnHeloHostname,
    RejectUnknownHeloHostname,
    RejectNonFqdnSender,
    RejectNonFqdnRecipient,
    RejectUnknownSenderDomain,
    RejectUnknownRecipientDomain,
    /// The sender's MAIL FROM or HELO identity fails SPF (once SPF was
    /// checked: at RCPT and later).
    RejectSpfFail,
    /// Enforced by the session itself (`smtpd_forbid_unauth_pipelining`);
    /// accepted here so that configurations from Postfix guides load.
    RejectUnauthPipelining,
    /// smtpd_sender_login_maps checks: which logins may use which
    /// sender addresses.
    SenderLogin(LoginCheck),
    Access(AccessKind, Table),
    /// `type:table` alone: the access check of the list it appears in.
    BareMap(Table),
    /// A name from `smtpd_restriction_classes`.
    Class(String),
    /// A DNS blocklist or allowlist lookup.
    Dns(DnsList, Arc<DnsblSite>),
    /// sleep N: pause (a defence against clients that talk too soon).
    Sleep(Duration),
}

/// The `reject_*sender_login_mismatch` family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LoginCheck {
    /// Both of the next two.
    Mismatch,
    /// A logged-in client may only use the addresses its login owns.
    Authenticated,
    /// An address that has an owner needs a login.
    Unauthenticated,
    /// Like `Mismatch`, but only for addresses that have an owner.
    Known,
}

/// Why a list did not parse.
#[derive(Debug)]
pub(super) enum ParseError {
    Unknown(String),
    /// A Postfix restriction that Postern does not implement.
    Unsupported(String),
    MissingTable(String),
    Table(TableError),
    /// A restriction whose argument is missing or wrong.
    BadArg(String, String),
}

/// Parses restriction names. `open` opens the table after a
/// `check_*_access` (or a bare `type:table`) and `classes` are the names defined in `smtpd_restriction_classes`.
pub(super) fn parse_list(
    tokens: &[String],
    classes: &HashSet<String>,
    open: &mut dyn FnMut(&str) -> Result<Table, TableError>,
) -> Result<Vec<Restriction>, ParseError> {
    use Restriction as R;
    let mut out = Vec::new();
    let mut iter = tokens.iter();
    while let Some(tok) = iter.next() {
        let name = tok.to_ascii_lowercase();
        let access = match name.as_str() {
            "check_client_access" => Some(AccessKind::Client),
            "check_helo_access" => Some(AccessKind::Helo),
            "check_sender_access" => Some(AccessKind::Sender),
            "check_recipient_access" => Some(AccessKind::Recipient),
            "check_reverse_client_hostname_access" => Some(AccessKind::ReverseClient),
            _ => None,
        };
        if let Some(kind) = access {
            let spec = iter
                .next()
                .filter(|s| s.contains(':'))
                .ok_or_else(|| ParseError::MissingTable(name.clone()))?;
            out.push(R::Access(kind, open(spec).map_err(ParseError::Table)?));
            continue;
        }
        let dns = match name.as_str() {
            "reject_rbl_client" => Some(DnsList::RblClient),
            "reject_rhsbl_client" => Some(DnsList::RhsblClient),
            "reject_rhsbl_reverse_client" => Some(DnsList::RhsblReverseClient),
            "reject_rhsbl_helo" => Some(DnsList::RhsblHelo),
            "reject_rhsbl_sender" => Some(DnsList::RhsblSender),
            "reject_rhsbl_recipient" => Some(DnsList::RhsblRecipient),
            "permit_dnswl_client" => Some(DnsList::DnswlClient),
            "permit_rhswl_client" => Some(DnsList::RhswlClient),
            _ => None,
        };
        let mut arg = || {
            iter.next()
                .ok_or_else(|| ParseError::BadArg(name.clone(), "argument missing".into()))
        };
        if let Some(list) = dns {
            let site =
                DnsblSite::parse(arg()?, false).map_err(|e| ParseError::BadArg(name.clone(), e))?;
            out.push(R::Dns(list, Arc::new(site)));
            continue;
        }
        if name == "sleep" {
            let pause = restrictions::parse_sleep(arg()?)
                .map_err(|e| ParseError::BadArg(name.clone(), e))?;
            out.push(R::Sleep(pause));
            continue;
        }
        let r = match name.as_str() {
            "permit" => R::Permit,
            "reject" => R::Reject,
            "defer" => R::Defer,
            "defer_if_permit" => R::DeferIfPermit,
            "defer_if_reject" => R::DeferIfReject,
            "warn_if_reject" => R::WarnIfReject,
            "permit_mynetworks" => R::PermitMynetworks,
            "permit_sasl_authenticated" => R::PermitSaslAuthenticated,
            "permit_auth_destination" => R::PermitAuthDestination,
            "reject_unauth_destination" => R::RejectUnauthDestination,
            "defer_unauth_destination" => R::DeferUnauthDestination,
            "reject_unlisted_recipient" | "check_recipient_maps" => R::RejectUnlistedRecipient,
            "reject_unlisted_sender" => R::RejectUnlistedSender,
            "reject_unknown_client_hostname" | "reject_unknown_client" => {
                R::RejectUnknownClientHostname
            }
            "reject_unknown_reverse_client_hostname" => R::RejectUnknownReverseClientHostname,
            "reject_unknown_forward_client_hostname" => R::RejectUnknownForwardClientHostname,
            "reject_invalid_helo_hostname" | "reject_invalid_hostname" => {
                R::RejectInvalidHeloHostname
            }
            "reject_non_fqdn_helo_hostname" | "reject_non_fqdn_hostname" => {
                R::RejectNonFqdnHeloHostname
            }
            "reject_unknown_helo_hostname" | "reject_unknown_hostname" => {
                R::RejectUnknownHeloHostname
            }
            "reject_non_fqdn_sender" => R::RejectNonFqdnSender,
            "reject_non_fqdn_recipient" => R::RejectNonFqdnRecipient,
            "reject_unknown_sender_domain" | "reject_unknown_address" => {
                R::RejectUnknownSenderDomain
            }
            "reject_unknown_recipient_domain" => R::RejectUnknownRecipientDomain,
            "reject_unauth_pipelining" => R::RejectUnauthPipelining,
            "reject_spf_fail" => R::RejectSpfFail,
            "reject_sender_login_mismatch" => R::SenderLogin(LoginCheck::Mismatch),
            "reject_authenticated_sender_login_mismatch" => {
                R::SenderLogin(LoginCheck::Authenticated)
            }
            "reject_unauthenticated_sender_login_mismatch" => {
                R::SenderLogin(LoginCheck::Unauthenticated)
            }
            "reject_known_sender_login_mismatch" => R::SenderLogin(LoginCheck::Known),
            _ if tok.contains(':') => R::BareMap(open(tok).map_err(ParseError::Table)?),
            _ if classes.contains(tok.as_str()) => R::Class(tok.clone()),
            _ if restrictions::lookup(&name).is_some_and(|d| d.unsupported) => {
                return Err(ParseError::Unsupported(tok.clone()));
            }
            _ => return Err(ParseError::Unknown(tok.clone())),
        };
        out.push(r);
    }
    Ok(out)
}

/// True when the list can refuse relaying on its own (Postfix's check that
/// relay or recipient restrictions are not an open relay).
pub(super) fn restricts_relay(
    list: &[Restriction],
    classes: &std::collections::HashMap<String, Vec<Restriction>>,
    depth: usize,
) -> bool {
    let mut skip = false;
    for r in list {
        if std::mem::take(&mut skip) {
            continue;
        }
        match r {
            // A restriction after warn_if_reject only warns.
            Restriction::WarnIfReject => skip = true,
            Restriction::RejectUnauthDestination
            | Restriction::DeferUnauthDestination
            | Restriction::Reject
            | Restriction::Defer
            | Restriction::DeferIfPermit => return true,
            Restriction::Class(name)
                if depth < 10
                    && classes
                        .get(name)
                        .is_some_and(|l| restricts_relay(l, classes, depth + 1)) =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What load accepts (postern_config::restrictions) is what smtpd
    /// implements, name for name.
    #[test]
    fn every_declared_name_is_implemented() {
        let mut open = |spec: &str| Table::open(spec, std::path::Path::new("/"));
        let classes = HashSet::new();
        for def in restrictions::RESTRICTIONS {
            let mut words = vec![def.name.to_string()];
            match def.arg {
                restrictions::Arg::None => {}
                restrictions::Arg::Table => words.push("static:OK".into()),
                restrictions::Arg::Dnsbl => words.push("bl.example=127.0.0.2".into()),
                restrictions::Arg::PolicyServer => words.push("inet:127.0.0.1:9".into()),
                restrictions::Arg::Seconds => words.push("1".into()),
            }
            let parsed = parse_list(&words, &classes, &mut open);
            match def.unsupported {
                false => assert!(parsed.is_ok(), "{}: {parsed:?}", def.name),
                true => assert!(
                    matches!(parsed, Err(ParseError::Unsupported(_))),
                    "{}: {parsed:?}",
                    def.name
                ),
            }
        }
        let unknown = parse_list(&["permit_everyone".into()], &classes, &mut open);
        assert!(matches!(unknown, Err(ParseError::Unknown(_))));
    }
}
