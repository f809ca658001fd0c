//! Envelope addresses as they appear in `MAIL FROM` and `RCPT TO`.
//!
//! Accepted forms, following what Postfix's smtpd accepts by default
//! (`strict_rfc821_envelopes = no`):
//!
//! - `<user@example.com>` and the bare `user@example.com` (no brackets,
//!   no spaces), as typed in telnet sessions;
//! - `<>`, the null reverse-path;
//! - source routes `<@a,@b:user@c>`: the route is stripped (RFC 5321
//!   C says to ignore it) but remembered for [`Address::has_route`];
//! - quoted local parts `"john doe"@example.com`, `"a@b"@c`;
//! - address literals `user@[192.0.2.1]`, `user@[IPv6:2001:db8::1]`;
//! - UTF-8 in local part and domain (SMTPUTF8, RFC 6531); whether the
//!   client declared SMTPUTF8 is the session's business
//!   ([`Address::is_ascii`]);
//! - an unqualified `user` or `<postmaster>` (domain `None`); Postfix
//!   qualifies these later with `$myorigin`, policy may refuse them.
//!
//! Departures from Postfix, all stricter: an unquoted local part may not
//! hold a second `@` (`a@b@c`), and address literals must be valid IPv4 or
//! `IPv6:` addresses.
//!
//! The local part is stored unquoted (Postfix's "internal" form); `Display`
//! prints the canonical external form, quoting the local part when needed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why an address could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// `<` without `>` or the other way round.
    #[error("unbalanced angle brackets")]
    Brackets,
    /// A source route that is not `@domain[,@domain]*:`.
    #[error("bad source route")]
    Route,
    /// The local part is empty or has a character that needs quoting.
    #[error("bad local part")]
    LocalPart,
    /// A quoted string without its closing quote, or with a control char.
    #[error("bad quoted string")]
    Quoted,
    /// The domain is empty or has an invalid character or label.
    #[error("bad domain")]
    Domain,
    /// An address literal that is not IPv4 or `IPv6:`.
    #[error("bad address literal")]
    Literal,
}

/// A mailbox `local@domain`, the null address, or an unqualified name.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Unquoted local part; empty only for the null address.
    local: String,
    /// Domain as received (case kept), `[...]` for literals, without a
    /// trailing dot. `None` for the null address and unqualified names.
    domain: Option<String>,
    /// Source-route hops that were stripped, without their `@`.
    route: Vec<String>,
}

impl Address {
    /// The null reverse-path `<>`.
    pub fn null() -> Address {
        Address {
            local: String::new(),
            domain: None,
            route: Vec::new(),
        }
    }

    /// Build from parts, checking them as the parser would. `local` is the
    /// unquoted local part.
    pub fn from_parts(local: &str, domain: Option<&str>) -> Result<Address, AddressError> {
        if local.is_empty() || local.chars().any(char::is_control) {
            return Err(AddressError::LocalPart);
        }
        let domain = domain.map(parse_domain).transpose()?;
        Ok(Address {
            local: local.to_owned(),
            domain,
            route: Vec::new(),
        })
    }

    /// Parse a path as given after `FROM:` or `TO:`: with or without angle
    /// brackets, possibly `<>` (null) or with a source route.
    pub fn parse_path(text: &str) -> Result<Address, AddressError> {
        let text = trim_sp(text);
        let inner = match (text.strip_prefix('<'), text.ends_with('>')) {
            (Some(rest), true) => trim_sp(&rest[..rest.len() - 1]),
            (None, false) => text,
            _ => return Err(AddressError::Brackets),
        };
        if inner.is_empty() {
            return Ok(Address::null());
        }
        let (route, mailbox) = split_route(inner)?;
        let mut addr = Address::parse(mailbox)?;
        addr.route = route;
        Ok(addr)
    }

