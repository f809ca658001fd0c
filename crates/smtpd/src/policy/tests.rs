//! Policy tests: configurations are written as `master.toml` `[main]`
//! tables in a temporary directory, so table files sit next to them.

use std::net::IpAddr;
use std::path::Path;

use postern_config::Config;
use postern_smtp::Address;

use super::*;
use crate::peername::NameStatus;

/// A config directory with table files and a compiled policy.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // A local recipient table that does not depend on this machine.
        std::fs::write(
            dir.path().join("aliases"),
            "postmaster: root\nalias1: user\n",
        )
        .unwrap();
        Fixture { dir }
    }

    fn file(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self
    }

    /// `main` is `name = "value"` lines; they replace the defaults below.
    fn config(&self, main: &str) -> Result<Config, postern_config::ConfigError> {
        let defaults = "myhostname = \"mx.example.local\"\nmydomain = \"example.local\"\n\
             alias_maps = \"hash:aliases\"\n\
             local_recipient_maps = \"inline:{ user=1, alice=1, root=1 } $alias_maps\"\n\
             inet_interfaces = \"192.0.2.25\"";
        let mut lines: Vec<(String, String)> = Vec::new();
        for line in defaults.lines().chain(main.lines()) {
            let line = line.trim();
            let Some((key, _)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim().to_string();
            lines.retain(|(k, _)| *k != key);
            lines.push((key, line.to_string()));
        }
        let body: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
        let text = format!("[main]\n{}\n", body.join("\n"));
        Config::from_str(&text, &self.dir.path().join("master.toml"), &[])
    }

    fn params(&self, main: &str) -> Params {
        self.config(main).unwrap().main().clone()
    }

    fn policy(&self, main: &str) -> Policy {
        Policy::from_params(&self.params(main)).unwrap()
    }

    /// Why the policy cannot be built: load refuses what it can check
    /// without opening tables (shown without its `file:line: `), the
    /// policy the rest.
    fn error(&self, main: &str) -> String {
        match self.config(main) {
            Err(e) => {
                let e = e.to_string();
                e.split_once(": ")
                    .map_or(e.clone(), |(_, rest)| rest.to_string())
            }
            Ok(cfg) => Policy::from_params(cfg.main()).unwrap_err().to_string(),
        }
    }
}

fn addr(s: &str) -> Address {
    Address::parse_path(s).unwrap()
}

/// A session: client, HELO, sender, recipient, SASL user.
#[derive(Clone)]
struct Session {
    ip: IpAddr,
    name: String,
    helo: Option<String>,
    sender: Option<Address>,
    rcpt: Option<Address>,
    sasl: Option<String>,
}

impl Session {
    fn from(ip: &str) -> Session {
        Session {
            ip: ip.parse().unwrap(),
            name: "unknown".into(),
            helo: Some("client.example.org".into()),
            sender: Some(addr("<sender@example.org>")),
            rcpt: None,
            sasl: None,
        }
    }
    fn name(mut self, n: &str) -> Self {
        self.name = n.into();
        self
    }
    fn helo(mut self, h: Option<&str>) -> Self {
        self.helo = h.map(Into::into);
        self
    }
    fn sender(mut self, s: &str) -> Self {
        self.sender = Some(addr(s));
        self
    }
    fn sasl(mut self, u: &str) -> Self {
        self.sasl = Some(u.into());
        self
    }

    fn check(&self, p: &Policy, stage: Stage, rcpt: Option<&Address>) -> Result<(), Refusal> {
        let ctx = Check {
            client_addr: self.ip,
            client_name: &self.name,
            reverse_name: &self.name,
            name_status: if self.name == "unknown" {
                NameStatus::Permanent
            } else {
                NameStatus::Ok
            },
            reverse_status: if self.name == "unknown" {
                NameStatus::Permanent
            } else {
                NameStatus::Ok
            },
            helo: self.helo.as_deref(),
            sender: self.sender.as_ref(),
            recipient: rcpt.or(self.rcpt.as_ref()),
            sasl_username: self.sasl.as_deref(),
            spf: None,
        };
        block_on(p.check(stage, &ctx))
    }

    /// The reply to RCPT TO:`rcpt`, "ok" when accepted.
    fn rcpt(&self, p: &Policy, rcpt: &str) -> String {
        let a = addr(rcpt);
        outcome(self.check(p, Stage::Rcpt, Some(&a)))
    }

    fn rcpt_addr(&self, p: &Policy, a: &Address) -> String {
        outcome(self.check(p, Stage::Rcpt, Some(a)))
    }
}

/// Runs a check to its end on a runtime of its own (checks that ask DNS
/// or policy servers need one).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn outcome(r: Result<(), Refusal>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(refusal) => {
            assert_eq!(refusal.temporary, refusal.reply.code() / 100 == 4);
            refusal.reply.to_string()
        }
    }
}

const OUTSIDE: &str = "203.0.113.9";

// ---- relay control -------------------------------------------------------

#[test]
fn s1_dmz_relays_only_its_domain() {
    let f = Fixture::new();
    let p = f.policy(
        "mynetworks = \"192.168.1.10/32\"\nrelay_domains = \"example.local\"\n\
         mydestination = \"dmz.example.local, localhost\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, permit_sasl_authenticated, \
         reject_unauth_destination\"",
    );
    let outside = Session::from(OUTSIDE)
        .helo(Some("localhost"))
        .sender("user1@hogehoge.local");
    assert_eq!(outside.rcpt(&p, "user@example.local"), "ok");
    assert_eq!(outside.rcpt(&p, "user@sub.example.local"), "ok");
    assert_eq!(outside.rcpt(&p, "user@abc.example.local"), "ok");
    assert_eq!(
        outside.rcpt(&p, "user@example.net"),
        "554 5.7.1 <user@example.net>: Relay access denied"
    );
    // A look-alike domain is not a subdomain.
    assert_eq!(
        outside.rcpt(&p, "user@notexample.local"),
        "554 5.7.1 <user@notexample.local>: Relay access denied"
    );
    // The LAN server may relay anywhere.
    let lan = Session::from("192.168.1.10");
    assert_eq!(lan.rcpt(&p, "user@example.net"), "ok");
    assert_eq!(
        Session::from("192.168.1.11").rcpt(&p, "user@example.net"),
        "554 5.7.1 <user@example.net>: Relay access denied"
    );
}

