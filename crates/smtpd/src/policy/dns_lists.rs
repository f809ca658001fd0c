//! DNS blocklists and allowlists in restrictions: reject_rbl_client,
//! reject_rhsbl_client / _reverse_client / _helo / _sender / _recipient,
//! permit_dnswl_client and permit_rhswl_client, as Postfix's
//! smtpd_check.c answers them.
//!
//! * A listing is an A record that the site's `=filter` admits (any A
//!   record without one). Its TXT record is `$rbl_reason`.
//! * The reply is `default_rbl_reply`, or the `rbl_reply_maps` template
//!   of the site (looked up as written, with its `=filter`),
//!   with `$rbl_code` = `maps_rbl_reject_code`:
//!   `554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked
//!   using bl.example; listed for spam`.
//! * DNS that fails leaves a blocklist unanswered (the restriction does
//!   not refuse); an allowlist that cannot be asked raises
//!   defer_if_reject, so a later refusal only defers.
//! * An allowlist never permits what reject_unauth_destination would
//!   refuse: it permits only mail to an authorized destination.

use std::time::Duration;

use hickory_resolver::TokioResolver;
use postern_config::dnsbl::DnsblSite;
use postern_config::{Maps, Params, Table, TableError};
use postern_daemon::dnsbl::{self, Answer};
use postern_envelope::EnhancedStatus;
use postern_smtp::Address;

use super::restriction::DnsList;
use super::{CLIENT, Eval, HELO, RECIPIENT, Refusal, SENDER, Verdict};

/// Each query's bound (Postfix leaves it to the resolver's retries).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// What DNS list checks need from the configuration.
#[derive(Debug)]
pub(super) struct DnsLists {
    resolver: Option<TokioResolver>,
    reply_maps: Maps,
    default_reply: String,
    code: u16,
}

