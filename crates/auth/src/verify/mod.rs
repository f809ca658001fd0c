//! Inbound verification: SPF (RFC 7208) of the MAIL FROM and HELO
//! identities (our own evaluator, the `spf` module), DKIM (RFC 6376) of
//! the message's signatures, DMARC (RFC 7489) of its From: domain, and
//! ARC (RFC 8617) chain validation (through mail-auth), with DNS from
//! hickory pointed at `dns_servers`.
//!
//! Bounds, so that no message and no name server holds a session up:
//! * every DNS query waits at most half the [`Verifier`]'s timeout, and each
//!   method (SPF of one identity, all of DKIM, ARC, DMARC) at most the whole
//!   timeout; a method cut off reports `temperror`. SPF, DKIM and ARC run
//!   at once, DMARC after them, so a check takes at most twice the timeout;
//! * SPF is evaluated here (the `spf` module), with RFC 7208's limits of
//!   10 DNS-querying terms and 2 void lookups (`permerror` beyond, and so
//!   for include loops);
//! * at most [`MAX_DKIM_SIGNATURES`] signatures are verified, the first in
//!   the header; the others are removed from the copy mail-auth parses, so
//!   neither their body hashes nor their key lookups are done, and are
//!   counted in [`AuthResults::dkim_unverified`];
//! * mail-auth refuses ARC chains longer than 50 sets (fail).
//!
//! Results mail-auth words differently than RFC 8601 are mapped: a DKIM
//! body-hash mismatch, which mail-auth calls neutral, is `fail`, as
//! opendkim and python3-dkim report it; a signature that does not parse is
//! `permerror` (mail-auth reports some such as neutral and drops others);
//! an ARC chain that does not parse is `fail`.
//!
//! DNS answers are cached by hickory for their TTLs, across checks (8192
//! entries, hickory's default bound).
//!
//! [`Verifier::check_spf`] and [`Verifier::check_message`] are the two
//! halves smtpd runs at MAIL FROM and at the end of the message;
//! [`Inbound`] is what smtpd's parameters ask of them (the `inbound`
//! module); `fields` and `results` are the header-level helpers and the
//! results as a value.

pub(crate) mod fields;
mod inbound;
mod results;
mod spf;

pub use fields::remove_our_auth_results;
pub use inbound::{DmarcAction, Inbound, SpfFailAction, check_config};
pub use results::{
    ArcCheck, AuthResults, DkimCheck, DmarcCheck, DmarcPolicy, Methods, SpfCheck, SpfIdentity,
    Verdict,
};

use std::borrow::Cow;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::hickory_resolver::config::ResolverOpts;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, Error, MessageAuthenticator,
    SpfOutput, SpfResult,
};

/// How many DKIM signatures of one message are verified; opendkim's
/// MaximumSignaturesToVerify defaults to 3, a few more leave room for
/// mailing lists and forwarders that add their own.
pub const MAX_DKIM_SIGNATURES: usize = 10;

/// The SPF results of one sender ([`Verifier::check_spf`]).
#[derive(Debug, Clone)]
pub struct SpfResults {
    pub mail_from: SpfCheck,
    pub helo: SpfCheck,
    /// The identity DMARC aligns with (RFC 7489 3.1.1) and mail-auth's
    /// result for it.
    for_dmarc: (String, SpfOutput),
}

impl SpfResults {
    /// Whether either identity fails (`-all` matched): what
    /// `reject_spf_fail` and `smtpd_spf_fail_action` act on, as
    /// policyd-spf rejects a HELO or MAIL FROM fail by default.
    pub fn failed(&self) -> Option<&SpfCheck> {
        [&self.mail_from, &self.helo]
            .into_iter()
            .find(|c| c.result == Verdict::Fail)
    }
}

/// The resolver could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot set up the DNS resolver: {0}")]
    Resolver(String),
    #[error("parameter \"smtpd_message_authentication\": {0}")]
    Config(String),
}

/// Checks inbound mail; one per daemon, shared by its sessions (cloning is
/// cheap and shares the DNS cache).
#[derive(Clone)]
pub struct Verifier {
    auth: MessageAuthenticator,
    /// The bound on each method; DNS queries get half of it.
    timeout: Duration,
    /// This host's name, SPF's %{r} macro.
    hostname: String,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("timeout", &self.timeout)
            .field("hostname", &self.hostname)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier asking `dns_servers` (`ip:port`; empty: the system's
    /// /etc/resolv.conf), each method bounded by `timeout`. As in
    /// smtp-client, an unreadable system configuration leaves a resolver
    /// without servers, whose every lookup is a temperror, rather than a
    /// daemon that does not start.
    pub fn new(dns_servers: &[SocketAddr], timeout: Duration) -> Result<Verifier, VerifyError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout / 2;
        opts.attempts = 1;
        let resolver_error = |e: &dyn std::fmt::Display| VerifyError::Resolver(e.to_string());
        let resolver =
            postern_daemon::dns::resolver(dns_servers, opts).map_err(|e| resolver_error(&e))?;
        Ok(Verifier::with_resolver(resolver, timeout))
    }