#[test]
fn default_relay_restrictions_defer() {
    // Postfix 3's default smtpd_relay_restrictions ends in
    // defer_unauth_destination: a 454, not a bounce.
    let f = Fixture::new();
    let p = f.policy("mynetworks = \"192.168.1.10/32\"\nrelay_domains = \"example.local\"");
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "user@example.local"), "ok");
    assert_eq!(
        s.rcpt(&p, "user@example.net"),
        "454 4.7.1 <user@example.net>: Relay access denied"
    );
    let r = s
        .check(&p, Stage::Rcpt, Some(&addr("<user@example.net>")))
        .unwrap_err();
    assert!(r.temporary);
}

#[test]
fn s4_recipient_restrictions_with_sasl() {
    let f = Fixture::new();
    let p = f.policy(
        "mydestination = \"$myhostname, localhost.$mydomain, localhost, $mydomain\"\n\
         relay_domains = \"$mydestination\"\nmynetworks = \"127.0.0.0/8\"\n\
         smtpd_relay_restrictions = \"\"\n\
         smtpd_recipient_restrictions = \"permit_mynetworks permit_sasl_authenticated \
         reject_unauth_destination\"",
    );
    let anon = Session::from(OUTSIDE);
    assert_eq!(
        anon.rcpt(&p, "x@gmail.example"),
        "554 5.7.1 <x@gmail.example>: Relay access denied"
    );
    assert_eq!(anon.rcpt(&p, "user@example.local"), "ok");
    assert_eq!(
        Session::from(OUTSIDE)
            .sasl("alice")
            .rcpt(&p, "x@gmail.example"),
        "ok"
    );
    assert_eq!(Session::from("127.0.0.1").rcpt(&p, "x@gmail.example"), "ok");
}

#[test]
fn mynetworks_ipv6_and_mapped() {
    let f = Fixture::new();
    let p = f.policy(
        "mynetworks = \"127.0.0.0/8, [2001:db8:1::]/48, 10.1.0.0/16\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, reject_unauth_destination\"",
    );
    let far = "x@far.example";
    assert_eq!(Session::from("2001:db8:1:5::9").rcpt(&p, far), "ok");
    assert_eq!(Session::from("::ffff:10.1.2.3").rcpt(&p, far), "ok");
    assert_eq!(Session::from("10.1.255.255").rcpt(&p, far), "ok");
    let denied = "554 5.7.1 <x@far.example>: Relay access denied";
    assert_eq!(Session::from("2001:db8:2::1").rcpt(&p, far), denied);
    assert_eq!(Session::from("::ffff:10.2.0.1").rcpt(&p, far), denied);
    assert_eq!(Session::from("::1").rcpt(&p, far), denied);
}

#[test]
fn mynetworks_default_follows_style() {
    // The default mynetworks (style host) always holds loopback.
    let f = Fixture::new();
    let p = f.policy("smtpd_relay_restrictions = \"permit_mynetworks, reject_unauth_destination\"");
    assert_eq!(Session::from("127.0.0.1").rcpt(&p, "x@far.example"), "ok");
    assert_eq!(Session::from("::1").rcpt(&p, "x@far.example"), "ok");
}

/// Relay-tricks configuration: a relay domain, a local domain, an
/// untrusted client.
fn trick_policy(f: &Fixture, extra: &str) -> Policy {
    f.policy(&format!(
        "mydestination = \"example.local, localhost\"\nrelay_domains = \"relay.example\"\n\
         mynetworks = \"127.0.0.0/8\"\nlocal_recipient_maps = \"\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, reject_unauth_destination\"\n{extra}"
    ))
}

#[test]
fn percent_hack_never_wins_relay() {
    let f = Fixture::new();
    let p = trick_policy(&f, "");
    let s = Session::from(OUTSIDE);
    // Rewritten to user@example.net: not ours.
    assert_eq!(
        s.rcpt(&p, "user%example.net@example.local"),
        "554 5.7.1 <user%example.net@example.local>: Relay access denied"
    );
    // Rewritten to a local address: fine.
    assert_eq!(s.rcpt(&p, "user%example.local@example.local"), "ok");
    // Routing left in the local part of a relay domain (Postfix: ROUTED).
    assert_eq!(
        s.rcpt(&p, "user%example.net@relay.example"),
        "554 5.7.1 <user%example.net@relay.example>: Relay access denied"
    );
    // Without the percent hack the % stays in a local address: still routed.
    let p = trick_policy(&f, "allow_percent_hack = \"no\"");
    assert_eq!(
        s.rcpt(&p, "user%example.net@example.local"),
        "554 5.7.1 <user%example.net@example.local>: Relay access denied"
    );
    // allow_untrusted_routing lets routed relay-domain mail through.
    let p = trick_policy(&f, "allow_untrusted_routing = \"yes\"");
    assert_eq!(s.rcpt(&p, "user%example.net@relay.example"), "ok");
    assert_eq!(
        s.rcpt(&p, "user%example.net@example.local"),
        "554 5.7.1 <user%example.net@example.local>: Relay access denied"
    );
}

#[test]
fn bang_path_never_wins_relay() {
    let f = Fixture::new();
    let p = trick_policy(&f, "");
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.rcpt(&p, "example.net!user@example.local"),
        "554 5.7.1 <example.net!user@example.local>: Relay access denied"
    );
    assert_eq!(s.rcpt(&p, "example.local!user@example.local"), "ok");
    assert_eq!(
        s.rcpt(&p, "example.net!user@relay.example"),
        "554 5.7.1 <example.net!user@relay.example>: Relay access denied"
    );
    let p = trick_policy(&f, "swap_bangpath = \"no\"");
    assert_eq!(
        s.rcpt(&p, "example.net!user@example.local"),
        "554 5.7.1 <example.net!user@example.local>: Relay access denied"
    );
}

#[test]
fn quoted_at_never_wins_relay() {
    let f = Fixture::new();
    let p = trick_policy(&f, "");
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.rcpt(&p, "<\"user@example.net\"@example.local>"),
        "554 5.7.1 <\"user@example.net\"@example.local>: Relay access denied"
    );
    assert_eq!(
        s.rcpt(&p, "<\"user@example.net\"@relay.example>"),
        "554 5.7.1 <\"user@example.net\"@relay.example>: Relay access denied"
    );
    assert_eq!(s.rcpt(&p, "<\"user@localhost\"@example.local>"), "ok");
    // Built from parts, as a session might.
    let a = Address::from_parts("user@example.net", Some("example.local")).unwrap();
    assert_eq!(
        s.rcpt_addr(&p, &a),
        "554 5.7.1 <\"user@example.net\"@example.local>: Relay access denied"
    );
}