impl DnsLists {
    pub(super) fn from_params(params: &Params) -> Result<DnsLists, TableError> {
        let tables = params
            .list("rbl_reply_maps")
            .iter()
            .map(|spec| Table::open(spec, params.base_dir()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut opts = hickory_resolver::config::ResolverOpts::default();
        opts.timeout = QUERY_TIMEOUT / 2;
        opts.attempts = 1;
        let resolver = postern_daemon::dns::resolver(&params.resolvers("dns_servers"), opts)
            .map_err(|e| tracing::error!("DNS lists: {e}; no DNS list is asked"))
            .ok();
        Ok(DnsLists {
            resolver,
            reply_maps: Maps::from_tables(tables),
            default_reply: params.get("default_rbl_reply"),
            code: params.code("maps_rbl_reject_code"),
        })
    }
}

/// Who is asked about and how the reply names it.
struct Query {
    label: String,
    /// `$rbl_what`.
    what: String,
    /// `$rbl_class`.
    class: &'static str,
}

impl Eval<'_, '_> {
    pub(super) async fn dns_list(&mut self, list: DnsList, site: &DnsblSite) -> Verdict {
        let Some(query) = self.dns_query(list) else {
            return Verdict::Dunno;
        };
        // An allowlist never opens a relay: not even asked for a
        // recipient that is not an authorized destination.
        if list.permits()
            && let Some(rcpt) = self.ctx.recipient
            && !matches!(self.auth_destination(rcpt), Ok(true))
        {
            return Verdict::Dunno;
        }
        let dns = &*self.policy.dns;
        let Some(resolver) = &dns.resolver else {
            return Verdict::Dunno;
        };
        let answer =
            dnsbl::query(resolver, site, &query.label, !list.permits(), QUERY_TIMEOUT).await;
        match (answer, list.permits()) {
            (Answer::NotListed, _) => Verdict::Dunno,
            (Answer::Failed(e), false) => {
                tracing::warn!("{}.{}: RBL lookup error: {e}", query.label, site.domain);
                Verdict::Dunno
            }
            (Answer::Failed(e), true) => {
                tracing::warn!("{}.{}: RBL lookup error: {e}", query.label, site.domain);
                self.defer_if_reject.get_or_insert_with(|| {
                    Refusal::new(
                        450,
                        EnhancedStatus::of(4, 7, 1),
                        format!(
                            "<{}>: {} rejected: Service unavailable",
                            query.what, query.class
                        ),
                    )
                });
                Verdict::Dunno
            }
            (Answer::Listed { .. }, true) => Verdict::Permit,
            (Answer::Listed { reason, .. }, false) => {
                let text = self.rbl_reply(site, &query, reason.as_deref());
                match split_reply(&text) {
                    Some((code, dsn, text)) => self.reject(code, dsn, text),
                    None => {
                        tracing::warn!("rbl response code configuration error: {text}");
                        Verdict::Refuse(Refusal::new(
                            450,
                            EnhancedStatus::of(4, 7, 1),
                            "Service unavailable".into(),
                        ))
                    }
                }
            }
        }
    }

    /// The name a list is asked about; none when there is nothing to ask
    /// (no verified name, no HELO, the null sender, an address literal).
    fn dns_query(&self, list: DnsList) -> Option<Query> {
        let ctx = self.ctx;
        // Postfix skips names it cannot ask about: "unknown", address
        // literals, invalid host names, a numeric last label.
        let askable = |n: &str| {
            n != "unknown"
                && super::valid_hostname(n)
                && !n.ends_with('.')
                && !n
                    .rsplit('.')
                    .next()
                    .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        };
        let name = |n: &str, class| {
            askable(n).then(|| Query {
                label: n.to_string(),
                what: n.to_string(),
                class,
            })
        };
        // An address is asked about by its domain, named in full.
        let domain = |a: Option<&Address>, class| {
            let a = a.filter(|a| !a.is_null())?;
            let d = a.domain().filter(|d| askable(d))?;
            Some(Query {
                label: d.to_string(),
                what: a.to_string(),
                class,
            })
        };
        match list {
            DnsList::RblClient | DnsList::DnswlClient => Some(Query {
                label: dnsbl::reversed(ctx.client_addr),
                what: ctx.client_addr.to_canonical().to_string(),
                class: CLIENT,
            }),
            DnsList::RhsblClient | DnsList::RhswlClient => {
                ctx.name_status.is_ok().then_some(())?;
                name(ctx.client_name, CLIENT)
            }
            DnsList::RhsblReverseClient => {
                ctx.reverse_status.is_ok().then_some(())?;
                name(ctx.reverse_name, "Unverified Client host")
            }
            DnsList::RhsblHelo => name(ctx.helo?, HELO),
            DnsList::RhsblSender => domain(ctx.sender, SENDER),
            DnsList::RhsblRecipient => domain(ctx.recipient, RECIPIENT),
        }
    }

    /// The site's template filled in.
    fn rbl_reply(&self, site: &DnsblSite, q: &Query, reason: Option<&str>) -> String {
        let dns = &*self.policy.dns;
        let template = match dns.reply_maps.lookup(&site.spec.to_ascii_lowercase()) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("rbl_reply_maps: {e}");
                None
            }
        }
        .unwrap_or_else(|| dns.default_reply.clone());
        let ctx = self.ctx;
        let address = |a: Option<&Address>| a.map(|a| a.to_string()).unwrap_or_default();
        let part = |a: Option<&Address>, local: bool| {
            a.map(|a| match local {
                true => a.local().to_string(),
                false => a.domain().unwrap_or_default().to_string(),
            })
            .unwrap_or_default()
        };
        let vars = |n: &str| -> Option<String> {
            Some(match n {
                "rbl_code" => dns.code.to_string(),
                "rbl_domain" => site.domain.clone(),
                "rbl_reason" | "rbl_txt" => reason.unwrap_or_default().to_string(),
                "rbl_class" => q.class.to_string(),
                "rbl_what" => q.what.clone(),
                "client" => self.client_namaddr(),
                "client_address" => ctx.client_addr.to_canonical().to_string(),
                "client_name" => ctx.client_name.to_string(),
                "reverse_client_name" => ctx.reverse_name.to_string(),
                "helo_name" => ctx.helo.unwrap_or_default().to_string(),
                "sender" => address(ctx.sender),
                "sender_name" => part(ctx.sender, true),
                "sender_domain" => part(ctx.sender, false),
                "recipient" => address(ctx.recipient),
                "recipient_name" => part(ctx.recipient, true),
                "recipient_domain" => part(ctx.recipient, false),
                _ => return None,
            })
        };
        postern_config::fill_template(&template, &vars)
    }
}

/// `554 5.7.1 text` or `554 text` (the DSN then 5.7.1, or 4.7.1 for 4xx).
fn split_reply(text: &str) -> Option<(u16, EnhancedStatus, String)> {
    let (code, rest) = text.split_once(' ').unwrap_or((text, ""));
    let code = postern_config::parse_code(code)?;
    let class = (code / 100) as u8;
    let (dsn, rest) = match rest.split_once(' ') {
        Some((d, r)) => match d.parse::<EnhancedStatus>() {
            Ok(dsn) if dsn.class() == class => (dsn, r),
            _ => (EnhancedStatus::of(class, 7, 1), rest),
        },
        None => (EnhancedStatus::of(class, 7, 1), rest),
    };
    Some((code, dsn, rest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_split_into_code_dsn_and_text() {
        let (code, dsn, text) = split_reply("554 Service unavailable; x").unwrap();
        assert_eq!(
            (code, dsn.to_string(), text.as_str()),
            (554, "5.7.1".into(), "Service unavailable; x")
        );
        let (code, dsn, _) = split_reply("450 4.7.25 try later").unwrap();
        assert_eq!((code, dsn.to_string()), (450, "4.7.25".into()));
        assert!(split_reply("250 fine").is_none());
    }
}
