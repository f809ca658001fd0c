//! The resolver: address class, transport and next hop of one recipient
//! (Postfix `resolve.c` and `transport.c`), and the relay-permission
//! question built on it.

use crate::address::{self, split, valid_domain};
use crate::domains::parent_keys;
use crate::lookup::lookup_partial;
use crate::nexthop;
use crate::{AddressClass, Route, Router, RoutingError};

/// What Postfix calls an empty local part after resolving.
const EMPTY_ADDRESS: &str = "MAILER-DAEMON";

/// Transports whose next hop is free text, not a destination.
fn text_nexthop(transport: &str) -> bool {
    matches!(transport, "error" | "retry" | "discard")
}

/// Applies one transport(5) result, `transport:nexthop`, to the class
/// defaults. An empty transport keeps the class transport and changes only
/// a given next hop; a new transport without a next hop resets it to the
/// recipient domain (so that a class default such as `relayhost` does not
/// leak into it), or to a generic text for `error`/`retry`.
fn apply_entry(value: &str, rcpt_domain: &str, channel: &mut String, nexthop: &mut String) {
    let (new_channel, new_nexthop) = value.split_once(':').unwrap_or((value, ""));
    let (new_channel, new_nexthop) = (new_channel.trim(), new_nexthop.trim());
    if new_channel.is_empty() {
        if !new_nexthop.is_empty() {
            *nexthop = new_nexthop.to_string();
        }
        return;
    }
    *channel = new_channel.to_string();
    *nexthop = if !new_nexthop.is_empty() {
        new_nexthop.to_string()
    } else if matches!(new_channel, "error" | "retry") {
        "Address is undeliverable".to_string()
    } else {
        rcpt_domain.to_string()
    };
}

