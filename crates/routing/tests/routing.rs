//! Golden-style tables of input -> route for the setups in SCENARIOS.md
//! (S1, S2, S3, S5) and for each rewrite rule, built from real
//! `master.toml` text and table files in a temporary directory.

use std::path::Path;
use std::time::Duration;

use postern_config::Config;
use postern_routing::{AddressClass, Route, Router, RoutingError};

use AddressClass::*;

/// A router from `[main]` lines; `files` are written next to master.toml
/// first, so relative table names find them.
fn router_in(dir: &Path, main: &str, files: &[(&str, &str)]) -> Result<Router, RoutingError> {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let text = format!("[main]\n{main}\n");
    let cfg = Config::from_str(&text, &dir.join("master.toml"), &[]).unwrap();
    Router::from_params(cfg.main())
}

fn router(main: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Router) {
    let dir = tempfile::tempdir().unwrap();
    let r = router_in(dir.path(), main, files).unwrap();
    (dir, r)
}

/// The parts of a route a table row checks.
#[derive(Debug, PartialEq, Eq)]
struct Want<'a> {
    class: AddressClass,
    transport: &'a str,
    nexthop: &'a str,
    mx_lookup: bool,
    host: &'a str,
    port: Option<u16>,
}

fn got(r: &Route) -> Want<'_> {
    Want {
        class: r.class,
        transport: &r.transport,
        nexthop: &r.nexthop,
        mx_lookup: r.mx_lookup,
        host: &r.host,
        port: r.port,
    }
}

/// A route's parts from `CLASS | TRANSPORT | NEXTHOP | mx or direct | HOST`,
/// and `| PORT` when it has one.
fn want(row: &str) -> Want<'_> {
    let f: Vec<&str> = row.split('|').map(str::trim).collect();
    let class = match f[0] {
        "Local" => Local,
        "VirtualAlias" => VirtualAlias,
        "VirtualMailbox" => VirtualMailbox,
        "Relay" => Relay,
        "Default" => Default,
        other => panic!("no address class {other} in {row:?}"),
    };
    let mx_lookup = match f[3] {
        "mx" => true,
        "direct" => false,
        other => panic!("{other} is neither mx nor direct in {row:?}"),
    };
    Want {
        class,
        transport: f[1],
        nexthop: f[2],
        mx_lookup,
        host: f[4],
        port: f.get(5).map(|p| p.parse().expect("a port")),
    }
}

/// Each row is `RECIPIENT | ` and what [`want`] reads.
fn check_routes(r: &Router, rows: &[&str]) {
    for row in rows {
        let (addr, expected) = row.split_once('|').unwrap();
        let addr = addr.trim();
        let route = r.resolve(addr).unwrap();
        assert_eq!(got(&route), want(expected), "recipient {addr}");
    }
}

fn check_authorized(r: &Router, rows: &[(&str, bool)]) {
    for (addr, ok) in rows {
        assert_eq!(
            r.is_authorized_destination(addr).unwrap(),
            *ok,
            "recipient {addr}"
        );
    }
}

// ---------------------------------------------------------------- S3

const S3_TRANSPORT: &str = "\
example.local :[192.168.1.100]
sub.example.local :sub.example.local
.example.local :[mailtrans.example.local]
";

const S3_MAIN: &str = r#"
myhostname = "hub.example.com"
mynetworks = "127.0.0.0/8"
relay_domains = "example.local"
transport_maps = "hash:transport"
"#;

#[test]
fn s3_transport_table() {
    let (_d, r) = router(S3_MAIN, &[("transport", S3_TRANSPORT)]);
    check_routes(
        &r,
        &[
            "user@example.local | Relay | relay | [192.168.1.100] | direct | 192.168.1.100",
            "user@sub.example.local | Relay | relay | sub.example.local | mx | sub.example.local",
            "user@abc.example.local | Relay | relay | [mailtrans.example.local] | direct | mailtrans.example.local",
            "user@deep.abc.example.local | Relay | relay | [mailtrans.example.local] | direct | mailtrans.example.local",
            "USER@Example.Local. | Relay | relay | [192.168.1.100] | direct | 192.168.1.100",
            "user@example.net | Default | smtp | example.net | mx | example.net",
            "user@hub.example.com | Local | local | hub.example.com | mx | hub.example.com",
        ],
    );
    check_authorized(
        &r,
        &[
            ("user@example.local", true),
            ("user@sub.example.local", true),
            ("user@abc.example.local", true),
            ("user@example.net", false),
            ("user@notexample.local", false),
            ("user@hub.example.com", true),
            ("user", true),
            // Routing operators must not smuggle mail to a third party.
            ("user%example.net@example.local", false),
            ("example.net!user@example.local", false),
            ("user@example.net@example.local", false),
            // Through a local domain the percent hack points outside.
            ("user%example.net@hub.example.com", false),
            ("user%sub.example.local@hub.example.com", true),
        ],
    );
    let route = r.resolve("user@example.local").unwrap();
    assert_eq!(route.to_string(), "relay:[192.168.1.100]");
    assert_eq!(route.recipient, "USER@example.local".to_lowercase());
}

