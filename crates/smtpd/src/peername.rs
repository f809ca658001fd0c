//! The client's host name, as Postfix's smtpd_peer.c finds it
//! (`smtpd_peername_lookup = yes`): the PTR record of its address (the
//! reverse name), then the addresses of that name in the client's family;
//! only a name that lists the client's address is its verified name.
//! Anything else leaves `unknown` with the status that
//! reject_unknown_client_hostname and reject_unknown_reverse_client_hostname
//! answer by: a temporary failure gets 450, a permanent one (no PTR, a
//! name that is not a host name, a forged name)
//! `unknown_client_reject_code`.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData, RecordType};

/// How a lookup ended (Postfix's SMTPD_PEER_CODE_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameStatus {
    Ok,
    /// DNS failed or timed out: try again later.
    Temporary,
    /// No lookup was made, or there is no name to find.
    #[default]
    Permanent,
    /// A name that does not list the client's address.
    Forged,
}

impl NameStatus {
    pub fn is_ok(self) -> bool {
        self == NameStatus::Ok
    }
}

/// The names of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNames {
    /// The verified name, or `unknown`.
    pub name: String,
    pub name_status: NameStatus,
    /// The PTR name, verified or not, or `unknown`.
    pub reverse_name: String,
    pub reverse_status: NameStatus,
}

impl PeerNames {
    fn failed(status: NameStatus) -> PeerNames {
        PeerNames {
            name: "unknown".into(),
            name_status: status,
            reverse_name: "unknown".into(),
            reverse_status: status,
        }
    }
}

fn failure(e: &NetError) -> NameStatus {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(_)) => NameStatus::Permanent,
        _ => NameStatus::Temporary,
    }
}

/// A name Postfix would keep: a valid host name that is not an address.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.parse::<IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

/// Looks `addr` up, all of it within `timeout` (a lookup cut off is a
/// temporary failure).
pub async fn lookup(resolver: &TokioResolver, addr: IpAddr, timeout: Duration) -> PeerNames {
    match tokio::time::timeout(timeout, lookup_unbounded(resolver, addr)).await {
        Ok(names) => names,
        Err(_) => PeerNames::failed(NameStatus::Temporary),
    }
}

async fn lookup_unbounded(resolver: &TokioResolver, addr: IpAddr) -> PeerNames {
    let ptr = match resolver.reverse_lookup(addr).await {
        Ok(l) => l.answers().iter().find_map(|r| match &r.data {
            RData::PTR(p) => Some(p.to_ascii().trim_end_matches('.').to_string()),
            _ => None,
        }),
        Err(e) => return PeerNames::failed(failure(&e)),
    };
    let Some(name) = ptr.filter(|n| valid_hostname(n)) else {
        return PeerNames::failed(NameStatus::Permanent);
    };
    let rtype = match addr {
        IpAddr::V4(_) => RecordType::A,
        IpAddr::V6(_) => RecordType::AAAA,
    };
    let forward = match Name::from_str_relaxed(&name) {
        Ok(n) => resolver.lookup(n, rtype).await,
        Err(_) => return PeerNames::failed(NameStatus::Permanent),
    };
    let status = match forward {
        Ok(l) => {
            let listed = l.answers().iter().any(|r| match &r.data {
                RData::A(a) => IpAddr::V4(a.0) == addr,
                RData::AAAA(a) => IpAddr::V6(a.0) == addr,
                _ => false,
            });
            if listed {
                NameStatus::Ok
            } else {
                tracing::warn!("hostname {name} does not resolve to address {addr}");
                NameStatus::Forged
            }
        }
        Err(e) => {
            let status = match failure(&e) {
                NameStatus::Permanent => NameStatus::Forged,
                other => other,
            };
            tracing::warn!("hostname {name} does not resolve to address {addr}: {e}");
            status
        }
    };
    PeerNames {
        name: if status.is_ok() {
            name.clone()
        } else {
            "unknown".into()
        },
        name_status: status,
        reverse_name: name,
        reverse_status: NameStatus::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_postfix_keeps() {
        for ok in ["mail.example.net", "a-b.example", "x_y.example.org"] {
            assert!(valid_hostname(ok), "{ok}");
        }
        for bad in [
            "",
            "192.0.2.1",
            "-a.example",
            "a..b",
            "host.123",
            "sp ace.example",
        ] {
            assert!(!valid_hostname(bad), "{bad}");
        }
    }
}
