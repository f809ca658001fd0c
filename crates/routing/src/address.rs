//! Address strings in Postfix's internal (unquoted) form, and the
//! canonical-form rewrite that trivial-rewrite applies to every envelope
//! address (`rewrite.c`'s "local" rule set).
//!
//! The domain is whatever follows the last `@`, as Postfix's internal form
//! has it; a local part may therefore contain `@`, `%` or `!` routing
//! operators, which `resolve` looks at on purpose.

use std::net::IpAddr;

/// `local@domain` split at the last `@`; no `@` means no domain.
pub(crate) fn split(addr: &str) -> (&str, Option<&str>) {
    match addr.rfind('@') {
        Some(i) => (&addr[..i], Some(&addr[i + 1..])),
        None => (addr, None),
    }
}

/// The settings of the canonical-form rewrite.
#[derive(Clone, Debug)]
pub(crate) struct Canon {
    pub myorigin: String,
    pub mydomain: String,
    pub append_at_myorigin: bool,
    pub append_dot_mydomain: bool,
    pub swap_bangpath: bool,
    pub percent_hack: bool,
}

impl Canon {
    /// Rewrites one address to `user@domain` form: strips a source route,
    /// turns `site!user` into `user@site` or `user%domain` into
    /// `user@domain`, else appends `@$myorigin`; optionally appends
    /// `.$mydomain`; strips one trailing dot. The null address stays null.
    pub fn rewrite(&self, addr: &str) -> String {
        let mut a = addr.trim().to_string();
        if a.is_empty() {
            return a;
        }
        // A lone "@" is the null address in disguise.
        if a == "@" {
            return String::new();
        }
        // "@hop1,@hop2:user@domain": RFC 5321 says ignore the route.
        if a.starts_with('@')
            && let Some(colon) = a.find(':')
            && colon + 1 < a.len()
        {
            a.drain(..=colon);
        }
        if !a.contains('@') {
            if self.swap_bangpath
                && let Some(bang) = a.find('!')
            {
                // The first "!" separates the first hop from the rest.
                a = format!("{}@{}", &a[bang + 1..], &a[..bang]);
            } else if self.percent_hack
                && let Some(pct) = a.rfind('%')
            {
                a.replace_range(pct..=pct, "@");
            } else if self.append_at_myorigin && !self.myorigin.is_empty() {
                a.push('@');
                a.push_str(&self.myorigin);
            }
        }
        if self.append_dot_mydomain
            && !self.mydomain.is_empty()
            && let (_, Some(domain)) = split(&a)
            && !domain.is_empty()
            && !domain.starts_with('[')
            && !domain.contains('.')
        {
            a.push('.');
            a.push_str(&self.mydomain);
        }
        strip_trailing_dot(&mut a);
        a
    }
}

/// "user@example.com." -> "user@example.com", but leaves "x@." and "x.."
/// alone so that diagnostics show the bogus form.
pub(crate) fn strip_trailing_dot(a: &mut String) {
    if a.len() > 1 && a.ends_with('.') && !a.ends_with("..") && !a.ends_with("@.") {
        a.pop();
    }
}

/// The address extension of a local part: it starts at the first
/// `recipient_delimiter` character, which may not be the first character.
/// Returns (base, extension including the delimiter).
pub(crate) fn split_extension<'a>(local: &'a str, delims: &str) -> Option<(&'a str, &'a str)> {
    if delims.is_empty() {
        return None;
    }
    match local.find(|c| delims.contains(c)) {
        Some(i) if i > 0 => Some((&local[..i], &local[i..])),
        _ => None,
    }
}

/// Puts an extension back into an address: `user@d` + `+ext` ->
/// `user+ext@d`.
pub(crate) fn insert_extension(addr: &str, ext: &str) -> String {
    match addr.rfind('@') {
        Some(i) => format!("{}{ext}{}", &addr[..i], &addr[i..]),
        None => format!("{addr}{ext}"),
    }
}

/// The address in a domain literal: `[192.0.2.1]`, `[IPv6:2001:db8::1]`
/// (RFC 5321) or `[2001:db8::1]`.
pub(crate) fn literal_ip(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    strip_ipv6_tag(inner).parse().ok()
}