#[test]
fn transport_table_reloads_after_edit() {
    let dir = tempfile::tempdir().unwrap();
    let r = router_in(dir.path(), S3_MAIN, &[("transport", S3_TRANSPORT)]).unwrap();
    assert_eq!(
        r.resolve("u@example.local").unwrap().nexthop,
        "[192.168.1.100]"
    );
    // Tables look at the file at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(
        dir.path().join("transport"),
        "example.local smtp:[192.168.1.200]:2525\n.example.local discard:closed\n",
    )
    .unwrap();
    let route = r.resolve("u@example.local").unwrap();
    assert_eq!(
        got(&route),
        want("Relay | smtp | [192.168.1.200]:2525 | direct | 192.168.1.200 | 2525")
    );
    // The removed sub.example.local entry no longer applies.
    let route = r.resolve("u@sub.example.local").unwrap();
    assert_eq!(
        (route.transport.as_str(), route.nexthop.as_str()),
        ("discard", "closed")
    );

    // A broken edit makes lookups fail (mail defers) until it is fixed.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(dir.path().join("transport"), "example.local\n").unwrap();
    assert!(matches!(
        r.resolve("u@example.local"),
        Err(RoutingError::Table {
            param: "transport_maps",
            ..
        })
    ));
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(dir.path().join("transport"), S3_TRANSPORT).unwrap();
    assert_eq!(
        r.resolve("u@example.local").unwrap().nexthop,
        "[192.168.1.100]"
    );
}

// ---------------------------------------------------------------- S1

#[test]
fn s1_dmz_relay() {
    let (_d, dmz) = router(
        r#"
myhostname = "dmz.example.local"
mynetworks = "127.0.0.2/32"
relay_domains = "example.local"
transport_maps = "hash:transport"
"#,
        &[("transport", "example.local smtp:[127.0.0.2]\n")],
    );
    check_routes(
        &dmz,
        &[
            "user@example.local | Relay | smtp | [127.0.0.2] | direct | 127.0.0.2",
            // Subdomains are relay domains too (parent_domain_matches_
            // subdomains names relay_domains); the bare transport key does
            // not match them, so they go by MX.
            "user@sub.example.local | Relay | relay | sub.example.local | mx | sub.example.local",
            "user@outside.example | Default | smtp | outside.example | mx | outside.example",
        ],
    );
    check_authorized(
        &dmz,
        &[
            ("user@example.local", true),
            ("user@sub.example.local", true),
            ("user@abc.example.local", true),
            ("user@example.net", false),
        ],
    );

    // With transport_maps in parent_domain_matches_subdomains the bare key
    // covers subdomains as well.
    let (_d, dmz) = router(
        r#"
myhostname = "dmz.example.local"
relay_domains = "example.local"
transport_maps = "hash:transport"
parent_domain_matches_subdomains = "relay_domains, transport_maps"
"#,
        &[("transport", "example.local smtp:[127.0.0.2]\n")],
    );
    assert_eq!(
        dmz.resolve("user@sub.example.local").unwrap().nexthop,
        "[127.0.0.2]"
    );

    // The LAN server delivers its own domain and sends the rest to the DMZ.
    let (_d, lan) = router(
        r#"
myhostname = "mail.example.local"
mydomain = "example.local"
mydestination = "$myhostname, localhost.$mydomain, localhost, $mydomain"
relayhost = "[127.0.0.3]"
"#,
        &[],
    );
    check_routes(
        &lan,
        &[
            "user@example.local | Local | local | mail.example.local | mx | mail.example.local",
            "user@localhost | Local | local | mail.example.local | mx | mail.example.local",
            "someone@outside.example | Default | smtp | [127.0.0.3] | direct | 127.0.0.3",
        ],
    );
    let rewritten = [
        (lan.rewrite_recipient("user"), "user@mail.example.local"),
        (
            lan.rewrite_sender("user1@hogehoge.local"),
            "user1@hogehoge.local",
        ),
    ];
    for (got, want) in rewritten {
        assert_eq!(got.unwrap(), want);
    }
}

// ---------------------------------------------------------------- S2

