//! Network prefixes: the [`Cidr`] type, `cidr:` table files
//! (cidr_table(5)) and [`NetworkList`] for `mynetworks`-style lists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::{Table, TableError, read_logical_lines};

/// An address with a prefix length; host bits are always zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// A network from any address inside it (host bits are cleared).
    pub fn new(addr: IpAddr, prefix: u8) -> Cidr {
        let prefix = prefix.min(max_prefix(addr));
        Cidr {
            addr: mask(addr, prefix),
            prefix,
        }
    }

    /// Parses `a.b.c.d/n`, `[v6]/n`, `v6/n`, or a bare address (a host
    /// network). Like Postfix, refuses non-zero host bits, since they
    /// usually mean a typo.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.rsplit_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("bad network address \"{s}\""))?;
        let prefix = match prefix {
            None => max_prefix(ip),
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max_prefix(ip) => n,
                _ => return Err(format!("bad network prefix in \"{s}\"")),
            },
        };
        let net = Cidr::new(ip, prefix);
        if net.addr != ip {
            return Err(format!(
                "non-null host address bits in \"{s}\", perhaps you should use \"{net}\" instead"
            ));
        }
        Ok(net)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True when `ip` is inside; an IPv4-mapped IPv6 address matches IPv4
    /// networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }

    /// True when all of `other` is inside `self`.
    pub fn contains_net(&self, other: &Cidr) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }
}

impl fmt::Display for Cidr {
    /// Postfix's notation: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}/{}", self.prefix),
            IpAddr::V6(a) => write!(f, "[{a}]/{}", self.prefix),
        }
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

/// A parsed `cidr:` file: first match in file order wins.
#[derive(Debug)]
pub(super) struct CidrTable {
    entries: Vec<(Cidr, String)>,
}

impl CidrTable {
    pub(super) fn parse(path: &Path, text: &str) -> Result<CidrTable, TableError> {
        let mut entries = Vec::new();
        for (line, l) in read_logical_lines(text) {
            let syntax = |reason: String| TableError::Syntax {
                path: path.to_path_buf(),
                line,
                reason,
            };
            let (pat, result) = match l.split_once(char::is_whitespace) {
                Some((p, r)) if !r.trim().is_empty() => (p, r.trim()),
                _ => {
                    return Err(syntax(format!(
                        "expected \"network/prefix result\", got \"{l}\""
                    )));
                }
            };
            let net = Cidr::parse(pat).map_err(syntax)?;
            entries.push((net, result.to_string()));
        }
        Ok(CidrTable { entries })
    }

    pub(super) fn lookup(&self, key: &str) -> Option<String> {
        let key = key.trim();
        let key = key
            .strip_prefix('[')
            .and_then(|k| k.strip_suffix(']'))
            .unwrap_or(key);
        let ip: IpAddr = key.parse().ok()?;
        self.entries
            .iter()
            .find(|(net, _)| net.contains(ip))
            .map(|(_, r)| r.clone())
    }
}

/// A `mynetworks`-style match list: networks (`127.0.0.0/8`, `[::1]/128`,
/// bare addresses), tables (`cidr:/path`, any hit matches), `/file` names
/// whose contents are more patterns, and `!pattern` negation. The first
/// matching entry decides, as in Postfix's match lists.
#[derive(Clone, Debug, Default)]
pub struct NetworkList {
    entries: Vec<NetEntry>,
}

#[derive(Clone, Debug)]
enum NetEntry {
    Net { net: Cidr, negate: bool },
    Table { table: Table, negate: bool },
}

