//! Address classes, as Postfix's trivial-rewrite resolver decides them:
//! domain match lists (`mydestination`, `relay_domains`, the virtual
//! domain lists) and [`Resolver::resolve`], which strips local domains and
//! honours the percent hack, bang paths and quoted `@` the way Postfix does,
//! so that relay permission is judged on where mail would really go.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use postern_config::{Params, Table, TableError, table::Cidr};
use postern_smtp::Address;

/// Upper bound on rewrite rounds; each round removes at least one
/// character, so this only guards against a logic error.
const MAX_ROUNDS: usize = 1000;

/// A Postfix domain match list: names, `.suffix` patterns, `!negation`,
/// `type:table` entries and `/file` names whose lines hold more patterns.
/// The first matching entry decides.
#[derive(Debug, Clone, Default)]
pub(super) struct DomainList {
    entries: Vec<Entry>,
    /// The parameter is listed in `parent_domain_matches_subdomains`, so
    /// `example.com` also matches `sub.example.com`.
    parent: bool,
}

#[derive(Debug, Clone)]
enum Entry {
    Name { pattern: String, negate: bool },
    Table { table: Table, negate: bool },
}

impl DomainList {
    pub(super) fn from_params(params: &Params, name: &str) -> Result<DomainList, TableError> {
        let parent = params
            .list("parent_domain_matches_subdomains")
            .iter()
            .any(|p| p == name);
        let mut entries = Vec::new();
        for tok in params.list(name) {
            parse_entry(&tok, params.base_dir(), &mut entries, 0)?;
        }
        Ok(DomainList { entries, parent })
    }

    /// True when `domain` (lowercase, no trailing dot) matches.
    pub(super) fn matches(&self, domain: &str) -> Result<bool, TableError> {
        for e in &self.entries {
            match e {
                Entry::Name { pattern, negate } => {
                    if self.name_matches(pattern, domain) {
                        return Ok(!negate);
                    }
                }
                Entry::Table { table, negate } => {
                    if self.table_matches(table, domain)? {
                        return Ok(!negate);
                    }
                }
            }
        }
        Ok(false)
    }

    fn name_matches(&self, pattern: &str, domain: &str) -> bool {
        if pattern == domain {
            return true;
        }
        if let Some(suffix) = pattern.strip_prefix('.') {
            return domain.ends_with(pattern) && domain.len() > suffix.len() + 1;
        }
        self.parent
            && domain.len() > pattern.len()
            && domain.ends_with(pattern)
            && domain.as_bytes()[domain.len() - pattern.len() - 1] == b'.'
    }

    fn table_matches(&self, table: &Table, domain: &str) -> Result<bool, TableError> {
        if table.lookup(domain)?.is_some() {
            return Ok(true);
        }
        if !is_fixed(table) || domain.starts_with('[') {
            return Ok(false);
        }
        // Parent domains: `example.com` with parent-style matching,
        // `.example.com` otherwise (Postfix's match_hostname).
        let mut rest = domain;
        while let Some(dot) = rest.find('.') {
            let parent = &rest[dot..];
            let key = if self.parent { &parent[1..] } else { parent };
            if !key.is_empty() && table.lookup(key)?.is_some() {
                return Ok(true);
            }
            rest = &rest[dot + 1..];
        }
        Ok(false)
    }
}

fn parse_entry(
    tok: &str,
    base_dir: &Path,
    entries: &mut Vec<Entry>,
    depth: usize,
) -> Result<(), TableError> {
    let (negate, pat) = match tok.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, tok),
    };
    if pat.starts_with('/') && depth < 8 {
        // A file name stands for the patterns it holds.
        let text = std::fs::read_to_string(pat).map_err(|source| TableError::Io {
            path: pat.into(),
            source,
        })?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            for t in line.split([',', ' ', '\t']).filter(|t| !t.is_empty()) {
                parse_entry(t, base_dir, entries, depth + 1)?;
            }
        }
        return Ok(());
    }
    if !pat.starts_with('[') && pat.contains(':') {
        let table = Table::open(pat, base_dir)?;
        entries.push(Entry::Table { table, negate });
        return Ok(());
    }
    let pattern = pat.trim_end_matches('.').to_lowercase();
    entries.push(Entry::Name { pattern, negate });
    Ok(())
}

