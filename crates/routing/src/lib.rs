//! Routing: Postfix's trivial-rewrite and cleanup address rules, as one
//! library that qmgr uses to route each recipient, smtpd uses for address
//! classes and relay permission, and local-delivery uses to tell local
//! domains ([`LocalDomains`]). It is the only code that classifies
//! addresses, so the daemons cannot disagree about a domain.
//!
//! A recipient goes through these steps, in this order (as in Postfix):
//!
//! 1. [`Router::rewrite_recipient`] (cleanup): canonical form — a bare
//!    `user` gets `@$myorigin`, `site!user` becomes `user@site`
//!    (`swap_bangpath`), `user%domain` becomes `user@domain`
//!    (`allow_percent_hack`), optionally `.$mydomain` is appended
//!    (`append_dot_mydomain`) — then `recipient_canonical_maps`, then
//!    `canonical_maps` (canonical(5)). Senders go through
//!    [`Router::rewrite_sender`] with `sender_canonical_maps` instead.
//! 2. [`Router::expand_virtual`] (cleanup): `virtual_alias_maps`
//!    (virtual(5)), recursively, one address to many.
//! 3. [`Router::resolve`] (trivial-rewrite): the [`AddressClass`] — local
//!    (`mydestination`, this host's address literals), virtual alias,
//!    virtual mailbox, relay (`relay_domains`) or default — its transport
//!    and next hop (`relayhost` for relay and default), then
//!    `transport_maps` overrides (transport(5)).
//!
//! [`Router::is_authorized_destination`] is what smtpd's
//! `reject_unauth_destination` asks, and [`Router::fallback_route`] is where
//! local delivery sends recipients it does not know (`fallback_transport`).
//!
//! The four domain lists (`mydestination`, `virtual_alias_domains`,
//! `virtual_mailbox_domains`, `relay_domains`) take the same entries:
//! names, `.parent` names (subdomains of the parent), `!negation`,
//! `type:table` (the domain, then its parents, are looked up) and
//! `/file/name`, a file of more entries that is re-read when it changes.
//! A bare name matches subdomains too when `parent_domain_matches_subdomains`
//! names the list (by default only `relay_domains`). A list that names a
//! missing file or table, or an entry that is none of these, is an error
//! at start ([`Router::from_params`]).
//!
//! Lookup tables are the config crate's [`postern_config::Maps`]; a file
//! table re-reads itself when the file changes, so an edited transport
//! table takes effect without a restart (Postfix needs `postmap` and a
//! reload). Every [`RoutingError`] means "try again later": a table could
//! not be read, or an expansion ran away; the caller defers (4xx), never
//! bounces.
//!
//! Addresses are in Postfix's internal (unquoted) form: the domain is what
//! follows the last `@`.
//!
//! ```
//! use std::path::Path;
//! use postern_config::Config;
//! use postern_routing::{AddressClass, Router};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cfg = Config::from_str(
//!     r#"[main]
//!     myhostname = "hub.example.com"
//!     relay_domains = "example.local"
//!     transport_maps = "inline:{ example.local=:[192.168.1.100] }"
//!     "#,
//!     Path::new("/etc/postern/master.toml"),
//!     &[],
//! )?;
//! let router = Router::from_params(cfg.main())?;
//! let rcpt = router.rewrite_recipient("user@example.local")?;
//! for addr in router.expand_virtual(&rcpt)? {
//!     let route = router.resolve(&addr)?;
//!     assert_eq!(route.class, AddressClass::Relay);
//!     assert_eq!(route.to_string(), "relay:[192.168.1.100]");
//!     assert!(!route.mx_lookup);
//! }
//! assert!(!router.is_authorized_destination("user@example.net")?);
//! # Ok(())
//! # }
//! ```
//!
//! Where Postern deliberately differs from Postfix:
//!
//! * `virtual_transport` defaults to `local` (Postfix: `virtual`), because
//!   Postern's local-delivery also delivers to virtual mailboxes. An
//!   explicit setting is honoured.
//! * Own address literals (`user@[192.0.2.1]`) are local when the address is
//!   listed in `inet_interfaces`/`proxy_interfaces`, is a loopback address
//!   with `inet_interfaces` `all` or `loopback-only`, or, with `all`, one of
//!   the interface addresses the config crate found at start. Host names in
//!   these lists are not resolved; a daemon that knows more addresses passes
//!   them to [`Router::with_own_addresses`].
//! * A `/file/name` entry in a domain list is re-read when the file changes
//!   (Postfix reads it once, at start).
//! * A `.domain` entry always matches subdomains, also in the
//!   parent-matches style; and all four domain lists match alike
//!   (Postfix matches `virtual_*_domains` as plain strings).
//! * `relayhost` and transport next hops are one destination (Postfix 3.5+
//!   also accepts a list).
//! * [`Router::expand_virtual`] drops duplicate results (Postfix's cleanup
//!   does so when it writes the recipients).
//! * `relocated_maps`, `sender_dependent_*`, address masquerading and
//!   `luser_relay` are not implemented.
//!
//! # Layout
//!
//! * `lib.rs` — [`Router`] and its construction from [`Params`],
//!   [`AddressClass`], [`Route`], [`RoutingError`].
//! * `address` — internal-form address helpers and the canonical-form
//!   rewrite (Postfix `rewrite.c`).
//! * `lookup` — address-keyed table lookups (`mail_addr_find`), canonical
//!   mapping and virtual alias expansion (`cleanup_map11`/`cleanup_map1n`).
//! * `resolve` — address classes, transports, `transport_maps`, relay
//!   permission (Postfix `resolve.c`, `transport.c`).
//! * `domains` — the domain lists and their entries.
//! * `local` — [`LocalDomains`]: `mydestination` and own address literals.
//! * `nexthop` — `[host]:port` and friends.