#[test]
fn s2_through_server_branch_and_hub() {
    // example.jp is relayed inward, never delivered here.
    let (_d, dmz) = router(
        r#"
myhostname = "gate.example.jp"
relay_domains = "example.jp"
relayhost = "[10.0.0.5]"
"#,
        &[],
    );
    check_routes(
        &dmz,
        &[
            "taro@example.jp | Relay | relay | [10.0.0.5] | direct | 10.0.0.5",
            "taro@gate.example.jp | Local | local | gate.example.jp | mx | gate.example.jp",
            "taro@elsewhere.example | Default | smtp | [10.0.0.5] | direct | 10.0.0.5",
        ],
    );
    check_authorized(
        &dmz,
        &[("taro@example.jp", true), ("x@elsewhere.example", false)],
    );

    // A misconfigured mydestination makes it local instead (the guide's
    // warning).
    let (_d, wrong) = router(
        r#"
myhostname = "gate.example.jp"
mydestination = "$myhostname, example.jp"
relay_domains = "example.jp"
relayhost = "[10.0.0.5]"
"#,
        &[],
    );
    assert_eq!(wrong.resolve("taro@example.jp").unwrap().class, Local);

    // Branch: unknown local users go to the hub.
    let (_d, branch) = router(
        r#"
myhostname = "branch1.example.jp"
fallback_transport = "smtp:[hub.example.jp]"
local_recipient_maps = ""
"#,
        &[],
    );
    let route = branch.resolve("hanako@branch1.example.jp").unwrap();
    assert_eq!(route.class, Local);
    let fb = branch.fallback_route(&route.recipient).unwrap();
    assert_eq!(
        got(&fb),
        want("Local | smtp | [hub.example.jp] | direct | hub.example.jp")
    );
    assert_eq!(fb.recipient, "hanako@branch1.example.jp");

    // Without a next hop the fallback goes to the recipient domain.
    let (_d, branch2) = router(
        "myhostname = \"b.example.jp\"\nfallback_transport = \"relay\"\n",
        &[],
    );
    let fb = branch2.fallback_route("x@b.example.jp").unwrap();
    assert_eq!(
        (fb.transport.as_str(), fb.nexthop.as_str()),
        ("relay", "b.example.jp")
    );
    assert!(dmz.fallback_route("x@gate.example.jp").is_none());

    // Hub: branch host names are local there.
    let (_d, hub) = router(
        r#"
myhostname = "hub.example.jp"
mydestination = "$myhostname, localhost, branch1.example.jp, branch2.example.jp"
"#,
        &[],
    );
    assert_eq!(
        hub.resolve("hanako@branch1.example.jp").unwrap().class,
        Local
    );
    assert_eq!(
        hub.resolve("hanako@branch3.example.jp").unwrap().class,
        Default
    );
}

// ---------------------------------------------------------------- S5

#[test]
fn s5_gateway_routes_and_domain_rewrite() {
    let (_d, gw) = router(
        r#"
myhostname = "gw.example.jp"
relay_domains = "test-sample.jp, example.co.jp, region.example, gov.example"
transport_maps = "hash:transport"
virtual_alias_maps = "hash:virtual"
recipient_delimiter = "+"
"#,
        &[
            (
                "transport",
                "test-sample.jp smtp:[192.168.0.103]:25\n\
                 # IPv6 next hops\n\
                 v6.example.co.jp smtp:[IPv6:2001:db8::25]:2525\n",
            ),
            ("virtual", "@region.example @gov.example\n"),
        ],
    );
    check_routes(
        &gw,
        &[
            "a@test-sample.jp | Relay | smtp | [192.168.0.103]:25 | direct | 192.168.0.103 | 25",
            "a@example.co.jp | Relay | relay | example.co.jp | mx | example.co.jp",
            "a@v6.example.co.jp | Relay | smtp | [IPv6:2001:db8::25]:2525 | direct | 2001:db8::25 | 2525",
            "a@other.example | Default | smtp | other.example | mx | other.example",
        ],
    );
    // The regional domain becomes the government-network domain, local
    // part and extension kept.
    assert_eq!(
        gw.expand_virtual("taro@region.example").unwrap(),
        vec!["taro@gov.example"]
    );
    assert_eq!(
        gw.expand_virtual("taro+x@region.example").unwrap(),
        vec!["taro+x@gov.example"]
    );
    assert_eq!(
        gw.expand_virtual("taro@gov.example").unwrap(),
        vec!["taro@gov.example"]
    );

    // Smarthost mode: everything not in the table goes to one relay host.
    let (_d, smart) = router(
        r#"
myhostname = "gw.example.jp"
relay_domains = "test-sample.jp"
relayhost = "[smarthost.example.net]:587"
transport_maps = "hash:transport"
"#,
        &[("transport", "test-sample.jp smtp:[192.168.0.103]:25\n")],
    );
    check_routes(
        &smart,
        &[
            "a@test-sample.jp | Relay | smtp | [192.168.0.103]:25 | direct | 192.168.0.103 | 25",
            "a@anywhere.example | Default | smtp | [smarthost.example.net]:587 | direct | smarthost.example.net | 587",
        ],
    );
}