impl Router {
    /// The route of one recipient, which should already be rewritten and
    /// virtual-alias expanded.
    ///
    /// Local domains are stripped and routing operators in what is left
    /// are followed (`user%other@here` -> `user@other`, `site!user@here`
    /// -> `user@site`), as Postfix does, so that the class is that of the
    /// final destination. Then the class gives the transport (`local_transport`,
    /// `error` for unknown virtual alias recipients, `virtual_transport`,
    /// `relay_transport`, `default_transport`) and the next hop (the
    /// recipient domain; `relayhost` for relay and default; a next hop
    /// written in the transport parameter), and last `transport_maps` may
    /// override both: keys are the full address, the address without its
    /// extension, the domain, each parent as `.parent`, then `*`.
    pub fn resolve(&self, addr: &str) -> Result<Route, RoutingError> {
        let mut a = addr.trim().to_string();
        let mut saved_domain: Option<String> = None;
        let mut remote = false;
        // Each pass removes text or a routing operator; this bounds
        // pathological input.
        let max_passes = a.len() + 100;
        for pass in 0.. {
            if pass > max_passes {
                tracing::warn!("resolve: <{addr}>: giving up after {pass} iterations");
                break;
            }
            if a.contains('@') {
                address::strip_trailing_dot(&mut a);
            }
            if a.ends_with('@') {
                a.pop();
            }
            if let Some(at) = a.rfind('@') {
                if !self.is_local_domain(&a[at + 1..])? {
                    remote = true;
                    break;
                }
                saved_domain = Some(a[at + 1..].to_string());
                a.truncate(at);
            }
            if a.contains('@') && !self.dequoted {
                // resolve_dequoted = no: an `@` from a quoted local part
                // is no operator; the address stays routed.
                break;
            }
            if a.contains('@')
                || (self.canon.swap_bangpath && a.contains('!'))
                || (self.canon.percent_hack && a.contains('%'))
            {
                a = self.canon.rewrite(&a);
                continue;
            }
            if a.is_empty() {
                a = EMPTY_ADDRESS.to_string();
            }
            break;
        }

        let recipient = if remote {
            a
        } else {
            let domain = saved_domain.as_deref().unwrap_or(&self.myhostname);
            format!("{a}@{domain}")
        };
        let (_, rcpt_domain) = split(&recipient);
        let rcpt_domain = rcpt_domain.unwrap_or_default();
        let bad_domain = !valid_domain(rcpt_domain);
        // Routed: the first routing operator is not the "@" before the
        // domain. Checked whatever swap_bangpath and allow_percent_hack
        // say, because the next hop may honour them.
        let first_op = recipient.find(['@', '!', '%']).unwrap_or(0);
        let routed = &recipient[first_op + 1..] != rcpt_domain;

        let (class, mut channel, mut nexthop) = if !remote {
            (
                AddressClass::Local,
                self.local_transport.clone(),
                rcpt_domain.to_string(),
            )
        } else if self.virtual_alias_domains.matches(rcpt_domain)? {
            let text = if self.show_table_name {
                "User unknown in virtual alias table"
            } else {
                "User unknown"
            };
            (
                AddressClass::VirtualAlias,
                "error".to_string(),
                text.to_string(),
            )
        } else if self.virtual_mailbox_domains.matches(rcpt_domain)? {
            (
                AddressClass::VirtualMailbox,
                self.virtual_transport.clone(),
                rcpt_domain.to_string(),
            )
        } else {
            let (class, channel) = if self.relay_domains.matches(rcpt_domain)? {
                (AddressClass::Relay, self.relay_transport.clone())
            } else {
                (AddressClass::Default, self.default_transport.clone())
            };
            let nexthop = if self.relayhost.is_empty() {
                rcpt_domain.to_string()
            } else {
                self.relayhost.clone()
            };
            (class, channel, nexthop)
        };
        // "local:$myhostname": a next hop in the parameter wins.
        if let Some((c, n)) = channel.split_once(':') {
            if !n.trim().is_empty() {
                nexthop = n.trim().to_string();
            }
            channel = c.trim().to_string();
        }

        // An unknown virtual alias recipient stays an error.
        if class != AddressClass::VirtualAlias {
            self.transport_lookup(&recipient, rcpt_domain, &mut channel, &mut nexthop)?;
        }

        let target = if text_nexthop(&channel) {
            nexthop::Target {
                host: String::new(),
                port: None,
                mx_lookup: false,
            }
        } else {
            nexthop::parse(&nexthop)
        };
        Ok(Route {
            class,
            transport: channel,
            nexthop,
            recipient: recipient.clone(),
            mx_lookup: target.mx_lookup,
            host: target.host,
            port: target.port,
            routed,
            bad_domain,
        })
    }

    /// transport(5) lookups; true when an entry applied.
    fn transport_lookup(
        &self,
        recipient: &str,
        rcpt_domain: &str,
        channel: &mut String,
        nexthop: &mut String,
    ) -> Result<bool, RoutingError> {
        let maps = &self.transport_maps;
        if maps.is_empty() {
            return Ok(false);
        }
        let err = |source| RoutingError::Table {
            param: "transport_maps",
            source,
        };
        let mut apply = |value: String| {
            apply_entry(&value, rcpt_domain, channel, nexthop);
            Ok(true)
        };
        // The full address is the only key pattern tables see.
        if let Some(v) = maps.lookup(recipient).map_err(err)? {
            return apply(v);
        }
        let (local, _) = split(recipient);
        if let Some((base, _)) = address::split_extension(local, &self.delimiters)
            && let Some(v) = lookup_partial(maps, &format!("{base}@{rcpt_domain}")).map_err(err)?
        {
            return apply(v);
        }
        let domain = rcpt_domain.to_ascii_lowercase();
        if let Some(v) = lookup_partial(maps, &domain).map_err(err)? {
            return apply(v);
        }
        for key in parent_keys(&domain, self.transport_parent_matches) {
            if let Some(v) = lookup_partial(maps, key).map_err(err)? {
                return apply(v);
            }
        }
        if let Some(v) = maps.lookup("*").map_err(err)? {
            return apply(v);
        }
        Ok(false)
    }