#[test]
fn double_at_is_not_an_address() {
    // The parser refuses an unquoted second @ outright, so it never
    // reaches the policy.
    assert!(Address::parse_path("<user@example.net@example.local>").is_err());
}

#[test]
fn source_routes_are_judged_by_final_destination() {
    let f = Fixture::new();
    let p = trick_policy(&f, "");
    let s = Session::from(OUTSIDE);
    let a = addr("<@example.local:user@example.net>");
    assert!(a.has_route());
    assert_eq!(
        s.rcpt_addr(&p, &a),
        "554 5.7.1 <user@example.net>: Relay access denied"
    );
    let a = addr("<@example.local,@relay.example:user%example.net@relay.example>");
    assert_eq!(
        s.rcpt_addr(&p, &a),
        "554 5.7.1 <user%example.net@relay.example>: Relay access denied"
    );
    // Postfix drops the route; the final address is ours.
    assert_eq!(s.rcpt(&p, "<@example.net:user@relay.example>"), "ok");
}

#[test]
fn address_literals_of_this_host_are_local() {
    let f = Fixture::new();
    let p = trick_policy(&f, "");
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "user@[192.0.2.25]"), "ok");
    assert_eq!(
        s.rcpt(&p, "user@[192.0.2.26]"),
        "554 5.7.1 <user@[192.0.2.26]>: Relay access denied"
    );
    assert_eq!(
        s.rcpt(&p, "user%example.net@[192.0.2.25]"),
        "554 5.7.1 <user%example.net@[192.0.2.25]>: Relay access denied"
    );
    // inet_interfaces = all: every interface, loopback included.
    let p = trick_policy(&f, "inet_interfaces = \"all\"");
    assert_eq!(s.rcpt(&p, "user@[127.0.0.1]"), "ok");
    assert_eq!(s.rcpt(&p, "user@[IPv6:::1]"), "ok");
    assert_eq!(
        s.rcpt(&p, "user@[192.0.2.25]"),
        "554 5.7.1 <user@[192.0.2.25]>: Relay access denied"
    );
}

#[test]
fn relay_domains_without_parent_matching() {
    let f = Fixture::new();
    let p = trick_policy(
        &f,
        "parent_domain_matches_subdomains = \"smtpd_access_maps\"\n\
         relay_domains = \"relay.example, .dot.example\"",
    );
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "a@relay.example"), "ok");
    assert_eq!(
        s.rcpt(&p, "a@sub.relay.example"),
        "554 5.7.1 <a@sub.relay.example>: Relay access denied"
    );
    assert_eq!(s.rcpt(&p, "a@sub.dot.example"), "ok");
    assert_eq!(
        s.rcpt(&p, "a@dot.example"),
        "554 5.7.1 <a@dot.example>: Relay access denied"
    );
}

#[test]
fn relay_domains_from_table_and_negation() {
    let f = Fixture::new();
    f.file("relays", "relay.example OK\n");
    let p = trick_policy(&f, "relay_domains = \"!bad.relay.example, hash:relays\"");
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "a@relay.example"), "ok");
    assert_eq!(s.rcpt(&p, "a@deep.sub.relay.example"), "ok");
    assert_eq!(
        s.rcpt(&p, "a@bad.relay.example"),
        "554 5.7.1 <a@bad.relay.example>: Relay access denied"
    );
}

#[test]
fn unqualified_postmaster_always_accepted() {
    let f = Fixture::new();
    let p = f.policy("smtpd_client_restrictions = \"reject\"");
    assert_eq!(Session::from(OUTSIDE).rcpt(&p, "<postmaster>"), "ok");
    assert_eq!(Session::from(OUTSIDE).rcpt(&p, "<PostMaster>"), "ok");
}

// ---- list order and delay_reject ----------------------------------------

#[test]
fn lists_run_in_order_at_rcpt() {
    let f = Fixture::new();
    let p = f.policy(
        "smtpd_client_restrictions = \"reject\"\nsmtpd_helo_restrictions = \"defer\"\n\
         mynetworks = \"127.0.0.0/8\"",
    );
    let s = Session::from(OUTSIDE).name("client.example.org");
    assert_eq!(
        s.check(&p, Stage::Connect, None)
            .map_err(|r| r.reply.to_string()),
        Ok(())
    );
    assert_eq!(
        s.check(&p, Stage::Helo, None)
            .map_err(|r| r.reply.to_string()),
        Ok(())
    );
    assert_eq!(
        s.check(&p, Stage::Mail, None)
            .map_err(|r| r.reply.to_string()),
        Ok(())
    );
    assert_eq!(
        s.rcpt(&p, "user@mx.example.local"),
        "554 5.7.1 <client.example.org[203.0.113.9]>: Client host rejected: Access denied"
    );

    // A permit ends its own list only: HELO restrictions still run.
    let p = f.policy(
        "smtpd_client_restrictions = \"permit, reject\"\nsmtpd_helo_restrictions = \"defer\"",
    );
    assert_eq!(
        s.rcpt(&p, "user@mx.example.local"),
        "450 4.3.2 <client.example.org>: Helo command rejected: Try again later"
    );

    let p = f.policy("smtpd_sender_restrictions = \"reject\"");
    assert_eq!(
        s.rcpt(&p, "user@mx.example.local"),
        "554 5.7.1 <sender@example.org>: Sender address rejected: Access denied"
    );

    // Relay restrictions come before recipient restrictions.
    let p = f.policy(
        "smtpd_relay_restrictions = \"defer_unauth_destination\"\n\
         smtpd_recipient_restrictions = \"reject\"",
    );
    assert_eq!(
        s.rcpt(&p, "x@far.example"),
        "454 4.7.1 <x@far.example>: Relay access denied"
    );
    assert_eq!(
        s.rcpt(&p, "user@mx.example.local"),
        "554 5.7.1 <user@mx.example.local>: Recipient address rejected: Access denied"
    );
    // A permit in the relay list does not skip the recipient list.
    let p = f.policy(
        "smtpd_relay_restrictions = \"permit\"\n\
         smtpd_recipient_restrictions = \"reject_unauth_destination\"",
    );
    assert_eq!(
        s.rcpt(&p, "x@far.example"),
        "554 5.7.1 <x@far.example>: Relay access denied"
    );
}