    fn with_resolver(resolver: TokioResolver, timeout: Duration) -> Verifier {
        Verifier {
            auth: MessageAuthenticator(resolver),
            timeout,
            hostname: "localhost".to_string(),
        }
    }

    /// This host's name (myhostname), which SPF records may name with %{r}.
    pub fn with_hostname(mut self, hostname: &str) -> Verifier {
        self.hostname = hostname.to_string();
        self
    }

    /// Checks `message` (header and body, as received) from `client_ip`,
    /// which said `helo` and gave `mail_from` (empty for the null sender),
    /// with every method.
    pub async fn check(
        &self,
        message: &[u8],
        client_ip: IpAddr,
        helo: &str,
        mail_from: &str,
    ) -> AuthResults {
        let spf = self.check_spf(client_ip, helo, mail_from).await;
        self.check_message(message, Some(&spf), Methods::ALL).await
    }

    /// SPF of the HELO and MAIL FROM identities of a client at
    /// `client_ip`, at once (smtpd starts it at MAIL FROM, so that RCPT
    /// can act on it).
    pub async fn check_spf(&self, client_ip: IpAddr, helo: &str, mail_from: &str) -> SpfResults {
        let host = self.hostname.as_str();
        // An address literal or a bare word is not checked (RFC 7208 2.3):
        // mail-auth, given the empty name, says none.
        let helo_name = if is_domain_name(helo) { helo } else { "" };
        let resolver = &self.auth.0;
        let helo_sender = format!("postmaster@{helo_name}");
        let (mail_from_domain, mail_from_sender) = match mail_from.rsplit_once('@') {
            Some((_, domain)) => (domain, mail_from),
            None => (helo_name, helo_sender.as_str()),
        };
        let spf_helo = async {
            let mut check = spf::Check::new(resolver, client_ip, &helo_sender, helo, host);
            self.spf_within_timeout(check.check_host(helo_name), helo_name)
                .await
        };
        let spf_mail_from = async {
            let mut check = spf::Check::new(resolver, client_ip, mail_from_sender, helo, host);
            self.spf_within_timeout(check.check_host(mail_from_domain), mail_from_domain)
                .await
        };
        let (helo_out, mail_from_out) = tokio::join!(spf_helo, spf_mail_from);
        SpfResults {
            mail_from: SpfCheck {
                identity: SpfIdentity::MailFrom,
                result: spf_verdict(mail_from_out.result()),
                subject: if mail_from.is_empty() {
                    helo.to_string()
                } else {
                    mail_from.to_string()
                },
                domain: mail_from_out.domain().to_string(),
            },
            helo: SpfCheck {
                identity: SpfIdentity::Helo,
                result: spf_verdict(helo_out.result()),
                subject: helo.to_string(),
                domain: helo_out.domain().to_string(),
            },
            // The null sender's SPF identity is the HELO name (RFC 7489
            // 3.1.1).
            for_dmarc: match mail_from.rsplit_once('@') {
                Some((_, domain)) => (domain.to_string(), mail_from_out),
                None => (helo.to_string(), helo_out),
            },
        }
    }