mod address;
mod domains;
mod local;
mod lookup;
mod nexthop;
mod resolve;

use std::fmt;
use std::net::IpAddr;

use postern_config::{Config, ConfigError, Maps, Params, TableError};
use postern_envelope::ContentFilter;

use address::Canon;
use domains::DomainList;
pub use local::{LocalDomains, own_addresses};

/// Why routing could not finish. Each one defers the mail (4xx).
#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    /// A table named by `param` could not be opened or read.
    #[error("{param}: {source}")]
    Table {
        param: &'static str,
        source: TableError,
    },
    /// A parameter value the router cannot work with (refused at start).
    #[error("parameter \"{param}\": {reason}: \"{value}\"")]
    Config {
        param: &'static str,
        value: String,
        reason: String,
    },
    /// Canonical or virtual alias mapping kept rewriting past the limit.
    #[error("<{address}>: unreasonable {param} nesting (limit {limit})")]
    Nesting {
        param: &'static str,
        address: String,
        limit: usize,
    },
    /// Virtual alias expansion produced more than
    /// `virtual_alias_expansion_limit` addresses.
    #[error("<{address}>: unreasonable {param} expansion size (limit {limit})")]
    ExpansionSize {
        param: &'static str,
        address: String,
        limit: usize,
    },
}

impl RoutingError {
    /// The parameter the error is about.
    pub fn param(&self) -> &'static str {
        match self {
            RoutingError::Table { param, .. }
            | RoutingError::Config { param, .. }
            | RoutingError::Nesting { param, .. }
            | RoutingError::ExpansionSize { param, .. } => param,
        }
    }
}

/// Builds the router of `[main]` and of every service's view, as the
/// daemons will, so that a setting the router cannot use (a list file that
/// is missing, an entry in it that is no name or table, a bad transport)
/// stops the master at start, or refuses a reload, naming the file, line
/// and parameter; it never waits for mail to fail. A table file that does
/// not exist yet is no such error: the table is a surrogate whose lookups
/// fail (the daemons defer mail) until the file appears, and is used then
/// without a reload.
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    config.check_each_service(|params| {
        Router::from_params(params).map(drop).map_err(|e| {
            let reason = match &e {
                RoutingError::Table { source, .. } => source.to_string(),
                RoutingError::Config { value, reason, .. } => format!("\"{value}\": {reason}"),
                other => other.to_string(),
            };
            (e.param().to_string(), reason)
        })
    })
}

