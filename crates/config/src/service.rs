//! `[[service]]` entries: master.cf lines as TOML tables, and where each
//! one listens.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::ConfigError;
use crate::params::Params;

/// master.cf's service type column (only the two Postern uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceType {
    Inet,
    Unix,
}

/// One `[[service]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Service {
    /// Unique; also the log name suffix and, for unix services, the default
    /// socket name.
    pub name: String,
    pub kind: ServiceType,
    /// Inet: `host:port`, `[v6]:port`, `*:port` or a bare port. Unix: a
    /// socket name (`qmgr`, `public/showq`) or an absolute path, or a list
    /// of them (a TOML array, or names separated by commas or spaces) for
    /// a daemon that speaks another protocol on each (qmgr: enqueueing,
    /// then administration).
    pub listen: String,
    /// Program name in `$daemon_directory` (may carry arguments).
    pub command: String,
    /// Maximum processes; 0 means no limit, as in master(5).
    pub process_limit: u32,
    /// Runs with root privileges (master.cf `unpriv` = n).
    pub privileged: bool,
    /// Periodic wake-up request, as master.cf's wakeup column.
    pub wakeup: Option<Duration>,
    /// Per-service parameter values, like master.cf `-o name=value`.
    pub options: BTreeMap<String, String>,
    /// Line of the entry in the config file.
    pub line: usize,
}

/// Where a service listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Inet(Vec<SocketAddr>),
    Unix(PathBuf),
}

/// A checked `listen` value of an inet service; the host is resolved only
/// when the endpoint is asked for.
pub(crate) struct InetListen<'a> {
    /// None = every address in inet_interfaces.
    pub host: Option<&'a str>,
    pub port: u16,
}

/// Parses `host:port`, `[v6]:port`, `*:port`, `port`, or a well-known
/// service name instead of the port.
pub(crate) fn parse_inet_listen(listen: &str) -> Result<InetListen<'_>, String> {
    let listen = listen.trim();
    let (host, port) = if let Some(rest) = listen.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("expected [address]:port, got \"{listen}\""))?;
        (Some(h), p)
    } else {
        match listen.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => {
                return Err(format!(
                    "IPv6 addresses need brackets: \"[{h}]:port\", got \"{listen}\""
                ));
            }
            Some((h, p)) => (Some(h), p),
            None => (None, listen),
        }
    };
    let host = host.filter(|h| !h.is_empty() && *h != "*");
    let port = match port {
        "smtp" => 25,
        "submission" => 587,
        "smtps" | "submissions" => 465,
        p => p
            .parse::<u16>()
            .map_err(|_| format!("bad port \"{p}\" in \"{listen}\""))?,
    };
    Ok(InetListen { host, port })
}

impl Service {
    /// Where the service listens, in the order of `listen`: one inet
    /// endpoint, or one unix endpoint per socket name (see
    /// [`Service::endpoint`]). The master passes the listeners to the
    /// service's processes in this order.
    pub fn endpoints(&self, params: &Params) -> Result<Vec<Endpoint>, ConfigError> {
        match self.kind {
            ServiceType::Unix => {
                let paths: Vec<Endpoint> = self
                    .listen
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|l| !l.is_empty())
                    .map(|l| unix_endpoint(l, params))
                    .collect();
                if paths.is_empty() {
                    return Err(ConfigError::Endpoint {
                        service: self.name.clone(),
                        listen: self.listen.clone(),
                        reason: "no socket name".into(),
                    });
                }
                Ok(paths)
            }
            ServiceType::Inet => self.endpoint(params).map(|e| vec![e]),
        }
    }

    /// Inet: the socket addresses to bind (a bare port means every address
    /// in `inet_interfaces`, by default `0.0.0.0` and `[::]`, filtered by
    /// `inet_protocols`). Unix: the socket path under `queue_directory`
    /// (`private/NAME` unless `listen` starts with `public/` or
    /// `private/`; absolute paths are used as they are), of the first
    /// socket when `listen` names several.
    pub fn endpoint(&self, params: &Params) -> Result<Endpoint, ConfigError> {
        let err = |reason: String| ConfigError::Endpoint {
            service: self.name.clone(),
            listen: self.listen.clone(),
            reason,
        };
        match self.kind {
            ServiceType::Unix => Ok(self.endpoints(params)?.swap_remove(0)),
            ServiceType::Inet => {
                let spec = parse_inet_listen(&self.listen).map_err(err)?;
                let (v4, v6) = protocols(params).map_err(err)?;
                let mut addrs = Vec::new();
                match spec.host {
                    Some(h) => addrs.extend(resolve(h, spec.port).map_err(err)?),
                    None => {
                        for iface in params.list("inet_interfaces") {
                            match iface.to_ascii_lowercase().as_str() {
                                "all" => {
                                    addrs.push((Ipv4Addr::UNSPECIFIED, spec.port).into());
                                    addrs.push((Ipv6Addr::UNSPECIFIED, spec.port).into());
                                }
                                "loopback-only" => {
                                    addrs.push((Ipv4Addr::LOCALHOST, spec.port).into());
                                    addrs.push((Ipv6Addr::LOCALHOST, spec.port).into());
                                }
                                _ => addrs.extend(resolve(&iface, spec.port).map_err(err)?),
                            }
                        }
                    }
                }
                addrs.retain(|a| if a.is_ipv4() { v4 } else { v6 });
                let mut seen = Vec::new();
                addrs.retain(|a| {
                    let new = !seen.contains(a);
                    seen.push(*a);
                    new
                });
                if addrs.is_empty() {
                    return Err(err(
                        "no addresses left after inet_interfaces and inet_protocols".into(),
                    ));
                }
                Ok(Endpoint::Inet(addrs))
            }
        }
    }
}