/// Pattern tables (regexp, pcre, cidr) are queried with the whole key
/// only; Postfix's partial lookups (parents, `user@`) go to "fixed" tables.
pub(super) fn is_fixed(table: &Table) -> bool {
    let spec = table.spec().trim();
    let spec = spec.strip_prefix("proxy:").unwrap_or(spec);
    !(spec.starts_with("regexp:") || spec.starts_with("pcre:") || spec.starts_with("cidr:"))
}

/// The address classes of trivial-rewrite(8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// `mydestination` or an address literal of this host.
    Local,
    /// `virtual_alias_domains`.
    Alias,
    /// `virtual_mailbox_domains`.
    Virtual,
    /// `relay_domains`.
    Relay,
    /// Everything else.
    Default,
}

impl Class {
    /// Postfix's RESOLVE_CLASS_FINAL: mail that ends here.
    pub(super) fn is_final(self) -> bool {
        matches!(self, Class::Local | Class::Alias | Class::Virtual)
    }
}

/// Where an address really goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Resolved {
    /// Lowercase local part, after the rewriting.
    pub local: String,
    /// Lowercase destination domain.
    pub domain: String,
    pub class: Class,
    /// The local part still holds a routing operator (`@`, `%`, `!`), so a
    /// later hop may send the mail elsewhere (RESOLVE_FLAG_ROUTED).
    pub routed: bool,
}

impl Resolved {
    /// `local@domain`, the key for access and recipient tables.
    pub fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// What the resolver needs from the configuration.
#[derive(Debug, Clone)]
pub(super) struct Resolver {
    pub mydestination: DomainList,
    pub relay_domains: DomainList,
    pub virtual_alias_domains: DomainList,
    pub virtual_mailbox_domains: DomainList,
    /// This host's addresses for `[literal]` destinations
    /// (`inet_interfaces` and `proxy_interfaces`).
    pub my_addresses: HashSet<IpAddr>,
    pub myorigin: String,
    pub myhostname: String,
    pub percent_hack: bool,
    pub swap_bangpath: bool,
    /// `resolve_dequoted`: look inside quoted local parts for operators.
    pub dequoted: bool,
}

impl Resolver {
    /// Errors name the parameter whose list failed to open.
    pub(super) fn from_params(params: &Params) -> Result<Resolver, (&'static str, TableError)> {
        let lower = |name: &str| params.get(name).trim().trim_end_matches('.').to_lowercase();
        let list =
            |name: &'static str| DomainList::from_params(params, name).map_err(|e| (name, e));
        Ok(Resolver {
            mydestination: list("mydestination")?,
            relay_domains: list("relay_domains")?,
            virtual_alias_domains: list("virtual_alias_domains")?,
            virtual_mailbox_domains: list("virtual_mailbox_domains")?,
            my_addresses: my_addresses(params),
            myorigin: lower("myorigin"),
            myhostname: lower("myhostname"),
            percent_hack: params.bool("allow_percent_hack"),
            swap_bangpath: params.bool("swap_bangpath"),
            dequoted: params.bool("resolve_dequoted"),
        })
    }

