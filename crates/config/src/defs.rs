//! The parameter table: every `[main]` parameter Postern knows, paired with
//! its default as Postfix writes it (like Postfix's `mail_params.h`).
//!
//! Defaults are Postfix 3.x defaults at a current compatibility level unless
//! the entry is Postern-specific (`postern: true`) or the Postfix value names
//! a Postfix path or user (those say `postern` instead). Notable choices:
//!
//! * `relay_domains` is empty, as in Postfix >= 3.0 (before 3.0 it was
//!   `$mydestination`): relaying is only for what you list.
//! * `mynetworks_style` is `host`, as in Postfix >= 3.0: only this machine's
//!   own addresses are trusted by `permit_mynetworks`.
//! * `local_recipient_maps` drops Postfix's `proxy:` wrapper (there is no
//!   proxymap daemon; `proxy:` is accepted and ignored in table specs).
//! * `virtual_transport` is `local`: local-delivery also writes virtual
//!   mailboxes (Postfix has a separate `virtual` delivery agent).
//! * `myhostname`, `mydomain` and `mynetworks` have no literal default; they
//!   are derived from the host at run time.
//!
//! Postern-specific parameters:
//!
//! * `drain_timeout` (30s): how long a stopping daemon lets open sessions
//!   finish before it closes them.
//! * `heartbeat_timeout` (30s): the master kills a child that has been
//!   silent on its status pipe this long.
//! * `smtpd_max_sessions` (1000): concurrent SMTP sessions one smtpd process
//!   serves (Postfix runs one session per process instead).
//! * `sled_cache_capacity` (64MiB): page cache of the sled queue store.
//! * `smtpd_sasl_users`: table of SASL user names to password hashes, so the
//!   SMTP server can authenticate without Cyrus or Dovecot.
//! * `dns_servers`: list of `ip` or `ip:port` resolvers; empty means use
//!   `/etc/resolv.conf`.

/// How a parameter's (expanded) value is interpreted and validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Str,
    /// A decimal integer, as Postfix's integer parameters.
    Int,
    /// `yes`/`no` (TOML `true`/`false` are accepted too).
    Bool,
    /// A number with an optional unit `s m h d w`; a bare number uses the
    /// unit given here, as Postfix does per parameter.
    Time(char),
    /// Bytes, optionally with a binary suffix `k`/`m`/`g` (`KiB`...).
    Size,
    /// A comma/whitespace separated list.
    List,
    /// A list of lookup tables (`type:name`).
    Maps,
    /// A file or directory; relative paths resolve against the config dir.
    Path,
}

/// One known parameter.
#[derive(Clone, Copy, Debug)]
pub struct ParamDef {
    pub name: &'static str,
    /// The default exactly as written in the table, before `$name` expansion.
    pub default: &'static str,
    pub kind: Kind,
    /// True when Postfix has no such parameter.
    pub postern: bool,
}

const fn p(name: &'static str, default: &'static str, kind: Kind) -> ParamDef {
    ParamDef {
        name,
        default,
        kind,
        postern: false,
    }
}

const fn x(name: &'static str, default: &'static str, kind: Kind) -> ParamDef {
    ParamDef {
        name,
        default,
        kind,
        postern: true,
    }
}

use Kind::*;