#[test]
fn no_helo_or_sender_skips_their_lists() {
    let f = Fixture::new();
    let p =
        f.policy("smtpd_helo_restrictions = \"reject\"\nsmtpd_sender_restrictions = \"reject\"");
    let mut s = Session::from(OUTSIDE).helo(None);
    s.sender = None;
    assert_eq!(s.rcpt(&p, "user@mx.example.local"), "ok");
}

#[test]
fn without_delay_reject_each_stage_checks_its_list() {
    let f = Fixture::new();
    let p = f.policy(
        "smtpd_delay_reject = \"no\"\nsmtpd_client_restrictions = \"reject\"\n\
         smtpd_helo_restrictions = \"reject_non_fqdn_helo_hostname\"\n\
         smtpd_sender_restrictions = \"reject_non_fqdn_sender\"",
    );
    assert!(!delay_reject(&f.params("smtpd_delay_reject = \"no\"")));
    assert!(delay_reject(&f.params("")));
    let s = Session::from(OUTSIDE)
        .helo(Some("localhost"))
        .sender("<joe>");
    assert_eq!(
        outcome(s.check(&p, Stage::Connect, None)),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
    assert_eq!(
        outcome(s.check(&p, Stage::Helo, None)),
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    );
    assert_eq!(
        outcome(s.check(&p, Stage::Mail, None)),
        "504 5.5.2 <joe>: Sender address rejected: need fully-qualified address"
    );
    // RCPT evaluates only relay and recipient lists now.
    assert_eq!(s.rcpt(&p, "user@mx.example.local"), "ok");
}

#[test]
fn data_restrictions() {
    let f = Fixture::new();
    let p = f.policy("smtpd_data_restrictions = \"reject_unauth_pipelining, reject\"");
    let s = Session::from(OUTSIDE);
    assert_eq!(
        outcome(s.check(&p, Stage::Data, None)),
        "554 5.7.1 <DATA>: Data command rejected: Access denied"
    );
    let p = f.policy(
        "smtpd_data_restrictions = \"permit_mynetworks, defer\"\nmynetworks = \"127.0.0.0/8\"",
    );
    assert_eq!(
        outcome(Session::from("127.0.0.1").check(&p, Stage::Data, None)),
        "ok"
    );
    assert_eq!(
        outcome(s.check(&p, Stage::Data, None)),
        "450 4.3.2 <DATA>: Data command rejected: Try again later"
    );
    assert!(
        f.error("smtpd_data_restrictions = \"hash:aliases\"")
            .contains("bare table")
    );
}

#[test]
fn defer_if_permit_and_defer_if_reject() {
    let f = Fixture::new();
    let p = f.policy("smtpd_client_restrictions = \"defer_if_permit\"");
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.rcpt(&p, "user@mx.example.local"),
        "450 4.7.0 <unknown[203.0.113.9]>: Client host rejected: defer_if_permit requested"
    );
    // A reject still wins over defer_if_permit.
    let p = f.policy(
        "smtpd_client_restrictions = \"defer_if_permit\"\n\
         smtpd_recipient_restrictions = \"reject\"",
    );
    assert_eq!(
        s.rcpt(&p, "user@mx.example.local"),
        "554 5.7.1 <user@mx.example.local>: Recipient address rejected: Access denied"
    );
    // defer_if_reject turns a later reject in the same list into a deferral.
    let p = f.policy("smtpd_recipient_restrictions = \"defer_if_reject, reject\"");
    assert_eq!(
        s.rcpt(&p, "user@mx.example.local"),
        "450 4.7.0 <user@mx.example.local>: Recipient address rejected: defer_if_reject requested"
    );
    let p = f.policy("smtpd_recipient_restrictions = \"defer_if_reject, permit\"");
    assert_eq!(s.rcpt(&p, "user@mx.example.local"), "ok");
}