// ---------------------------------------------------------------- rules

const BASIC: &str = r#"
myhostname = "mx.example.org"
"#;

#[test]
fn myorigin_and_canonical_form() {
    let (_d, r) = router(BASIC, &[]);
    for (input, want) in [
        ("joe", "joe@mx.example.org"),
        ("joe@example.com", "joe@example.com"),
        ("joe@example.com.", "joe@example.com"),
        ("", ""),
        ("host.example!joe", "joe@host.example"),
        ("joe%remote.example", "joe@remote.example"),
    ] {
        assert_eq!(r.rewrite_recipient(input).unwrap(), want, "{input:?}");
        assert_eq!(r.rewrite_sender(input).unwrap(), want, "{input:?}");
    }

    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
myorigin = "$mydomain"
append_dot_mydomain = "yes"
swap_bangpath = "no"
allow_percent_hack = "no"
"#,
        &[],
    );
    for (input, want) in [
        ("joe", "joe@example.org"),
        ("joe@box", "joe@box.example.org"),
        ("host!joe", "host!joe@example.org"),
        ("joe%remote", "joe%remote@example.org"),
    ] {
        assert_eq!(r.canonicalize(input), want, "{input:?}");
    }
}

#[test]
fn canonical_maps() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
mydomain = "example.org"
canonical_maps = "hash:canonical"
sender_canonical_maps = "hash:sender_canonical"
recipient_canonical_maps = "hash:recipient_canonical"
recipient_delimiter = "+"
"#,
        &[
            (
                "canonical",
                "joe Joe.Smith\n\
                 wendy@elsewhere.example Wendy.Doe@example.org\n\
                 @old.example @new.example\n\
                 loop1@x.example loop2@x.example\n\
                 loop2@x.example loop1@x.example\n",
            ),
            (
                "sender_canonical",
                "root@mx.example.org postmaster@example.org\n",
            ),
            (
                "recipient_canonical",
                "info@example.com sales@example.com\n",
            ),
        ],
    );
    for (input, sender, recipient) in [
        // Local part alone: only for local domains; the result is made
        // canonical (@$myorigin).
        (
            "joe",
            "Joe.Smith@mx.example.org",
            "Joe.Smith@mx.example.org",
        ),
        (
            "joe@mx.example.org",
            "Joe.Smith@mx.example.org",
            "Joe.Smith@mx.example.org",
        ),
        (
            "joe@remote.example",
            "joe@remote.example",
            "joe@remote.example",
        ),
        // The unmatched extension is carried over.
        (
            "joe+news",
            "Joe.Smith+news@mx.example.org",
            "Joe.Smith+news@mx.example.org",
        ),
        (
            "wendy@elsewhere.example",
            "Wendy.Doe@example.org",
            "Wendy.Doe@example.org",
        ),
        // @domain changes the domain and keeps the user.
        ("ann@old.example", "ann@new.example", "ann@new.example"),
        (
            "ann+x@old.example",
            "ann+x@new.example",
            "ann+x@new.example",
        ),
        // Sender- and recipient-only tables come first.
        ("root", "postmaster@example.org", "root@mx.example.org"),
        ("info@example.com", "info@example.com", "sales@example.com"),
    ] {
        assert_eq!(r.rewrite_sender(input).unwrap(), sender, "sender {input}");
        assert_eq!(
            r.rewrite_recipient(input).unwrap(),
            recipient,
            "recipient {input}"
        );
    }
    assert_eq!(r.rewrite_sender("").unwrap(), "");
    assert!(matches!(
        r.rewrite_recipient("loop1@x.example"),
        Err(RoutingError::Nesting {
            param: "canonical_maps",
            ..
        })
    ));
}

#[test]
fn regexp_tables_see_only_full_addresses() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
canonical_maps = "regexp:canonical.re"
"#,
        &[(
            "canonical.re",
            "/^(.*)@legacy\\.example$/ ${1}@example.org\n/^@/ never@example.org\n",
        )],
    );
    for (input, want) in [
        ("bob@legacy.example", "bob@example.org"),
        ("bob@other.example", "bob@other.example"),
    ] {
        assert_eq!(r.rewrite_sender(input).unwrap(), want, "{input}");
    }
}

