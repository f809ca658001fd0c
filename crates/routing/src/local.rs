//! [`LocalDomains`]: Postfix's `resolve_local()`, whether a domain is this
//! host's — `mydestination`, or an address literal of this host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use postern_config::Params;

use crate::RoutingError;
use crate::address;
use crate::domains::DomainList;

/// The local domains of one configuration. Cheap to clone (tables and
/// files are shared).
#[derive(Clone, Debug)]
pub struct LocalDomains {
    mydestination: DomainList,
    /// Address literals that count as this host.
    own_addresses: Vec<IpAddr>,
}

impl LocalDomains {
    /// Reads `mydestination` and this host's [`own_addresses`].
    pub fn from_params(params: &Params) -> Result<LocalDomains, RoutingError> {
        Ok(LocalDomains {
            mydestination: DomainList::open(params, "mydestination")?,
            own_addresses: own_addresses(params),
        })
    }

    /// Whether `domain` is this host's. A failing table is an error (the
    /// caller defers).
    pub fn contains(&self, domain: &str) -> Result<bool, RoutingError> {
        let mut d = domain.to_string();
        address::strip_trailing_dot(&mut d);
        if d.is_empty() {
            return Ok(false);
        }
        if let Some(ip) = address::literal_ip(&d) {
            return Ok(self.own_addresses.contains(&ip.to_canonical()));
        }
        self.mydestination.matches(&d)
    }

    pub(crate) fn add_addresses(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        for a in addrs {
            if !self.own_addresses.contains(&a) {
                self.own_addresses.push(a);
            }
        }
    }
}

/// This host's addresses: those of `inet_interfaces` and
/// `proxy_interfaces`, where `all` means loopback and every interface
/// address, and `loopback-only` (or `localhost`) the loopback addresses.
/// Host names in these lists are not resolved (no DNS here). Address
/// literals naming them are local, and smtp-client refuses to send to them
/// (a mail loop).
pub fn own_addresses(params: &Params) -> Vec<IpAddr> {
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut own: Vec<IpAddr> = Vec::new();
    for item in params
        .list("inet_interfaces")
        .into_iter()
        .chain(params.list("proxy_interfaces"))
    {
        match item.to_ascii_lowercase().as_str() {
            "all" => {
                own.extend(loopback);
                own.extend(params.interface_addresses());
            }
            "loopback-only" | "localhost" => own.extend(loopback),
            other => {
                let bare = other.trim_start_matches('[').trim_end_matches(']');
                if let Ok(ip) = address::strip_ipv6_tag(bare).parse::<IpAddr>() {
                    own.push(ip);
                }
            }
        }
    }
    let mut own: Vec<IpAddr> = own.into_iter().map(|ip| ip.to_canonical()).collect();
    own.sort();
    own.dedup();
    own
}