#[test]
fn warn_if_reject_only_warns() {
    let f = Fixture::new();
    let p = f.policy("smtpd_client_restrictions = \"warn_if_reject reject\"");
    assert_eq!(
        Session::from(OUTSIDE).rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    let p = f.policy(
        "smtpd_client_restrictions = \"warn_if_reject reject_unknown_client_hostname, reject\"",
    );
    assert_eq!(
        Session::from(OUTSIDE).rcpt(&p, "user@mx.example.local"),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
}

#[test]
fn restriction_classes() {
    let f = Fixture::new();
    let p = f.policy(
        "smtpd_restriction_classes = \"strict\"\nstrict = \"reject_non_fqdn_sender, permit\"\n\
         smtpd_sender_restrictions = \"strict, reject\"",
    );
    assert_eq!(
        Session::from(OUTSIDE)
            .sender("<joe>")
            .rcpt(&p, "user@mx.example.local"),
        "504 5.5.2 <joe>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(
        Session::from(OUTSIDE).rcpt(&p, "user@mx.example.local"),
        "ok"
    );
}

// ---- configuration errors ------------------------------------------------

#[test]
fn unknown_restriction_is_an_error() {
    let f = Fixture::new();
    assert_eq!(
        f.error("smtpd_recipient_restrictions = \"permit_mynetworks, reject_everything\""),
        "parameter \"smtpd_recipient_restrictions\": unknown restriction \"reject_everything\""
    );
    assert_eq!(
        f.error("smtpd_client_restrictions = \"check_policy_service inet:127.0.0.1:9\""),
        "parameter \"smtpd_client_restrictions\": restriction \"check_policy_service\" is not \
         supported by Postern"
    );
    assert_eq!(
        f.error("smtpd_client_restrictions = \"reject_rbl_client zen.example=127.0.0.[2..]\""),
        "parameter \"smtpd_client_restrictions\": restriction \"reject_rbl_client\": bad DNSBL \
         result filter \"127.0.0.[2..]\" in \"zen.example=127.0.0.[2..]\""
    );
    assert_eq!(
        f.error("smtpd_sender_restrictions = \"check_sender_access\""),
        "parameter \"smtpd_sender_restrictions\": restriction \"check_sender_access\" needs a \
         type:table argument"
    );
    assert!(
        f.error("smtpd_restriction_classes = \"c\"\nc = \"bogus\"")
            .contains("\"c\"")
    );
}

#[test]
fn table_errors_name_their_parameter() {
    let f = Fixture::new();
    assert!(
        f.error("mynetworks = \"mail.example.org\"")
            .starts_with("parameter \"mynetworks\": ")
    );
}

#[test]
fn a_missing_table_fails_only_the_lookups_that_need_it() {
    // Postfix's surrogate tables: the policy is built, and only what
    // consults the missing table answers 451 4.3.5.
    let f = Fixture::new();
    let p = f.policy(
        "local_recipient_maps = \"hash:no-such-file\"\nmynetworks = \"192.0.2.0/24\"\n\
         smtpd_helo_restrictions = \"check_helo_access hash:missing\"\n\
         smtpd_delay_reject = \"no\"",
    );
    let s = Session::from("192.0.2.9");
    assert_eq!(s.rcpt(&p, "<someone@example.org>"), "ok");
    assert_eq!(
        s.rcpt(&p, "<user@mx.example.local>"),
        "451 4.3.5 Server configuration error"
    );
    assert_eq!(
        outcome(s.check(&p, Stage::Helo, None)),
        "451 4.3.5 Server configuration error"
    );
}

#[test]
fn open_relay_configuration_is_refused() {
    let f = Fixture::new();
    let e = f.error(
        "smtpd_relay_restrictions = \"\"\nsmtpd_recipient_restrictions = \"permit_mynetworks\"",
    );
    assert!(e.contains("reject_unauth_destination"), "{e}");
    // warn_if_reject makes a reject harmless, so it does not count.
    assert!(matches!(
        Policy::from_params(
            &f.params("smtpd_relay_restrictions = \"warn_if_reject reject_unauth_destination\"")
        ),
        Err(PolicyError::OpenRelay)
    ));
    // A class that refuses counts.
    f.policy(
        "smtpd_restriction_classes = \"relaying\"\nrelaying = \"reject_unauth_destination\"\n\
         smtpd_relay_restrictions = \"permit_mynetworks, relaying\"",
    );
}

// ---- client and HELO checks ------------------------------------------------

/// A PTR name whose addresses do not list the client (not a missing PTR).
#[test]
fn unknown_forward_client_hostname() {
    let f = Fixture::new();
    let p = f.policy("smtpd_client_restrictions = \"reject_unknown_forward_client_hostname\"");
    let forged = Check {
        client_addr: "192.0.2.7".parse().unwrap(),
        client_name: "unknown",
        reverse_name: "forged.example",
        name_status: NameStatus::Forged,
        reverse_status: NameStatus::Ok,
        helo: None,
        sender: None,
        recipient: None,
        sasl_username: None,
        spf: None,
    };
    let rcpt = addr("<user@mx.example.local>");
    let at_rcpt = |c: Check<'_>| {
        outcome(block_on(p.check(
            Stage::Rcpt,
            &Check {
                recipient: Some(&rcpt),
                ..c
            },
        )))
    };
    assert_eq!(
        at_rcpt(forged),
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.7]"
    );
    let no_ptr = Check {
        reverse_name: "unknown",
        name_status: NameStatus::Permanent,
        reverse_status: NameStatus::Permanent,
        ..forged
    };
    assert_eq!(at_rcpt(no_ptr), "ok");
}

