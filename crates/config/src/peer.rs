//! Servers the daemons connect to as clients: Milters (`smtpd_milters`)
//! and policy servers (`check_policy_service`). Both are written as
//! Postfix writes them, an endpoint or a group with settings of its own:
//!
//! ```text
//! inet:127.0.0.1:8891
//! { unix:private/policy, timeout=10s, default_action=DUNNO }
//! ```

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEndpoint {
    /// `inet:host:port` (`inet:[::1]:port` for IPv6; `inet6:` too).
    Inet { host: String, port: u16 },
    /// `unix:/path` (or `local:`); a relative path is taken from `base`
    /// (`queue_directory`), as Postfix's chrooted daemons do.
    Unix(PathBuf),
}

impl PeerEndpoint {
    /// Parses `transport:endpoint`; `what` names the server in errors
    /// (`Milter service`, `policy service`).
    pub fn parse(text: &str, base: &Path, what: &str) -> Result<PeerEndpoint, String> {
        let bad = || format!("{what} needs transport:endpoint instead of \"{text}\"");
        let (transport, rest) = text.split_once(':').ok_or_else(bad)?;
        if transport.is_empty() || rest.is_empty() {
            return Err(bad());
        }
        match transport {
            "inet" | "inet6" => {
                let (host, port) = match rest.strip_prefix('[') {
                    Some(r) => r.split_once("]:").ok_or_else(bad)?,
                    None => rest.rsplit_once(':').ok_or_else(bad)?,
                };
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("bad port \"{port}\" in {what} {text}"))?;
                if host.is_empty() || (rest.starts_with('[') && host.parse::<IpAddr>().is_err()) {
                    return Err(format!("bad host in {what} {text}"));
                }
                Ok(PeerEndpoint::Inet {
                    host: host.to_string(),
                    port,
                })
            }
            "unix" | "local" => Ok(PeerEndpoint::Unix(base.join(rest))),
            other => Err(format!("invalid transport name: {other} in {what}: {text}")),
        }
    }
}

/// One list entry, `endpoint` or `{ endpoint, name=value, ... }`: the
/// endpoint as written and the settings in order, names and values
/// trimmed. `what` names the server in errors.
pub fn parse_group(entry: &str, what: &str) -> Result<(String, Vec<(String, String)>), String> {
    let Some(inner) = entry.strip_prefix('{') else {
        return Ok((entry.to_string(), Vec::new()));
    };
    let inner = inner
        .strip_suffix('}')
        .ok_or_else(|| format!("{what} syntax error: missing '}}' in \"{entry}\""))?;
    let mut words = crate::value::split_list(inner).into_iter();
    let endpoint = words
        .next()
        .ok_or_else(|| format!("empty {what} definition: \"{entry}\""))?;
    let settings = words
        .map(|word| {
            // `{ name = value with spaces }`, as Postfix allows.
            let setting = match word.strip_prefix('{') {
                Some(w) => w.strip_suffix('}').unwrap_or(w).trim(),
                None => word.as_str(),
            };
            setting
                .split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("missing '=' after attribute name: \"{setting}\""))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((endpoint, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let q = Path::new("/var/spool/postern");
        let parse = |t| PeerEndpoint::parse(t, q, "Milter service");
        let inet = |host: &str, port| PeerEndpoint::Inet {
            host: host.into(),
            port,
        };
        assert_eq!(parse("inet:127.0.0.1:8891"), Ok(inet("127.0.0.1", 8891)));
        assert_eq!(parse("inet:[::1]:8891"), Ok(inet("::1", 8891)));
        assert_eq!(parse("inet:localhost:10025"), Ok(inet("localhost", 10025)));
        assert_eq!(
            parse("unix:/run/m.sock"),
            Ok(PeerEndpoint::Unix("/run/m.sock".into()))
        );
        assert_eq!(
            parse("unix:private/m"),
            Ok(PeerEndpoint::Unix("/var/spool/postern/private/m".into()))
        );
        for bad in [
            "inet:127.0.0.1",
            "inet:127.0.0.1:0",
            "inet:127.0.0.1:x",
            "inet::25",
            "inet:[nothost]:25",
            "tcp:1.2.3.4:5",
            "unix:",
            "8891",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups() {
        let owned = |e: &str, kv: &[(&str, &str)]| {
            Ok((
                e.to_string(),
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ))
        };
        assert_eq!(parse_group("inet:h:1", "x"), owned("inet:h:1", &[]));
        assert_eq!(
            parse_group("{ unix:/p, timeout=10s , default_action=DUNNO }", "x"),
            owned(
                "unix:/p",
                &[("timeout", "10s"), ("default_action", "DUNNO")]
            )
        );
        assert_eq!(
            parse_group("{ unix:/p, { default_action = 450 4.7.1 Try later } }", "x"),
            owned("unix:/p", &[("default_action", "450 4.7.1 Try later")])
        );
        assert!(parse_group("{ unix:/p, timeout }", "x").is_err());
        assert!(parse_group("{ unix:/p", "x").is_err());
        assert!(parse_group("{ }", "x").is_err());
    }
}
