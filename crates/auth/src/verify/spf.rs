//! SPF's check_host() (RFC 7208 section 4), Postern's own, on the same
//! hickory resolver as the other checks: mail-auth 0.13.3 neither counts
//! void lookups nor refuses unknown mechanisms.
//!
//! Limits (section 4.6.4): at most 10 terms that query DNS (include, a,
//! mx, ptr, exists, redirect), at most 2 of their lookups that find no
//! record ("void lookups"), at most 10 names per mx and ptr; beyond any,
//! permerror. A record that does not parse, two SPF records, or an
//! unknown mechanism is a permerror too; a DNS failure is a temperror.
//! Evaluation stops at the first mechanism that matches, so a void
//! lookup after it does not count. `exp=` is accepted and not fetched
//! (the explanation is for the refusal text, which smtpd writes itself);
//! the `p` macro expands to `unknown` (RFC 7208 discourages it, and it
//! would cost a PTR lookup).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use mail_auth::SpfResult;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::net::{DnsError, NetError};
use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType};

/// What a DNS lookup found.
enum Found<T> {
    Records(Vec<T>),
    /// No such name, or no records of the type: a void lookup.
    Nothing,
}

/// The state of one check: the identity and the counters shared by its
/// includes and redirects.
pub(crate) struct Check<'r> {
    resolver: &'r TokioResolver,
    ip: IpAddr,
    /// `local@domain` (postmaster@ the HELO name for the null sender).
    sender: String,
    helo: String,
    receiver: String,
    lookups: u32,
    voids: u32,
}

/// An outcome that ends the evaluation at once.
type Stop = SpfResult;

