//! From a next hop to an ordered list of addresses to try, as Postfix's
//! smtp_addr.c: MX records sorted by preference with equal preferences
//! shuffled (several gateways share the load), the domain's own addresses
//! when it has no MX (the implicit MX of RFC 5321 5.1), null MX (RFC 7505)
//! refused, and the list cut where this host appears among the exchangers
//! so that mail never loops back.
//!
//! DNS answers come from hickory-resolver, pointed at `dns_servers` or at
//! `/etc/resolv.conf`; failures are outcomes with Postfix's texts:
//! NXDOMAIN bounces (5.4.4), SERVFAIL and timeouts defer (4.4.3).

use postern_envelope::{EnhancedStatus, Relay};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolverOpts;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::nexthop::Nexthop;
use crate::outcome::Outcome;
use crate::settings::Settings;

/// One address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host name as found (MX exchange, or the next hop itself).
    pub host: String,
    pub ip: IpAddr,
    pub port: u16,
    /// MX preference; 0 for hosts reached without MX.
    pub pref: u16,
}

impl Target {
    /// `host[ip]`, Postfix's namaddr.
    pub fn namaddr(&self) -> String {
        format!("{}[{}]", self.host, self.ip)
    }

    /// The relay= of the log (`host[ip]:port`).
    pub fn relay(&self) -> Relay {
        Relay::Remote {
            host: self.host.clone(),
            ip: self.ip,
            port: self.port,
        }
    }
}

/// The name service.
#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl std::fmt::Debug for Dns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dns")
    }
}

/// How one lookup went.
enum Answer<T> {
    Found(Vec<T>),
    /// NXDOMAIN: the name does not exist.
    NoHost,
    /// The name exists without records of this type.
    NoData,
    /// SERVFAIL, timeout, unreachable server: try again later.
    TryAgain(String),
}