#[test]
fn virtual_alias_expansion() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
virtual_alias_maps = "hash:virtual"
virtual_alias_recursion_limit = "5"
virtual_alias_expansion_limit = "4"
"#,
        &[(
            "virtual",
            "valias.example anything\n\
             info@valias.example sales@valias.example, support\n\
             sales@valias.example ann@example.com, bob@example.com\n\
             keep@valias.example keep@valias.example, archive@example.com\n\
             postmaster postmaster@example.com\n\
             @catch.example catchall@example.com\n\
             a@loop.example b@loop.example\n\
             b@loop.example a@loop.example\n\
             big@valias.example x1@e.example, x2@e.example, x3@e.example, x4@e.example, x5@e.example\n",
        )],
    );
    for (input, want) in [
        (
            "info@valias.example",
            vec![
                "ann@example.com",
                "support@mx.example.org",
                "bob@example.com",
            ],
        ),
        (
            "keep@valias.example",
            vec!["keep@valias.example", "archive@example.com"],
        ),
        // A bare local-part key matches local domains only.
        ("postmaster@mx.example.org", vec!["postmaster@example.com"]),
        (
            "postmaster@elsewhere.example",
            vec!["postmaster@elsewhere.example"],
        ),
        ("anyone@catch.example", vec!["catchall@example.com"]),
        ("nobody@valias.example", vec!["nobody@valias.example"]),
    ] {
        assert_eq!(r.expand_virtual(input).unwrap(), want, "{input}");
    }
    assert!(matches!(
        r.expand_virtual("a@loop.example"),
        Err(RoutingError::Nesting { limit: 5, .. })
    ));
    assert!(matches!(
        r.expand_virtual("big@valias.example"),
        Err(RoutingError::ExpansionSize { limit: 4, .. })
    ));

    // virtual_alias_domains defaults to $virtual_alias_maps: a domain that
    // is a key is a virtual alias domain; its unknown users bounce.
    let route = r.resolve("nobody@valias.example").unwrap();
    assert_eq!(
        got(&route),
        want("VirtualAlias | error | User unknown in virtual alias table | direct | ")
    );
    assert!(
        r.is_authorized_destination("nobody@valias.example")
            .unwrap()
    );
    assert_eq!(r.resolve("x@catch.example").unwrap().class, Default);
}

#[test]
fn virtual_mailbox_domains() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
virtual_mailbox_domains = "vmail.example, hash:vdomains"
"#,
        &[("vdomains", "vmail2.example OK\n")],
    );
    check_routes(
        &r,
        &[
            "a@vmail.example | VirtualMailbox | local | vmail.example | mx | vmail.example",
            "a@VMAIL2.example | VirtualMailbox | local | VMAIL2.example | mx | VMAIL2.example",
            // String lists do not match subdomains.
            "a@sub.vmail.example | Default | smtp | sub.vmail.example | mx | sub.vmail.example",
        ],
    );
    check_authorized(
        &r,
        &[("a@vmail.example", true), ("a@sub.vmail.example", false)],
    );

    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
virtual_mailbox_domains = "vmail.example"
virtual_transport = "lmtp:unix:private/dovecot-lmtp"
"#,
        &[],
    );
    let route = r.resolve("a@vmail.example").unwrap();
    assert_eq!(route.to_string(), "lmtp:unix:private/dovecot-lmtp");
}

#[test]
fn percent_hack_and_bang_paths_in_resolve() {
    let (_d, r) = router(
        "myhostname = \"mx.example.org\"\nrelay_domains = \"relay.example\"\n",
        &[],
    );
    for (input, recipient, class, routed) in [
        (
            "joe%remote.example@mx.example.org",
            "joe@remote.example",
            Default,
            false,
        ),
        (
            "joe%relay.example@mx.example.org",
            "joe@relay.example",
            Relay,
            false,
        ),
        (
            "remote.example!joe@mx.example.org",
            "joe@remote.example",
            Default,
            false,
        ),
        (
            "joe%mx.example.org@localhost",
            "joe@mx.example.org",
            Local,
            false,
        ),
        (
            "joe@remote.example@mx.example.org",
            "joe@remote.example",
            Default,
            false,
        ),
        (
            "joe%remote.example@relay.example",
            "joe%remote.example@relay.example",
            Relay,
            true,
        ),
        ("joe", "joe@mx.example.org", Local, false),
        (
            "@mx.example.org",
            "MAILER-DAEMON@mx.example.org",
            Local,
            false,
        ),
    ] {
        let route = r.resolve(input).unwrap();
        assert_eq!(
            (route.recipient.as_str(), route.class, route.routed),
            (recipient, class, routed),
            "{input}"
        );
    }

    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
allow_percent_hack = "no"
swap_bangpath = "no"
"#,
        &[],
    );
    let route = r.resolve("joe%remote.example@mx.example.org").unwrap();
    assert_eq!((route.class, route.routed), (Local, true));
    assert_eq!(route.recipient, "joe%remote.example@mx.example.org");
    assert!(
        !r.is_authorized_destination("joe%remote.example@mx.example.org")
            .unwrap()
    );
    let route = r.resolve("remote!joe@mx.example.org").unwrap();
    assert_eq!((route.class, route.routed), (Local, true));
}

