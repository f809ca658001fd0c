//! Which delivery agent gets a recipient. A deliberately small subset of
//! trivial-rewrite(8): local domains (mydestination, `localhost`, or no
//! domain at all) go to `local`, everything else to `smtp` via `relayhost`
//! or the recipient's domain. transport_maps, relay_domains and virtual
//! domains replace this one function later.

use postern_config::Params;

/// A delivery route: the transport (also the name of the agent's socket
/// under `private/`) and the next hop handed to it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub transport: String,
    pub nexthop: String,
}

/// The domain part of an address, lower-cased; empty when there is none.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

/// Decides the transport and next hop for one recipient.
pub fn route(params: &Params, recipient: &str) -> Route {
    let domain = domain_of(recipient);
    let local = domain.is_empty()
        || domain == "localhost"
        || params
            .list("mydestination")
            .iter()
            .any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(&domain));
    if local {
        let nexthop = if domain.is_empty() {
            params.get("myhostname")
        } else {
            domain
        };
        return Route {
            transport: "local".into(),
            nexthop,
        };
    }
    let relayhost = params.get("relayhost");
    Route {
        transport: "smtp".into(),
        nexthop: if relayhost.trim().is_empty() {
            domain
        } else {
            relayhost.trim().to_string()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_config::Config;

    fn params(extra: &str) -> Params {
        let text = format!("[main]\nmyhostname = \"mail.example.local\"\n{extra}\n");
        Config::from_str(&text, std::path::Path::new("/tmp/master.toml"), &[])
            .unwrap()
            .main()
            .clone()
    }

    #[test]
    fn local_domains_go_to_local() {
        let p = params("");
        for rcpt in [
            "user@mail.example.local",
            "user@localhost",
            "postmaster",
            "u@MAIL.example.local",
        ] {
            assert_eq!(route(&p, rcpt).transport, "local", "{rcpt}");
        }
    }

    #[test]
    fn others_go_to_smtp_via_their_domain_or_the_relayhost() {
        let p = params("");
        assert_eq!(
            route(&p, "a@Example.ORG"),
            Route {
                transport: "smtp".into(),
                nexthop: "example.org".into()
            }
        );
        let p = params("relayhost = \"[10.0.0.1]:587\"");
        assert_eq!(route(&p, "a@example.org").nexthop, "[10.0.0.1]:587");
        assert_eq!(route(&p, "a@localhost").transport, "local");
    }
}