/// Drops a leading `IPv6:` tag, any case.
pub(crate) fn strip_ipv6_tag(s: &str) -> &str {
    match s.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &s[5..],
        _ => s,
    }
}

/// Whether a recipient domain is syntactically usable: a host name of
/// letters, digits, `-` and `_` in non-empty labels (not all numeric), or
/// an address literal.
pub(crate) fn valid_domain(domain: &str) -> bool {
    if domain.starts_with('[') {
        return literal_ip(domain).is_some();
    }
    if domain.is_empty() || domain.len() > 255 {
        return false;
    }
    let mut all_numeric = true;
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return false;
        }
        all_numeric &= label.bytes().all(|b| b.is_ascii_digit());
    }
    !all_numeric
}

/// Splits a table result into addresses: commas and whitespace separate
/// them, and an address may be written in angle brackets.
pub(crate) fn split_results(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(|s| s.trim())
        .map(|s| {
            s.strip_prefix('<')
                .and_then(|s| s.strip_suffix('>'))
                .unwrap_or(s)
        })
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon() -> Canon {
        Canon {
            myorigin: "example.org".into(),
            mydomain: "example.org".into(),
            append_at_myorigin: true,
            append_dot_mydomain: false,
            swap_bangpath: true,
            percent_hack: true,
        }
    }

    #[test]
    fn canonical_rewrite_table() {
        let c = canon();
        for (input, want) in [
            ("", ""),
            ("@", ""),
            ("joe", "joe@example.org"),
            ("joe@example.com", "joe@example.com"),
            ("joe@example.com.", "joe@example.com"),
            ("joe@.", "joe@."),
            ("host!joe", "joe@host"),
            ("a!b!joe", "b!joe@a"),
            ("joe%remote.example", "joe@remote.example"),
            ("a%b%c", "a%b@c"),
            ("joe%remote@local.example", "joe%remote@local.example"),
            ("@hop1,@hop2:joe@example.com", "joe@example.com"),
            ("joe@[192.0.2.1]", "joe@[192.0.2.1]"),
        ] {
            assert_eq!(c.rewrite(input), want, "input {input:?}");
        }
    }

    #[test]
    fn rewrite_switches() {
        let mut c = canon();
        c.swap_bangpath = false;
        c.percent_hack = false;
        assert_eq!(c.rewrite("host!joe"), "host!joe@example.org");
        assert_eq!(c.rewrite("joe%x"), "joe%x@example.org");
        c.append_at_myorigin = false;
        assert_eq!(c.rewrite("joe"), "joe");
        c.append_dot_mydomain = true;
        assert_eq!(c.rewrite("joe@box"), "joe@box.example.org");
        assert_eq!(c.rewrite("joe@box.lan"), "joe@box.lan");
        assert_eq!(c.rewrite("joe@[10.0.0.1]"), "joe@[10.0.0.1]");
    }

    #[test]
    fn extensions() {
        assert_eq!(split_extension("joe+list", "+"), Some(("joe", "+list")));
        assert_eq!(split_extension("joe-a+b", "+-"), Some(("joe", "-a+b")));
        assert_eq!(split_extension("+joe", "+"), None);
        assert_eq!(split_extension("joe+x", ""), None);
        assert_eq!(insert_extension("joe@x.org", "+a"), "joe+a@x.org");
        assert_eq!(insert_extension("joe", "+a"), "joe+a");
    }

    #[test]
    fn domains_and_literals() {
        for ok in ["example.com", "a-b.example", "x_y.example", "[192.0.2.1]"] {
            assert!(valid_domain(ok), "{ok}");
        }
        for bad in ["", "a..b", "-a.b", "1.2.3.4", "ex ample.com", "[bogus]"] {
            assert!(!valid_domain(bad), "{bad}");
        }
        assert_eq!(
            literal_ip("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(literal_ip("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(literal_ip("example.com"), None);
    }

    #[test]
    fn result_lists() {
        assert_eq!(
            split_results("a@x, b@y  <c@z>,,d"),
            vec!["a@x", "b@y", "c@z", "d"]
        );
    }
}
