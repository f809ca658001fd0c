//! Where each recipient goes: a small adapter between postern-routing's
//! [`Router`] (Postfix's trivial-rewrite and cleanup rules) and the
//! scheduler. It keeps one Router per configuration and turns a routing
//! answer into either a delivery agent (`private/TRANSPORT`) or one of
//! the outcomes qmgr decides itself: the `error`, `retry` and `discard`
//! transports need no agent (Postfix runs error(8) and discard(8) for
//! them; their whole job is the log line and the status).

use std::sync::Arc;

use postern_config::Params;
use postern_envelope::{EnhancedStatus, Orcpt};
use postern_ipc::delivery::DeliveryStatus;
use postern_queue::Recipient;
use postern_routing::{AddressClass, Router, RoutingError};

/// A delivery destination: the transport (also the name of the agent's
/// socket under `private/`) and the next hop handed to it. Requests are
/// grouped and their concurrency limited per destination.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub transport: String,
    pub nexthop: String,
}

/// What to do with one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Hand it to the agent of this route.
    Agent(Route),
    /// Settled here without an agent (`relay=none`).
    Internal {
        status: DeliveryStatus,
        dsn: EnhancedStatus,
        text: String,
    },
}

/// The decision for a resolved route.
pub fn decide(r: &postern_routing::Route) -> Decision {
    let internal = |status, default_dsn, text: &str| {
        let (dsn, text) = split_dsn(text, default_dsn);
        Decision::Internal { status, dsn, text }
    };
    match r.transport.as_str() {
        // An unknown user of a virtual alias domain: Postfix's
        // trivial-rewrite writes "5.1.1 User unknown ..." as the next hop.
        "error" if r.class == AddressClass::VirtualAlias => internal(
            DeliveryStatus::Bounced,
            EnhancedStatus::of(5, 1, 1),
            &r.nexthop,
        ),
        "error" => internal(
            DeliveryStatus::Bounced,
            EnhancedStatus::of(5, 0, 0),
            &r.nexthop,
        ),
        "retry" => internal(
            DeliveryStatus::Deferred,
            EnhancedStatus::of(4, 0, 0),
            &r.nexthop,
        ),
        "discard" => Decision::Internal {
            status: DeliveryStatus::Sent,
            dsn: EnhancedStatus::OK,
            text: r.nexthop.clone(),
        },
        // The transport names a socket file: nothing that climbs out of
        // the private directory.
        t if t.is_empty() || t.contains('/') || t == ".." => Decision::Internal {
            status: DeliveryStatus::Deferred,
            dsn: EnhancedStatus::TEMP_SYSTEM,
            text: format!("mail transport unavailable: bad transport name \"{t}\""),
        },
        t => Decision::Agent(Route {
            transport: t.to_string(),
            nexthop: r.nexthop.clone(),
        }),
    }
}

/// error(8)'s reading of its next hop: an optional leading enhanced
/// status code of the right class (`5.1.1 gone` or `4.7.1 later`), then
/// the text.
fn split_dsn(text: &str, default: EnhancedStatus) -> (EnhancedStatus, String) {
    let text = text.trim();
    if let Some((code, rest)) = text.split_once(' ')
        && let Ok(code) = code.parse::<EnhancedStatus>()
        && code.class() == default.class()
    {
        return (code, rest.trim().to_string());
    }
    (default, text.to_string())
}

/// A Router, or why the configuration gave none.
pub type Built = Result<Arc<Router>, String>;

/// The Router for a service's parameters, or why none could be built (a
/// table file with a syntax error): the caller defers. qmgr builds it
/// once per configuration (a reload builds a new one) and tries a failed
/// build again now and then; between reloads the Router's tables re-read
/// their files when they change, and a table whose file is missing fails
/// its lookups until the file appears.
pub fn build_router(params: &Params) -> Built {
    Router::from_params(params).map(Arc::new).map_err(|e| {
        tracing::warn!("routing configuration: {e}");
        e.to_string()
    })
}