#[test]
fn error_discard_wildcard_and_address_keys() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
transport_maps = "hash:transport"
recipient_delimiter = "+"
relayhost = "[smart.example.net]"
"#,
        &[(
            "transport",
            "gone.example error:5.1.1 mailbox gone\n\
             bounce.example error\n\
             spam.example discard:silently dropped\n\
             vip@example.com smtp:[vip.example.com]:2525\n\
             reset.example smtp\n\
             * smtp:[wild.example]\n",
        )],
    );
    check_routes(
        &r,
        &[
            "a@gone.example | Default | error | 5.1.1 mailbox gone | direct | ",
            "a@bounce.example | Default | error | Address is undeliverable | direct | ",
            "a@spam.example | Default | discard | silently dropped | direct | ",
            "vip@example.com | Default | smtp | [vip.example.com]:2525 | direct | vip.example.com | 2525",
            "vip+tag@example.com | Default | smtp | [vip.example.com]:2525 | direct | vip.example.com | 2525",
            // A transport without next hop resets relayhost to the domain.
            "a@reset.example | Default | smtp | reset.example | mx | reset.example",
            "other@example.com | Default | smtp | [wild.example] | direct | wild.example",
            // The wildcard matches local domains too, as in Postfix.
            "joe@mx.example.org | Local | smtp | [wild.example] | direct | wild.example",
        ],
    );
}

#[test]
fn address_literals_and_ipv6() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
transport_maps = "hash:transport"
"#,
        &[(
            "transport",
            "v6.example smtp:[2001:db8::1]\nv6port.example :[IPv6:2001:db8::2]:2525\n",
        )],
    );
    check_routes(
        &r,
        &[
            "a@v6.example | Default | smtp | [2001:db8::1] | direct | 2001:db8::1",
            "a@v6port.example | Default | smtp | [IPv6:2001:db8::2]:2525 | direct | 2001:db8::2 | 2525",
            "a@[192.0.2.9] | Default | smtp | [192.0.2.9] | direct | 192.0.2.9",
            "a@[IPv6:2001:db8::9] | Default | smtp | [IPv6:2001:db8::9] | direct | 2001:db8::9",
            "a@[127.0.0.1] | Local | local | mx.example.org | mx | mx.example.org",
            "a@[IPv6:::1] | Local | local | mx.example.org | mx | mx.example.org",
        ],
    );
    let r = r.with_own_addresses(["192.0.2.9".parse().unwrap()]);
    assert_eq!(r.resolve("a@[192.0.2.9]").unwrap().class, Local);
    assert!(r.is_authorized_destination("a@[192.0.2.9]").unwrap());
    assert!(!r.is_authorized_destination("a@[192.0.2.10]").unwrap());
    assert!(r.resolve("a@[bogus]").unwrap().bad_domain);
    assert!(!r.resolve("a@[192.0.2.10]").unwrap().bad_domain);

    // Only the listed interface counts when inet_interfaces is explicit.
    let (_d, r) = router(
        "myhostname = \"mx.example.org\"\ninet_interfaces = \"192.0.2.1\"\n",
        &[],
    );
    assert_eq!(r.resolve("a@[192.0.2.1]").unwrap().class, Local);
    assert_eq!(r.resolve("a@[127.0.0.1]").unwrap().class, Default);
}

#[test]
fn relay_domain_lists() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
relay_domains = "!private.example.com, example.com, .dotted.example, hash:relays"
"#,
        &[("relays", "tabled.example OK\n")],
    );
    check_authorized(
        &r,
        &[
            ("a@example.com", true),
            ("a@sub.example.com", true),
            ("a@private.example.com", false),
            ("a@notexample.com", false),
            ("a@dotted.example", false),
            ("a@x.dotted.example", true),
            ("a@tabled.example", true),
            ("a@sub.tabled.example", true),
        ],
    );

    // Without parent matching, bare names and table keys are exact and
    // tables are asked for ".parent".
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
relay_domains = "example.com, hash:relays"
parent_domain_matches_subdomains = ""
"#,
        &[("relays", "tabled.example OK\n.dotkey.example OK\n")],
    );
    check_authorized(
        &r,
        &[
            ("a@example.com", true),
            ("a@sub.example.com", false),
            ("a@tabled.example", true),
            ("a@sub.tabled.example", false),
            ("a@sub.dotkey.example", true),
        ],
    );
}