#[test]
fn unknown_client_hostname() {
    let f = Fixture::new();
    let p = f.policy("smtpd_client_restrictions = \"reject_unknown_client_hostname\"");
    assert_eq!(
        Session::from(OUTSIDE).rcpt(&p, "user@mx.example.local"),
        "450 4.7.25 Client host rejected: cannot find your hostname, [203.0.113.9]"
    );
    assert_eq!(
        Session::from(OUTSIDE)
            .name("mail.example.org")
            .rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    let p = f.policy("smtpd_client_restrictions = \"reject_unknown_reverse_client_hostname\"");
    assert_eq!(
        Session::from("::ffff:203.0.113.9").rcpt(&p, "user@mx.example.local"),
        "450 4.7.1 Client host rejected: cannot find your reverse hostname, [203.0.113.9]"
    );
}

#[test]
fn helo_hostname_checks() {
    let f = Fixture::new();
    let p = f.policy(
        "smtpd_helo_restrictions = \"reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname\"",
    );
    let r = |helo: &str| {
        Session::from(OUTSIDE)
            .helo(Some(helo))
            .rcpt(&p, "user@mx.example.local")
    };
    assert_eq!(r("mail.example.org"), "ok");
    assert_eq!(r("mail.example.org."), "ok");
    assert_eq!(r("[192.0.2.1]"), "ok");
    assert_eq!(r("[IPv6:2001:db8::1]"), "ok");
    assert_eq!(
        r("bad_host!name"),
        "501 5.5.2 <bad_host!name>: Helo command rejected: Invalid name"
    );
    assert_eq!(
        r("-dash.example.org"),
        "501 5.5.2 <-dash.example.org>: Helo command rejected: Invalid name"
    );
    assert_eq!(
        r("[999.1.1.1]"),
        "501 5.5.2 <[999.1.1.1]>: Helo command rejected: Invalid ip address"
    );
    assert_eq!(
        r("localhost"),
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    );
    assert_eq!(
        r("1.2.3.4"),
        "504 5.5.2 <1.2.3.4>: Helo command rejected: need fully-qualified hostname"
    );
    let p = f.policy("smtpd_helo_restrictions = \"reject_unknown_helo_hostname\"");
    assert_eq!(
        Session::from(OUTSIDE)
            .helo(Some("box"))
            .rcpt(&p, "user@mx.example.local"),
        "450 4.7.1 <box>: Helo command rejected: Host not found"
    );
}

// ---- sender and recipient address checks ------------------------------------

#[test]
fn non_fqdn_addresses() {
    let f = Fixture::new();
    let p = f.policy(
        "smtpd_sender_restrictions = \"reject_non_fqdn_sender\"\n\
         smtpd_recipient_restrictions = \"reject_non_fqdn_recipient\"",
    );
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.rcpt(&p, "user@localhost"),
        "504 5.5.2 <user@localhost>: Recipient address rejected: need fully-qualified address"
    );
    assert_eq!(
        s.rcpt(&p, "<user>"),
        "504 5.5.2 <user>: Recipient address rejected: need fully-qualified address"
    );
    assert_eq!(s.rcpt(&p, "user@mx.example.local"), "ok");
    assert_eq!(
        s.clone()
            .sender("<joe@box>")
            .rcpt(&p, "user@mx.example.local"),
        "504 5.5.2 <joe@box>: Sender address rejected: need fully-qualified address"
    );
    // The null sender and address literals pass.
    assert_eq!(
        s.clone().sender("<>").rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    assert_eq!(
        s.clone()
            .sender("<joe@[192.0.2.1]>")
            .rcpt(&p, "user@mx.example.local"),
        "ok"
    );
}

#[test]
fn unknown_domains_without_dns() {
    let f = Fixture::new();
    let p = f.policy(
        "smtpd_sender_restrictions = \"reject_unknown_sender_domain\"\n\
         smtpd_recipient_restrictions = \"reject_unknown_recipient_domain\"\n\
         mydestination = \"mx.example.local, localhost\"",
    );
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.clone()
            .sender("<joe@nodots>")
            .rcpt(&p, "user@mx.example.local"),
        "450 4.1.8 <joe@nodots>: Sender address rejected: Domain not found"
    );
    assert_eq!(
        s.clone()
            .sender("<joe@localhost>")
            .rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    assert_eq!(
        s.clone().sender("<>").rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    // Relay to a dotless domain is allowed from mynetworks; the domain
    // check still refuses it.
    let p = f.policy(
        "smtpd_recipient_restrictions = \"reject_unknown_recipient_domain\"\n\
         mynetworks = \"127.0.0.0/8\"",
    );
    assert_eq!(
        Session::from("127.0.0.1").rcpt(&p, "user@intranet"),
        "450 4.1.2 <user@intranet>: Recipient address rejected: Domain not found"
    );
    assert_eq!(
        Session::from("127.0.0.1").rcpt(&p, "user@far.example"),
        "ok"
    );
}

// ---- access tables ------------------------------------------------------------

#[test]
fn client_access_lookup_order_and_results() {
    let f = Fixture::new();
    f.file(
        "clients",
        "203.0.113.9 REJECT\n198.51.100 REJECT Go away\n192.0.2 550 5.7.0 Not you\n\
         10 DEFER\nspammer.example 554 No spam please\n172.16.1.1 OK\n\
         2001:db8:1 REJECT six\nfriend.example DUNNO\n",
    );
    let p = f.policy("smtpd_client_restrictions = \"check_client_access hash:clients, reject\"");
    let r = |ip: &str, name: &str| {
        Session::from(ip)
            .name(name)
            .rcpt(&p, "user@mx.example.local")
    };
    assert_eq!(
        r("203.0.113.9", "unknown"),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
    assert_eq!(
        r("198.51.100.77", "unknown"),
        "554 5.7.1 <unknown[198.51.100.77]>: Client host rejected: Go away"
    );
    assert_eq!(
        r("192.0.2.1", "unknown"),
        "550 5.7.0 <unknown[192.0.2.1]>: Client host rejected: Not you"
    );
    assert_eq!(
        r("10.9.8.7", "unknown"),
        "450 4.7.1 <unknown[10.9.8.7]>: Client host rejected: Access denied"
    );
    assert_eq!(
        r("192.168.7.7", "mx.spammer.example"),
        "554 5.7.1 <mx.spammer.example[192.168.7.7]>: Client host rejected: No spam please"
    );
    assert_eq!(r("172.16.1.1", "unknown"), "ok");
    assert_eq!(
        r("::ffff:172.16.1.1", "unknown"),
        "ok",
        "IPv4-mapped clients are looked up as IPv4"
    );
    assert_eq!(
        r("2001:db8:1::5", "unknown"),
        "554 5.7.1 <unknown[2001:db8:1::5]>: Client host rejected: six"
    );
    // DUNNO ends the table lookup without a decision: the list goes on.
    assert_eq!(
        r("192.168.7.7", "friend.example"),
        "554 5.7.1 <friend.example[192.168.7.7]>: Client host rejected: Access denied"
    );
}

#[test]
fn client_access_cidr_table_and_bare_map() {
    let f = Fixture::new();
    f.file("nets.cidr", "192.0.2.0/24 OK\n0.0.0.0/0 REJECT\n");
    let p = f.policy("smtpd_client_restrictions = \"cidr:nets.cidr\"");
    assert_eq!(
        Session::from("192.0.2.4").rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    assert_eq!(
        Session::from("198.51.100.4").rcpt(&p, "user@mx.example.local"),
        "554 5.7.1 <unknown[198.51.100.4]>: Client host rejected: Access denied"
    );
}

#[test]
fn parent_domain_matching_in_access_tables() {
    let f = Fixture::new();
    f.file(
        "helo",
        "example.org REJECT parent\n.dotted.example REJECT dotted\n",
    );
    let p = f.policy("smtpd_helo_restrictions = \"check_helo_access hash:helo\"");
    let r = |helo: &str| {
        Session::from(OUTSIDE)
            .helo(Some(helo))
            .rcpt(&p, "user@mx.example.local")
    };
    assert_eq!(
        r("a.b.example.org"),
        "554 5.7.1 <a.b.example.org>: Helo command rejected: parent"
    );
    assert_eq!(
        r("Example.ORG"),
        "554 5.7.1 <Example.ORG>: Helo command rejected: parent"
    );
    assert_eq!(r("x.dotted.example"), "ok");
    // Without parent matching, only ".domain" keys match subdomains.
    let p = f.policy(
        "smtpd_helo_restrictions = \"check_helo_access hash:helo\"\n\
         parent_domain_matches_subdomains = \"relay_domains\"",
    );
    let r = |helo: &str| {
        Session::from(OUTSIDE)
            .helo(Some(helo))
            .rcpt(&p, "user@mx.example.local")
    };
    assert_eq!(r("a.example.org"), "ok");
    assert_eq!(
        r("example.org"),
        "554 5.7.1 <example.org>: Helo command rejected: parent"
    );
    assert_eq!(
        r("x.dotted.example"),
        "554 5.7.1 <x.dotted.example>: Helo command rejected: dotted"
    );
}

#[test]
fn sender_access_lookup_order() {
    let f = Fixture::new();
    f.file(
        "senders",
        "boss@example.org OK\nexample.org REJECT domain\nspam@ REJECT localpart\n\
         <> REJECT no bounces\njoe@example.com 5.1.1 unused\nbounce@example.com DEFER later\n",
    );
    let p = f.policy(
        "smtpd_sender_restrictions = \"check_sender_access hash:senders, reject_non_fqdn_sender\"\n\
         recipient_delimiter = \"+\"",
    );
    let r = |sender: &str| {
        Session::from(OUTSIDE)
            .sender(sender)
            .rcpt(&p, "user@mx.example.local")
    };
    assert_eq!(r("<boss@example.org>"), "ok");
    assert_eq!(r("<boss+tag@example.org>"), "ok", "extension stripped");
    assert_eq!(
        r("<other@mail.example.org>"),
        "554 5.7.1 <other@mail.example.org>: Sender address rejected: domain"
    );
    assert_eq!(
        r("<spam@anywhere.example>"),
        "554 5.7.1 <spam@anywhere.example>: Sender address rejected: localpart"
    );
    assert_eq!(r("<>"), "554 5.7.1 <>: Sender address rejected: no bounces");
    assert_eq!(
        r("<bounce@example.com>"),
        "450 4.7.1 <bounce@example.com>: Sender address rejected: later"
    );
    // "5.1.1 unused" is not an action: a bad entry defers.
    assert_eq!(
        r("<joe@example.com>"),
        "451 4.3.5 Server configuration error"
    );
}

#[test]
fn recipient_access_results() {
    let f = Fixture::new();
    f.file(
        "rcpts",
        "blocked@mx.example.local REJECT 5.1.1 Mailbox disabled\n\
         soft@mx.example.local DEFER_IF_PERMIT maybe later\n\
         friend@far.example OK\nrouted@far.example OK\n\
         user@mx.example.local reject_non_fqdn_sender, permit\n\
         tabled@mx.example.local hash:other\nfar.example RELAY\n",
    );
    let p = f.policy(
        "smtpd_recipient_restrictions = \"check_recipient_access hash:rcpts, \
         reject_unauth_destination\"\nsmtpd_relay_restrictions = \"\"",
    );
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.rcpt(&p, "blocked@mx.example.local"),
        "554 5.1.1 <blocked@mx.example.local>: Recipient address rejected: Mailbox disabled"
    );
    assert_eq!(
        s.rcpt(&p, "soft@mx.example.local"),
        "450 4.7.1 <soft@mx.example.local>: Recipient address rejected: maybe later"
    );
    // OK from a recipient table is relay permission ...
    assert_eq!(s.rcpt(&p, "friend@far.example"), "ok");
    assert_eq!(s.rcpt(&p, "anyone@far.example"), "ok");
    // ... but never for an address that still routes elsewhere.
    assert_eq!(
        s.rcpt(&p, "routed%evil.example@far.example"),
        "554 5.7.1 <routed%evil.example@far.example>: Relay access denied"
    );
    // A restriction list as the result.
    assert_eq!(
        s.clone().sender("<joe>").rcpt(&p, "user@mx.example.local"),
        "504 5.5.2 <joe>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(s.rcpt(&p, "user@mx.example.local"), "ok");
    // Tables are not allowed in results.
    assert_eq!(
        s.rcpt(&p, "tabled@mx.example.local"),
        "451 4.3.5 Server configuration error"
    );
}

#[test]
fn access_table_text_actions_and_numeric() {
    let f = Fixture::new();
    f.file(
        "c",
        "203.0.113.1 PERMIT\n203.0.113.2 12345\n203.0.113.3 WARN odd\n\
         203.0.113.4 421 4.4.2 closing\n203.0.113.5 DEFER_IF_REJECT try\n",
    );
    let p = f.policy("smtpd_client_restrictions = \"check_client_access hash:c, reject\"");
    let r = |ip: &str| Session::from(ip).rcpt(&p, "user@mx.example.local");
    assert_eq!(r("203.0.113.1"), "ok");
    assert_eq!(r("203.0.113.2"), "ok");
    assert_eq!(
        r("203.0.113.3"),
        "554 5.7.1 <unknown[203.0.113.3]>: Client host rejected: Access denied"
    );
    assert_eq!(
        r("203.0.113.4"),
        "421 4.4.2 <unknown[203.0.113.4]>: Client host rejected: closing"
    );
    assert_eq!(
        r("203.0.113.5"),
        "450 4.7.1 <unknown[203.0.113.5]>: Client host rejected: try"
    );
}

#[test]
fn access_table_lookup_failure_defers() {
    let f = Fixture::new();
    f.file("t", "x OK\n");
    let p = f.policy("smtpd_helo_restrictions = \"check_helo_access hash:t\"");
    // Break the file; the table notices within a second.
    f.file("t", "broken\n");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(
        Session::from(OUTSIDE).rcpt(&p, "user@mx.example.local"),
        "451 4.3.0 <client.example.org>: Temporary lookup failure"
    );
}

// ---- recipient tables ------------------------------------------------------------

#[test]
fn unlisted_local_recipient() {
    let f = Fixture::new();
    let p = f.policy("recipient_delimiter = \"+\"");
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "user@mx.example.local"), "ok");
    assert_eq!(s.rcpt(&p, "user+tag@mx.example.local"), "ok");
    assert_eq!(s.rcpt(&p, "ALICE@localhost"), "ok");
    assert_eq!(s.rcpt(&p, "alias1@mx.example.local"), "ok", "aliases count");
    assert_eq!(s.rcpt(&p, "postmaster@mx.example.local"), "ok");
    assert_eq!(s.rcpt(&p, "MAILER-DAEMON@mx.example.local"), "ok");
    assert_eq!(s.rcpt(&p, "double-bounce@mx.example.local"), "ok");
    assert_eq!(
        s.rcpt(&p, "nobody@mx.example.local"),
        "550 5.1.1 <nobody@mx.example.local>: Recipient address rejected: User unknown in \
         local recipient table"
    );
    // Even mynetworks clients get the check: it runs after the lists.
    assert_eq!(
        Session::from("127.0.0.1").rcpt(&p, "nobody@mx.example.local"),
        "550 5.1.1 <nobody@mx.example.local>: Recipient address rejected: User unknown in \
         local recipient table"
    );
    // An empty local_recipient_maps accepts every local name (S2's branch).
    let p = f.policy("local_recipient_maps = \"\"");
    assert_eq!(s.rcpt(&p, "nobody@mx.example.local"), "ok");
    // smtpd_reject_unlisted_recipient = no turns the implicit check off.
    let p = f.policy("smtpd_reject_unlisted_recipient = \"no\"");
    assert_eq!(s.rcpt(&p, "nobody@mx.example.local"), "ok");
    // ... but the explicit restriction still works.
    let p = f.policy(
        "smtpd_reject_unlisted_recipient = \"no\"\n\
         smtpd_recipient_restrictions = \"reject_unlisted_recipient\"",
    );
    assert!(
        s.rcpt(&p, "nobody@mx.example.local")
            .starts_with("550 5.1.1 ")
    );
    let p = f.policy("show_user_unknown_table_name = \"no\"");
    assert_eq!(
        s.rcpt(&p, "nobody@mx.example.local"),
        "550 5.1.1 <nobody@mx.example.local>: Recipient address rejected: User unknown"
    );
}

#[test]
fn default_local_recipient_maps_use_passwd() {
    let f = Fixture::new();
    let text = "[main]\nmyhostname = \"mx.example.local\"\nalias_maps = \"hash:aliases\"\n";
    let cfg = Config::from_str(text, &f.dir.path().join("master.toml"), &[]).unwrap();
    let p = Policy::from_params(cfg.main()).unwrap();
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "root@mx.example.local"), "ok");
    assert_eq!(s.rcpt(&p, "alias1@mx.example.local"), "ok");
    assert!(
        s.rcpt(&p, "no-such-user-postern@mx.example.local")
            .ends_with("User unknown in local recipient table")
    );
}

