//! DNS blocklist and allowlist queries (Postfix's reject_rbl_client
//! family, and postscreen's DNSBL tests): the name to ask, the A records
//! that count as a listing under a site's result filter, and the TXT
//! record that explains it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use postern_config::dnsbl::DnsblSite;

/// How a query ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    NotListed,
    /// The matching A records, and the TXT text when it was asked for
    /// (the first string of each record, joined with ` / ` up to 500
    /// characters, as Postfix joins them).
    Listed {
        addrs: Vec<Ipv4Addr>,
        reason: Option<String>,
    },
    /// DNS failed or timed out; the text says how.
    Failed(String),
}

/// The query label of an address: `4.3.2.1` for 1.2.3.4, reversed
/// nibbles for IPv6 (RFC 5782).
pub fn reversed(addr: IpAddr) -> String {
    match addr.to_canonical() {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut parts = Vec::with_capacity(32);
            for byte in a.octets().iter().rev() {
                parts.push(format!("{:x}", byte & 0xf));
                parts.push(format!("{:x}", byte >> 4));
            }
            parts.join(".")
        }
    }
}

/// Asks `site` about `label` (a reversed address or a domain name) within
/// `timeout`; `want_reason` also fetches the TXT record of a listing.
pub async fn query(
    resolver: &TokioResolver,
    site: &DnsblSite,
    label: &str,
    want_reason: bool,
    timeout: Duration,
) -> Answer {
    let label = label.trim_end_matches('.');
    let Ok(name) = Name::from_str_relaxed(format!("{label}.{}.", site.domain)) else {
        // A name that cannot be asked is not listed (too long, bad label).
        return Answer::NotListed;
    };
    let lookup = tokio::time::timeout(timeout, resolver.lookup(name.clone(), RecordType::A));
    let addrs: Vec<Ipv4Addr> = match lookup.await {
        Err(_) => return Answer::Failed("timed out".into()),
        Ok(Err(e)) if not_found(&e) => return Answer::NotListed,
        Ok(Err(e)) => return Answer::Failed(e.to_string()),
        Ok(Ok(l)) => l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .filter(|a| site.matches(*a))
            .collect(),
    };
    if addrs.is_empty() {
        return Answer::NotListed;
    }
    let reason = match want_reason {
        false => None,
        true => {
            let txt = tokio::time::timeout(timeout, resolver.lookup(name, RecordType::TXT));
            match txt.await {
                Ok(Ok(l)) => {
                    let texts: Vec<String> = l
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::TXT(t) => t.txt_data.first().map(|d| {
                                d.iter()
                                    .map(|&b| match b {
                                        0x20..=0x7e => b as char,
                                        _ => ' ',
                                    })
                                    .collect::<String>()
                            }),
                            _ => None,
                        })
                        .collect();
                    let mut text = texts.join(" / ");
                    text.truncate(500);
                    Some(text).filter(|t| !t.is_empty())
                }
                _ => None,
            }
        }
    };
    Answer::Listed { addrs, reason }
}

fn not_found(e: &NetError) -> bool {
    matches!(e, NetError::Dns(DnsError::NoRecordsFound(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_names() {
        assert_eq!(reversed("192.0.2.99".parse().unwrap()), "99.2.0.192");
        assert_eq!(reversed("::ffff:192.0.2.1".parse().unwrap()), "1.2.0.192");
        assert_eq!(
            reversed("2001:db8::1".parse().unwrap()),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
        );
    }
}