    /// Whether a virtual alias sends mail for `recipient` on to another
    /// domain: the recipient expands (after its canonical rewrite) into
    /// an address that is not its own and whose class is relay or default
    /// (mail that leaves this host). Mail a forwarder sends on that way is
    /// what ARC sealing is for; a relay recipient itself is not forwarded.
    pub fn forwards_outside(&self, recipient: &str) -> Result<bool, RoutingError> {
        let rewritten = self.rewrite_recipient(recipient)?;
        for addr in self.expand_virtual(&rewritten)? {
            if addr.eq_ignore_ascii_case(&rewritten) {
                continue;
            }
            let class = self.resolve(&addr)?.class;
            if matches!(class, AddressClass::Relay | AddressClass::Default) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether smtpd may accept mail for `recipient` from a client that is
    /// not trusted (`reject_unauth_destination`): its domain is local,
    /// virtual, or a relay domain (with subdomains when
    /// `parent_domain_matches_subdomains` names `relay_domains`), and the
    /// local part holds no routing operators that would send it on
    /// elsewhere (`user%third.party@relay.domain`).
    ///
    /// Takes the recipient address, not just its domain, because the
    /// answer depends on the local part too; a bare `user` is local.
    pub fn is_authorized_destination(&self, recipient: &str) -> Result<bool, RoutingError> {
        Ok(self.is_authorized_route(&self.resolve(recipient)?))
    }

    /// [`Router::is_authorized_destination`] for a route already resolved
    /// (Postfix `permit_auth_destination`): routed addresses only with
    /// `allow_untrusted_routing`, then final delivery here or a relay
    /// domain.
    pub fn is_authorized_route(&self, r: &Route) -> bool {
        if self.is_untrusted_routing(r) {
            return false;
        }
        r.class.is_final() || r.class == AddressClass::Relay
    }

    /// The route's local part still routes elsewhere and
    /// `allow_untrusted_routing` is off: such an address earns no relay
    /// permission, nor an access table's OK.
    pub fn is_untrusted_routing(&self, r: &Route) -> bool {
        r.routed && !self.allow_untrusted_routing
    }

    /// Where local delivery sends a recipient of a local domain that is
    /// not a local user: `fallback_transport` (`transport:nexthop`; no next
    /// hop means the recipient domain). None when it is not set, and the
    /// recipient is unknown.
    pub fn fallback_route(&self, recipient: &str) -> Option<Route> {
        if self.fallback_transport.is_empty() {
            return None;
        }
        let (channel, nexthop) = self
            .fallback_transport
            .split_once(':')
            .unwrap_or((&self.fallback_transport, ""));
        let (channel, nexthop) = (channel.trim(), nexthop.trim());
        if channel.is_empty() {
            tracing::warn!("fallback_transport: null transport is not allowed");
            return None;
        }
        let domain = split(recipient).1.unwrap_or(&self.myhostname);
        let nexthop = if nexthop.is_empty() { domain } else { nexthop };
        let target = nexthop::parse(nexthop);
        Some(Route {
            class: AddressClass::Local,
            transport: channel.to_string(),
            nexthop: nexthop.to_string(),
            recipient: recipient.to_string(),
            mx_lookup: target.mx_lookup,
            host: target.host,
            port: target.port,
            routed: false,
            bad_domain: !valid_domain(domain),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_entry_semantics() {
        for (value, want) in [
            (":", ("relay", "relayhost.example")),
            (":[10.0.0.1]", ("relay", "[10.0.0.1]")),
            ("smtp", ("smtp", "example.com")),
            ("smtp:", ("smtp", "example.com")),
            ("smtp:[mx]:25", ("smtp", "[mx]:25")),
            ("error:5.1.1 gone", ("error", "5.1.1 gone")),
            ("error", ("error", "Address is undeliverable")),
            ("discard:spam", ("discard", "spam")),
            ("local", ("local", "example.com")),
        ] {
            let mut c = "relay".to_string();
            let mut n = "relayhost.example".to_string();
            apply_entry(value, "example.com", &mut c, &mut n);
            assert_eq!((c.as_str(), n.as_str()), want, "value {value:?}");
        }
    }
}
