//! The forms of a next-hop destination (postconf(5) `relayhost`,
//! transport(5)): `domain` (MX lookup), `[host]` / `[host]:port` (address
//! records only), `host:port` (MX lookup unless host is an address).

use crate::address::strip_ipv6_tag;

/// What a next-hop string says about where to connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: Option<u16>,
    pub mx_lookup: bool,
}

/// Parses a next hop. Text that is not one of the SMTP forms (an LMTP
/// `unix:/path`, say) is kept whole as the host with no port, so that the
/// transport that owns it can interpret it.
pub(crate) fn parse(nexthop: &str) -> Target {
    let s = nexthop.trim();
    if let Some(rest) = s.strip_prefix('[')
        && let Some(close) = rest.find(']')
    {
        let host = strip_ipv6_tag(&rest[..close]).to_string();
        let after = &rest[close + 1..];
        let port = after.strip_prefix(':').and_then(parse_port);
        if after.is_empty() || port.is_some() {
            return Target {
                host,
                port,
                mx_lookup: false,
            };
        }
    }
    // One colon: host:port. More than one: a bare IPv6 address.
    if let Some((host, port)) = s.split_once(':')
        && !port.contains(':')
        && !host.is_empty()
        && let Some(port) = parse_port(port)
    {
        return Target {
            mx_lookup: host.parse::<std::net::IpAddr>().is_err(),
            host: host.to_string(),
            port: Some(port),
        };
    }
    Target {
        host: s.to_string(),
        port: None,
        // There is no MX record to look up for an address.
        mx_lookup: s.parse::<std::net::IpAddr>().is_err() && !s.contains(':'),
    }
}

/// A port number or one of the service names a mail relay is usually
/// written with.
fn parse_port(s: &str) -> Option<u16> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().filter(|&p| p != 0);
    }
    match s.to_ascii_lowercase().as_str() {
        "smtp" => Some(25),
        "submission" => Some(587),
        "smtps" | "submissions" => Some(465),
        "lmtp" => Some(24),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(host: &str, port: Option<u16>, mx_lookup: bool) -> Target {
        Target {
            host: host.into(),
            port,
            mx_lookup,
        }
    }

    #[test]
    fn nexthop_forms() {
        for (input, want) in [
            ("example.com", t("example.com", None, true)),
            ("[mail.example.com]", t("mail.example.com", None, false)),
            ("[192.168.1.100]", t("192.168.1.100", None, false)),
            ("[192.168.0.103]:25", t("192.168.0.103", Some(25), false)),
            (
                "[smart.example.net]:587",
                t("smart.example.net", Some(587), false),
            ),
            (
                "[smart.example.net]:submission",
                t("smart.example.net", Some(587), false),
            ),
            ("example.com:2525", t("example.com", Some(2525), true)),
            ("192.0.2.7:2525", t("192.0.2.7", Some(2525), false)),
            ("[2001:db8::1]", t("2001:db8::1", None, false)),
            (
                "[IPv6:2001:db8::1]:2525",
                t("2001:db8::1", Some(2525), false),
            ),
            ("[ipv6:::1]", t("::1", None, false)),
            ("2001:db8::25", t("2001:db8::25", None, false)),
            ("unix:/run/lmtp", t("unix:/run/lmtp", None, false)),
            ("[host]:bogus", t("[host]:bogus", None, false)),
        ] {
            assert_eq!(parse(input), want, "input {input:?}");
        }
    }
}
