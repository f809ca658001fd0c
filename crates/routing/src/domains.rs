//! Domain lists: `mydestination`, `virtual_alias_domains`,
//! `virtual_mailbox_domains` and `relay_domains`.
//!
//! Entries are names or `type:table` lookup tables (any value means "yes"),
//! optionally negated with `!`; the first entry that matches decides.
//! Postfix has two flavours:
//!
//! * string lists (`mydestination`, `virtual_*_domains`): the domain must
//!   equal a name, or be a key in a table;
//! * host lists (`relay_domains`): a `.domain` name matches subdomains, and
//!   when the parameter is in `parent_domain_matches_subdomains` (the
//!   default for `relay_domains`) a bare `domain` matches them too. Tables
//!   are asked for the domain, then for each parent as `.parent` (or
//!   `parent` in the parent-matches style).

use postern_config::{Params, Table};

use crate::RoutingError;

#[derive(Clone, Debug)]
pub(crate) struct DomainList {
    /// The parameter, named in errors.
    param: &'static str,
    entries: Vec<Entry>,
    /// Host-list matching (subdomains) rather than exact strings.
    hosts: bool,
    /// `parent_domain_matches_subdomains` names this parameter.
    parent_matches: bool,
}

#[derive(Clone, Debug)]
struct Entry {
    negate: bool,
    pattern: Pattern,
}

#[derive(Clone, Debug)]
enum Pattern {
    /// Lower case, without a trailing dot.
    Name(String),
    Table(Table),
}

/// How a list matches domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    Strings,
    Hosts { parent_matches: bool },
}

impl DomainList {
    pub fn open(params: &Params, param: &'static str, style: Style) -> Result<Self, RoutingError> {
        let mut entries = Vec::new();
        for item in params.list(param) {
            let (negate, text) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item.as_str()),
            };
            let pattern = if text.starts_with('/') {
                // Postfix splices the file's words into the list; Postern
                // keeps lists in tables, which reload on change.
                return Err(RoutingError::Config {
                    param,
                    value: item.clone(),
                    reason: "file names in domain lists are not supported; \
                             use a table such as hash:/path"
                        .into(),
                });
            } else if text.contains(':') && !text.starts_with('[') {
                let table = Table::open(text, params.base_dir())
                    .map_err(|source| RoutingError::Table { param, source })?;
                Pattern::Table(table)
            } else {
                let mut name = text.to_ascii_lowercase();
                crate::address::strip_trailing_dot(&mut name);
                Pattern::Name(name)
            };
            entries.push(Entry { negate, pattern });
        }
        let (hosts, parent_matches) = match style {
            Style::Strings => (false, false),
            Style::Hosts { parent_matches } => (true, parent_matches),
        };
        Ok(DomainList {
            param,
            entries,
            hosts,
            parent_matches,
        })
    }

    /// Whether `domain` is in the list; a failing table is an error (the
    /// caller defers rather than guess).
    pub fn matches(&self, domain: &str) -> Result<bool, RoutingError> {
        let mut d = domain.to_ascii_lowercase();
        crate::address::strip_trailing_dot(&mut d);
        for e in &self.entries {
            let hit = match &e.pattern {
                Pattern::Name(n) => self.name_matches(n, &d),
                Pattern::Table(t) => self.table_matches(t, &d)?,
            };
            if hit {
                return Ok(!e.negate);
            }
        }
        Ok(false)
    }

    fn name_matches(&self, pattern: &str, d: &str) -> bool {
        if pattern == d {
            return true;
        }
        if !self.hosts {
            return false;
        }
        if pattern.starts_with('.') {
            return d.len() > pattern.len() && d.ends_with(pattern);
        }
        self.parent_matches
            && d.len() > pattern.len()
            && d.ends_with(pattern)
            && d.as_bytes()[d.len() - pattern.len() - 1] == b'.'
    }

    fn table_matches(&self, t: &Table, d: &str) -> Result<bool, RoutingError> {
        let found = |key: &str| -> Result<bool, RoutingError> {
            t.lookup(key)
                .map(|v| v.is_some())
                .map_err(|source| RoutingError::Table {
                    param: self.param,
                    source,
                })
        };
        if found(d)? {
            return Ok(true);
        }
        if !self.hosts {
            return Ok(false);
        }
        for key in parent_keys(d, self.parent_matches) {
            if found(key)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// The parent-domain keys of `d`, nearest first: `.b.c`, `.c` or, in the
/// parent-matches style, `b.c`, `c`.
pub(crate) fn parent_keys(d: &str, parent_matches: bool) -> impl Iterator<Item = &str> {
    d.match_indices('.').map(
        move |(i, _)| {
            if parent_matches { &d[i + 1..] } else { &d[i..] }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_key_order() {
        let v: Vec<_> = parent_keys("a.b.example", false).collect();
        assert_eq!(v, vec![".b.example", ".example"]);
        let v: Vec<_> = parent_keys("a.b.example", true).collect();
        assert_eq!(v, vec!["b.example", "example"]);
        assert_eq!(parent_keys("localhost", true).count(), 0);
    }
}
