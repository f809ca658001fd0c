//! access(5) tables (`check_client_access` and friends) and the recipient
//! table checks behind `reject_unlisted_recipient` / `_sender`.

use std::collections::HashSet;

use postern_config::{Maps, Table, TableError};
use postern_envelope::EnhancedStatus;
use postern_smtp::Address;

use postern_routing::{AddressClass, RoutingError};

use super::restriction::{self, AccessKind};
use super::{
    AccessAction, CLIENT, Eval, Fired, HELO, Nested, RECIPIENT, Refusal, Resolved, SENDER, Subject,
    Verdict, config_error, resolve, table_failure,
};

/// One lookup's answer: nothing found, or the verdict of what was found.
enum Found {
    Missed,
    Hit(Verdict),
}

impl Eval<'_, '_> {
    /// Runs one `check_*_access` restriction. The reply names what was
    /// looked up (`<name[addr]>: Client host rejected: ...`).
    pub(super) fn access(&mut self, kind: AccessKind, table: &Table, list: &Subject) -> Verdict {
        let ctx = self.ctx;
        let found = match kind {
            AccessKind::Client | AccessKind::ReverseClient => {
                let (name, namaddr) = match kind {
                    AccessKind::Client => (ctx.client_name, self.client_namaddr()),
                    _ => (
                        ctx.reverse_name,
                        format!("{}[{}]", ctx.reverse_name, ctx.client_addr.to_canonical()),
                    ),
                };
                let s = Subject::new(namaddr, CLIENT, list.acl);
                let name = name.to_lowercase();
                let addr = ctx.client_addr.to_canonical().to_string();
                self.domain_access(table, &name, false, &s)
                    .and_then(|f| match f {
                        Found::Missed => self.addr_access(table, &addr, &s),
                        hit => Ok(hit),
                    })
            }
            AccessKind::Helo => match ctx.helo {
                Some(helo) => {
                    let s = Subject::new(helo.to_string(), HELO, list.acl);
                    let key = helo.trim_end_matches('.').to_lowercase();
                    self.domain_access(table, &key, false, &s)
                }
                None => Ok(Found::Missed),
            },
            AccessKind::Sender => match ctx.sender {
                Some(sender) if sender.is_null() => {
                    let s = Subject::new(String::new(), SENDER, list.acl);
                    let key = self.policy.null_key.clone();
                    self.lookup_one(table, &key, false, &s)
                }
                Some(sender) => self.mail_access(table, sender, SENDER, list.acl),
                None => Ok(Found::Missed),
            },
            AccessKind::Recipient => match ctx.recipient {
                Some(rcpt) => self.mail_access(table, rcpt, RECIPIENT, list.acl),
                None => Ok(Found::Missed),
            },
        };
        match found {
            Ok(Found::Hit(v)) => v,
            Ok(Found::Missed) => Verdict::Dunno,
            Err(e) => table_failure(&e, &list.name),
        }
    }

    /// One key; `partial` lookups skip pattern tables (Postfix's
    /// DICT_FLAG_FIXED rule).
    fn lookup_one(
        &mut self,
        table: &Table,
        key: &str,
        partial: bool,
        s: &Subject,
    ) -> Result<Found, TableError> {
        if partial && table.is_pattern() {
            return Ok(Found::Missed);
        }
        match table.lookup(key)? {
            Some(value) => Ok(Found::Hit(self.table_result(table, &value, s))),
            None => Ok(Found::Missed),
        }
    }