#[test]
fn configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = router_in(
        dir.path(),
        "myhostname = \"mx.example.org\"\nrelay_domains = \"/etc/postfix/relay\"\n",
        &[],
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            RoutingError::Config {
                param: "relay_domains",
                ..
            }
        ),
        "{e}"
    );

    let e = router_in(
        dir.path(),
        "myhostname = \"mx.example.org\"\ndefault_transport = \":[x]\"\n",
        &[],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "parameter \"default_transport\": null transport is not allowed: \":[x]\""
    );

    // A missing table file is a surrogate (Postfix's dict_surrogate): the
    // router is built, and what consults the table fails with a
    // configuration error.
    let r = router_in(
        dir.path(),
        "myhostname = \"mx.example.org\"\ntransport_maps = \"hash:missing\"\n",
        &[],
    )
    .unwrap();
    let e = r.resolve("user@example.com").unwrap_err();
    assert!(
        matches!(
            &e,
            RoutingError::Table {
                param: "transport_maps",
                source,
            } if source.is_configuration_error()
        ),
        "{e}"
    );

    // A value that does not fit its kind is refused when the
    // configuration is loaded, before any router is built.
    let e = Config::from_str(
        "[main]\nmyhostname = \"mx.example.org\"\nvirtual_alias_recursion_limit = \"lots\"\n",
        &dir.path().join("master.toml"),
        &[],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("master.toml:3: parameter \"virtual_alias_recursion_limit\""),
        "{e}"
    );
}

#[test]
fn class_transport_parameters() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
relay_domains = "inside.example"
relay_transport = "smtp:[gateway.inside.example]"
relayhost = "[smart.example.net]"
local_transport = "lmtp:unix:private/lmtp"
default_transport = "error:outbound mail disabled"
"#,
        &[],
    );
    check_routes(
        &r,
        &[
            // A next hop written in the class transport beats relayhost.
            "a@inside.example | Relay | smtp | [gateway.inside.example] | direct | gateway.inside.example",
            "a@mx.example.org | Local | lmtp | unix:private/lmtp | direct | unix:private/lmtp",
            "a@outside.example | Default | error | outbound mail disabled | direct | ",
        ],
    );
    // local_transport without a next hop: the recipient domain.
    let (_d, r) = router(
        "myhostname = \"mx.example.org\"\nlocal_transport = \"local\"\n",
        &[],
    );
    assert_eq!(
        r.resolve("a@localhost").unwrap().to_string(),
        "local:localhost"
    );
}

#[test]
fn pattern_inline_and_static_transport_tables() {
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
transport_maps = "regexp:transport.re, inline:{ inl.example=relay:[inline.example], *=smtp:[star.example] }"
"#,
        &[(
            "transport.re",
            "/^list-.*@example\\.com$/ smtp:[lists.example.com]\n/example\\.com$/ error:regexp saw a partial key\n",
        )],
    );
    check_routes(
        &r,
        &[
            "list-dev@example.com | Default | smtp | [lists.example.com] | direct | lists.example.com",
            // The regexp's second rule matches the full address too.
            "joe@example.com | Default | error | regexp saw a partial key | direct | ",
            "joe@inl.example | Default | relay | [inline.example] | direct | inline.example",
            "joe@other.example | Default | smtp | [star.example] | direct | star.example",
        ],
    );
    // A static table answers the full-address key first, so it overrides
    // everything after it (as in Postfix).
    let (_d, r) = router(
        r#"
myhostname = "mx.example.org"
transport_maps = "static:smtp:[static.example], inline:{ inl.example=relay }"
"#,
        &[],
    );
    assert_eq!(
        r.resolve("joe@inl.example").unwrap().to_string(),
        "smtp:[static.example]"
    );
}

#[test]
fn router_clones_share_reloading_tables() {
    let dir = tempfile::tempdir().unwrap();
    let r = router_in(dir.path(), S3_MAIN, &[("transport", S3_TRANSPORT)]).unwrap();
    let clone = r.clone();
    let t = std::thread::spawn(move || clone.resolve("u@abc.example.local").unwrap());
    assert_eq!(t.join().unwrap().nexthop, "[mailtrans.example.local]");
}

// ------------------------------------------------- domain list forms

/// The class each list gives its domains.
const LISTS: [(&str, AddressClass); 4] = [
    ("mydestination", Local),
    ("virtual_alias_domains", VirtualAlias),
    ("virtual_mailbox_domains", VirtualMailbox),
    ("relay_domains", Relay),
];