impl<'r> Check<'r> {
    pub(crate) fn new(
        resolver: &'r TokioResolver,
        ip: IpAddr,
        sender: &str,
        helo: &str,
        receiver: &str,
    ) -> Check<'r> {
        Check {
            resolver,
            ip,
            sender: sender.to_string(),
            helo: helo.to_string(),
            receiver: receiver.to_string(),
            lookups: 0,
            voids: 0,
        }
    }

    /// check_host(ip, domain, sender).
    pub(crate) fn check_host<'a>(
        &'a mut self,
        domain: &'a str,
    ) -> Pin<Box<dyn Future<Output = SpfResult> + Send + 'a>>
    where
        'r: 'a,
    {
        Box::pin(async move {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if !valid_domain(&domain) {
                return SpfResult::None;
            }
            let record = match self.record(&domain).await {
                Ok(Some(r)) => r,
                Ok(None) => return SpfResult::None,
                Err(stop) => return stop,
            };
            match self.evaluate(&domain, &record).await {
                Ok(r) | Err(r) => r,
            }
        })
    }

    /// The domain's one SPF record; None when it has none.
    async fn record(&mut self, domain: &str) -> Result<Option<String>, Stop> {
        let name = Name::from_str_relaxed(domain).map_err(|_| SpfResult::None)?;
        let lookup = match self.resolver.txt_lookup(name).await {
            Ok(l) => l,
            Err(e) if is_nothing(&e) => return Ok(None),
            Err(_) => return Err(SpfResult::TempError),
        };
        let mut spf = Vec::new();
        for r in lookup.answers() {
            if let RData::TXT(txt) = &r.data {
                let text: Vec<u8> = txt
                    .txt_data
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
                let text = String::from_utf8_lossy(&text).to_string();
                let lower = text.to_ascii_lowercase();
                if lower == "v=spf1" || lower.starts_with("v=spf1 ") {
                    spf.push(text);
                }
            }
        }
        match spf.len() {
            0 => Ok(None),
            1 => Ok(spf.pop()),
            _ => Err(SpfResult::PermError),
        }
    }

    async fn evaluate(&mut self, domain: &str, record: &str) -> Result<SpfResult, Stop> {
        let terms = parse(record).ok_or(SpfResult::PermError)?;
        let mut redirect = None;
        for term in &terms {
            match term {
                Term::Redirect(spec) => redirect = Some(spec.clone()),
                Term::Directive(q, m) => {
                    if self.matches(domain, m).await? {
                        return Ok(*q);
                    }
                }
            }
        }
        match redirect {
            Some(spec) => {
                self.count_lookup()?;
                let target = self.expand(&spec, domain)?;
                match self.check_host(&target).await {
                    SpfResult::None => Err(SpfResult::PermError),
                    r => Ok(r),
                }
            }
            None => Ok(SpfResult::Neutral),
        }
    }

    fn count_lookup(&mut self) -> Result<(), Stop> {
        self.lookups += 1;
        if self.lookups > 10 {
            return Err(SpfResult::PermError);
        }
        Ok(())
    }

    fn count_void<T>(&mut self, found: &Found<T>) -> Result<(), Stop> {
        if matches!(found, Found::Nothing) {
            self.voids += 1;
            if self.voids > 2 {
                return Err(SpfResult::PermError);
            }
        }
        Ok(())
    }

    async fn matches(&mut self, domain: &str, m: &Mechanism) -> Result<bool, Stop> {
        match m {
            Mechanism::All => Ok(true),
            Mechanism::Ip4(net, len) => Ok(match self.ip {
                IpAddr::V4(ip) => in_v4(ip, *net, *len),
                IpAddr::V6(ip) => ip.to_ipv4_mapped().is_some_and(|ip| in_v4(ip, *net, *len)),
            }),
            Mechanism::Ip6(net, len) => Ok(match self.ip {
                IpAddr::V6(ip) => in_v6(ip, *net, *len),
                IpAddr::V4(_) => false,
            }),
            Mechanism::Include(spec) => {
                self.count_lookup()?;
                let target = self.expand(spec, domain)?;
                match self.check_host(&target).await {
                    SpfResult::Pass => Ok(true),
                    SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                    SpfResult::TempError => Err(SpfResult::TempError),
                    SpfResult::PermError | SpfResult::None => Err(SpfResult::PermError),
                }
            }
            Mechanism::A(spec, v4, v6) => {
                self.count_lookup()?;
                let target = self.target(spec.as_deref(), domain)?;
                let found = self.addresses(&target).await?;
                self.count_void(&found)?;
                Ok(self.any_in(&found, *v4, *v6))
            }
            Mechanism::Mx(spec, v4, v6) => {
                self.count_lookup()?;
                let target = self.target(spec.as_deref(), domain)?;
                let found = self.mx(&target).await?;
                self.count_void(&found)?;
                let Found::Records(exchanges) = found else {
                    return Ok(false);
                };
                if exchanges.len() > 10 {
                    return Err(SpfResult::PermError);
                }
                for exchange in exchanges {
                    if let Found::Records(addrs) = self.addresses(&exchange).await?
                        && self.any_in(&Found::Records(addrs), *v4, *v6)
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Ptr(spec) => {
                self.count_lookup()?;
                let target = self.target(spec.as_deref(), domain)?;
                let names = match self.resolver.reverse_lookup(self.ip).await {
                    Ok(l) => l
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::PTR(p) => {
                                Some(p.to_ascii().trim_end_matches('.').to_ascii_lowercase())
                            }
                            _ => None,
                        })
                        .collect::<Vec<_>>(),
                    // RFC 7208 5.5: a failed PTR lookup is no match.
                    Err(_) => Vec::new(),
                };
                if names.is_empty() {
                    self.count_void(&Found::<String>::Nothing)?;
                }
                for name in names.into_iter().take(10) {
                    if (name == target || name.ends_with(&format!(".{target}")))
                        && let Ok(Found::Records(addrs)) = self.addresses(&name).await
                        && addrs.contains(&self.ip)
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Mechanism::Exists(spec) => {
                self.count_lookup()?;
                let target = self.expand(spec, domain)?;
                let found = self.lookup_v4(&target).await?;
                self.count_void(&found)?;
                Ok(matches!(found, Found::Records(r) if !r.is_empty()))
            }
        }
    }

    /// The domain a mechanism names: its domain-spec expanded, or the
    /// current domain.
    fn target(&self, spec: Option<&str>, domain: &str) -> Result<String, Stop> {
        match spec {
            Some(spec) => self.expand(spec, domain),
            None => Ok(domain.to_string()),
        }
    }

    fn any_in(&self, found: &Found<IpAddr>, v4: u8, v6: u8) -> bool {
        let Found::Records(addrs) = found else {
            return false;
        };
        addrs.iter().any(|a| match (a, self.ip) {
            (IpAddr::V4(a), IpAddr::V4(ip)) => in_v4(ip, *a, v4),
            (IpAddr::V6(a), IpAddr::V6(ip)) => in_v6(ip, *a, v6),
            _ => false,
        })
    }

    /// The addresses of `name` in the client's family.
    async fn addresses(&self, name: &str) -> Result<Found<IpAddr>, Stop> {
        let rtype = match self.ip {
            IpAddr::V4(_) => RecordType::A,
            IpAddr::V6(_) => RecordType::AAAA,
        };
        self.lookup_addresses(name, rtype).await
    }

    async fn lookup_v4(&self, name: &str) -> Result<Found<IpAddr>, Stop> {
        self.lookup_addresses(name, RecordType::A).await
    }

    async fn lookup_addresses(&self, name: &str, rtype: RecordType) -> Result<Found<IpAddr>, Stop> {
        let n = Name::from_str_relaxed(name).map_err(|_| SpfResult::PermError)?;
        match self.resolver.lookup(n, rtype).await {
            Ok(l) => Ok(Found::Records(
                l.answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    })
                    .collect(),
            )),
            Err(e) if is_nothing(&e) => Ok(Found::Nothing),
            Err(_) => Err(SpfResult::TempError),
        }
    }

    async fn mx(&self, name: &str) -> Result<Found<String>, Stop> {
        let n = Name::from_str_relaxed(name).map_err(|_| SpfResult::PermError)?;
        match self.resolver.mx_lookup(n).await {
            Ok(l) => {
                let names: Vec<String> = l
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some(
                            mx.exchange
                                .to_ascii()
                                .trim_end_matches('.')
                                .to_ascii_lowercase(),
                        ),
                        _ => None,
                    })
                    .collect();
                Ok(if names.is_empty() {
                    Found::Nothing
                } else {
                    Found::Records(names)
                })
            }
            Err(e) if is_nothing(&e) => Ok(Found::Nothing),
            Err(_) => Err(SpfResult::TempError),
        }
    }

    /// A domain-spec with its macros expanded (section 7), cut to 253
    /// characters from the left as section 7.3 says.
    fn expand(&self, spec: &str, domain: &str) -> Result<String, Stop> {
        let mut out = String::new();
        let mut chars = spec.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('_') => out.push(' '),
                Some('-') => out.push_str("%20"),
                Some('{') => {
                    let mut body = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => body.push(c),
                            None => return Err(SpfResult::PermError),
                        }
                    }
                    out.push_str(&self.macro_value(&body, domain)?);
                }
                _ => return Err(SpfResult::PermError),
            }
        }
        let mut out = out.trim_end_matches('.').to_ascii_lowercase();
        while out.len() > 253 {
            match out.split_once('.') {
                Some((_, rest)) => out = rest.to_string(),
                None => return Err(SpfResult::PermError),
            }
        }
        if !valid_domain(&out) {
            // An expansion that is no domain name finds nothing.
            return Ok("invalid.invalid".to_string());
        }
        Ok(out)
    }

    /// `%{letter digits r delimiters}`.
    fn macro_value(&self, body: &str, domain: &str) -> Result<String, Stop> {
        let mut it = body.chars();
        let letter = it.next().ok_or(SpfResult::PermError)?;
        let rest: String = it.collect();
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let mut tail = &rest[digits.len()..];
        let reverse = tail.starts_with(['r', 'R']);
        if reverse {
            tail = &tail[1..];
        }
        if !tail.chars().all(|c| ".-+,/_=".contains(c)) {
            return Err(SpfResult::PermError);
        }
        let delimiters: Vec<char> = if tail.is_empty() {
            vec!['.']
        } else {
            tail.chars().collect()
        };
        let (local, sender_domain) = self
            .sender
            .rsplit_once('@')
            .map_or(("postmaster", self.sender.as_str()), |(l, d)| (l, d));
        let value = match letter.to_ascii_lowercase() {
            's' => self.sender.clone(),
            'l' => local.to_string(),
            'o' => sender_domain.to_string(),
            'd' => domain.to_string(),
            'i' => match self.ip {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => ip
                    .octets()
                    .iter()
                    .flat_map(|b| [b >> 4, b & 0xf])
                    .map(|n| format!("{n:x}"))
                    .collect::<Vec<_>>()
                    .join("."),
            },
            'p' => "unknown".to_string(),
            'v' => match self.ip {
                IpAddr::V4(_) => "in-addr".to_string(),
                IpAddr::V6(_) => "ip6".to_string(),
            },
            'h' => self.helo.clone(),
            'r' => self.receiver.clone(),
            // c and t belong to exp= only.
            _ => return Err(SpfResult::PermError),
        };
        let mut parts: Vec<&str> = value.split(|c| delimiters.contains(&c)).collect();
        if reverse {
            parts.reverse();
        }
        if !digits.is_empty() {
            let n: usize = digits.parse().map_err(|_| SpfResult::PermError)?;
            if n == 0 {
                return Err(SpfResult::PermError);
            }
            if parts.len() > n {
                parts = parts.split_off(parts.len() - n);
            }
        }
        let joined = parts.join(".");
        Ok(if letter.is_ascii_uppercase() {
            url_encode(&joined)
        } else {
            joined
        })
    }
}

