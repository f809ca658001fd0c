//! Parsing of expanded parameter values: the pure functions behind
//! `Params::int`, `bool`, `time`, `size` and `list`, and load-time
//! validation.

use std::time::Duration;

use postern_envelope::{ContentFilter, ParseFilterError};

use crate::defs::Kind;

/// Postfix integer: optional sign and decimal digits.
pub fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

/// `yes`/`no` as Postfix, plus `true`/`false` (TOML booleans arrive that way
/// only if written as strings).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" => Some(true),
        "no" | "false" => Some(false),
        _ => None,
    }
}

/// Postfix time: digits and one optional unit (s m h d w); a bare number
/// takes `default_unit`.
pub fn parse_time(s: &str, default_unit: char) -> Option<Duration> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c.to_ascii_lowercase()),
        _ => (s, default_unit),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        'w' => 7 * 86400,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

/// Bytes with an optional binary suffix: `k`, `m`, `g` (any case), or
/// `KiB`, `MiB`, `GiB`. Decimal `MB` is refused rather than guessed at.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, suffix) = s.split_at(end);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Splits a list value as Postfix's `mystrtokq` does: separators are comma
/// and whitespace, and text inside `{...}` (at any nesting) is kept whole so
/// that `inline:{ a=b, c=d }` stays one element.
pub fn split_list(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth = depth.saturating_sub(1);
                cur.push(c);
            }
            ',' | ' ' | '\t' | '\r' | '\n' if depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// An SMTP reply code as Postfix's `*_code` parameters take it: 4xx or 5xx.
pub fn parse_code(s: &str) -> Option<u16> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (400..600).contains(c))
}

/// An address parameter: `Ok(None)` when empty; brackets are allowed.
pub fn parse_addr<T: std::str::FromStr>(s: &str) -> Result<Option<T>, ()> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse().map(Some).map_err(|_| ())
}

/// One resolver: `ip` (port 53), `ip:port` or `[ipv6]:port`.
pub fn parse_resolver(s: &str) -> Option<std::net::SocketAddr> {
    s.parse::<std::net::SocketAddr>().ok().or_else(|| {
        s.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, 53))
    })
}

/// The TLS versions a Postfix protocol list (`smtp(d)_tls_*protocols`)
/// leaves of the two Postern speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsProtocols {
    pub tls12: bool,
    pub tls13: bool,
}

/// A protocol list: `>=TLSv1.2`, `<=TLSv1.2`, `!TLSv1.3`, or plain names
/// to allow only those. Names of versions Postern does not speak (SSLv2,
/// SSLv3, TLSv1, TLSv1.1) narrow nothing; a list that leaves neither
/// TLSv1.2 nor TLSv1.3, or names an unknown protocol, is an error.
pub fn parse_tls_protocols(s: &str) -> Result<TlsProtocols, String> {
    let mut allowed = TlsProtocols {
        tls12: true,
        tls13: true,
    };
    let mut listed: Option<TlsProtocols> = None;
    for item in split_list(s) {
        let (op, name) = match item.as_str() {
            s if s.starts_with(">=") || s.starts_with("<=") => (&s[..2], &s[2..]),
            s if s.starts_with('!') => ("!", &s[1..]),
            s => ("", s),
        };
        let rank = match name.to_ascii_lowercase().as_str() {
            "sslv2" | "sslv3" => 0,
            "tlsv1" => 1,
            "tlsv1.1" => 2,
            "tlsv1.2" => 3,
            "tlsv1.3" => 4,
            _ => return Err(format!("unknown protocol \"{name}\" in \"{}\"", s.trim())),
        };
        match op {
            ">=" => {
                allowed.tls12 &= rank <= 3;
                allowed.tls13 &= rank <= 4;
            }
            "<=" => {
                allowed.tls12 &= rank >= 3;
                allowed.tls13 &= rank >= 4;
            }
            "!" => {
                allowed.tls12 &= rank != 3;
                allowed.tls13 &= rank != 4;
            }
            _ => {
                let l = listed.get_or_insert(TlsProtocols {
                    tls12: false,
                    tls13: false,
                });
                l.tls12 |= rank == 3;
                l.tls13 |= rank == 4;
            }
        }
    }
    if let Some(l) = listed {
        allowed.tls12 &= l.tls12;
        allowed.tls13 &= l.tls13;
    }
    if !allowed.tls12 && !allowed.tls13 {
        return Err(format!(
            "\"{}\" allows neither TLSv1.2 nor TLSv1.3, the versions Postern speaks",
            s.trim()
        ));
    }
    Ok(allowed)
}