    /// Parse a bare mailbox `local@domain` or `local`.
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        let (local, rest) = if text.starts_with('"') {
            parse_quoted(text)?
        } else {
            let end = text.find('@').unwrap_or(text.len());
            let local = &text[..end];
            if local.is_empty() || !local.chars().all(is_local_char) {
                return Err(AddressError::LocalPart);
            }
            (local.to_owned(), &text[end..])
        };
        let domain = match rest.strip_prefix('@') {
            Some(d) => Some(parse_domain(d)?),
            None if rest.is_empty() => None,
            None => return Err(AddressError::LocalPart),
        };
        Ok(Address {
            local,
            domain,
            route: Vec::new(),
        })
    }

    /// The unquoted local part (`john doe` for `"john doe"@example.com`).
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain as received, `None` when unqualified or null.
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// The domain lowercased, for table lookups (`mydestination`,
    /// `relay_domains`, `transport_maps`).
    pub fn domain_lowercase(&self) -> Option<String> {
        self.domain.as_ref().map(|d| d.to_lowercase())
    }

    /// The source-route hops that were stripped (`["a", "b"]` for
    /// `<@a,@b:user@c>`).
    pub fn route(&self) -> &[String] {
        &self.route
    }

    /// True for `<>`.
    pub fn is_null(&self) -> bool {
        self.local.is_empty() && self.domain.is_none()
    }

    /// True for the unqualified `postmaster` (any case), which RFC 5321
    /// says every server must accept without a domain.
    pub fn is_postmaster(&self) -> bool {
        self.domain.is_none() && self.local.eq_ignore_ascii_case("postmaster")
    }

    /// True when the domain is an address literal `[...]`.
    pub fn is_address_literal(&self) -> bool {
        self.domain.as_deref().is_some_and(|d| d.starts_with('['))
    }

    /// True when the address is plain ASCII; otherwise the client must have
    /// declared SMTPUTF8 (Postfix: `553 5.6.7 Must declare SMTPUTF8 to send
    /// unicode address`).
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.as_deref().is_none_or(str::is_ascii)
    }

    /// True when the local part contains any of `chars`.
    pub fn local_part_has(&self, chars: &[char]) -> bool {
        self.local.contains(chars)
    }

    /// True when the sender tried to route the mail itself: a source route,
    /// or `@`, `%` or `!` in the local part (`"user@other"@relay`,
    /// `user%other@relay`, `other!user@relay`). Postfix refuses to relay
    /// such addresses for untrusted clients (`allow_untrusted_routing = no`)
    /// because a downstream host may honour the hidden destination.
    pub fn has_route(&self) -> bool {
        !self.route.is_empty() || self.local_part_has(&['@', '%', '!'])
    }

    /// The address in angle brackets, as sent after `FROM:` / `TO:`.
    pub fn to_path(&self) -> String {
        format!("<{self}>")
    }
}

