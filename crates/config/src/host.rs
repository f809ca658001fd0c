//! Facts about this machine that Postfix derives defaults from: the host
//! name (for `myhostname`, `mydomain`) and the interface addresses (for
//! `mynetworks` under each `mynetworks_style`).

use std::net::IpAddr;

use nix::sys::socket::SockaddrStorage;

use crate::table::Cidr;

/// Gathered once per `Config` load; `Params` share it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    /// gethostname() as the kernel returns it.
    pub hostname: String,
    /// Each interface address with its netmask prefix length.
    pub interfaces: Vec<(IpAddr, u8)>,
}

impl HostInfo {
    pub fn detect() -> HostInfo {
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        HostInfo {
            hostname,
            interfaces: interfaces(),
        }
    }

    /// Postfix: the FQDN from gethostname(), or the short name with
    /// `.$mydomain` appended (`.localdomain` when mydomain is not set).
    pub fn myhostname(&self, mydomain_set: Option<&str>) -> String {
        if self.hostname.contains('.') {
            return self.hostname.clone();
        }
        let domain = mydomain_set
            .filter(|d| !d.is_empty())
            .unwrap_or("localdomain");
        format!("{}.{}", self.hostname, domain)
    }

    /// The `mynetworks` default for a `mynetworks_style`, written the way
    /// Postfix's `postconf -d` shows it.
    pub fn mynetworks(&self, style: &str) -> String {
        // Postfix always trusts loopback, whatever the style.
        let mut nets: Vec<Cidr> = vec![
            Cidr::new("127.0.0.0".parse().unwrap(), 8),
            Cidr::new("::1".parse().unwrap(), 128),
        ];
        for &(ip, prefix) in &self.interfaces {
            let net = match style.trim().to_ascii_lowercase().as_str() {
                "subnet" => Cidr::new(ip, prefix),
                "class" => match ip {
                    IpAddr::V4(v4) => {
                        let first = v4.octets()[0];
                        let len = match first {
                            0..=127 => 8,
                            128..=191 => 16,
                            192..=223 => 24,
                            // Multicast/reserved: not a network to trust.
                            _ => continue,
                        };
                        Cidr::new(ip, len)
                    }
                    // Classes do not exist in IPv6; Postfix uses the subnet.
                    IpAddr::V6(_) => Cidr::new(ip, prefix),
                },
                _ => Cidr::new(ip, if ip.is_ipv4() { 32 } else { 128 }),
            };
            if !nets.iter().any(|n| n.contains_net(&net)) {
                nets.push(net);
            }
        }
        nets.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// mydomain's default: myhostname minus its first label, or "localdomain".
pub fn mydomain_from(myhostname: &str) -> String {
    match myhostname.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => rest.to_string(),
        _ => "localdomain".to_string(),
    }
}

fn ip_of(addr: &SockaddrStorage) -> Option<IpAddr> {
    match (addr.as_sockaddr_in(), addr.as_sockaddr_in6()) {
        (Some(a), _) => Some(IpAddr::V4(a.ip())),
        (_, Some(a)) => Some(IpAddr::V6(a.ip())),
        _ => None,
    }
}

fn interfaces() -> Vec<(IpAddr, u8)> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in addrs {
        let (Some(addr), mask) = (ifa.address, ifa.netmask) else {
            continue;
        };
        let Some(ip) = ip_of(&addr) else {
            continue;
        };
        // Without a mask of the same family the address stands alone.
        let prefix = match (ip, mask.as_ref().and_then(ip_of)) {
            (IpAddr::V4(_), Some(IpAddr::V4(m))) => m.to_bits().count_ones() as u8,
            (IpAddr::V6(_), Some(IpAddr::V6(m))) => m.to_bits().count_ones() as u8,
            (IpAddr::V4(_), _) => 32,
            (IpAddr::V6(_), _) => 128,
        };
        out.push((ip, prefix));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> HostInfo {
        HostInfo {
            hostname: name.to_string(),
            interfaces: vec![
                ("127.0.0.1".parse().unwrap(), 8),
                ("192.168.1.7".parse().unwrap(), 24),
                ("10.2.3.4".parse().unwrap(), 16),
                ("::1".parse().unwrap(), 128),
                ("2001:db8::5".parse().unwrap(), 64),
            ],
        }
    }

    #[test]
    fn hostname_and_domain() {
        assert_eq!(host("mx1.example.com").myhostname(None), "mx1.example.com");
        assert_eq!(host("box").myhostname(None), "box.localdomain");
        assert_eq!(host("box").myhostname(Some("ex.org")), "box.ex.org");
        assert_eq!(mydomain_from("mx1.example.com"), "example.com");
        assert_eq!(mydomain_from("box"), "localdomain");
    }

    #[test]
    fn mynetworks_styles() {
        let h = host("box");
        assert_eq!(
            h.mynetworks("host"),
            "127.0.0.0/8 [::1]/128 192.168.1.7/32 10.2.3.4/32 [2001:db8::5]/128"
        );
        assert_eq!(
            h.mynetworks("subnet"),
            "127.0.0.0/8 [::1]/128 192.168.1.0/24 10.2.0.0/16 [2001:db8::]/64"
        );
        assert_eq!(
            h.mynetworks("class"),
            "127.0.0.0/8 [::1]/128 192.168.1.0/24 10.0.0.0/8 [2001:db8::]/64"
        );
    }

    #[test]
    fn detect_works_here() {
        let h = HostInfo::detect();
        assert!(!h.hostname.is_empty());
        assert!(h.myhostname(None).contains('.'));
    }
}
