//! The after-queue content filter a message is sent through: Postfix's
//! `content_filter` parameter and the `FILTER transport:destination`
//! action of access(5) and header_checks(5).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `transport:destination`: every recipient of the message goes to this
/// transport and next hop instead of its own route (FILTER_README). An
/// empty destination means the recipient's domain, as an empty next hop
/// in transport(5) does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentFilter {
    /// A master.toml service (`smtp`, `scan`, ...).
    pub transport: String,
    /// `[host]:port`, `host`, a domain, or empty.
    pub nexthop: String,
}

/// Why a `transport:destination` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{0}\" is not transport:destination")]
pub struct ParseFilterError(pub String);

impl FromStr for ContentFilter {
    type Err = ParseFilterError;

    /// Postfix requires the colon (`smtp:` is the smtp transport with the
    /// recipient's domain), and a transport name without white space.
    fn from_str(s: &str) -> Result<ContentFilter, ParseFilterError> {
        let value = s.trim();
        let bad = || ParseFilterError(value.to_string());
        let (transport, nexthop) = value.split_once(':').ok_or_else(bad)?;
        if transport.is_empty() || transport.contains(char::is_whitespace) {
            return Err(bad());
        }
        if nexthop.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(ContentFilter {
            transport: transport.to_string(),
            nexthop: nexthop.to_string(),
        })
    }
}

impl fmt::Display for ContentFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.nexthop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_as_postfix_writes_them() {
        let f: ContentFilter = "smtp:[127.0.0.1]:10025".parse().unwrap();
        assert_eq!(f.transport, "smtp");
        assert_eq!(f.nexthop, "[127.0.0.1]:10025");
        assert_eq!(f.to_string(), "smtp:[127.0.0.1]:10025");
        let f: ContentFilter = " scan: ".parse().unwrap();
        assert_eq!((f.transport.as_str(), f.nexthop.as_str()), ("scan", ""));
        for bad in ["", "smtp", ":[127.0.0.1]", "sm tp:x", "smtp:a b"] {
            assert!(bad.parse::<ContentFilter>().is_err(), "{bad:?}");
        }
    }
}