/// The address classes of ADDRESS_CLASS_README; the type travels in
/// delivery requests, so it is defined in postern-ipc.
pub use postern_ipc::delivery::AddressClass;

/// Where one recipient goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub class: AddressClass,
    /// The master.toml service that delivers (`smtp`, `relay`, `local`,
    /// `error`, `discard`, ...). `relay` is an smtp-type transport.
    pub transport: String,
    /// The transport's destination: a domain (MX lookup), `[host]`,
    /// `[host]:port`, `host:port`; for `error` and `discard` the reason
    /// text.
    pub nexthop: String,
    /// The recipient as the delivery agent should see it: `user@domain`,
    /// with `@$myhostname` added to a bare local part and routing operators
    /// of local domains resolved (`user%other@here` -> `user@other`).
    pub recipient: String,
    /// Look up MX records for `host` (no brackets in the next hop).
    pub mx_lookup: bool,
    /// The host part of `nexthop` (brackets and `IPv6:` removed); empty for
    /// `error` and `discard`.
    pub host: String,
    pub port: Option<u16>,
    /// The local part still holds routing operators (`!`, `%`, `@`), so
    /// the final destination is not the recipient domain. Relay permission
    /// is refused for such addresses.
    pub routed: bool,
    /// The recipient domain is not a valid host name or address literal.
    pub bad_domain: bool,
}

impl Route {
    /// The route through an after-queue content filter (`content_filter`,
    /// `FILTER transport:destination`), which overrides transport and next
    /// hop of every recipient (FILTER_README): the filter gets the
    /// recipient as the envelope has it, and an empty destination means
    /// the recipient's domain. The class stays, for the log and for
    /// delivery requests.
    pub fn through_filter(self, filter: &ContentFilter, envelope_recipient: &str) -> Route {
        let nexthop = if filter.nexthop.is_empty() {
            address::split(envelope_recipient)
                .1
                .unwrap_or_default()
                .to_string()
        } else {
            filter.nexthop.clone()
        };
        let target = nexthop::parse(&nexthop);
        Route {
            transport: filter.transport.clone(),
            nexthop,
            recipient: envelope_recipient.to_string(),
            mx_lookup: target.mx_lookup,
            host: target.host,
            port: target.port,
            ..self
        }
    }
}

impl fmt::Display for Route {
    /// `transport:nexthop`, the way transport(5) writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.nexthop)
    }
}

/// The routing rules of one configuration. Cheap to share: lookups take
/// `&self` and may run on many threads; clones share the open tables.
#[derive(Clone, Debug)]
pub struct Router {
    /// Settings of the canonical-form rewrite.
    canon: Canon,
    /// Added to local addresses without a domain when resolving.
    myhostname: String,
    /// Compared with domains for local-part table lookups.
    myorigin: String,
    /// `recipient_delimiter`: any of these characters starts an extension.
    delimiters: String,
    /// `propagate_unmatched_extensions` names canonical / virtual.
    propagate_canonical: bool,
    propagate_virtual: bool,
    /// `mydestination` and this host's address literals.
    local: LocalDomains,
    virtual_alias_domains: DomainList,
    virtual_mailbox_domains: DomainList,
    relay_domains: DomainList,
    canonical_maps: Maps,
    sender_canonical_maps: Maps,
    recipient_canonical_maps: Maps,
    virtual_alias_maps: Maps,
    transport_maps: Maps,
    /// `parent_domain_matches_subdomains` names transport_maps: `domain`
    /// keys match subdomains and `.domain` keys are not asked for.
    transport_parent_matches: bool,
    local_transport: String,
    virtual_transport: String,
    relay_transport: String,
    default_transport: String,
    relayhost: String,
    fallback_transport: String,
    recursion_limit: usize,
    expansion_limit: usize,
    /// Say "in virtual alias table" in the unknown-user text.
    show_table_name: bool,
    /// Permit relaying to routed addresses (Postfix
    /// `allow_untrusted_routing`, default no).
    allow_untrusted_routing: bool,
    /// `resolve_dequoted`: an `@` inside a quoted local part is a routing
    /// operator too (default yes).
    dequoted: bool,
}