    /// The checks of `methods` on `message`, with the SPF results of its
    /// sender (None when SPF was not checked: DMARC then sees `none`).
    pub async fn check_message(
        &self,
        message: &[u8],
        spf: Option<&SpfResults>,
        methods: Methods,
    ) -> AuthResults {
        let (message, dkim_unverified) = cap_dkim_signatures(message, MAX_DKIM_SIGNATURES);
        let parsed = AuthenticatedMessage::parse(&message);
        let dkim = async {
            match &parsed {
                Some(m) if methods.dkim => {
                    let timed_out = m.dkim_headers.len();
                    let out = tokio::time::timeout(self.timeout, self.auth.verify_dkim(m)).await;
                    out.map_err(|_| timed_out)
                }
                _ => Ok(Vec::new()),
            }
        };
        let arc = async {
            match &parsed {
                Some(m) if methods.arc => {
                    let sets = m.as_headers.len();
                    let out = tokio::time::timeout(self.timeout, self.auth.verify_arc(m)).await;
                    let result = match out {
                        Ok(o) => arc_verdict(o.result()),
                        Err(_) => Verdict::TempError,
                    };
                    ArcCheck { result, sets }
                }
                _ => ArcCheck {
                    result: Verdict::None,
                    sets: 0,
                },
            }
        };
        let (dkim, arc) = tokio::join!(dkim, arc);

        let mut dkim_checks: Vec<DkimCheck> = match &parsed {
            Some(m) if methods.dkim => unreported_malformed_signatures(m),
            _ => Vec::new(),
        };
        dkim_checks.extend(match &dkim {
            Ok(outputs) => outputs.iter().map(dkim_check).collect::<Vec<_>>(),
            Err(signatures) => (0..*signatures)
                .map(|_| DkimCheck {
                    result: Verdict::TempError,
                    domain: String::new(),
                    selector: String::new(),
                    b_prefix: String::new(),
                    reason: Some("timed out".to_string()),
                })
                .collect(),
        });

        let no_spf = SpfOutput::new(String::new());
        let (spf_domain, spf_for_dmarc) = match spf {
            Some(s) => (s.for_dmarc.0.as_str(), &s.for_dmarc.1),
            None => ("", &no_spf),
        };
        let dmarc = match (&parsed, &dkim) {
            _ if !methods.dmarc => DmarcCheck::none(),
            (Some(m), Ok(dkim_out)) => {
                let params = DmarcParameters::new(m, dkim_out, spf_domain, spf_for_dmarc);
                match tokio::time::timeout(self.timeout, self.auth.verify_dmarc(params)).await {
                    Ok(out) => DmarcCheck {
                        result: dmarc_verdict(&out.result()),
                        header_from: out.domain().to_string(),
                        policy: out.dmarc_record().map(|_| dmarc_policy(out.policy())),
                        spf_aligned: *out.spf_result() == DmarcResult::Pass,
                        dkim_aligned: *out.dkim_result() == DmarcResult::Pass,
                    },
                    Err(_) => dmarc_unknown(Verdict::TempError, m),
                }
            }
            (Some(m), Err(_)) => dmarc_unknown(Verdict::TempError, m),
            (None, _) => DmarcCheck::none(),
        };

        let (spf_mail_from, spf_helo) = match spf {
            Some(s) => (s.mail_from.clone(), s.helo.clone()),
            None => (
                SpfCheck::none(SpfIdentity::MailFrom),
                SpfCheck::none(SpfIdentity::Helo),
            ),
        };
        AuthResults {
            methods: Methods {
                spf: spf.is_some(),
                ..methods
            },
            spf_mail_from,
            spf_helo,
            dkim: dkim_checks,
            dkim_unverified,
            dmarc,
            arc,
        }
    }

    /// The SPF `check` of `domain` as mail-auth's output (which its DMARC
    /// takes), a temperror when cut off by the timeout.
    async fn spf_within_timeout(
        &self,
        check: impl Future<Output = SpfResult>,
        domain: &str,
    ) -> SpfOutput {
        let result = tokio::time::timeout(self.timeout, check)
            .await
            .unwrap_or(SpfResult::TempError);
        SpfOutput::new(domain.to_string()).with_result(result)
    }
}

