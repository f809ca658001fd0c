//! [`LocalDomains`]: Postfix's `resolve_local()`, whether a domain is this
//! host's — `mydestination`, or an address literal of this host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use postern_config::Params;
use postern_config::table::Cidr;

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
    /// Reads `mydestination` and the addresses of `inet_interfaces` and
    /// `proxy_interfaces`: `all` means loopback and every interface
    /// address of this host, `loopback-only` the loopback addresses. Host
    /// names in these lists are not resolved (no DNS here).
    pub fn from_params(params: &Params) -> Result<LocalDomains, RoutingError> {
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
                    own.extend(interface_addresses(params));
                }
                "loopback-only" | "localhost" => own.extend(loopback),
                other => {
                    let bare = other.trim_start_matches('[').trim_end_matches(']');
                    if let Ok(ip) = address::strip_ipv6_tag(bare).parse::<IpAddr>() {
                        own.push(ip.to_canonical());
                    }
                }
            }
        }
        let mut seen = Vec::new();
        own.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        Ok(LocalDomains {
            mydestination: DomainList::open(params, "mydestination")?,
            own_addresses: own,
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

/// This host's interface addresses, as the config crate found them: the
/// single-host networks of the `host`-style `mynetworks` default.
fn interface_addresses(params: &Params) -> Vec<IpAddr> {
    let mut host = params.clone();
    if host.set("mynetworks_style", "host").is_err() {
        return Vec::new();
    }
    let nets = host.default_value("mynetworks").unwrap_or_default();
    nets.split_whitespace()
        .filter_map(|n| Cidr::parse(n).ok())
        .filter(|net| net.prefix() == if net.addr().is_ipv4() { 32 } else { 128 })
        .map(|net| net.addr())
        .collect()
}
