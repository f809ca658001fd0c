//! The parameters one delivery needs, read from the service's [`Params`]
//! for each request so that a reload (SIGHUP) applies to the next one.
//!
//! The TLS config and the SASL password tables are built once per set of
//! values and shared by later requests ([`TlsSettings`], [`SaslSettings`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use postern_config::Params;

use crate::sasl::SaslSettings;
use crate::tls::TlsSettings;

/// Per-request settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// EHLO/HELO argument (`smtp_helo_name`, default `$myhostname`).
    pub helo_name: String,
    pub connect_timeout: Duration,
    pub helo_timeout: Duration,
    pub mail_timeout: Duration,
    pub rcpt_timeout: Duration,
    pub data_init_timeout: Duration,
    pub data_xfer_timeout: Duration,
    pub data_done_timeout: Duration,
    pub quit_timeout: Duration,
    /// Source addresses (`smtp_bind_address`, `smtp_bind_address6`).
    pub bind4: Option<Ipv4Addr>,
    pub bind6: Option<Ipv6Addr>,
    /// Most addresses tried per delivery (`smtp_mx_address_limit`, 5; 0 = no limit).
    pub mx_address_limit: usize,
    /// Most SMTP sessions per delivery (`smtp_mx_session_limit`, 2; 0 = no limit).
    pub mx_session_limit: usize,
    /// How long a session may wait for the next request to its destination
    /// (`smtp_connection_cache_time_limit`, 2s); zero when
    /// `smtp_connection_cache_on_demand = no`.
    pub cache_time_limit: Duration,
    /// Most idle sessions kept per destination: as many as qmgr may run
    /// at once to one destination (`default_destination_concurrency_limit`),
    /// so a busy destination's sessions are all reused.
    pub cache_per_destination: usize,
    /// Which address families to use (`inet_protocols`).
    pub ipv4: bool,
    pub ipv6: bool,
    /// Addresses that are this mail system (`inet_interfaces`,
    /// `proxy_interfaces`), for "mail loops back to myself".
    pub own_addresses: Vec<IpAddr>,
    /// STARTTLS reply and TLS handshake (`smtp_starttls_timeout`, 300s).
    pub starttls_timeout: Duration,
    /// `smtp_tls_loglevel` 1: log a summary of each TLS handshake.
    pub tls_log_summary: bool,
    /// `smtp_tls_security_level` and its config.
    pub tls: TlsSettings,
    /// `smtp_sasl_*`.
    pub sasl: SaslSettings,
}

impl Settings {
    /// From the parameters; what did not change since `previous` (the
    /// settings of the configuration before a reload) is kept, so the TLS
    /// config with its session cache and the open tables survive a reload.
    pub fn from_params(p: &Params, previous: Option<&Settings>) -> Settings {
        let helo_name = match p.get("smtp_helo_name") {
            n if n.trim().is_empty() => p.get("myhostname"),
            n => n.trim().to_string(),
        };
        let protocols = p.words("inet_protocols");
        let all = protocols.is_empty() || protocols.iter().any(|v| v == "all");
        let ipv4 = all || protocols.iter().any(|v| v == "ipv4");
        let ipv6 = all || protocols.iter().any(|v| v == "ipv6");
        Settings {
            helo_name,
            connect_timeout: p.time("smtp_connect_timeout"),
            helo_timeout: p.time("smtp_helo_timeout"),
            mail_timeout: p.time("smtp_mail_timeout"),
            rcpt_timeout: p.time("smtp_rcpt_timeout"),
            data_init_timeout: p.time("smtp_data_init_timeout"),
            data_xfer_timeout: p.time("smtp_data_xfer_timeout"),
            data_done_timeout: p.time("smtp_data_done_timeout"),
            quit_timeout: p.time("smtp_quit_timeout"),
            bind4: p.ipv4("smtp_bind_address"),
            bind6: p.ipv6("smtp_bind_address6"),
            mx_address_limit: count(p, "smtp_mx_address_limit"),
            mx_session_limit: count(p, "smtp_mx_session_limit"),
            cache_time_limit: cache_time_limit(p),
            cache_per_destination: count(p, "default_destination_concurrency_limit"),
            ipv4,
            ipv6: ipv6 || !ipv4,
            own_addresses: postern_routing::own_addresses(p),
            starttls_timeout: p.time("smtp_starttls_timeout"),
            tls_log_summary: p.choice("smtp_tls_loglevel") != "0",
            tls: TlsSettings::from_params(p, previous.map(|s| &s.tls)),
            sasl: SaslSettings::from_params(p, previous.map(|s| &s.sasl)),
        }
    }
}

/// A limit that cannot be negative.
fn count(p: &Params, name: &str) -> usize {
    usize::try_from(p.int(name).max(0)).unwrap_or(usize::MAX)
}

fn cache_time_limit(p: &Params) -> Duration {
    if !p.bool("smtp_connection_cache_on_demand") {
        return Duration::ZERO;
    }
    p.time("smtp_connection_cache_time_limit")
}