/// A [`Kind::Filter`] value: none when empty.
pub fn parse_filter(s: &str) -> Result<Option<ContentFilter>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e: ParseFilterError| e.to_string())
}

/// Checks an expanded value against its kind; the error is the `reason` of
/// [`crate::ConfigError::Invalid`]. Restriction lists need the
/// configuration's restriction classes and are checked by `Params`.
pub fn check(kind: Kind, value: &str) -> Result<(), String> {
    let ok = match kind {
        Kind::Str
        | Kind::Command
        | Kind::Template
        | Kind::List
        | Kind::Path
        | Kind::Restrictions => true,
        Kind::Int => parse_int(value).is_some(),
        Kind::Positive => parse_int(value).is_some_and(|n| n >= 1),
        Kind::Bool => parse_bool(value).is_some(),
        Kind::Time(u) => parse_time(value, u).is_some(),
        Kind::Size => parse_size(value).is_some(),
        Kind::Code => parse_code(value).is_some(),
        Kind::Ipv4 => parse_addr::<std::net::Ipv4Addr>(value).is_ok(),
        Kind::Ipv6 => parse_addr::<std::net::Ipv6Addr>(value).is_ok(),
        Kind::TlsProtocols => {
            parse_tls_protocols(value)?;
            true
        }
        Kind::Filter => {
            parse_filter(value)?;
            true
        }
        Kind::Resolvers => {
            if let Some(bad) = split_list(value)
                .iter()
                .find(|r| parse_resolver(r).is_none())
            {
                return Err(format!(
                    "invalid resolver \"{bad}\" (expected ip or ip:port)"
                ));
            }
            true
        }
        Kind::Enum(words) => {
            let v = value.trim();
            one_word(words, &v.to_ascii_lowercase(), || format!("value \"{v}\""))?;
            true
        }
        Kind::Words(words) => {
            for w in split_list(&value.to_ascii_lowercase()) {
                one_word(words, &w, || {
                    format!("word \"{w}\" in \"{}\"", value.trim())
                })?;
            }
            true
        }
        Kind::Maps => {
            for spec in split_list(value) {
                crate::table::check_spec(&spec).map_err(|e| e.to_string())?;
            }
            true
        }
        Kind::Networks => {
            // Addresses and networks, `/file` entries (read at use) and
            // `type:table` entries; a host name is not supported.
            for entry in split_list(value) {
                let entry = entry.trim_start_matches('!');
                if entry.starts_with('/') {
                    continue;
                }
                if let Some((kind, _)) = entry.split_once(':')
                    && crate::table::known_type(kind)
                {
                    crate::table::check_spec(entry).map_err(|e| e.to_string())?;
                    continue;
                }
                crate::table::cidr::Cidr::parse(entry)
                    .map_err(|e| format!("{e} (a host name is not supported here)"))?;
            }
            true
        }
        Kind::Domains | Kind::Users => {
            // Names, `.names` and `/file` entries need nothing; a
            // `type:table` entry must be a table Postern can open.
            for entry in split_list(value) {
                let entry = entry.trim_start_matches('!');
                if !entry.starts_with('/') && entry.contains(':') {
                    crate::table::check_spec(entry).map_err(|e| e.to_string())?;
                }
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        let what = match kind {
            Kind::Int => "integer",
            Kind::Positive => "integer (at least 1)",
            Kind::Bool => "boolean",
            Kind::Time(_) => "time",
            Kind::Size => "size",
            Kind::Code => "reply code (4xx or 5xx)",
            Kind::Ipv4 => "IPv4 address",
            Kind::Ipv6 => "IPv6 address",
            _ => "",
        };
        Err(format!("invalid {what} value \"{value}\""))
    }
}

/// Ok when `word` is one of `words`; else `invalid <what> (expected a, b or c)`.
fn one_word(words: &[&str], word: &str, what: impl FnOnce() -> String) -> Result<(), String> {
    if words.contains(&word) {
        return Ok(());
    }
    Err(format!("invalid {} (expected {})", what(), one_of(words)))
}

/// `a, b or c`, for error messages; the empty word shows as `""`.
fn one_of(words: &[&str]) -> String {
    let shown: Vec<String> = words
        .iter()
        .map(|w| match *w {
            "" => "\"\"".to_string(),
            w => w.to_string(),
        })
        .collect();
    match shown.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A valid value in a form where two spellings of the same setting are
/// equal (`no`/`false`, `60s`/`1m`, lists in any spacing).
pub fn canonical(kind: Kind, value: &str) -> String {
    match kind {
        Kind::Bool => parse_bool(value).map(|b| b.to_string()),
        Kind::Int | Kind::Positive => parse_int(value).map(|n| n.to_string()),
        Kind::Time(u) => parse_time(value, u).map(|d| d.as_secs().to_string()),
        Kind::Size => parse_size(value).map(|n| n.to_string()),
        Kind::Code => parse_code(value).map(|n| n.to_string()),
        Kind::Enum(_) | Kind::Words(_) => Some(split_list(&value.to_ascii_lowercase()).join(" ")),
        Kind::List
        | Kind::Maps
        | Kind::Domains
        | Kind::Users
        | Kind::Networks
        | Kind::Restrictions
        | Kind::Resolvers
        | Kind::TlsProtocols => Some(split_list(value).join(" ")),
        Kind::Filter => Some(value.trim().to_string()),
        Kind::Str | Kind::Command | Kind::Template | Kind::Path | Kind::Ipv4 | Kind::Ipv6 => None,
    }
    .unwrap_or_else(|| value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int("10240000"), Some(10240000));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("10M"), None);
        assert_eq!(parse_int(""), None);
    }

    #[test]
    fn tls_protocol_lists() {
        let v = |spec: &str| parse_tls_protocols(spec).map(|p| (p.tls12, p.tls13));
        assert_eq!(v(">=TLSv1"), Ok((true, true)));
        assert_eq!(v(""), Ok((true, true)));
        assert_eq!(v(">=TLSv1.3"), Ok((false, true)));
        assert_eq!(v("<=TLSv1.2"), Ok((true, false)));
        assert_eq!(v("!SSLv2, !SSLv3, !TLSv1.3"), Ok((true, false)));
        assert_eq!(v("TLSv1.2"), Ok((true, false)));
        assert_eq!(v("TLSv1.2 TLSv1.3"), Ok((true, true)));
        assert!(v("<=TLSv1.1").unwrap_err().contains("neither"));
        assert!(v("TLSv9").unwrap_err().contains("unknown protocol"));
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("yes"), Some(true));
        assert_eq!(parse_bool("No"), Some(false));
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("60s", 's'), Some(Duration::from_secs(60)));
        assert_eq!(parse_time("5", 'd'), Some(Duration::from_secs(5 * 86400)));
        assert_eq!(parse_time("2m", 's'), Some(Duration::from_secs(120)));
        assert_eq!(parse_time("1h", 's'), Some(Duration::from_secs(3600)));
        assert_eq!(parse_time("1w", 's'), Some(Duration::from_secs(604800)));
        assert_eq!(parse_time("0", 'h'), Some(Duration::ZERO));
        assert_eq!(parse_time("5x", 's'), None);
        assert_eq!(parse_time("s", 's'), None);
        assert_eq!(parse_time("1.5h", 's'), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("2k"), Some(2048));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("10MB"), None);
        assert_eq!(parse_size("MiB"), None);
    }

    #[test]
    fn lists() {
        assert_eq!(
            split_list("127.0.0.0/8, [::1]/128 192.168.1.0/24"),
            vec!["127.0.0.0/8", "[::1]/128", "192.168.1.0/24"]
        );
        assert_eq!(
            split_list("hash:/a, inline:{ a=b, { c = d e } }  static:x"),
            vec!["hash:/a", "inline:{ a=b, { c = d e } }", "static:x"]
        );
        assert!(split_list(" , ").is_empty());
    }

    #[test]
    fn check_reasons() {
        assert_eq!(
            check(Kind::Int, "10M").unwrap_err(),
            "invalid integer value \"10M\""
        );
        assert!(check(Kind::Bool, "yes").is_ok());
        assert!(check(Kind::Time('s'), "1d").is_ok());
        assert!(check(Kind::Maps, "hash:/x, nosuch:/y").is_err());
    }
}