impl Router {
    /// Reads the routing parameters and opens their tables. A missing
    /// table file or a bad value is an error here, at start.
    pub fn from_params(params: &Params) -> Result<Router, RoutingError> {
        let maps = |param: &'static str| {
            params
                .maps(param)
                .map_err(|source| RoutingError::Table { param, source })
        };
        let pdms = params.list("parent_domain_matches_subdomains");
        let parent = |name: &str| pdms.iter().any(|p| p == name);
        let propagate = params.words("propagate_unmatched_extensions");

        let transport = |param: &'static str, value: String| -> Result<String, RoutingError> {
            let channel = value.split(':').next().unwrap_or_default();
            if channel.trim().is_empty() {
                return Err(RoutingError::Config {
                    param,
                    value,
                    reason: "null transport is not allowed".into(),
                });
            }
            Ok(value.trim().to_string())
        };
        let virtual_transport = params.get("virtual_transport");

        Ok(Router {
            canon: Canon {
                myorigin: params.get("myorigin"),
                mydomain: params.get("mydomain"),
                append_at_myorigin: params.bool("append_at_myorigin"),
                append_dot_mydomain: params.bool("append_dot_mydomain"),
                swap_bangpath: params.bool("swap_bangpath"),
                percent_hack: params.bool("allow_percent_hack"),
            },
            myhostname: params.get("myhostname"),
            myorigin: params.get("myorigin"),
            delimiters: params.get("recipient_delimiter"),
            propagate_canonical: propagate.iter().any(|w| w == "canonical"),
            propagate_virtual: propagate.iter().any(|w| w == "virtual"),
            local: LocalDomains::from_params(params)?,
            virtual_alias_domains: DomainList::open(params, "virtual_alias_domains")?,
            virtual_mailbox_domains: DomainList::open(params, "virtual_mailbox_domains")?,
            relay_domains: DomainList::open(params, "relay_domains")?,
            canonical_maps: maps("canonical_maps")?,
            sender_canonical_maps: maps("sender_canonical_maps")?,
            recipient_canonical_maps: maps("recipient_canonical_maps")?,
            virtual_alias_maps: maps("virtual_alias_maps")?,
            transport_maps: maps("transport_maps")?,
            transport_parent_matches: parent("transport_maps"),
            local_transport: transport("local_transport", params.get("local_transport"))?,
            virtual_transport: transport("virtual_transport", virtual_transport)?,
            relay_transport: transport("relay_transport", params.get("relay_transport"))?,
            default_transport: transport("default_transport", params.get("default_transport"))?,
            relayhost: params.get("relayhost").trim().to_string(),
            fallback_transport: params.get("fallback_transport").trim().to_string(),
            recursion_limit: limit(params, "virtual_alias_recursion_limit"),
            expansion_limit: limit(params, "virtual_alias_expansion_limit"),
            show_table_name: params.bool("show_user_unknown_table_name"),
            allow_untrusted_routing: params.bool("allow_untrusted_routing"),
            dequoted: params.bool("resolve_dequoted"),
        })
    }

    /// Adds addresses of this host (its interfaces, for `inet_interfaces =
    /// all`), so that `user@[address]` is a local recipient.
    pub fn with_own_addresses(mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Router {
        self.local.add_addresses(addrs);
        self
    }

    /// Whether `domain` is this host's (`mydestination`, or an address
    /// literal of this host).
    pub fn is_local_domain(&self, domain: &str) -> Result<bool, RoutingError> {
        self.local.contains(domain)
    }
}

/// A limit of at least 1 (the parameter's kind, checked at load).
fn limit(params: &Params, name: &str) -> usize {
    usize::try_from(params.int(name)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Router>();
        check::<Route>();
        check::<RoutingError>();
    }
}