    /// The name, then its parent domains: `example.com` (or `.example.com`
    /// when `smtpd_access_maps` is not in
    /// `parent_domain_matches_subdomains`), never for numeric names.
    fn domain_access(
        &mut self,
        table: &Table,
        domain: &str,
        partial: bool,
        s: &Subject,
    ) -> Result<Found, TableError> {
        if let hit @ Found::Hit(_) = self.lookup_one(table, domain, partial, s)? {
            return Ok(hit);
        }
        let bare = domain.trim_start_matches('[').trim_end_matches(']');
        if bare.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Found::Missed);
        }
        let mut rest = domain;
        while let Some(dot) = rest[1.min(rest.len())..].find('.').map(|i| i + 1) {
            let parent = &rest[dot..];
            let key = if self.policy.access_parent {
                &parent[1..]
            } else {
                parent
            };
            if key.is_empty() || key == "." {
                break;
            }
            if let hit @ Found::Hit(_) = self.lookup_one(table, key, true, s)? {
                return Ok(hit);
            }
            rest = &rest[dot..];
        }
        Ok(Found::Missed)
    }

    /// The address, then its parent networks: `1.2.3.4`, `1.2.3`, `1.2`,
    /// `1`; IPv6 addresses are cut at each `:` from the right.
    fn addr_access(&mut self, table: &Table, addr: &str, s: &Subject) -> Result<Found, TableError> {
        let delim = if addr.contains(':') { ':' } else { '.' };
        let mut key = addr;
        let mut partial = false;
        loop {
            if let hit @ Found::Hit(_) = self.lookup_one(table, key, partial, s)? {
                return Ok(hit);
            }
            partial = true;
            match key.rfind(delim) {
                Some(i) => key = &key[..i],
                None => return Ok(Found::Missed),
            }
        }
    }

    /// Postfix's check_mail_access on the resolved address: `user+ext@domain`,
    /// `user@domain`, the domain and its parents, `user+ext@`, `user@`.
    /// An OK for a recipient that still carries routing is ignored.
    fn mail_access(
        &mut self,
        table: &Table,
        addr: &Address,
        class: &'static str,
        acl: Option<AccessKind>,
    ) -> Result<Found, TableError> {
        let s = Subject::new(addr.to_string(), class, acl);
        let router = &self.policy.router;
        let res = resolve(router, addr).map_err(routing_error)?;
        let suspicious = class == RECIPIENT && router.is_untrusted_routing(&res.route);
        let full = res.address();
        let bare = self.strip_extension(&res.local);
        let mut keys: Vec<(String, bool)> = vec![(full, false)];
        if let Some(b) = &bare {
            keys.push((format!("{b}@{}", res.domain), true));
        }
        let mut found = Found::Missed;
        for (key, partial) in keys {
            found = self.lookup_one(table, &key, partial, &s)?;
            if matches!(found, Found::Hit(_)) {
                break;
            }
        }
        if matches!(found, Found::Missed) {
            found = self.domain_access(table, &res.domain, true, &s)?;
        }
        if matches!(found, Found::Missed) {
            let mut locals = vec![format!("{}@", res.local)];
            if let Some(b) = &bare {
                locals.push(format!("{b}@"));
            }
            for key in locals {
                found = self.lookup_one(table, &key, true, &s)?;
                if matches!(found, Found::Hit(_)) {
                    break;
                }
            }
        }
        Ok(match found {
            Found::Hit(Verdict::Permit) if suspicious => Found::Hit(Verdict::Dunno),
            Found::Hit(Verdict::Nested(mut n)) if suspicious => {
                n.permit_is_dunno = true;
                Found::Hit(Verdict::Nested(n))
            }
            other => other,
        })
    }

    /// `user+ext` -> `user` for any character of `recipient_delimiter`.
    fn strip_extension(&self, local: &str) -> Option<String> {
        let delims = &self.policy.recipient_delimiter;
        if delims.is_empty() {
            return None;
        }
        local
            .char_indices()
            .skip(1)
            .find(|(_, c)| delims.contains(*c))
            .map(|(i, _)| local[..i].to_string())
    }

    /// Postfix's check_table_result(): what an access table answer means.
    fn table_result(&mut self, table: &Table, value: &str, s: &Subject) -> Verdict {
        let value = value.trim();
        let (cmd, text) = match value.split_once([' ', '\t']) {
            Some((c, t)) => (c, t.trim_start()),
            None => (value, ""),
        };
        let upper = cmd.to_ascii_uppercase();
        let codes = &self.policy.codes;
        let rejected = |text: &str, default: &str| {
            let text = if text.is_empty() { default } else { text };
            format!("<{}>: {} rejected: {}", s.name, s.class, text)
        };
        match upper.as_str() {
            "DUNNO" => return Verdict::Dunno,
            "OK" | "RELAY" => return Verdict::Permit,
            _ if !cmd.is_empty() && cmd.bytes().all(|b| b.is_ascii_digit()) && text.is_empty() => {
                // All-numeric: Postfix reads it as OK (a time stamp).
                return Verdict::Permit;
            }
            "REJECT" => {
                let (dsn, text) = split_dsn(text, EnhancedStatus::of(5, 7, 1));
                return self.reject(
                    codes.access_reject,
                    fix_dsn(dsn, s.class),
                    rejected(text, "Access denied"),
                );
            }
            "DEFER" => {
                let (dsn, text) = split_dsn(text, EnhancedStatus::of(4, 7, 1));
                return Verdict::Refuse(Refusal::new(
                    codes.access_defer,
                    fix_dsn(dsn, s.class),
                    rejected(text, "Access denied"),
                ));
            }
            "DEFER_IF_PERMIT" | "DEFER_IF_REJECT" => {
                let (dsn, text) = split_dsn(text, EnhancedStatus::of(4, 7, 1));
                let refusal = Refusal::new(
                    450,
                    fix_dsn(dsn, s.class),
                    rejected(text, "Service unavailable"),
                );
                let slot = match upper.as_str() {
                    "DEFER_IF_PERMIT" => &mut self.defer_if_permit,
                    _ => &mut self.defer_if_reject,
                };
                slot.get_or_insert(refusal);
                return Verdict::Dunno;
            }
            "WARN" | "INFO" => {
                let whatsup = if upper == "WARN" { "warn" } else { "info" };
                self.fire(whatsup, text.to_string(), None);
                return Verdict::Dunno;
            }
            "HOLD" | "DISCARD" => {
                let (whatsup, action) = match upper.as_str() {
                    "HOLD" => ("hold", AccessAction::Hold),
                    _ => ("discard", AccessAction::Discard),
                };
                let said = if text.is_empty() {
                    format!("triggers {upper} action")
                } else {
                    text.to_string()
                };
                self.fire(
                    whatsup,
                    format!("<{}>: {} {said}", s.name, s.class),
                    Some(action),
                );
                // DISCARD accepts (the mail is dropped after DATA).
                return match action_permits(&upper) {
                    true => Verdict::Permit,
                    false => Verdict::Dunno,
                };
            }
            "FILTER" | "REDIRECT" | "BCC" | "PREPEND" => {
                let action = match upper.as_str() {
                    "FILTER" => text.parse().ok().map(AccessAction::Filter),
                    "REDIRECT" if text.contains('@') => Some(AccessAction::Redirect(text.into())),
                    "BCC" if text.contains('@') => Some(AccessAction::Bcc(text.into())),
                    "PREPEND" if is_header(text) => Some(AccessAction::Prepend(text.into())),
                    _ => None,
                };
                let Some(action) = action else {
                    let wants = match upper.as_str() {
                        "FILTER" => "transport:destination",
                        "PREPEND" => "a message header",
                        _ => "user@domain",
                    };
                    tracing::warn!(
                        "access table {} entry \"{value}\": {upper} needs {wants}; ignored",
                        table.spec()
                    );
                    return Verdict::Dunno;
                };
                if upper != "PREPEND" {
                    self.fire(
                        match upper.as_str() {
                            "FILTER" => "filter",
                            "REDIRECT" => "redirect",
                            _ => "bcc",
                        },
                        format!("<{}>: {} triggers {upper} {text}", s.name, s.class),
                        Some(action),
                    );
                } else {
                    self.fired.push(Fired {
                        whatsup: None,
                        text: String::new(),
                        action: Some(action),
                    });
                }
                return Verdict::Dunno;
            }
            _ => {}
        }
        let b = cmd.as_bytes();
        if b.len() == 3
            && !text.is_empty()
            && (b[0] == b'4' || b[0] == b'5')
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
        {
            let code: u16 = cmd.parse().unwrap_or(451);
            let (dsn, text) = split_dsn(text, EnhancedStatus::of(b[0] - b'0', 7, 1));
            return self.reject(code, fix_dsn(dsn, s.class), rejected(text, "Access denied"));
        }
        if value.contains(':') {
            tracing::warn!(
                "access table {} has entry with lookup table: {value}; \
                 define a restriction class and specify its name instead",
                table.spec()
            );
            return Verdict::Refuse(config_error());
        }
        // Anything else is a list of restrictions, evaluated in place.
        let tokens: Vec<String> = value
            .split([',', ' ', '\t'])
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        if tokens.is_empty() {
            return Verdict::Permit;
        }
        let mut no_tables = |spec: &str| {
            Err(TableError::BadSpec {
                spec: spec.to_string(),
                reason: "tables are not allowed in access table results".into(),
            })
        };
        let names: &HashSet<String> = &self.policy.class_names;
        match restriction::parse_list(&tokens, names, &mut no_tables) {
            Ok(list) => Verdict::Nested(Box::new(Nested {
                list,
                subject: s.clone(),
                permit_is_dunno: false,
            })),
            Err(e) => {
                tracing::warn!(
                    "access table {}: bad restriction in \"{value}\": {e:?}",
                    table.spec()
                );
                Verdict::Refuse(config_error())
            }
        }
    }

    /// Records an action that fired, with its log text.
    fn fire(&mut self, whatsup: &'static str, text: String, action: Option<AccessAction>) {
        self.fired.push(Fired {
            whatsup: Some(whatsup),
            text,
            action,
        });
    }

    /// Postfix's check_rcpt_maps(): is the address known in the tables of
    /// its address class?
    pub(super) fn check_rcpt_maps(&self, addr: &Address, class: &str) -> Verdict {
        // receive_override_options = no_unknown_recipient_checks.
        if class == RECIPIENT && !self.policy.unknown_recipient_checks {
            return Verdict::Dunno;
        }
        match self.rcpt_maps(addr, class) {
            Ok(v) => v,
            Err(e) => table_failure(&e, &addr.to_string()),
        }
    }

    fn rcpt_maps(&self, addr: &Address, class: &str) -> Result<Verdict, TableError> {
        let p = self.policy;
        let res = resolve(&p.router, addr).map_err(routing_error)?;
        if self.addr_find(&p.canonical_maps, "canonical_maps", &res)?
            || (class == SENDER
                && self.addr_find(&p.sender_canonical_maps, "sender_canonical_maps", &res)?)
            || self.addr_find(&p.virtual_alias_maps, "virtual_alias_maps", &res)?
        {
            return Ok(Verdict::Dunno);
        }
        let detail = if class == SENDER { 0 } else { 1 };
        let unknown = |code: u16, table: &str| {
            let suffix = if p.show_table {
                format!(" in {table}")
            } else {
                String::new()
            };
            Verdict::Refuse(Refusal::new(
                code,
                EnhancedStatus::of(5, 1, detail),
                format!("<{addr}>: {class} rejected: User unknown{suffix}"),
            ))
        };
        // The class's table, if it has one (none: every name passes), and
        // what an unknown name is told.
        let (maps, param, code, table) = match res.class {
            // Alias domains resolve to "User unknown" unless an alias hit above.
            AddressClass::VirtualAlias => {
                return Ok(unknown(p.codes.virtual_alias, "virtual alias table"));
            }
            AddressClass::Local => {
                let special = [p.double_bounce.as_str(), "postmaster", "mailer-daemon"];
                if special.iter().any(|s| res.local.eq_ignore_ascii_case(s)) {
                    return Ok(Verdict::Dunno);
                }
                let maps = &p.local_recipient_maps;
                (
                    maps,
                    "local_recipient_maps",
                    p.codes.local_rcpt,
                    "local recipient table",
                )
            }
            AddressClass::VirtualMailbox => {
                let maps = &p.virtual_mailbox_maps;
                (
                    maps,
                    "virtual_mailbox_maps",
                    p.codes.virtual_mailbox,
                    "virtual mailbox table",
                )
            }
            AddressClass::Relay => {
                let maps = &p.relay_recipient_maps;
                (
                    maps,
                    "relay_recipient_maps",
                    p.codes.relay_rcpt,
                    "relay recipient table",
                )
            }
            AddressClass::Default => return Ok(Verdict::Dunno),
        };
        Ok(if maps.is_empty() || self.addr_find(maps, param, &res)? {
            Verdict::Dunno
        } else {
            unknown(code, table)
        })
    }

    /// Postfix's mail_addr_find() on the resolved address, as the router
    /// does it for cleanup.
    fn addr_find(
        &self,
        maps: &Maps,
        param: &'static str,
        res: &Resolved,
    ) -> Result<bool, TableError> {
        self.policy
            .router
            .find_address(maps, param, &res.address())
            .map_err(routing_error)
    }
}