/// NXDOMAIN or no records of the type asked.
fn is_nothing(e: &NetError) -> bool {
    matches!(e, NetError::Dns(DnsError::NoRecordsFound(_)))
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A name SPF may look up: dotted labels of at most 63 characters, 253 in
/// all, none empty.
fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

fn in_v4(ip: std::net::Ipv4Addr, net: std::net::Ipv4Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: std::net::Ipv6Addr, net: std::net::Ipv6Addr, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

/// One term of a record.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Directive(SpfResult, Mechanism),
    Redirect(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Mechanism {
    All,
    Include(String),
    /// Domain-spec, IPv4 and IPv6 prefix lengths.
    A(Option<String>, u8, u8),
    Mx(Option<String>, u8, u8),
    Ptr(Option<String>),
    Ip4(std::net::Ipv4Addr, u8),
    Ip6(std::net::Ipv6Addr, u8),
    Exists(String),
}

/// The terms of a record (`v=spf1 ...`); None for a syntax error: an
/// unknown mechanism, a bad address or prefix, a second redirect or exp.
fn parse(record: &str) -> Option<Vec<Term>> {
    let mut words = record.split_ascii_whitespace();
    if !words.next()?.eq_ignore_ascii_case("v=spf1") {
        return None;
    }
    let (mut terms, mut redirect, mut exp) = (Vec::new(), false, false);
    for word in words {
        let lower = word.to_ascii_lowercase();
        if let Some((name, _)) = lower.split_once('=')
            && !name.contains(':')
            && !name.contains('/')
        {
            // A modifier: redirect and exp once each; others ignored.
            let value = &word[name.len() + 1..];
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                || !name.starts_with(|c: char| c.is_ascii_alphabetic())
            {
                return None;
            }
            match name {
                "redirect" if !redirect && !value.is_empty() => {
                    redirect = true;
                    terms.push(Term::Redirect(value.to_string()));
                }
                "exp" if !exp && !value.is_empty() => exp = true,
                "redirect" | "exp" => return None,
                _ => {}
            }
            continue;
        }
        let (qualifier, rest) = match word.chars().next()? {
            '+' => (SpfResult::Pass, &word[1..]),
            '-' => (SpfResult::Fail, &word[1..]),
            '~' => (SpfResult::SoftFail, &word[1..]),
            '?' => (SpfResult::Neutral, &word[1..]),
            _ => (SpfResult::Pass, word),
        };
        terms.push(Term::Directive(qualifier, mechanism(rest)?));
    }
    Some(terms)
}

fn mechanism(text: &str) -> Option<Mechanism> {
    let (name, arg) = match text.find([':', '/']) {
        Some(i) => (&text[..i], Some(&text[i..])),
        None => (text, None),
    };
    let spec = |arg: Option<&str>| -> Option<String> {
        let s = arg?.strip_prefix(':')?;
        (!s.is_empty()).then(|| s.to_string())
    };
    match name.to_ascii_lowercase().as_str() {
        "all" if arg.is_none() => Some(Mechanism::All),
        "include" => Some(Mechanism::Include(spec(arg)?)),
        "exists" => Some(Mechanism::Exists(spec(arg)?)),
        "ptr" => match arg {
            None => Some(Mechanism::Ptr(None)),
            Some(a) => Some(Mechanism::Ptr(Some(spec(Some(a))?))),
        },
        "a" | "mx" => {
            let (domain, v4, v6) = domain_and_cidr(arg.unwrap_or(""))?;
            Some(if name.eq_ignore_ascii_case("a") {
                Mechanism::A(domain, v4, v6)
            } else {
                Mechanism::Mx(domain, v4, v6)
            })
        }
        "ip4" => {
            let a = arg?.strip_prefix(':')?;
            let (addr, len) = a.split_once('/').map_or((a, "32"), |(x, l)| (x, l));
            let len: u8 = prefix(len, 32)?;
            Some(Mechanism::Ip4(addr.parse().ok()?, len))
        }
        "ip6" => {
            let a = arg?.strip_prefix(':')?;
            let (addr, len) = a.split_once('/').map_or((a, "128"), |(x, l)| (x, l));
            let len: u8 = prefix(len, 128)?;
            Some(Mechanism::Ip6(addr.parse().ok()?, len))
        }
        _ => None,
    }
}

/// A prefix length of at most `max`, digits only, no leading zero.
fn prefix(text: &str, max: u8) -> Option<u8> {
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    let n: u8 = text.parse().ok()?;
    (n <= max).then_some(n)
}

/// `[:domain-spec][/ip4-cidr][//ip6-cidr]` of a and mx.
fn domain_and_cidr(arg: &str) -> Option<(Option<String>, u8, u8)> {
    let (domain, cidr) = match arg.strip_prefix(':') {
        Some(rest) => match rest.find('/') {
            Some(i) => (Some(&rest[..i]), &rest[i..]),
            None => (Some(rest), ""),
        },
        None => (None, arg),
    };
    if domain.is_some_and(str::is_empty) {
        return None;
    }
    let (v4, v6) = if let Some(v6) = cidr.strip_prefix("//") {
        (32, prefix(v6, 128)?)
    } else if let Some(rest) = cidr.strip_prefix('/') {
        match rest.split_once("//") {
            Some((v4, v6)) => (prefix(v4, 32)?, prefix(v6, 128)?),
            None => (prefix(rest, 32)?, 128),
        }
    } else if cidr.is_empty() {
        (32, 128)
    } else {
        return None;
    };
    Some((domain.map(str::to_string), v4, v6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_refuses_bad_ones() {
        let t =
            parse("v=spf1 ip4:192.0.2.0/24 -a:mail.test/28 mx//64 ~include:x.test redirect=r.test")
                .unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(
            t[1],
            Term::Directive(
                SpfResult::Fail,
                Mechanism::A(Some("mail.test".into()), 28, 128)
            )
        );
        assert_eq!(
            t[2],
            Term::Directive(SpfResult::Pass, Mechanism::Mx(None, 32, 64))
        );
        for bad in [
            "v=spf1 include: -all",
            "v=spf1 ip4:192.0.2.300 -all",
            "v=spf1 ip4:192.0.2.1/33",
            "v=spf1 frobnicate -all",
            "v=spf1 redirect=a.test redirect=b.test",
            "v=spf1 a:",
            "v=spf1 all:x",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert!(parse("v=spf1 unknown-mod=x -all").is_some());
    }

    #[test]
    fn matches_prefixes() {
        assert!(in_v4(
            "192.0.2.77".parse().unwrap(),
            "192.0.2.0".parse().unwrap(),
            24
        ));
        assert!(!in_v4(
            "192.0.3.1".parse().unwrap(),
            "192.0.2.0".parse().unwrap(),
            24
        ));
        assert!(in_v4(
            "1.2.3.4".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
        assert!(in_v6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::".parse().unwrap(),
            32
        ));
    }
}
