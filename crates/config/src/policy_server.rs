//! Policy servers (`check_policy_service`, Postfix's SMTPD_POLICY_README):
//! where one listens and the `smtpd_policy_service_*` settings it is asked
//! with, which a `{ endpoint, name=value, ... }` group overrides for that
//! server alone.

use std::path::Path;
use std::time::Duration;

use crate::Params;
use crate::peer::{PeerEndpoint, parse_group};
use crate::value::parse_time;

/// One policy server and the settings it is asked with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyServer {
    /// The endpoint as written: the server's name in logs.
    pub name: String,
    pub endpoint: PeerEndpoint,
    /// `timeout`: connecting, and each request and reply.
    pub timeout: Duration,
    /// `max_idle`: an idle connection is closed after this.
    pub max_idle: Duration,
    /// `max_ttl`: a connection is closed after this age.
    pub max_ttl: Duration,
    /// `try_limit`: attempts per query.
    pub try_limit: u32,
    /// `retry_delay`: between attempts.
    pub retry_delay: Duration,
    /// `default_action`: the answer when the server cannot be asked.
    pub default_action: String,
    /// `request_limit`: requests per connection (0: no limit).
    pub request_limit: u32,
    /// `policy_context`: sent as the `policy_context` attribute.
    pub policy_context: String,
}

const WHAT: &str = "policy service";

impl PolicyServer {
    /// The server of `word`, with the `smtpd_policy_service_*` values of
    /// `params` where the group does not say otherwise.
    pub fn parse(word: &str, params: &Params) -> Result<PolicyServer, String> {
        let base = PolicyServer {
            name: String::new(),
            endpoint: PeerEndpoint::Unix(Default::default()),
            timeout: params.time("smtpd_policy_service_timeout"),
            max_idle: params.time("smtpd_policy_service_max_idle"),
            max_ttl: params.time("smtpd_policy_service_max_ttl"),
            try_limit: params.int("smtpd_policy_service_try_limit").clamp(1, 100) as u32,
            retry_delay: params.time("smtpd_policy_service_retry_delay"),
            default_action: params.get("smtpd_policy_service_default_action"),
            request_limit: params.int("smtpd_policy_service_request_limit").max(0) as u32,
            policy_context: params.get("smtpd_policy_service_policy_context"),
        };
        Self::with_base(word, base, &params.path("queue_directory"))
    }

    /// Checks the syntax of `word` (at load, before the defaults apply).
    pub fn check(word: &str) -> Result<(), String> {
        let base = PolicyServer {
            name: String::new(),
            endpoint: PeerEndpoint::Unix(Default::default()),
            timeout: Duration::ZERO,
            max_idle: Duration::ZERO,
            max_ttl: Duration::ZERO,
            try_limit: 1,
            retry_delay: Duration::ZERO,
            default_action: String::new(),
            request_limit: 0,
            policy_context: String::new(),
        };
        Self::with_base(word, base, Path::new("/")).map(|_| ())
    }

    fn with_base(word: &str, mut s: PolicyServer, base: &Path) -> Result<PolicyServer, String> {
        let (endpoint, settings) = parse_group(word, WHAT)?;
        s.endpoint = PeerEndpoint::parse(&endpoint, base, WHAT)?;
        s.name = endpoint;
        for (key, value) in &settings {
            let (key, value) = (key.as_str(), value.as_str());
            let time = || {
                parse_time(value, 's')
                    .filter(|d| !d.is_zero() || key == "retry_delay")
                    .ok_or_else(|| format!("bad time value: \"{key}={value}\""))
            };
            let count = || {
                value
                    .parse::<u32>()
                    .map_err(|_| format!("bad number: \"{key}={value}\""))
            };
            match key {
                "timeout" => s.timeout = time()?,
                "max_idle" => s.max_idle = time()?,
                "max_ttl" => s.max_ttl = time()?,
                "retry_delay" => s.retry_delay = time()?,
                "try_limit" => s.try_limit = count()?.max(1),
                "request_limit" => s.request_limit = count()?,
                "default_action" => s.default_action = value.to_string(),
                "policy_context" => s.policy_context = value.to_string(),
                _ => return Err(format!("unknown attribute name: \"{key}\" in \"{word}\"")),
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_override_the_parameters() {
        let cfg = crate::Config::from_str(
            "[main]\nqueue_directory = \"/q\"\n",
            Path::new("/etc/postern/master.toml"),
            &[],
        )
        .unwrap();
        let p = cfg.main();
        let plain = PolicyServer::parse("unix:private/policy", p).unwrap();
        assert_eq!(
            plain.endpoint,
            PeerEndpoint::Unix("/q/private/policy".into())
        );
        assert_eq!(plain.timeout, Duration::from_secs(100));
        assert_eq!(plain.max_idle, Duration::from_secs(300));
        assert_eq!(plain.max_ttl, Duration::from_secs(1000));
        assert_eq!((plain.try_limit, plain.request_limit), (2, 0));
        assert_eq!(
            plain.default_action,
            "451 4.3.5 Server configuration problem"
        );
        let group = PolicyServer::parse(
            "{ inet:127.0.0.1:10023, timeout=5s, default_action=DUNNO, request_limit=3, \
             policy_context=submission }",
            p,
        )
        .unwrap();
        assert_eq!(group.name, "inet:127.0.0.1:10023");
        assert_eq!(group.timeout, Duration::from_secs(5));
        assert_eq!(group.default_action, "DUNNO");
        assert_eq!(
            (group.request_limit, group.policy_context.as_str()),
            (3, "submission")
        );
        assert!(PolicyServer::check("{ inet:127.0.0.1:1, timeout=0 }").is_err());
        assert!(PolicyServer::check("{ inet:127.0.0.1:1, try_limit=x }").is_err());
        assert!(PolicyServer::check("tcp:1.2.3.4:5").is_err());
    }
}
