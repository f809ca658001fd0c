//! The next-hop destination of a request, as Postfix's smtp(8) reads it:
//! `domain` and `domain:port` look up MX records, `[host]` and
//! `[host]:port` skip them and go to the host's own addresses (or to the
//! literal address, `[192.0.2.1]`, `[ipv6:2001:db8::1]`).

use std::net::IpAddr;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexthop {
    /// A domain or host name (without brackets), or an address literal's text.
    pub name: String,
    pub port: u16,
    /// True for `domain`, `domain:port`: MX lookup first.
    pub mx: bool,
    /// The literal address of `[192.0.2.1]`, which needs no lookup at all.
    pub literal: Option<IpAddr>,
}

/// The connection cache's key: the next hop as qmgr would write it.
impl std::fmt::Display for Nexthop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mx {
            true => write!(f, "{}:{}", self.name, self.port),
            false => write!(f, "[{}]:{}", self.name, self.port),
        }
    }
}

/// The SMTP port, Postfix's `smtp` service.
pub const SMTP_PORT: u16 = 25;

/// Parses a next hop; `fallback_domain` (the recipient's domain) stands in
/// for an empty one, as it does in Postfix.
pub fn parse(text: &str, fallback_domain: &str) -> Result<Nexthop, String> {
    let text = text.trim();
    let text = if text.is_empty() {
        fallback_domain
    } else {
        text
    };
    if text.is_empty() {
        return Err("no next-hop destination".into());
    }
    let (host, port, bracketed) = if let Some(rest) = text.strip_prefix('[') {
        let close = rest
            .find(']')
            .ok_or_else(|| format!("malformed next-hop destination \"{text}\": missing \"]\""))?;
        let host = &rest[..close];
        let port = match &rest[close + 1..] {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("malformed next-hop destination \"{text}\""))?,
            ),
        };
        (host, port, true)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p), false),
            None => (text, None, false),
        }
    };
    let port = match port {
        None => SMTP_PORT,
        Some(p) => parse_port(p).ok_or_else(|| {
            format!("malformed next-hop destination \"{text}\": bad port \"{p}\"")
        })?,
    };
    let host = host.trim_end_matches('.');
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c == '[' || c == ']')
    {
        return Err(format!("malformed next-hop destination \"{text}\""));
    }
    let literal = if bracketed {
        let addr = host
            .strip_prefix("ipv6:")
            .or_else(|| host.strip_prefix("IPv6:"))
            .unwrap_or(host);
        addr.parse::<IpAddr>().ok()
    } else {
        None
    };
    Ok(Nexthop {
        name: host.to_ascii_lowercase(),
        port,
        mx: !bracketed,
        literal,
    })
}

/// A port number or the one service name everyone writes.
fn parse_port(p: &str) -> Option<u16> {
    match p {
        "smtp" => Some(SMTP_PORT),
        "submission" => Some(587),
        _ => p.parse().ok().filter(|&n| n > 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Nexthop {
        parse(s, "").unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn domain_forms_use_mx() {
        let n = ok("Example.COM");
        assert_eq!((n.name.as_str(), n.port, n.mx), ("example.com", 25, true));
        let n = ok("example.com:2525");
        assert_eq!((n.name.as_str(), n.port, n.mx), ("example.com", 2525, true));
        assert_eq!(parse("", "fallback.test").unwrap().name, "fallback.test");
    }

    #[test]
    fn bracketed_forms_skip_mx() {
        let n = ok("[mail.example.com]");
        assert_eq!(
            (n.name.as_str(), n.port, n.mx, n.literal),
            ("mail.example.com", 25, false, None)
        );
        let n = ok("[127.0.0.2]:2525");
        assert_eq!(n.port, 2525);
        assert_eq!(n.literal, Some("127.0.0.2".parse().unwrap()));
        let n = ok("[ipv6:::1]:smtp");
        assert_eq!((n.port, n.literal), (25, Some("::1".parse().unwrap())));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", "[host", "[host]x", "host:0", "host:abc", "[]:25", "a b"] {
            assert!(parse(bad, "").is_err(), "{bad:?}");
        }
    }
}