#[test]
fn every_domain_list_takes_every_form() {
    for (param, class) in LISTS {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("domains");
        std::fs::write(
            &file,
            "# listed domains\n!bad.name.example, name.example\n  .dot.example\n\
             hash:tabled\n",
        )
        .unwrap();
        let main = |parent: &str| {
            let empty = match param {
                "mydestination" => "",
                _ => "mydestination = \"\"\n",
            };
            format!(
                "myhostname = \"mx.example.org\"\n{empty}\
                 parent_domain_matches_subdomains = \"{parent}\"\n\
                 {param} = \"{}, inline:{{ inline.example=1 }}\"",
                file.display()
            )
        };
        let tables = [("tabled", ".tdot.example OK\ntabled.example OK\n")];
        let r = router_in(dir.path(), &main(""), &tables).unwrap();
        for (domain, want) in [
            ("name.example", class),
            ("NAME.example.", class),
            ("bad.name.example", Default),
            ("sub.name.example", Default),
            ("sub.dot.example", class),
            ("dot.example", Default),
            ("tabled.example", class),
            ("x.tdot.example", class),
            ("x.tabled.example", Default),
            ("inline.example", class),
            ("other.example", Default),
        ] {
            let got = r.resolve(&format!("u@{domain}")).unwrap().class;
            assert_eq!(got, want, "{param}: u@{domain}");
        }

        // Listed in parent_domain_matches_subdomains: bare names and
        // table keys cover subdomains.
        let r = router_in(dir.path(), &main(param), &[]).unwrap();
        for (domain, want) in [
            ("sub.name.example", class),
            ("deep.sub.tabled.example", class),
            ("x.bad.name.example", Default),
        ] {
            let got = r.resolve(&format!("u@{domain}")).unwrap().class;
            assert_eq!(got, want, "{param} (parent style): u@{domain}");
        }
    }
}

#[test]
fn a_domain_list_file_is_read_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let r = router_in(
        dir.path(),
        "myhostname = \"mx.example.org\"\nrelay_domains = \"relays\"\n",
        &[],
    );
    // A bare word is a domain name, not a file: only /paths are files.
    assert!(r.is_ok());
    let r = router_in(
        dir.path(),
        &format!(
            "myhostname = \"mx.example.org\"\nrelay_domains = \"{}/relays\"\n",
            dir.path().display()
        ),
        &[("relays", "one.example\n")],
    )
    .unwrap();
    assert!(r.is_authorized_destination("a@one.example").unwrap());
    assert!(!r.is_authorized_destination("a@two.example").unwrap());
    // Tables are checked at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    std::fs::write(dir.path().join("relays"), "two.example\nhash:more\n").unwrap();
    std::fs::write(dir.path().join("more"), "three.example x\n").unwrap();
    assert!(!r.is_authorized_destination("a@one.example").unwrap());
    assert!(r.is_authorized_destination("a@two.example").unwrap());
    assert!(r.is_authorized_destination("a@three.example").unwrap());
}

#[test]
fn domain_list_files_that_cannot_be_used_are_errors_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let e = router_in(
        dir.path(),
        &format!("mydestination = \"{d}/missing\"\n"),
        &[],
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("parameter \"mydestination\": ") && text.contains("missing"),
        "{text}"
    );
    let e = router_in(
        dir.path(),
        &format!("relay_domains = \"{d}/relays\"\n"),
        &[("relays", "ok.example\n\nbogus:table\n")],
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("parameter \"relay_domains\": ")
            && text.contains(&format!("{d}/relays:3: ")),
        "{text}"
    );
    // A file naming itself.
    let e = router_in(
        dir.path(),
        &format!("relay_domains = \"{d}/loop\"\n"),
        &[("loop", &format!("{d}/loop\n"))],
    )
    .unwrap_err();
    assert!(e.to_string().contains("nest"), "{e}");
}

/// The host's own addresses (local address literals, and what
/// smtp-client will not send to) come from inet_interfaces and
/// proxy_interfaces.
#[test]
fn own_addresses_from_lists() {
    let params = |main: &str| {
        let text = format!("[main]\nmyhostname = \"mx.example.org\"\n{main}\n");
        Config::from_str(&text, Path::new("/tmp/master.toml"), &[])
            .unwrap()
            .main()
            .clone()
    };
    let own = postern_routing::own_addresses(&params(
        "inet_interfaces = \"127.0.0.1, [::1]\"\nproxy_interfaces = \"192.0.2.7\"",
    ));
    assert_eq!(
        own,
        ["127.0.0.1", "192.0.2.7", "::1"]
            .map(|s| s.parse::<std::net::IpAddr>().unwrap())
            .to_vec()
    );
    let all = postern_routing::own_addresses(&params("inet_interfaces = \"all\""));
    assert!(
        all.contains(&std::net::Ipv4Addr::LOCALHOST.into()),
        "{all:?}"
    );
}