/// A routing failure, as the table error the access and recipient
/// checks report (a temporary lookup failure, or a configuration error
/// for a table that is not there).
fn routing_error(e: RoutingError) -> TableError {
    match e {
        RoutingError::Table { source, .. } => source,
        other => TableError::Lookup {
            spec: "address resolver".into(),
            reason: other.to_string(),
        },
    }
}

/// Splits an optional leading RFC 3463 code off access table text.
fn split_dsn(text: &str, default: EnhancedStatus) -> (EnhancedStatus, &str) {
    let (word, rest) = match text.split_once([' ', '\t']) {
        Some((w, r)) => (w, r.trim_start()),
        None => (text, ""),
    };
    match word.parse() {
        Ok(dsn) => (dsn, rest),
        Err(_) => (default, text),
    }
}

/// Postfix's smtpd_dsn_fix(): address-status codes (X.1.Y) only make sense
/// for the address they are about.
fn fix_dsn(dsn: EnhancedStatus, class: &str) -> EnhancedStatus {
    let (a, b, c) = (dsn.class(), dsn.subject(), dsn.detail());
    if b != 1 {
        return dsn;
    }
    match class {
        SENDER => match c {
            1 | 3 => EnhancedStatus::of(a, 1, 7),
            2 => EnhancedStatus::of(a, 1, 8),
            _ => dsn,
        },
        RECIPIENT => dsn,
        _ => EnhancedStatus::of(a, 7, 1),
    }
}

/// DISCARD ends its list as OK does; HOLD goes on (Postfix's
/// check_table_result()).
fn action_permits(action: &str) -> bool {
    action == "DISCARD"
}

/// `Name: value`, as PREPEND must be (Postfix's is_header()).
fn is_header(text: &str) -> bool {
    match text.split_once(':') {
        Some((name, _)) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        }
        None => false,
    }
}