/// Every known parameter, sorted by name (a test checks this so lookups can
/// binary-search).
pub static PARAMS: &[ParamDef] = &[
    p("2bounce_notice_recipient", "postmaster", Str),
    p("alias_database", "hash:/etc/aliases", Maps),
    p("alias_maps", "hash:/etc/aliases", Maps),
    p("allow_mail_to_commands", "alias, forward", List),
    p("allow_mail_to_files", "alias, forward", List),
    p("allow_percent_hack", "yes", Bool),
    p("append_dot_mydomain", "no", Bool),
    p("bounce_notice_recipient", "postmaster", Str),
    p("bounce_queue_lifetime", "5d", Time('d')),
    p("canonical_maps", "", Maps),
    p("command_directory", "/usr/sbin", Path),
    p("command_time_limit", "1000s", Time('s')),
    p("compatibility_level", "3.6", Str),
    p("daemon_directory", "/usr/libexec/postern", Path),
    p("daemon_timeout", "18000s", Time('s')),
    p("data_directory", "/var/lib/postern", Path),
    p("default_destination_concurrency_limit", "20", Int),
    p("default_destination_recipient_limit", "50", Int),
    p("default_privs", "nobody", Str),
    p("default_process_limit", "100", Int),
    p("default_transport", "smtp", Str),
    p("delay_warning_time", "0h", Time('h')),
    p("deliver_lock_attempts", "20", Int),
    p("deliver_lock_delay", "1s", Time('s')),
    p("destination_concurrency_failed_cohort_limit", "1", Int),
    p("disable_vrfy_command", "no", Bool),
    x("dns_servers", "", List),
    x("drain_timeout", "30s", Time('s')),
    p("fallback_transport", "", Str),
    p("header_size_limit", "102400", Int),
    x("heartbeat_timeout", "30s", Time('s')),
    p("home_mailbox", "", Str),
    p("hopcount_limit", "50", Int),
    p("inet_interfaces", "all", List),
    p("inet_protocols", "all", List),
    p("initial_destination_concurrency", "5", Int),
    p("ipc_timeout", "3600s", Time('s')),
    p("line_length_limit", "2048", Int),
    p(
        "local_recipient_maps",
        "unix:passwd.byname $alias_maps",
        Maps,
    ),
    p("local_transport", "local:$myhostname", Str),
    p("mail_name", "Postern", Str),
    p("mail_owner", "postern", Str),
    p("mail_spool_directory", "/var/mail", Path),
    p("mailbox_size_limit", "51200000", Int),
    p("maillog_file", "", Path),
    p("max_idle", "100s", Time('s')),
    p("max_use", "100", Int),
    p("maximal_backoff_time", "4000s", Time('s')),
    p("maximal_queue_lifetime", "5d", Time('d')),
    p("message_size_limit", "10240000", Int),
    p("minimal_backoff_time", "300s", Time('s')),
    p(
        "mydestination",
        "$myhostname, localhost.$mydomain, localhost",
        List,
    ),
    p("mydomain", "", Str),
    p("myhostname", "", Str),
    p("mynetworks", "", List),
    p("mynetworks_style", "host", Str),
    p("myorigin", "$myhostname", Str),
    p("notify_classes", "resource, software", List),
    p(
        "parent_domain_matches_subdomains",
        "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, \
         qmqpd_authorized_clients, relay_domains, smtpd_access_maps",
        List,
    ),
    p(
        "propagate_unmatched_extensions",
        "canonical, virtual, alias, forward, include",
        List,
    ),
    p("proxy_interfaces", "", List),
    p("queue_directory", "/var/spool/postern", Path),
    p("queue_run_delay", "300s", Time('s')),
    p("recipient_canonical_maps", "", Maps),
    p("recipient_delimiter", "", Str),
    p("relay_domains", "", List),
    p("relay_recipient_maps", "", Maps),
    p("relay_transport", "relay", Str),
    p("relayhost", "", Str),
    p("sender_canonical_maps", "", Maps),
    p("service_throttle_time", "60s", Time('s')),
    p("setgid_group", "postdrop", Str),
    x("sled_cache_capacity", "64MiB", Size),
    p("smtp_bind_address", "", Str),
    p("smtp_bind_address6", "", Str),
    p("smtp_connect_timeout", "30s", Time('s')),
    p("smtp_connection_cache_on_demand", "yes", Bool),
    p("smtp_connection_cache_time_limit", "2s", Time('s')),
    p("smtp_data_done_timeout", "600s", Time('s')),
    p("smtp_data_init_timeout", "120s", Time('s')),
    p("smtp_data_xfer_timeout", "180s", Time('s')),
    p("smtp_helo_name", "$myhostname", Str),
    p("smtp_helo_timeout", "300s", Time('s')),
    p("smtp_mail_timeout", "300s", Time('s')),
    p("smtp_mx_address_limit", "5", Int),
    p("smtp_mx_session_limit", "2", Int),
    p("smtp_quit_timeout", "300s", Time('s')),
    p("smtp_rcpt_timeout", "300s", Time('s')),
    p("smtp_sasl_auth_enable", "no", Bool),
    p("smtp_sasl_mechanism_filter", "", List),
    p("smtp_sasl_password_maps", "", Maps),
    p(
        "smtp_sasl_security_options",
        "noplaintext, noanonymous",
        List,
    ),
    p(
        "smtp_sasl_tls_security_options",
        "$smtp_sasl_security_options",
        List,
    ),
    p("smtp_tls_CAfile", "", Path),
    p("smtp_tls_CApath", "", Path),
    p("smtp_tls_cert_file", "", Path),
    p("smtp_tls_ciphers", "medium", Str),
    p("smtp_tls_key_file", "$smtp_tls_cert_file", Path),
    p("smtp_tls_loglevel", "0", Int),
    p("smtp_tls_mandatory_ciphers", "medium", Str),
    p("smtp_tls_mandatory_protocols", ">=TLSv1", List),
    p("smtp_tls_note_starttls_offer", "no", Bool),
    p("smtp_tls_policy_maps", "", Maps),
    p("smtp_tls_protocols", ">=TLSv1", List),
    p("smtp_tls_security_level", "", Str),
    p("smtp_tls_servername", "", Str),
    p("smtp_tls_session_cache_timeout", "3600s", Time('s')),
    p("smtp_tls_wrappermode", "no", Bool),
    p("smtpd_banner", "$myhostname ESMTP $mail_name", Str),
    p("smtpd_client_connection_count_limit", "50", Int),
    p("smtpd_client_connection_rate_limit", "0", Int),
    p("smtpd_client_restrictions", "", List),
    p("smtpd_data_restrictions", "", List),
    p("smtpd_delay_reject", "yes", Bool),
    p("smtpd_forbid_bare_newline", "normalize", Str),
    p("smtpd_forbid_unauth_pipelining", "yes", Bool),
    p("smtpd_hard_error_limit", "20", Int),
    p("smtpd_helo_required", "no", Bool),
    p("smtpd_helo_restrictions", "", List),
    x("smtpd_max_sessions", "1000", Int),
    p("smtpd_peername_lookup", "yes", Bool),
    p("smtpd_recipient_limit", "1000", Int),
    p("smtpd_recipient_restrictions", "", List),
    p(
        "smtpd_relay_restrictions",
        "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
        List,
    ),
    p("smtpd_sasl_auth_enable", "no", Bool),
    p("smtpd_sasl_authenticated_header", "no", Bool),
    p("smtpd_sasl_local_domain", "", Str),
    p("smtpd_sasl_path", "smtpd", Str),
    p("smtpd_sasl_security_options", "noanonymous", List),
    p(
        "smtpd_sasl_tls_security_options",
        "$smtpd_sasl_security_options",
        List,
    ),
    p("smtpd_sasl_type", "postern", Str),
    x("smtpd_sasl_users", "", Maps),
    p("smtpd_sender_login_maps", "", Maps),
    p("smtpd_sender_restrictions", "", List),
    p("smtpd_soft_error_limit", "10", Int),
    p("smtpd_timeout", "300s", Time('s')),
    p("smtpd_tls_CAfile", "", Path),
    p("smtpd_tls_CApath", "", Path),
    p("smtpd_tls_ask_ccert", "no", Bool),
    p("smtpd_tls_auth_only", "no", Bool),
    p("smtpd_tls_cert_file", "", Path),
    p("smtpd_tls_chain_files", "", List),
    p("smtpd_tls_ciphers", "medium", Str),
    p("smtpd_tls_key_file", "$smtpd_tls_cert_file", Path),
    p("smtpd_tls_loglevel", "0", Int),
    p("smtpd_tls_mandatory_ciphers", "medium", Str),
    p("smtpd_tls_mandatory_protocols", ">=TLSv1", List),
    p("smtpd_tls_protocols", ">=TLSv1", List),
    p("smtpd_tls_received_header", "no", Bool),
    p("smtpd_tls_req_ccert", "no", Bool),
    p("smtpd_tls_security_level", "", Str),
    p("smtpd_tls_session_cache_timeout", "3600s", Time('s')),
    p("smtpd_tls_wrappermode", "no", Bool),
    p("stale_lock_time", "500s", Time('s')),
    p("swap_bangpath", "yes", Bool),
    p("syslog_name", "postern", Str),
    p("transport_maps", "", Maps),
    p("virtual_alias_domains", "$virtual_alias_maps", List),
    p("virtual_alias_maps", "", Maps),
    p("virtual_mailbox_base", "", Path),
    p("virtual_mailbox_domains", "$virtual_mailbox_maps", List),
    p("virtual_mailbox_limit", "51200000", Int),
    p("virtual_mailbox_maps", "", Maps),
    p("virtual_transport", "local", Str),
];

/// The definition of `name`, if it is a known parameter.
pub fn lookup(name: &str) -> Option<&'static ParamDef> {
    PARAMS
        .binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &PARAMS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in PARAMS.windows(2) {
            assert!(w[0].name < w[1].name, "{} >= {}", w[0].name, w[1].name);
        }
    }

    #[test]
    fn lookup_finds_entries() {
        assert_eq!(lookup("message_size_limit").unwrap().kind, Kind::Int);
        assert!(lookup("drain_timeout").unwrap().postern);
        assert!(lookup("mynetwork").is_none());
    }
}