    /// Postfix's resolve_local(): `mydestination`, or an address literal
    /// naming one of this host's interfaces.
    pub(super) fn is_local(&self, domain: &str) -> Result<bool, TableError> {
        let domain = domain.trim_end_matches('.');
        if domain.is_empty() {
            return Ok(false);
        }
        if let Some(inner) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
            let bare = match inner.get(..5) {
                Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &inner[5..],
                _ => inner,
            };
            return Ok(bare
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.my_addresses.contains(&ip.to_canonical())));
        }
        self.mydestination.matches(domain)
    }

    /// Resolves an envelope address the way trivial-rewrite does: an
    /// unqualified address gets `@$myorigin`; while the domain is local it
    /// is stripped and `a@b` (from a quoted local part), `site!user`
    /// (`swap_bangpath`) and `user%site` (`allow_percent_hack`) are turned
    /// into `user@site` and tried again. A source route was already dropped
    /// by the parser, as Postfix's canonicalization drops it.
    pub(super) fn resolve(&self, addr: &Address) -> Result<Resolved, TableError> {
        let mut local = addr.local().to_lowercase();
        let mut domain = Some(match addr.domain() {
            Some(d) => d.trim_end_matches('.').to_lowercase(),
            None => self.myorigin.clone(),
        });
        let mut saved: Option<String> = None;
        let mut remote = None;
        for _ in 0..MAX_ROUNDS {
            if let Some(d) = domain.take() {
                if !self.is_local(&d)? {
                    remote = Some(d);
                    break;
                }
                saved = Some(d);
            }
            // An `@` in the local part can only come from a quoted string;
            // with resolve_dequoted = no it stays, and marks the address
            // as routed below.
            if self.dequoted
                && let Some(at) = local.rfind('@')
            {
                domain = Some(local[at + 1..].trim_end_matches('.').to_string());
                local.truncate(at);
                continue;
            }
            if self.swap_bangpath
                && let Some(bang) = local.find('!')
            {
                domain = Some(local[..bang].to_string());
                local = local[bang + 1..].to_string();
                continue;
            }
            if self.percent_hack
                && let Some(pct) = local.rfind('%')
            {
                domain = Some(local[pct + 1..].trim_end_matches('.').to_string());
                local.truncate(pct);
                continue;
            }
            break;
        }
        let routed = local.contains(['@', '%', '!']);
        let (domain, class) = match remote {
            None => (
                saved.unwrap_or_else(|| self.myhostname.clone()),
                Class::Local,
            ),
            Some(d) => {
                let class = if self.virtual_alias_domains.matches(&d)? {
                    Class::Alias
                } else if self.virtual_mailbox_domains.matches(&d)? {
                    Class::Virtual
                } else if self.relay_domains.matches(&d)? {
                    Class::Relay
                } else {
                    Class::Default
                };
                (d, class)
            }
        };
        Ok(Resolved {
            local,
            domain,
            class,
            routed,
        })
    }
}

/// The addresses `[literal]` destinations must name to be local:
/// `inet_interfaces` (`all` means every interface address, found through
/// the host-style `mynetworks` default, plus loopback) and
/// `proxy_interfaces`. Host names in these lists are not resolved.
fn my_addresses(params: &Params) -> HashSet<IpAddr> {
    let mut out = HashSet::new();
    let loopback: [IpAddr; 2] = [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    for item in params
        .list("inet_interfaces")
        .into_iter()
        .chain(params.list("proxy_interfaces"))
    {
        match item.to_ascii_lowercase().as_str() {
            "all" => {
                out.extend(loopback);
                let mut host = params.clone();
                let nets = match host.set("mynetworks_style", "host") {
                    Ok(()) => host.default_value("mynetworks").unwrap_or_default(),
                    Err(_) => String::new(),
                };
                for net in nets.split_whitespace().filter_map(|n| Cidr::parse(n).ok()) {
                    let full = if net.addr().is_ipv4() { 32 } else { 128 };
                    if net.prefix() == full {
                        out.insert(net.addr());
                    }
                }
            }
            "loopback-only" | "localhost" => out.extend(loopback),
            other => {
                let bare = other
                    .strip_prefix('[')
                    .and_then(|o| o.strip_suffix(']'))
                    .unwrap_or(other);
                if let Ok(ip) = bare.parse::<IpAddr>() {
                    out.insert(ip.to_canonical());
                }
            }
        }
    }
    out
}
