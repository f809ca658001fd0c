//! Address-keyed table lookups and the two cleanup mappings built on them:
//! canonical (one address to one) and virtual alias (one to many).
//!
//! The lookup order is canonical(5)'s and virtual(5)'s (Postfix
//! `mail_addr_find`): `user+ext@domain`, `user@domain`, then — only when
//! the domain is `$myorigin`, in `$mydestination` or one of this host's
//! address literals — `user+ext` and `user`, and last `@domain`. Regular
//! expression and CIDR tables see only the full address.
//!
//! A result that starts with `@` keeps the local part (`@old @new` changes
//! the domain of every address); each result is rewritten to canonical
//! form; an extension the matched key did not have is carried over when
//! `propagate_unmatched_extensions` names the mapping.

use std::collections::HashSet;

use postern_config::{Maps, TableError};

use crate::address::{insert_extension, split, split_extension, split_results};
use crate::{Router, RoutingError};

/// Postfix cleanup's fixed limit on canonical mapping chains.
const CANONICAL_NESTING: usize = 10;

/// A lookup hit, and the extension that the matched key lacked.
struct Found {
    value: String,
    unmatched_ext: Option<String>,
}

/// First answer from the fixed-string tables of `maps`.
pub(crate) fn lookup_partial(maps: &Maps, key: &str) -> Result<Option<String>, TableError> {
    for t in maps.tables() {
        if t.is_pattern() {
            continue;
        }
        if let Some(v) = t.lookup(key)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

impl Router {
    /// `mail_addr_find` with Postfix's default strategy.
    fn find_addr(
        &self,
        maps: &Maps,
        param: &'static str,
        addr: &str,
    ) -> Result<Option<Found>, RoutingError> {
        let err = |source| RoutingError::Table { param, source };
        let hit = |value: String, ext: Option<&str>| {
            Some(Found {
                value,
                unmatched_ext: ext.map(str::to_string),
            })
        };
        let (local, domain) = split(addr);
        let ext = split_extension(local, &self.delimiters);

        if let Some(v) = maps.lookup(addr).map_err(err)? {
            return Ok(hit(v, None));
        }
        if let (Some((base, ext)), Some(d)) = (ext, domain)
            && let Some(v) = lookup_partial(maps, &format!("{base}@{d}")).map_err(err)?
        {
            return Ok(hit(v, Some(ext)));
        }
        let local_domain = match domain {
            None => true,
            Some(d) => d.eq_ignore_ascii_case(&self.myorigin) || self.is_local_domain(d)?,
        };
        if local_domain {
            if let Some(v) = lookup_partial(maps, local).map_err(err)? {
                return Ok(hit(v, None));
            }
            if let Some((base, ext)) = ext
                && let Some(v) = lookup_partial(maps, base).map_err(err)?
            {
                return Ok(hit(v, Some(ext)));
            }
        }
        if let Some(d) = domain
            && let Some(v) = lookup_partial(maps, &format!("@{d}")).map_err(err)?
        {
            // The key had no local part, so neither had it an extension.
            return Ok(hit(v, ext.map(|(_, e)| e)));
        }
        Ok(None)
    }

    /// Whether `maps` know `addr` (`mail_addr_find`): smtpd's recipient
    /// table checks ask this, as cleanup's mappings do.
    pub fn find_address(
        &self,
        maps: &Maps,
        param: &'static str,
        addr: &str,
    ) -> Result<bool, RoutingError> {
        Ok(self.find_addr(maps, param, addr)?.is_some())
    }

    /// `mail_addr_map`: the lookup result as canonical addresses.
    fn map_addr(
        &self,
        maps: &Maps,
        param: &'static str,
        addr: &str,
        propagate: bool,
    ) -> Result<Option<Vec<String>>, RoutingError> {
        let Some(found) = self.find_addr(maps, param, addr)? else {
            return Ok(None);
        };
        let ext = found.unmatched_ext.as_deref();
        let mut value = found.value;
        if value.starts_with('@') {
            // "@domain" results keep the local part, minus an extension
            // that is added back below only when it propagates.
            let (local, _) = split(addr);
            let local = match ext {
                Some(e) => &local[..local.len() - e.len()],
                None => local,
            };
            value = format!("{local}{value}");
        }
        let out = split_results(&value)
            .iter()
            .map(|a| {
                let a = self.canon.rewrite(a);
                match ext {
                    Some(e) if propagate => insert_extension(&a, e),
                    _ => a,
                }
            })
            .collect();
        Ok(Some(out))
    }

    /// `cleanup_map11`: canonical mapping, repeated on its own result until
    /// nothing matches or the result maps to itself.
    fn map11(
        &self,
        maps: &Maps,
        param: &'static str,
        addr: String,
    ) -> Result<String, RoutingError> {
        if maps.is_empty() {
            return Ok(addr);
        }
        let mut addr = addr;
        for _ in 0..CANONICAL_NESTING {
            let Some(mut results) = self.map_addr(maps, param, &addr, self.propagate_canonical)?
            else {
                return Ok(addr);
            };
            if results.len() != 1 {
                tracing::warn!("multi-valued {param} entry for {addr}; using the first");
            }
            let Some(new) = results.drain(..).next() else {
                return Ok(addr);
            };
            let same = new.eq_ignore_ascii_case(&addr);
            addr = new;
            if same {
                return Ok(addr);
            }
        }
        tracing::warn!("unreasonable {param} nesting for {addr}");
        Err(RoutingError::Nesting {
            param,
            address: addr,
            limit: CANONICAL_NESTING,
        })
    }

    /// The canonical form alone (no tables): what every envelope address
    /// gets before anything else. The null address stays null.
    pub fn canonicalize(&self, addr: &str) -> String {
        self.canon.rewrite(addr)
    }

    /// Canonical form, then `sender_canonical_maps`, then `canonical_maps`.
    /// The null sender stays null.
    pub fn rewrite_sender(&self, addr: &str) -> Result<String, RoutingError> {
        let a = self.canon.rewrite(addr);
        if a.is_empty() {
            return Ok(a);
        }
        let a = self.map11(&self.sender_canonical_maps, "sender_canonical_maps", a)?;
        self.map11(&self.canonical_maps, "canonical_maps", a)
    }

    /// Canonical form, then `recipient_canonical_maps`, then
    /// `canonical_maps`.
    pub fn rewrite_recipient(&self, addr: &str) -> Result<String, RoutingError> {
        let a = self.canon.rewrite(addr);
        if a.is_empty() {
            return Ok(a);
        }
        let a = self.map11(
            &self.recipient_canonical_maps,
            "recipient_canonical_maps",
            a,
        )?;
        self.map11(&self.canonical_maps, "canonical_maps", a)
    }

    /// `virtual_alias_maps` expansion of one (rewritten) recipient: every
    /// result is expanded again, up to `virtual_alias_recursion_limit`
    /// levels and `virtual_alias_expansion_limit` addresses; an address
    /// that expands to itself (`joe@x joe@x, copy@y`) is kept and not
    /// expanded again. No match returns the address itself.
    pub fn expand_virtual(&self, addr: &str) -> Result<Vec<String>, RoutingError> {
        const PARAM: &str = "virtual_alias_maps";
        let mut out = vec![addr.to_string()];
        if self.virtual_alias_maps.is_empty() {
            return Ok(out);
        }
        // Addresses that expanded into themselves, lower case.
        let mut fixed: HashSet<String> = HashSet::new();
        let mut i = 0;
        while i < out.len() {
            if out.len() > self.expansion_limit {
                tracing::warn!("unreasonable {PARAM} expansion size for {addr}");
                return Err(RoutingError::ExpansionSize {
                    param: PARAM,
                    address: addr.to_string(),
                    limit: self.expansion_limit,
                });
            }
            let mut count = 0;
            loop {
                if fixed.contains(&out[i].to_ascii_lowercase()) {
                    break;
                }
                if count >= self.recursion_limit {
                    tracing::warn!("unreasonable {PARAM} nesting for {addr}");
                    return Err(RoutingError::Nesting {
                        param: PARAM,
                        address: addr.to_string(),
                        limit: self.recursion_limit,
                    });
                }
                let lhs = out[i].clone();
                let Some(results) = self.map_addr(
                    &self.virtual_alias_maps,
                    PARAM,
                    &lhs,
                    self.propagate_virtual,
                )?
                else {
                    break;
                };
                if results.is_empty() {
                    break;
                }
                for (n, r) in results.into_iter().enumerate() {
                    if r.eq_ignore_ascii_case(&lhs) {
                        fixed.insert(lhs.to_ascii_lowercase());
                    }
                    if n == 0 {
                        out[i] = r;
                    } else {
                        out.push(r);
                    }
                }
                count += 1;
            }
            i += 1;
        }
        let mut seen = HashSet::new();
        out.retain(|a| seen.insert(a.to_ascii_lowercase()));
        Ok(out)
    }
}