impl NetworkList {
    /// Parses list elements (each may itself hold several, separated by
    /// commas or whitespace).
    pub fn parse(list: &[String], base_dir: &Path) -> Result<NetworkList, TableError> {
        let mut entries = Vec::new();
        for item in list {
            for tok in crate::value::split_list(item) {
                parse_entry(&tok, base_dir, &mut entries, 0)?;
            }
        }
        Ok(NetworkList { entries })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        for e in &self.entries {
            match e {
                NetEntry::Net { net, negate } => {
                    if net.contains(ip) {
                        return !negate;
                    }
                }
                NetEntry::Table { table, negate } => {
                    let key = ip.to_canonical().to_string();
                    match table.lookup(&key) {
                        Ok(Some(_)) => return !negate,
                        Ok(None) => {}
                        // Fail closed: an unreadable table trusts no one.
                        Err(e) => {
                            tracing::warn!("{e}");
                            return false;
                        }
                    }
                }
            }
        }
        false
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_entry(
    tok: &str,
    base_dir: &Path,
    entries: &mut Vec<NetEntry>,
    depth: usize,
) -> Result<(), TableError> {
    let (negate, pat) = match tok.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, tok),
    };
    let bad = |reason: String| TableError::BadSpec {
        spec: tok.to_string(),
        reason,
    };
    if let Ok(net) = Cidr::parse(pat) {
        entries.push(NetEntry::Net { net, negate });
        return Ok(());
    }
    if pat.starts_with('/') && !negate {
        // Postfix: a "/file/name" pattern is replaced by the file's contents.
        if depth > 8 {
            return Err(bad("too many nested pattern files".into()));
        }
        let text = std::fs::read_to_string(pat).map_err(|source| TableError::Io {
            path: pat.into(),
            source,
        })?;
        for w in super::words::parse(&text) {
            parse_entry(&w.text, base_dir, entries, depth + 1)?;
        }
        return Ok(());
    }
    if let Some((kind, _)) = pat.split_once(':')
        && super::known_type(kind)
    {
        let table = Table::open(pat, base_dir)?;
        entries.push(NetEntry::Table { table, negate });
        return Ok(());
    }
    match Cidr::parse(pat) {
        Err(e) if pat.contains('/') || pat.parse::<IpAddr>().is_ok() => Err(bad(e)),
        _ => Err(bad(
            "not a network address; host name patterns are not supported here".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_contains() {
        let n = Cidr::parse("192.168.1.0/24").unwrap();
        assert!(n.contains(ip("192.168.1.200")));
        assert!(!n.contains(ip("192.168.2.1")));
        assert!(n.contains(ip("::ffff:192.168.1.5")));
        let h = Cidr::parse("10.0.0.1").unwrap();
        assert_eq!(h.prefix(), 32);
        let v6 = Cidr::parse("[2001:db8::]/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert_eq!(v6.to_string(), "[2001:db8::]/32");
        assert_eq!(Cidr::parse("::1/128").unwrap().to_string(), "[::1]/128");
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(
            Cidr::parse("192.168.1.1/24")
                .unwrap_err()
                .contains("192.168.1.0/24")
        );
        assert!(Cidr::parse("1.2.3.4/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    #[test]
    fn network_list() {
        let list = NetworkList::parse(
            &[
                "!127.0.0.2".to_string(),
                "127.0.0.0/8, [::1]/128 192.168.1.0/24".to_string(),
                "10.0.0.1".to_string(),
            ],
            Path::new("/"),
        )
        .unwrap();
        assert!(list.contains(ip("127.0.0.1")));
        assert!(!list.contains(ip("127.0.0.2")));
        assert!(list.contains(ip("::1")));
        assert!(list.contains(ip("::ffff:192.168.1.9")));
        assert!(list.contains(ip("10.0.0.1")));
        assert!(!list.contains(ip("10.0.0.2")));
        assert!(!list.contains(ip("2001:db8::1")));
    }

    #[test]
    fn network_list_with_table_and_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nets.cidr"), "172.16.0.0/12 OK\n").unwrap();
        let file = dir.path().join("more");
        std::fs::write(&file, "# trusted\n203.0.113.0/24\n").unwrap();
        let list = NetworkList::parse(
            &[
                "cidr:nets.cidr".to_string(),
                file.to_string_lossy().into_owned(),
            ],
            dir.path(),
        )
        .unwrap();
        assert!(list.contains(ip("172.20.1.1")));
        assert!(list.contains(ip("203.0.113.7")));
        assert!(!list.contains(ip("192.0.2.1")));
    }

    #[test]
    fn network_list_errors() {
        let e = NetworkList::parse(&["example.com".into()], Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("host name"), "{e}");
        let e = NetworkList::parse(&["10.0.0.1/8".into()], Path::new("/")).unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
        assert!(NetworkList::parse(&["2001:db8::/32".into()], Path::new("/")).is_ok());
    }

    #[test]
    fn cidr_table_first_match() {
        let t = CidrTable::parse(
            Path::new("t"),
            "# comment\n10.1.0.0/16 first\n10.0.0.0/8 second\n[2001:db8::]/32 six\n192.0.2.1 host\n",
        )
        .unwrap();
        assert_eq!(t.lookup("10.1.2.3").as_deref(), Some("first"));
        assert_eq!(t.lookup("10.2.2.3").as_deref(), Some("second"));
        assert_eq!(t.lookup("2001:db8::9").as_deref(), Some("six"));
        assert_eq!(t.lookup("192.0.2.1").as_deref(), Some("host"));
        assert_eq!(t.lookup("192.0.2.2"), None);
        assert_eq!(t.lookup("not-an-ip"), None);
        let e = CidrTable::parse(Path::new("t"), "\n10.0.0.0/8\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t:2: expected \"network/prefix result\", got \"10.0.0.0/8\""
        );
    }
}
