//! Where one recipient's delivery went, and the remote server's words.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The log's `relay=`: `none` (no agent or no server was reached),
/// `local`, or the remote MTA as `host[ip]:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Relay {
    #[default]
    None,
    Local,
    Remote {
        host: String,
        ip: IpAddr,
        port: u16,
    },
}

impl Relay {
    /// The remote MTA's host name, for a DSN's `Remote-MTA: dns;` field.
    pub fn remote_host(&self) -> Option<&str> {
        match self {
            Relay::Remote { host, .. } => Some(host),
            Relay::None | Relay::Local => None,
        }
    }
}

impl fmt::Display for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Relay::None => f.write_str("none"),
            Relay::Local => f.write_str("local"),
            Relay::Remote { host, ip, port } => write!(f, "{host}[{ip}]:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_print_as_postfix_logs_them() {
        assert_eq!(Relay::None.to_string(), "none");
        assert_eq!(Relay::Local.to_string(), "local");
        let v4 = Relay::Remote {
            host: "mx.example.com".into(),
            ip: "192.0.2.1".parse().unwrap(),
            port: 25,
        };
        assert_eq!(v4.to_string(), "mx.example.com[192.0.2.1]:25");
        assert_eq!(v4.remote_host(), Some("mx.example.com"));
        assert_eq!(Relay::Local.remote_host(), None);
        let v6 = Relay::Remote {
            host: "mx6.example.com".into(),
            ip: "2001:db8::1".parse().unwrap(),
            port: 2525,
        };
        assert_eq!(v6.to_string(), "mx6.example.com[2001:db8::1]:2525");
    }
}