/// Whether `name` is a domain name SPF can look up: dotted labels of
/// letters, digits, `-` and `_`, and not an address.
fn is_domain_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.contains('.')
        && name.len() <= 253
        && name.parse::<IpAddr>().is_err()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A DMARC result decided without its record (DKIM was cut off, or DMARC
/// itself was).
fn dmarc_unknown(result: Verdict, m: &AuthenticatedMessage<'_>) -> DmarcCheck {
    DmarcCheck {
        result,
        header_from: m
            .from()
            .rsplit_once('@')
            .map_or(String::new(), |(_, d)| d.to_ascii_lowercase()),
        policy: None,
        spf_aligned: false,
        dkim_aligned: false,
    }
}

/// DKIM-Signature fields that did not parse and that mail-auth leaves out
/// of its results (it reports only its DKIM errors, not a missing tag or
/// a syntax error): each is a permerror (RFC 6376 6.1.1).
fn unreported_malformed_signatures(m: &AuthenticatedMessage<'_>) -> Vec<DkimCheck> {
    m.errors
        .iter()
        .filter(|e| {
            e.name.eq_ignore_ascii_case(b"DKIM-Signature") && !matches!(e.header, Error::Dkim(_))
        })
        .map(|e| DkimCheck {
            result: Verdict::PermError,
            domain: String::new(),
            selector: String::new(),
            b_prefix: String::new(),
            reason: Some(format!("malformed signature: {}", e.header)),
        })
        .collect()
}

/// `message` with at most `cap` DKIM-Signature fields (the first ones),
/// and how many were left out. Borrowed when under the cap.
fn cap_dkim_signatures(message: &[u8], cap: usize) -> (Cow<'_, [u8]>, usize) {
    let (fields, _) = fields::header_fields(message);
    let signatures: Vec<_> = fields
        .iter()
        .filter(|f| message[f.name.clone()].eq_ignore_ascii_case(b"DKIM-Signature"))
        .collect();
    if signatures.len() <= cap {
        return (Cow::Borrowed(message), 0);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    for f in &signatures[cap..] {
        out.extend_from_slice(&message[pos..f.bytes.start]);
        pos = f.bytes.end;
    }
    out.extend_from_slice(&message[pos..]);
    (Cow::Owned(out), signatures.len() - cap)
}

fn spf_verdict(r: SpfResult) -> Verdict {
    match r {
        SpfResult::Pass => Verdict::Pass,
        SpfResult::Fail => Verdict::Fail,
        SpfResult::SoftFail => Verdict::SoftFail,
        SpfResult::Neutral => Verdict::Neutral,
        SpfResult::TempError => Verdict::TempError,
        SpfResult::PermError => Verdict::PermError,
        SpfResult::None => Verdict::None,
    }
}

fn dkim_check(o: &DkimOutput<'_>) -> DkimCheck {
    let sig = o.signature();
    let (result, reason) = match o.result() {
        DkimResult::Pass => (Verdict::Pass, None),
        DkimResult::None => (Verdict::None, None),
        DkimResult::Neutral(e @ Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            (Verdict::Fail, Some(e))
        }
        // A signature that did not parse comes without one.
        DkimResult::Neutral(e) if sig.is_none() => (Verdict::PermError, Some(e)),
        DkimResult::Neutral(e) => (Verdict::Neutral, Some(e)),
        DkimResult::Fail(e) => (Verdict::Fail, Some(e)),
        DkimResult::PermError(e) => (Verdict::PermError, Some(e)),
        DkimResult::TempError(e) => (Verdict::TempError, Some(e)),
    };
    DkimCheck {
        result,
        domain: sig.map_or(String::new(), |s| s.d.to_ascii_lowercase()),
        selector: sig.map_or(String::new(), |s| s.s.clone()),
        b_prefix: sig.map_or(String::new(), |s| {
            let mut b = base64::engine::general_purpose::STANDARD.encode(&s.b);
            b.truncate(8);
            b
        }),
        reason: reason.map(|e| e.to_string()),
    }
}

fn arc_verdict(r: &DkimResult) -> Verdict {
    match r {
        DkimResult::Pass => Verdict::Pass,
        DkimResult::None => Verdict::None,
        DkimResult::TempError(_) => Verdict::TempError,
        // RFC 8617 has pass, fail and none: a chain that does not parse
        // or does not validate fails.
        DkimResult::Neutral(_) | DkimResult::Fail(_) | DkimResult::PermError(_) => Verdict::Fail,
    }
}

fn dmarc_verdict(r: &DmarcResult) -> Verdict {
    match r {
        DmarcResult::Pass => Verdict::Pass,
        DmarcResult::Fail(_) => Verdict::Fail,
        DmarcResult::TempError(_) => Verdict::TempError,
        DmarcResult::PermError(_) => Verdict::PermError,
        DmarcResult::None => Verdict::None,
    }
}

fn dmarc_policy(p: Policy) -> DmarcPolicy {
    match p {
        Policy::Reject => DmarcPolicy::Reject,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::None | Policy::Unspecified => DmarcPolicy::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_helo_names_from_literals() {
        assert!(is_domain_name("mx.example.test"));
        assert!(is_domain_name("mx.example.test."));
        for not in [
            "[192.0.2.1]",
            "192.0.2.1",
            "localhost",
            "a..b",
            "",
            "a b.test",
        ] {
            assert!(!is_domain_name(not), "{not}");
        }
    }

    #[test]
    fn caps_dkim_signatures_keeping_the_first() {
        let mut m = String::new();
        for i in 0..12 {
            m.push_str(&format!("DKIM-Signature: v=1; d=d{i}.test;\r\n\tb=x\r\n"));
        }
        m.push_str("From: a@b.test\r\n\r\nDKIM-Signature: in the body\r\n");
        let (capped, left_out) = cap_dkim_signatures(m.as_bytes(), 10);
        assert_eq!(left_out, 2);
        let capped = String::from_utf8(capped.into_owned()).unwrap();
        assert!(capped.contains("d=d9.test") && !capped.contains("d=d10.test"));
        assert!(capped.ends_with("From: a@b.test\r\n\r\nDKIM-Signature: in the body\r\n"));
        let (same, none) = cap_dkim_signatures(b"From: a@b\r\n\r\n", 10);
        assert!(matches!(same, Cow::Borrowed(_)) && none == 0);
    }
}