#[test]
fn unlisted_relay_recipient() {
    let f = Fixture::new();
    f.file("relay_rcpts", "a@relay.example x\n@wild.example x\n");
    let p = f.policy(
        "relay_domains = \"relay.example, wild.example, open.example\"\n\
         relay_recipient_maps = \"hash:relay_rcpts\"",
    );
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "a@relay.example"), "ok");
    assert_eq!(
        s.rcpt(&p, "b@relay.example"),
        "550 5.1.1 <b@relay.example>: Recipient address rejected: User unknown in relay \
         recipient table"
    );
    assert_eq!(s.rcpt(&p, "anyone@wild.example"), "ok", "wildcard @domain");
    assert!(
        s.rcpt(&p, "b@open.example")
            .contains("relay recipient table")
    );
    // Without relay_recipient_maps every relay recipient passes.
    let p = f.policy("relay_domains = \"relay.example\"");
    assert_eq!(s.rcpt(&p, "b@relay.example"), "ok");
}

#[test]
fn unlisted_virtual_recipients() {
    let f = Fixture::new();
    f.file(
        "valias",
        "valias.example anything\ninfo@valias.example user@mx.example.local\n",
    );
    f.file("vmbox", "bob@vmbox.example bob/\n");
    let p = f.policy(
        "virtual_alias_maps = \"hash:valias\"\nvirtual_mailbox_domains = \"vmbox.example\"\n\
         virtual_mailbox_maps = \"hash:vmbox\"",
    );
    let s = Session::from(OUTSIDE);
    assert_eq!(s.rcpt(&p, "info@valias.example"), "ok");
    assert_eq!(
        s.rcpt(&p, "nobody@valias.example"),
        "550 5.1.1 <nobody@valias.example>: Recipient address rejected: User unknown in \
         virtual alias table"
    );
    assert_eq!(s.rcpt(&p, "bob@vmbox.example"), "ok");
    assert_eq!(
        s.rcpt(&p, "eve@vmbox.example"),
        "550 5.1.1 <eve@vmbox.example>: Recipient address rejected: User unknown in virtual \
         mailbox table"
    );
}

