//! DNS blocklist and allowlist sites as Postfix writes them, in
//! `reject_rbl_client` and friends and in `postscreen_dnsbl_sites`:
//!
//! ```text
//! zen.spamhaus.org
//! zen.spamhaus.org=127.0.0.[2..11]
//! bl.example=127.0.0.[2;4;10..20]*3
//! list.dnswl.org=127.0.[0..255].[1..3]*-5
//! ```
//!
//! The filter matches the A records of the answer octet by octet: a
//! number, or `[...]` holding numbers and `n..m` ranges separated by `;`.
//! Without a filter any A record is a listing. The weight (postscreen
//! only) is `*N`, negative for allowlists, 1 when absent.

use std::fmt;
use std::net::Ipv4Addr;

/// One site, with what it was written as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsblSite {
    /// Lower case, without a trailing dot.
    pub domain: String,
    pub filter: Option<ResultFilter>,
    pub weight: i32,
    /// `domain=filter` as written (without the weight): the key of
    /// `rbl_reply_maps` and the name in replies and logs.
    pub spec: String,
}

/// The `=` part: a set of values for each of the four octets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultFilter {
    octets: [Vec<(u8, u8)>; 4],
}

impl DnsblSite {
    /// Parses a site; `weighted` allows the `*N` suffix.
    pub fn parse(text: &str, weighted: bool) -> Result<DnsblSite, String> {
        let (spec, weight) = match text.rsplit_once('*') {
            Some((spec, w)) if weighted => {
                let weight = w
                    .parse::<i32>()
                    .map_err(|_| format!("bad weight \"{w}\" in DNSBL site \"{text}\""))?;
                (spec, weight)
            }
            Some(_) => return Err(format!("a weight is not allowed here: \"{text}\"")),
            None => (text, 1),
        };
        let (domain, filter) = match spec.split_once('=') {
            Some((d, f)) => (
                d,
                Some(ResultFilter::parse(f).map_err(|e| format!("{e} in \"{text}\""))?),
            ),
            None => (spec, None),
        };
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let valid = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!("bad DNSBL domain name \"{domain}\" in \"{text}\""));
        }
        Ok(DnsblSite {
            domain,
            filter,
            weight,
            spec: spec.to_string(),
        })
    }

    /// Whether an answer record counts as a listing.
    pub fn matches(&self, a: Ipv4Addr) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(a))
    }
}

impl fmt::Display for DnsblSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl ResultFilter {
    pub fn parse(text: &str) -> Result<ResultFilter, String> {
        let bad = || format!("bad DNSBL result filter \"{text}\"");
        let parts: Vec<&str> = split_octets(text);
        if parts.len() != 4 {
            return Err(bad());
        }
        let mut octets: [Vec<(u8, u8)>; 4] = Default::default();
        for (slot, part) in octets.iter_mut().zip(parts) {
            let items = match part.strip_prefix('[') {
                Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
                None => part,
            };
            if !part.starts_with('[') && items.contains([';', '.']) {
                return Err(bad());
            }
            for item in items.split(';') {
                let (lo, hi) = match item.split_once("..") {
                    Some((lo, hi)) => (lo, hi),
                    None => (item, item),
                };
                let lo: u8 = lo.parse().map_err(|_| bad())?;
                let hi: u8 = hi.parse().map_err(|_| bad())?;
                if lo > hi {
                    return Err(bad());
                }
                slot.push((lo, hi));
            }
        }
        Ok(ResultFilter { octets })
    }

    pub fn matches(&self, a: Ipv4Addr) -> bool {
        self.octets
            .iter()
            .zip(a.octets())
            .all(|(set, o)| set.iter().any(|&(lo, hi)| (lo..=hi).contains(&o)))
    }
}

/// Splits at the dots outside brackets (`..` inside them is a range).
fn split_octets(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '.' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn sites() {
        let s = DnsblSite::parse("Zen.Spamhaus.org.", false).unwrap();
        assert_eq!((s.domain.as_str(), s.weight), ("zen.spamhaus.org", 1));
        assert!(s.matches(ip("127.0.0.2")) && s.matches(ip("10.1.2.3")));

        let s = DnsblSite::parse("bl.example=127.0.0.[2;4;10..20]*3", true).unwrap();
        assert_eq!(
            (s.weight, s.spec.as_str()),
            (3, "bl.example=127.0.0.[2;4;10..20]")
        );
        for yes in ["127.0.0.2", "127.0.0.4", "127.0.0.10", "127.0.0.20"] {
            assert!(s.matches(ip(yes)), "{yes}");
        }
        for no in ["127.0.0.3", "127.0.0.21", "127.0.1.2", "10.0.0.2"] {
            assert!(!s.matches(ip(no)), "{no}");
        }
        let s = DnsblSite::parse("wl.example=127.0.[0..255].[1..3]*-5", true).unwrap();
        assert_eq!(s.weight, -5);
        assert!(s.matches(ip("127.0.9.3")) && !s.matches(ip("127.0.9.4")));
        assert!(
            DnsblSite::parse("bl.example=127.0.0.2", false)
                .unwrap()
                .matches(ip("127.0.0.2"))
        );
    }

    #[test]
    fn bad_sites() {
        for bad in [
            "",
            "bl.example=127.0.0",
            "bl.example=127.0.0.256",
            "bl.example=127.0.0.[5..2]",
            "bl.example=127.0.0.[2",
            "bl.example=127.0.0.2;3",
            "bl..example",
            "bl example",
            "bl.example*x",
        ] {
            assert!(DnsblSite::parse(bad, true).is_err(), "{bad}");
        }
        assert!(DnsblSite::parse("bl.example*2", false).is_err());
    }
}