/// The path of one unix socket name.
fn unix_endpoint(listen: &str, params: &Params) -> Endpoint {
    if listen.starts_with('/') {
        return Endpoint::Unix(PathBuf::from(listen));
    }
    let q = params.path("queue_directory");
    if listen.starts_with("public/") || listen.starts_with("private/") {
        Endpoint::Unix(q.join(listen))
    } else {
        Endpoint::Unix(q.join("private").join(listen))
    }
}

/// (IPv4 enabled, IPv6 enabled) from inet_protocols.
fn protocols(params: &Params) -> Result<(bool, bool), String> {
    let (mut v4, mut v6) = (false, false);
    for p in params.list("inet_protocols") {
        match p.to_ascii_lowercase().as_str() {
            "all" => (v4, v6) = (true, true),
            "ipv4" => v4 = true,
            "ipv6" => v6 = true,
            other => return Err(format!("bad inet_protocols value \"{other}\"")),
        }
    }
    Ok((v4, v6))
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    (h, port)
        .to_socket_addrs()
        .map(|a| a.collect())
        .map_err(|e| format!("cannot resolve \"{h}\": {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostInfo;

    fn svc(kind: ServiceType, listen: &str) -> Service {
        Service {
            name: "t".into(),
            kind,
            listen: listen.into(),
            command: "t".into(),
            process_limit: 1,
            privileged: false,
            wakeup: None,
            options: BTreeMap::new(),
            line: 1,
        }
    }

    fn params() -> Params {
        Params::for_test(HostInfo {
            hostname: "h.example".into(),
            interfaces: vec![],
        })
    }

    fn inet(listen: &str, p: &Params) -> Vec<SocketAddr> {
        match svc(ServiceType::Inet, listen).endpoint(p).unwrap() {
            Endpoint::Inet(a) => a,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn inet_endpoints() {
        let mut p = params();
        assert_eq!(
            inet("127.0.0.1:2525", &p),
            vec!["127.0.0.1:2525".parse().unwrap()]
        );
        assert_eq!(inet("[::1]:25", &p), vec!["[::1]:25".parse().unwrap()]);
        assert_eq!(
            inet("2525", &p),
            vec![
                "0.0.0.0:2525".parse().unwrap(),
                "[::]:2525".parse().unwrap()
            ]
        );
        assert_eq!(inet("*:smtp", &p).len(), 2);
        assert_eq!(inet("*:smtp", &p)[0].port(), 25);
        p.set("inet_protocols", "ipv4").unwrap();
        assert_eq!(inet("2525", &p), vec!["0.0.0.0:2525".parse().unwrap()]);
        p.set("inet_interfaces", "loopback-only").unwrap();
        assert_eq!(
            inet("submission", &p),
            vec!["127.0.0.1:587".parse().unwrap()]
        );
        p.set("inet_interfaces", "192.0.2.1, 192.0.2.2").unwrap();
        assert_eq!(inet("25", &p).len(), 2);
        let bad = svc(ServiceType::Inet, "1.2.3.4:99999")
            .endpoint(&p)
            .unwrap_err();
        assert!(bad.to_string().contains("bad port"), "{bad}");
    }

    #[test]
    fn unix_endpoints() {
        let mut p = params();
        p.set("queue_directory", "/q").unwrap();
        let path = |l: &str| svc(ServiceType::Unix, l).endpoint(&p).unwrap();
        assert_eq!(path("qmgr"), Endpoint::Unix("/q/private/qmgr".into()));
        assert_eq!(
            path("public/showq"),
            Endpoint::Unix("/q/public/showq".into())
        );
        assert_eq!(path("private/x"), Endpoint::Unix("/q/private/x".into()));
        assert_eq!(path("/run/x.sock"), Endpoint::Unix("/run/x.sock".into()));
    }

    #[test]
    fn a_unix_service_may_listen_on_several_sockets() {
        let mut p = params();
        p.set("queue_directory", "/q").unwrap();
        let s = svc(ServiceType::Unix, "qmgr, qmgr-admin");
        assert_eq!(
            s.endpoints(&p).unwrap(),
            vec![
                Endpoint::Unix("/q/private/qmgr".into()),
                Endpoint::Unix("/q/private/qmgr-admin".into())
            ]
        );
        assert_eq!(
            s.endpoint(&p).unwrap(),
            Endpoint::Unix("/q/private/qmgr".into())
        );
        assert!(svc(ServiceType::Unix, ", ").endpoints(&p).is_err());
    }

    #[test]
    fn listen_syntax() {
        assert!(parse_inet_listen("::1:25").is_err());
        assert!(parse_inet_listen("[::1]25").is_err());
        assert!(parse_inet_listen("host:").is_err());
        let l = parse_inet_listen("mail.example.com:2525").unwrap();
        assert_eq!((l.host, l.port), (Some("mail.example.com"), 2525));
    }
}