impl Dns {
    /// A resolver using `servers`, or the system configuration when empty
    /// ([`postern_daemon::dns::resolver`]).
    pub fn new(servers: &[SocketAddr]) -> anyhow::Result<Dns> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        let resolver = postern_daemon::dns::resolver(servers, opts)?;
        Ok(Dns { resolver })
    }

    /// The addresses to try for `nexthop`, best first, at most
    /// `mx_address_limit` of them; or the outcome for every recipient.
    pub async fn targets(&self, nexthop: &Nexthop, s: &Settings) -> Result<Vec<Target>, Outcome> {
        let mut targets = if let Some(ip) = nexthop.literal {
            vec![Target {
                host: ip.to_string(),
                ip,
                port: nexthop.port,
                pref: 0,
            }]
        } else if nexthop.mx {
            self.domain_targets(nexthop, s).await?
        } else {
            self.host_targets(&nexthop.name, nexthop.port, 0, s).await?
        };
        if s.mx_address_limit > 0 {
            targets.truncate(s.mx_address_limit);
        }
        Ok(targets)
    }

    /// MX lookup and everything that follows from it.
    async fn domain_targets(
        &self,
        nexthop: &Nexthop,
        s: &Settings,
    ) -> Result<Vec<Target>, Outcome> {
        let name = &nexthop.name;
        let mut mx = match self.mx(name).await {
            Answer::Found(mx) => mx,
            // RFC 5321 5.1: no MX, the domain itself is the implicit MX.
            Answer::NoData => {
                let targets = self.host_targets(name, nexthop.port, 0, s).await?;
                return self.without_self(targets, name, s);
            }
            Answer::NoHost => return Err(not_found(name, "MX", false, "Host not found")),
            Answer::TryAgain(why) => {
                tracing::debug!("MX lookup for {name}: {why}");
                return Err(not_found(name, "MX", true, "Host not found, try again"));
            }
        };
        if mx.len() == 1 && mx[0].1.is_empty() {
            // Postfix uses 5.1.0 here; 5.1.10 is what a receiving server
            // says about a recipient (RFC 7505 4.2).
            return Err(Outcome::bounced(
                EnhancedStatus::of(5, 1, 0),
                format!("Domain {name} does not accept mail (nullMX)"),
            ));
        }
        mx.retain(|(_, host)| !host.is_empty());
        shuffle(&mut mx);
        mx.sort_by_key(|(pref, _)| *pref);

        let mut targets = Vec::new();
        let mut last_failure = None;
        for (pref, host) in &mx {
            match self.host_targets(host, nexthop.port, *pref, s).await {
                Ok(t) => targets.extend(t),
                Err(o) => {
                    // A backup MX we can find is better than none: only
                    // report lookup problems when nothing was found.
                    tracing::debug!("MX host {host} of {name}: {}", o.detail);
                    // One host that may be found later makes it a deferral.
                    if !last_failure.as_ref().is_some_and(Outcome::is_soft) {
                        last_failure = Some(o);
                    }
                }
            }
        }
        if targets.is_empty() {
            return Err(last_failure.unwrap_or_else(|| {
                Outcome::deferred(
                    EnhancedStatus::of(4, 4, 4),
                    format!("no MX host for {name} has a valid address record"),
                )
            }));
        }
        self.without_self(targets, name, s)
    }

    /// Cuts the list at the first preference where this host appears.
    fn without_self(
        &self,
        mut targets: Vec<Target>,
        name: &str,
        s: &Settings,
    ) -> Result<Vec<Target>, Outcome> {
        let best = targets.first().map(|t| t.pref);
        if let Some(me) = targets.iter().find(|t| s.own_addresses.contains(&t.ip)) {
            let my_pref = me.pref;
            targets.retain(|t| t.pref < my_pref);
            if targets.is_empty() {
                return Err(if best == Some(my_pref) {
                    Outcome::bounced(
                        EnhancedStatus::of(5, 4, 6),
                        format!("mail for {name} loops back to myself"),
                    )
                } else {
                    Outcome::deferred(
                        EnhancedStatus::of(4, 4, 4),
                        format!("unable to find primary relay for {name}"),
                    )
                });
            }
        }
        Ok(targets)
    }

    /// A and AAAA records of `host` (in that order, shuffled within each).
    async fn host_targets(
        &self,
        host: &str,
        port: u16,
        pref: u16,
        s: &Settings,
    ) -> Result<Vec<Target>, Outcome> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Target {
                host: host.to_string(),
                ip,
                port,
                pref,
            }]);
        }
        let mut found = Vec::new();
        let mut try_again = false;
        let mut no_host = true;
        let mut failed_type = "A";
        let families = [
            (s.ipv4, RecordType::A, "A"),
            (s.ipv6, RecordType::AAAA, "AAAA"),
        ];
        for (wanted, rtype, tname) in families {
            if !wanted {
                continue;
            }
            match self.addresses(host, rtype).await {
                Answer::Found(ips) => found.extend(ips),
                Answer::NoData => no_host = false,
                Answer::NoHost => {}
                Answer::TryAgain(why) => {
                    tracing::debug!("{tname} lookup for {host}: {why}");
                    try_again = true;
                    failed_type = tname;
                }
            }
        }
        if found.is_empty() {
            return Err(if try_again {
                not_found(host, failed_type, true, "Host not found, try again")
            } else if no_host {
                not_found(host, "A", false, "Host not found")
            } else {
                not_found(host, "AAAA", false, "No address associated with hostname")
            });
        }
        Ok(found
            .into_iter()
            .map(|ip| Target {
                host: host.to_string(),
                ip,
                port,
                pref,
            })
            .collect())
    }

    async fn mx(&self, name: &str) -> Answer<(u16, String)> {
        self.records(name, RecordType::MX, |data| match data {
            RData::MX(mx) => Some((
                mx.preference,
                mx.exchange
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )),
            _ => None,
        })
        .await
    }

    async fn addresses(&self, name: &str, rtype: RecordType) -> Answer<IpAddr> {
        self.records(name, rtype, |data| match data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .await
    }

    /// The `rtype` records of `name` that `pick` reads; none is NoData.
    async fn records<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl FnMut(&RData) -> Option<T>,
    ) -> Answer<T> {
        match self.resolver.lookup(fqdn(name), rtype).await {
            Ok(l) => {
                let found: Vec<T> = l
                    .answers()
                    .iter()
                    .map(|r| &r.data)
                    .filter_map(pick)
                    .collect();
                if found.is_empty() {
                    Answer::NoData
                } else {
                    Answer::Found(found)
                }
            }
            Err(e) => classify(e),
        }
    }
}

fn classify<T>(e: NetError) -> Answer<T> {
    if e.is_nx_domain() {
        Answer::NoHost
    } else if e.is_no_records_found() {
        Answer::NoData
    } else {
        Answer::TryAgain(e.to_string())
    }
}

/// Absolute, so no search domain is tried.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// Postfix's wording for a failed lookup.
fn not_found(name: &str, rtype: &str, soft: bool, why: &str) -> Outcome {
    let text = format!(
        "Host or domain name not found. Name service error for name={name} type={rtype}: {why}"
    );
    if soft {
        Outcome::deferred(EnhancedStatus::of(4, 4, 3), text)
    } else {
        Outcome::bounced(EnhancedStatus::of(5, 4, 4), text)
    }
}

/// Fisher-Yates with the standard library's randomly keyed hasher as the
/// random source: good enough to spread load, no extra dependency.
pub fn shuffle<T>(items: &mut [T]) {
    let seed = RandomState::new();
    for i in (1..items.len()).rev() {
        let mut h = seed.build_hasher();
        h.write_usize(i);
        let j = (h.finish() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_keeps_items_and_varies() {
        let mut seen_first = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut v = [1, 2, 3, 4];
            shuffle(&mut v);
            let mut sorted = v;
            sorted.sort();
            assert_eq!(sorted, [1, 2, 3, 4]);
            seen_first.insert(v[0]);
        }
        assert_eq!(seen_first.len(), 4);
    }
}