#[test]
fn unlisted_sender() {
    let f = Fixture::new();
    let p = f.policy("smtpd_sender_restrictions = \"reject_unlisted_sender\"");
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.clone()
            .sender("<ghost@mx.example.local>")
            .rcpt(&p, "user@mx.example.local"),
        "550 5.1.0 <ghost@mx.example.local>: Sender address rejected: User unknown in local \
         recipient table"
    );
    assert_eq!(
        s.clone()
            .sender("<user@mx.example.local>")
            .rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    assert_eq!(
        s.clone().sender("<>").rcpt(&p, "user@mx.example.local"),
        "ok"
    );
    // The implicit form.
    let p = f.policy("smtpd_reject_unlisted_sender = \"yes\"");
    assert!(
        s.clone()
            .sender("<ghost@mx.example.local>")
            .rcpt(&p, "user@mx.example.local")
            .starts_with("550 5.1.0 ")
    );
    let p = f.policy("");
    assert_eq!(
        s.clone()
            .sender("<ghost@mx.example.local>")
            .rcpt(&p, "user@mx.example.local"),
        "ok"
    );
}

#[test]
fn policy_is_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    assert_send_sync::<Refusal>();
    let _unused: &Path = Path::new("/");
}

#[test]
fn recipient_before_relay_when_configured() {
    let f = Fixture::new();
    let main = "smtpd_relay_restrictions = \"defer_unauth_destination\"\n\
                smtpd_recipient_restrictions = \"reject_non_fqdn_recipient\"";
    let p = f.policy(main);
    let s = Session::from(OUTSIDE);
    assert_eq!(
        s.rcpt(&p, "x@far"),
        "454 4.7.1 <x@far>: Relay access denied"
    );
    let p = f.policy(&format!(
        "{main}\nsmtpd_relay_before_recipient_restrictions = \"no\""
    ));
    assert_eq!(
        s.rcpt(&p, "x@far"),
        "504 5.5.2 <x@far>: Recipient address rejected: need fully-qualified address"
    );
}

#[test]
fn permit_auth_destination_and_inline_access() {
    let f = Fixture::new();
    let p = f.policy(
        "relay_domains = \"relay.example\"\n\
         smtpd_recipient_restrictions = \"permit_auth_destination, \
         check_client_access inline:{ 203.0.113.9=OK }, reject\"\n\
         smtpd_relay_restrictions = \"\"",
    );
    assert_eq!(
        Session::from("198.51.100.1").rcpt(&p, "a@relay.example"),
        "ok"
    );
    assert_eq!(Session::from(OUTSIDE).rcpt(&p, "a@far.example"), "ok");
    assert_eq!(
        Session::from("198.51.100.1").rcpt(&p, "a@far.example"),
        "554 5.7.1 <a@far.example>: Recipient address rejected: Access denied"
    );
}

#[test]
fn warn_if_reject_on_unlisted_keeps_the_implicit_check() {
    let f = Fixture::new();
    let p = f.policy("smtpd_recipient_restrictions = \"warn_if_reject reject_unlisted_recipient\"");
    assert!(
        Session::from(OUTSIDE)
            .rcpt(&p, "nobody@mx.example.local")
            .starts_with("550 5.1.1 <nobody@mx.example.local>: Recipient address rejected")
    );
}