/// Canonical form: `local@domain`, the local part quoted when it is not a
/// dot-atom, empty for the null address. The route is not printed.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if needs_quoting(&self.local) {
            f.write_str("\"")?;
            for c in self.local.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        } else {
            f.write_str(&self.local)?;
        }
        if let Some(d) = &self.domain {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{self}>")?;
        if !self.route.is_empty() {
            write!(f, " route={:?}", self.route)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Address, AddressError> {
        Address::parse_path(s)
    }
}

fn trim_sp(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// RFC 5322 atext plus, for SMTPUTF8, any non-ASCII character that is not
/// a control or space.
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-/=?^_`{|}~".contains(c)
        || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
}

/// Unquoted local parts may have dots anywhere (`a..b`, `.a`): broken but
/// common, and Postfix takes them; they are quoted on output.
fn is_local_char(c: char) -> bool {
    is_atext(c) || c == '.'
}

fn needs_quoting(local: &str) -> bool {
    !local.is_empty()
        && !local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// Strip `@a,@b:` off the front; return the hops and the mailbox.
fn split_route(text: &str) -> Result<(Vec<String>, &str), AddressError> {
    if !text.starts_with('@') {
        return Ok((Vec::new(), text));
    }
    let colon = text.find(':').ok_or(AddressError::Route)?;
    let mut hops = Vec::new();
    for hop in text[..colon].split(',') {
        let d = trim_sp(hop).strip_prefix('@').ok_or(AddressError::Route)?;
        hops.push(parse_domain(d).map_err(|_| AddressError::Route)?);
    }
    let mailbox = &text[colon + 1..];
    if mailbox.is_empty() {
        return Err(AddressError::Route);
    }
    Ok((hops, mailbox))
}

/// Parse `"..."` at the start of `text`; return the unquoted content and
/// what follows the closing quote.
fn parse_quoted(text: &str) -> Result<(String, &str), AddressError> {
    let mut out = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                if out.is_empty() {
                    // `""@domain` names nobody.
                    return Err(AddressError::LocalPart);
                }
                return Ok((out, &text[i + 1..]));
            }
            '\\' => match chars.next() {
                Some((_, e)) if !e.is_control() || e == '\t' => out.push(e),
                _ => return Err(AddressError::Quoted),
            },
            c if c.is_control() && c != '\t' => return Err(AddressError::Quoted),
            c => out.push(c),
        }
    }
    Err(AddressError::Quoted)
}

fn parse_domain(text: &str) -> Result<String, AddressError> {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(AddressError::Literal)?;
        if let Some(v6) = inner
            .get(..5)
            .filter(|tag| tag.eq_ignore_ascii_case("IPv6:"))
            .map(|_| &inner[5..])
        {
            v6.parse::<Ipv6Addr>().map_err(|_| AddressError::Literal)?;
            return Ok(format!("[IPv6:{v6}]"));
        }
        inner
            .parse::<Ipv4Addr>()
            .map_err(|_| AddressError::Literal)?;
        return Ok(text.to_owned());
    }
    // One trailing dot is the root; drop it so lookups match.
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 255 {
        return Err(AddressError::Domain);
    }
    for label in name.split('.') {
        let ok_char = |c: char| {
            c.is_ascii_alphanumeric()
                || c == '-'
                || c == '_'
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
        };
        if label.is_empty() || !label.chars().all(ok_char) {
            return Err(AddressError::Domain);
        }
        if label.is_ascii() && label.len() > 63 {
            return Err(AddressError::Domain);
        }
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Address, AddressError> {
        Address::parse_path(s)
    }

    #[test]
    fn plain_and_bare() {
        for s in [
            "<user@example.com>",
            "user@example.com",
            "< user@example.com >",
        ] {
            let a = p(s).unwrap();
            assert_eq!(a.local(), "user");
            assert_eq!(a.domain(), Some("example.com"));
            assert_eq!(a.to_string(), "user@example.com");
            assert_eq!(a.to_path(), "<user@example.com>");
        }
    }

    #[test]
    fn null_and_postmaster() {
        let n = p("<>").unwrap();
        assert!(n.is_null());
        assert_eq!(n.to_path(), "<>");
        let pm = p("<Postmaster>").unwrap();
        assert!(pm.is_postmaster() && !pm.is_null());
        assert_eq!(pm.domain(), None);
        assert!(!p("<postmaster@example.com>").unwrap().is_postmaster());
    }

    #[test]
    fn source_route_is_stripped_but_remembered() {
        let a = p("<@a.example,@b.example:user@c.example>").unwrap();
        assert_eq!(a.to_string(), "user@c.example");
        assert_eq!(a.route(), ["a.example", "b.example"]);
        assert!(a.has_route());
        assert_eq!(p("<@a:>"), Err(AddressError::Route));
        assert_eq!(p("<@a,b:u@c>"), Err(AddressError::Route));
        assert_eq!(p("<@a>"), Err(AddressError::Route));
    }

    #[test]
    fn quoted_local_parts() {
        let a = p("<\"john doe\"@example.com>").unwrap();
        assert_eq!(a.local(), "john doe");
        assert_eq!(a.to_string(), "\"john doe\"@example.com");
        let a = p("\"a@b\"@c").unwrap();
        assert_eq!(a.local(), "a@b");
        assert!(a.local_part_has(&['@']) && a.has_route());
        let a = p(r#"<"q\"uote\\d"@x>"#).unwrap();
        assert_eq!(a.local(), r#"q"uote\d"#);
        assert_eq!(a.to_string(), r#""q\"uote\\d"@x"#);
        // A quoted dot-atom needs no quotes on output.
        assert_eq!(p("<\"plain\"@x>").unwrap().to_string(), "plain@x");
        assert_eq!(p("<\"open@x>"), Err(AddressError::Quoted));
        assert_eq!(p("<\"\"@x>"), Err(AddressError::LocalPart));
        assert_eq!(p("<\"a\"b@x>"), Err(AddressError::LocalPart));
    }

    #[test]
    fn odd_dots_are_quoted_on_output() {
        assert_eq!(p("<a..b@x>").unwrap().to_string(), "\"a..b\"@x");
        assert_eq!(p("<.a@x>").unwrap().to_string(), "\".a\"@x");
    }

    #[test]
    fn routing_tricks() {
        assert!(p("<user%other@relay>").unwrap().has_route());
        assert!(p("<other!user@relay>").unwrap().has_route());
        assert!(!p("<user@relay>").unwrap().has_route());
        assert_eq!(p("<a@b@c>"), Err(AddressError::Domain));
    }

    #[test]
    fn address_literals() {
        let a = p("<user@[127.0.0.1]>").unwrap();
        assert!(a.is_address_literal());
        assert_eq!(a.to_string(), "user@[127.0.0.1]");
        let a = p("<user@[ipv6:::1]>").unwrap();
        assert_eq!(a.domain(), Some("[IPv6:::1]"));
        assert_eq!(
            p("<user@[IPv6:2001:db8::1]>").unwrap().to_string(),
            "user@[IPv6:2001:db8::1]"
        );
        assert_eq!(p("<user@[300.0.0.1]>"), Err(AddressError::Literal));
        assert_eq!(p("<user@[::1]>"), Err(AddressError::Literal));
        assert_eq!(p("<user@[1.2.3.4>"), Err(AddressError::Literal));
    }

    #[test]
    fn utf8() {
        let a = p("<用户@例子.广告>").unwrap();
        assert!(!a.is_ascii());
        assert_eq!(a.to_string(), "用户@例子.广告");
        let a = p("<Ünïcödé@BÜCHER.example>").unwrap();
        assert_eq!(a.domain_lowercase().as_deref(), Some("bücher.example"));
    }

    #[test]
    fn domains() {
        assert_eq!(p("<u@Example.COM.>").unwrap().domain(), Some("Example.COM"));
        assert_eq!(p("<u@>"), Err(AddressError::Domain));
        assert_eq!(p("<u@a..b>"), Err(AddressError::Domain));
        assert_eq!(p("<u@a b>"), Err(AddressError::Domain));
        assert_eq!(
            p(&format!("<u@{}.com>", "a".repeat(64))),
            Err(AddressError::Domain)
        );
    }

    #[test]
    fn brackets_and_junk() {
        assert_eq!(p("<u@x"), Err(AddressError::Brackets));
        assert_eq!(p("u@x>"), Err(AddressError::Brackets));
        assert_eq!(p("<@x>"), Err(AddressError::Route));
        assert_eq!(p("<a b@x>"), Err(AddressError::LocalPart));
        assert_eq!(p("<a\u{0}b@x>"), Err(AddressError::LocalPart));
        assert_eq!(p("<\"a\rb\"@x>"), Err(AddressError::Quoted));
        assert_eq!(p("<a,b@x>"), Err(AddressError::LocalPart));
    }

    #[test]
    fn unqualified() {
        let a = p("user").unwrap();
        assert_eq!((a.local(), a.domain()), ("user", None));
        assert_eq!(a.to_string(), "user");
    }

    #[test]
    fn from_parts() {
        let a = Address::from_parts("john doe", Some("example.com")).unwrap();
        assert_eq!(a.to_string(), "\"john doe\"@example.com");
        assert_eq!(p(&a.to_path()).unwrap(), a);
        assert!(Address::from_parts("", Some("x")).is_err());
        assert!(Address::from_parts("a", Some("b c")).is_err());
    }
}