/// Postfix's cleanup on the envelope: the sender through
/// `rewrite_sender`; each recipient through `rewrite_recipient`, then
/// `virtual_alias_maps` (one may become several). A recipient whose
/// address changed keeps the client's address as its ORCPT when the
/// client gave none, so that DSNs and the log (`orig_to=`) still name it.
/// Duplicates (same address, any case) are dropped: the first stays.
pub fn rewrite_envelope(
    router: &Router,
    sender: &str,
    recipients: Vec<Recipient>,
    mappings: bool,
) -> Result<(String, Vec<Recipient>), RoutingError> {
    let sender = match mappings {
        true => router.rewrite_sender(sender)?,
        false => router.canonicalize(sender),
    };
    let mut out: Vec<Recipient> = Vec::with_capacity(recipients.len());
    let mut seen = std::collections::HashSet::new();
    for r in recipients {
        let expanded = match mappings {
            true => router.expand_virtual(&router.rewrite_recipient(&r.address)?)?,
            false => vec![router.canonicalize(&r.address)],
        };
        for address in expanded {
            if address.is_empty() || !seen.insert(address.to_ascii_lowercase()) {
                continue;
            }
            let orcpt = match &r.orcpt {
                None if address != r.address => Some(Orcpt::rfc822(&r.address)),
                other => other.clone(),
            };
            out.push(Recipient {
                address,
                orcpt,
                notify: r.notify,
                state: r.state.clone(),
            });
        }
    }
    Ok((sender, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::Config;
    use postern_queue::RcptState;

    fn config(extra: &str) -> Arc<Config> {
        let text = format!("[main]\nmyhostname = \"mail.example.local\"\n{extra}\n");
        Arc::new(Config::from_str(&text, std::path::Path::new("/tmp/master.toml"), &[]).unwrap())
    }

    fn router(extra: &str) -> Arc<Router> {
        build_router(&config(extra).params_for("qmgr")).unwrap()
    }

    fn decision(router: &Router, rcpt: &str) -> Decision {
        decide(&router.resolve(rcpt).unwrap())
    }

    fn agent(transport: &str, nexthop: &str) -> Decision {
        Decision::Agent(Route {
            transport: transport.into(),
            nexthop: nexthop.into(),
        })
    }

    fn settled(status: DeliveryStatus, dsn: &str, text: &str) -> Decision {
        Decision::Internal {
            status,
            dsn: dsn.parse().unwrap(),
            text: text.into(),
        }
    }

    fn rcpt(address: &str) -> Recipient {
        Recipient {
            address: address.into(),
            orcpt: None,
            notify: None,
            state: RcptState::Pending,
        }
    }

    #[test]
    fn classes_pick_the_agent_and_next_hop() {
        let r = router(
            "relay_domains = \"example.local\"\n\
             transport_maps = \"inline:{ example.local=:[192.168.1.100], \
             { gone.example=error:5.1.1 gone away }, later.example=retry:busy, \
             { spam.example=discard:spam trap } }\"",
        );
        assert_eq!(
            decision(&r, "user@mail.example.local"),
            agent("local", "mail.example.local")
        );
        assert_eq!(
            decision(&r, "postmaster"),
            agent("local", "mail.example.local")
        );
        assert_eq!(
            decision(&r, "user@example.local"),
            agent("relay", "[192.168.1.100]")
        );
        assert_eq!(decision(&r, "a@example.org"), agent("smtp", "example.org"));
        assert_eq!(
            decision(&r, "a@gone.example"),
            settled(DeliveryStatus::Bounced, "5.1.1", "gone away")
        );
        assert_eq!(
            decision(&r, "a@later.example"),
            settled(DeliveryStatus::Deferred, "4.0.0", "busy")
        );
        assert_eq!(
            decision(&r, "a@spam.example"),
            settled(DeliveryStatus::Sent, "2.0.0", "spam trap")
        );
        let r = router("relayhost = \"[10.0.0.1]:587\"");
        assert_eq!(
            decision(&r, "a@example.org"),
            agent("smtp", "[10.0.0.1]:587")
        );
    }

    #[test]
    fn unknown_virtual_alias_users_bounce_5_1_1() {
        let r = router("virtual_alias_domains = \"v.example\"");
        assert_eq!(
            decision(&r, "nobody@v.example"),
            settled(
                DeliveryStatus::Bounced,
                "5.1.1",
                "User unknown in virtual alias table"
            )
        );
    }

    #[test]
    fn the_envelope_is_rewritten_expanded_and_deduplicated() {
        let r = router(
            "myorigin = \"example.local\"\n\
             virtual_alias_maps = \"inline:{ @region.example=@gov.example, \
             { team@example.org=a@example.org, b@example.org } }\"",
        );
        let (sender, rcpts) = rewrite_envelope(
            &r,
            "alice",
            vec![
                rcpt("joe@region.example"),
                rcpt("team@example.org"),
                rcpt("B@example.org"),
                rcpt("bob@example.net"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(sender, "alice@example.local");
        let orcpts: Vec<Option<String>> = rcpts
            .iter()
            .map(|r| r.orcpt.as_ref().map(ToString::to_string))
            .collect();
        let got: Vec<(&str, Option<&str>)> = rcpts
            .iter()
            .zip(&orcpts)
            .map(|(r, o)| (r.address.as_str(), o.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("joe@gov.example", Some("rfc822;joe@region.example")),
                ("a@example.org", Some("rfc822;team@example.org")),
                ("b@example.org", Some("rfc822;team@example.org")),
                ("bob@example.net", None),
            ]
        );
    }

    #[test]
    fn a_missing_table_file_gives_a_router_that_cannot_use_it() {
        let c = config("transport_maps = \"hash:/no/such/file\"");
        let router = build_router(&c.params_for("qmgr")).unwrap();
        assert!(router.resolve("bob@example.net").is_err());
    }

    #[test]
    fn dsn_codes_in_error_texts() {
        let code = |s: &str| s.parse::<EnhancedStatus>().unwrap();
        assert_eq!(
            split_dsn("5.7.1 no", code("5.0.0")),
            (code("5.7.1"), "no".into())
        );
        assert_eq!(
            split_dsn("4.7.1 no", code("5.0.0")),
            (code("5.0.0"), "4.7.1 no".into())
        );
        assert_eq!(
            split_dsn("plain text", code("4.0.0")),
            (code("4.0.0"), "plain text".into())
        );
    }
}
