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
//! * `disable_vrfy_command` is `yes` (Postfix: no): address harvesting is
//!   the only use VRFY sees on the Internet.
//! * `smtpd_tls_received_header` is `yes` (Postfix: no): the Received
//!   header notes the TLS protocol and cipher.
//! * `smtpd_tls_loglevel` and `smtp_tls_loglevel` are 1 (Postfix: 0): the
//!   summary of each TLS handshake is logged unless they are set to 0.
//!   Postfix's levels 2 to 4 (negotiation traces and hex dumps) are not
//!   available.
//! * `smtp_sasl_tls_security_options` is `noanonymous` (Postfix:
//!   `$smtp_sasl_security_options`, whose `noplaintext` finds no mechanism
//!   over TLS either): TLS protects the password of PLAIN and LOGIN.
//! * `smtpd_forbid_bare_newline_reject_code` is 521 (Postfix: 550): the
//!   session ends after it, and 521 says so.
//! * `milter_macro_v` is `$mail_name` (Postfix: `$mail_name
//!   $mail_version`; Postern has no `mail_version` parameter).
//! * `milter_default_action` is `tempfail`, as in Postfix 3.7 (3.11 made
//!   it `shutdown`, which Postern does not offer).
//!
//! Every parameter a daemon reads is here, with its kind; the typed
//! accessors of [`crate::Params`] check that (in debug builds) and never
//! fail, because load refuses a value that does not fit its kind.
//!
//! A parameter Postern does not implement yet says so in `unsupported`:
//! load refuses any other value than its default, naming file, line and
//! parameter, so that nobody believes a setting is in force when it is
//! not. A few are accepted although nothing reads them, because Postern
//! has nothing for them to change: `compatibility_level` (the defaults are those of the current level),
//! and `smtpd_tls_CAfile`/`smtpd_tls_CApath` (Postfix uses them to verify
//! client certificates, which Postern never requests).
//!
//! `alias_database` names the files `newaliases` (qctl) checks; nothing is
//! rebuilt, since alias files are read as they are.
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
//! * `dkim_signing_table`, `dkim_key_table`, `dkim_canonicalization`,
//!   `dkim_signed_headers`: DKIM signing with opendkim's SigningTable and
//!   KeyTable conventions (postern-auth's `sign` module).
//! * `dns_servers`: list of `ip` or `ip:port` resolvers; empty means use
//!   `/etc/resolv.conf`.
//! * `smtpd_message_authentication`, `smtpd_message_authentication_timeout`,
//!   `smtpd_spf_fail_action`, `smtpd_dmarc_reject_action`,
//!   `smtpd_dmarc_quarantine_action`: inbound SPF, DKIM, DMARC and ARC
//!   checks and what their results get (postern-auth's `verify` module).
//! * `arc_sealing_key`: the `dkim_key_table` key that seals forwarded mail
//!   with ARC (postern-auth's `arc` module).

/// How a parameter's (expanded) value is interpreted and validated; a
/// value that does not fit its kind refuses the configuration at load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Str,
    /// A shell command, taken as written: like Postfix's `mailbox_command`
    /// it is not subject to `$name` expansion (its `$` are the shell's).
    Command,
    /// A reply template (`default_rbl_reply`): taken as written, its
    /// `$name`s are those the daemon fills in when it replies.
    Template,
    /// A decimal integer, as Postfix's integer parameters.
    Int,
    /// An integer of at least 1 (a limit Postfix refuses to set to 0).
    Positive,
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
    /// One word out of these (compared without case; `""` allows empty).
    Enum(&'static [&'static str]),
    /// A list whose every word is one of these (compared without case).
    Words(&'static [&'static str]),
    /// An SMTP reply code, 4xx or 5xx.
    Code,
    /// An IPv4 address, or empty (`[...]` brackets allowed).
    Ipv4,
    /// An IPv6 address, or empty (`[...]` brackets allowed).
    Ipv6,
    /// A list of DNS resolvers: `ip`, `ip:port` or `[ipv6]:port`.
    Resolvers,
    /// A TLS protocol list (`>=TLSv1.2`, `!TLSv1.3`, `TLSv1.2 TLSv1.3`)
    /// that leaves TLSv1.2 or TLSv1.3.
    TlsProtocols,
    /// A domain list: names, `.parent` names, `/file/name` and
    /// `type:table` entries (whose table type is checked).
    Domains,
    /// A network list (`mynetworks`): addresses, `a.b.c.d/n` and
    /// `[v6]/n` networks, `/file/name` and `type:table` entries, each
    /// optionally negated with `!`.
    Networks,
    /// A user list, as Postfix's `authorized_*_users`: login names,
    /// `/file/name` entries (a file of login names), `type:table` entries
    /// looked up by login name (`static:anyone` matches everyone), each
    /// optionally negated with `!`; the first entry that matches decides,
    /// and no match is a refusal.
    Users,
    /// Empty, or an after-queue content filter `transport:destination`
    /// (postern-envelope's [`postern_envelope::ContentFilter`]).
    Filter,
    /// A restriction list (`smtpd_*_restrictions`, restriction classes):
    /// restriction names known to [`crate::restrictions`], their tables,
    /// and names from `smtpd_restriction_classes`.
    Restrictions,
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
    /// Set when Postern does not implement the parameter yet: the sentence
    /// says what is missing. Such a parameter is shown by `qctl config`,
    /// and a value other than its default refuses the configuration.
    pub unsupported: Option<&'static str>,
}

const fn p(name: &'static str, default: &'static str, kind: Kind) -> ParamDef {
    ParamDef {
        name,
        default,
        kind,
        postern: false,
        unsupported: None,
    }
}

const fn x(name: &'static str, default: &'static str, kind: Kind) -> ParamDef {
    ParamDef {
        postern: true,
        ..p(name, default, kind)
    }
}

impl ParamDef {
    /// Marks a parameter Postern does not implement yet.
    const fn not_yet(self, why: &'static str) -> ParamDef {
        ParamDef {
            unsupported: Some(why),
            ..self
        }
    }
}

use Kind::*;

/// Until check_policy_service is implemented.
const NO_POLICY_SERVICE: &str = "check_policy_service is not implemented yet";

/// OpenSSL cipher grades, as Postfix's `*_tls_ciphers`.
const CIPHER_GRADES: Kind = Enum(&["export", "low", "medium", "high", "null"]);
/// The SASL security options of Postfix's `*_sasl_security_options`.
const SASL_OPTIONS: Kind = Words(&[
    "noplaintext",
    "noactive",
    "nodictionary",
    "noanonymous",
    "mutual_auth",
    "forward_secrecy",
]);
/// DKIM's `c=` (header/body; one word means header and simple body, as
/// RFC 6376 section 3.5 reads a lone `c=`).
const DKIM_CANONICALIZATION: Kind = Enum(&[
    "relaxed/relaxed",
    "relaxed/simple",
    "simple/relaxed",
    "simple/simple",
    "relaxed",
    "simple",
]);
/// What a DMARC failure gets under the policy its domain publishes.
const DMARC_ACTION: Kind = Enum(&["tag", "hold", "reject"]);
/// Where local(8) allows `|command` and `/file` destinations.
const ALIAS_SOURCES: Kind = Words(&["alias", "forward", "include"]);

// Why the parameters Postern does not implement yet are refused, where
// several share a reason.
const RUSTLS_CIPHERS: &str = "the cipher suites are rustls's safe defaults";
const NO_CLIENT_CERT: &str = "no client certificate is offered";
const NO_CLIENT_CERT_REQUEST: &str = "client certificates are never requested";
const BUILT_IN_SASL: &str = "SASL is built in (smtpd_sasl_users); there is no Cyrus or Dovecot";

/// Every known parameter, sorted by name (a test checks this so lookups can
/// binary-search).
pub static PARAMS: &[ParamDef] = &[
    p("2bounce_notice_recipient", "postmaster", Str),
    p("access_map_defer_code", "450", Code),
    p("access_map_reject_code", "554", Code),
    p("alias_database", "hash:/etc/aliases", Maps),
    p("alias_maps", "hash:/etc/aliases", Maps),
    p("allow_mail_to_commands", "alias, forward", ALIAS_SOURCES),
    p("allow_mail_to_files", "alias, forward", ALIAS_SOURCES),
    p("allow_percent_hack", "yes", Bool),
    p("allow_untrusted_routing", "no", Bool),
    p("append_at_myorigin", "yes", Bool),
    p("append_dot_mydomain", "no", Bool),
    x("arc_sealing_key", "", Str),
    p("authorized_flush_users", "static:anyone", Users),
    p("authorized_mailq_users", "static:anyone", Users),
    p("authorized_submit_users", "static:anyone", Users),
    p("body_checks", "", Maps),
    p("body_checks_size_limit", "51200", Int),
    p("bounce_notice_recipient", "postmaster", Str)
        .not_yet("no postmaster notices of bounces are sent (notify_classes)"),
    p("bounce_queue_lifetime", "5d", Time('d')),
    p("canonical_maps", "", Maps),
    p("command_directory", "/usr/sbin", Path)
        .not_yet("no program looks for Postern's commands there"),
    p("command_time_limit", "1000s", Time('s')),
    p("compatibility_level", "3.6", Str),
    p("content_filter", "", Filter),
    p("daemon_directory", "/usr/libexec/postern", Path),
    p("daemon_timeout", "18000s", Time('s')).not_yet("daemons are not stopped after a time limit"),
    p("data_directory", "/var/lib/postern", Path)
        .not_yet("Postern keeps no data files there (tlsmgr keeps its keys in memory)"),
    p("default_destination_concurrency_limit", "20", Int),
    p("default_destination_recipient_limit", "50", Int),
    p("default_privs", "nobody", Str),
    p("default_process_limit", "100", Int),
    p(
        "default_rbl_reply",
        "$rbl_code Service unavailable; $rbl_class [$rbl_what] blocked using \
         $rbl_domain${rbl_reason?; $rbl_reason}",
        Template,
    ),
    p("default_transport", "smtp", Str),
    p("defer_code", "450", Code),
    p("delay_warning_time", "0h", Time('h')),
    p("deliver_lock_attempts", "20", Positive),
    p("deliver_lock_delay", "1s", Time('s')),
    p("destination_concurrency_failed_cohort_limit", "1", Int),
    p("disable_mime_input_processing", "no", Bool),
    p("disable_vrfy_command", "yes", Bool),
    x(
        "dkim_canonicalization",
        "relaxed/relaxed",
        DKIM_CANONICALIZATION,
    ),
    x("dkim_key_table", "", Maps),
    x(
        "dkim_signed_headers",
        "From Reply-To Subject Date To Cc Resent-Date Resent-From Resent-To Resent-Cc In-Reply-To References List-Id List-Help List-Unsubscribe List-Subscribe List-Post List-Owner List-Archive Message-ID MIME-Version Content-Type Content-Transfer-Encoding",
        List,
    ),
    x("dkim_signing_table", "", Maps),
    x("dns_servers", "", Resolvers),
    p("double_bounce_sender", "double-bounce", Str),
    x("drain_timeout", "30s", Time('s')),
    p("fallback_transport", "", Str),
    p("header_checks", "", Maps),
    p("header_size_limit", "102400", Int),
    x("heartbeat_timeout", "30s", Time('s')),
    p("home_mailbox", "", Str),
    p("hopcount_limit", "50", Positive),
    p("inet_interfaces", "all", List),
    p("inet_protocols", "all", Words(&["all", "ipv4", "ipv6"])),
    p("initial_destination_concurrency", "5", Int),
    p(
        "internal_mail_filter_classes",
        "",
        Words(&["bounce", "notify"]),
    ),
    p("invalid_hostname_reject_code", "501", Code),
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
    p("mailbox_command", "", Command),
    p("mailbox_size_limit", "51200000", Int),
    p("maillog_file", "", Path),
    p("maps_rbl_reject_code", "554", Code),
    p("max_idle", "100s", Time('s'))
        .not_yet("daemons serve many clients at once and do not exit when idle"),
    p("max_use", "100", Int).not_yet("daemons are not replaced after a number of clients"),
    p("maximal_backoff_time", "4000s", Time('s')),
    p("maximal_queue_lifetime", "5d", Time('d')),
    p("message_size_limit", "10240000", Int),
    // The milter client (postern-milter): Postfix 3.7's defaults.
    p("milter_command_timeout", "30s", Time('s')),
    p(
        "milter_connect_macros",
        "j {daemon_name} {daemon_addr} v _",
        List,
    ),
    p("milter_connect_timeout", "30s", Time('s')),
    p("milter_content_timeout", "300s", Time('s')),
    p("milter_data_macros", "i", List),
    p(
        "milter_default_action",
        "tempfail",
        Enum(&["accept", "reject", "tempfail", "quarantine"]),
    ),
    p("milter_end_of_data_macros", "i", List),
    p("milter_end_of_header_macros", "i", List),
    p(
        "milter_helo_macros",
        "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
        List,
    ),
    p("milter_macro_daemon_name", "$myhostname", Str),
    p("milter_macro_v", "$mail_name", Str),
    p(
        "milter_mail_macros",
        "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
        List,
    ),
    p("milter_protocol", "6", Str),
    p(
        "milter_rcpt_macros",
        "i {rcpt_addr} {rcpt_host} {rcpt_mailer}",
        List,
    ),
    p("milter_unknown_command_macros", "", List),
    p("mime_boundary_length_limit", "2048", Positive),
    p("mime_header_checks", "$header_checks", Maps),
    p("mime_nesting_limit", "100", Int),
    p("minimal_backoff_time", "300s", Time('s')),
    p(
        "mydestination",
        "$myhostname, localhost.$mydomain, localhost",
        Domains,
    ),
    p("mydomain", "", Str),
    p("myhostname", "", Str),
    p("mynetworks", "", Networks),
    p(
        "mynetworks_style",
        "host",
        Enum(&["host", "subnet", "class"]),
    ),
    p("myorigin", "$myhostname", Str),
    p("nested_header_checks", "$header_checks", Maps),
    p("non_fqdn_reject_code", "504", Code),
    p("non_smtpd_milters", "", List),
    p(
        "notify_classes",
        "resource, software",
        Words(&[
            "bounce", "2bounce", "data", "delay", "policy", "protocol", "resource", "software",
        ]),
    )
    .not_yet("postmaster notices are sent only for double bounces"),
    p(
        "parent_domain_matches_subdomains",
        "debug_peer_list, fast_flush_domains, mynetworks, permit_mx_backup_networks, \
         qmqpd_authorized_clients, relay_domains, smtpd_access_maps",
        List,
    ),
    p(
        "propagate_unmatched_extensions",
        "canonical, virtual, alias, forward, include",
        Words(&[
            "canonical",
            "virtual",
            "alias",
            "forward",
            "include",
            "generic",
        ]),
    ),
    p("proxy_interfaces", "", List),
    p("queue_directory", "/var/spool/postern", Path),
    p("queue_run_delay", "300s", Time('s')),
    p("rbl_reply_maps", "", Maps),
    p(
        "receive_override_options",
        "",
        Words(&[
            "no_unknown_recipient_checks",
            "no_address_mappings",
            "no_header_body_checks",
            "no_milters",
        ]),
    ),
    p("recipient_canonical_maps", "", Maps),
    p("recipient_delimiter", "", Str),
    p("reject_code", "554", Code),
    p("relay_domains", "", Domains),
    p("relay_domains_reject_code", "554", Code),
    p("relay_recipient_maps", "", Maps),
    p("relay_transport", "relay", Str),
    p("relayhost", "", Str),
    p("resolve_dequoted", "yes", Bool),
    p("sender_canonical_maps", "", Maps),
    p("service_throttle_time", "60s", Time('s')),
    p("setgid_group", "postdrop", Str).not_yet("there is no postdrop program"),
    p("show_user_unknown_table_name", "yes", Bool),
    x("sled_cache_capacity", "64MiB", Size),
    p("smtp_bind_address", "", Ipv4),
    p("smtp_bind_address6", "", Ipv6),
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
        SASL_OPTIONS,
    ),
    p(
        "smtp_sasl_tls_security_options",
        "noanonymous",
        SASL_OPTIONS,
    ),
    p("smtp_starttls_timeout", "300s", Time('s')),
    p("smtp_tls_CAfile", "", Path),
    p("smtp_tls_CApath", "", Path),
    p("smtp_tls_cert_file", "", Path).not_yet(NO_CLIENT_CERT),
    p("smtp_tls_ciphers", "medium", CIPHER_GRADES).not_yet(RUSTLS_CIPHERS),
    p("smtp_tls_key_file", "$smtp_tls_cert_file", Path).not_yet(NO_CLIENT_CERT),
    p("smtp_tls_loglevel", "1", Enum(&["0", "1"])),
    p("smtp_tls_mandatory_ciphers", "medium", CIPHER_GRADES).not_yet(RUSTLS_CIPHERS),
    p("smtp_tls_mandatory_protocols", ">=TLSv1", TlsProtocols),
    p("smtp_tls_note_starttls_offer", "no", Bool)
        .not_yet("servers offering STARTTLS are not logged"),
    p("smtp_tls_policy_maps", "", Maps).not_yet("there are no per-destination TLS policies"),
    p("smtp_tls_protocols", ">=TLSv1", TlsProtocols),
    p(
        "smtp_tls_security_level",
        "",
        Enum(&["", "none", "may", "encrypt", "verify", "secure"]),
    ),
    p("smtp_tls_servername", "", Str)
        .not_yet("the SMTP client always sends the server's host name as SNI"),
    p("smtp_tls_session_cache_timeout", "3600s", Time('s')),
    p("smtp_tls_wrappermode", "no", Bool).not_yet("the SMTP client speaks STARTTLS only"),
    p("smtpd_banner", "$myhostname ESMTP $mail_name", Str),
    p("smtpd_client_connection_count_limit", "50", Int)
        .not_yet("connections per client are not limited"),
    p("smtpd_client_connection_rate_limit", "0", Int)
        .not_yet("connection rates per client are not limited"),
    p("smtpd_client_restrictions", "", Restrictions),
    p("smtpd_data_restrictions", "", Restrictions),
    p("smtpd_delay_reject", "yes", Bool),
    x("smtpd_dmarc_quarantine_action", "tag", DMARC_ACTION),
    x("smtpd_dmarc_reject_action", "tag", DMARC_ACTION),
    p("smtpd_error_sleep_time", "1s", Time('s')),
    p(
        "smtpd_forbid_bare_newline",
        "normalize",
        Enum(&["normalize", "yes", "reject", "no"]),
    ),
    p("smtpd_forbid_bare_newline_reject_code", "521", Code),
    p("smtpd_forbid_unauth_pipelining", "yes", Bool),
    p("smtpd_hard_error_limit", "20", Positive),
    p("smtpd_helo_required", "no", Bool),
    p("smtpd_helo_restrictions", "", Restrictions),
    p("smtpd_junk_command_limit", "100", Int),
    x("smtpd_max_sessions", "1000", Int),
    x(
        "smtpd_message_authentication",
        "spf, dkim, dmarc, arc",
        Words(&["spf", "dkim", "dmarc", "arc"]),
    ),
    x("smtpd_message_authentication_timeout", "10s", Time('s')),
    p("smtpd_milters", "", List),
    p("smtpd_null_access_lookup_key", "<>", Str),
    p("smtpd_peername_lookup", "yes", Bool),
    p(
        "smtpd_policy_service_default_action",
        "451 4.3.5 Server configuration problem",
        Str,
    )
    .not_yet(NO_POLICY_SERVICE),
    p("smtpd_policy_service_max_idle", "300s", Time('s')).not_yet(NO_POLICY_SERVICE),
    p("smtpd_policy_service_max_ttl", "1000s", Time('s')).not_yet(NO_POLICY_SERVICE),
    p("smtpd_policy_service_policy_context", "", Str).not_yet(NO_POLICY_SERVICE),
    p("smtpd_policy_service_request_limit", "0", Int).not_yet(NO_POLICY_SERVICE),
    p("smtpd_policy_service_retry_delay", "1s", Time('s')).not_yet(NO_POLICY_SERVICE),
    p("smtpd_policy_service_timeout", "100s", Time('s')).not_yet(NO_POLICY_SERVICE),
    p("smtpd_policy_service_try_limit", "2", Positive).not_yet(NO_POLICY_SERVICE),
    p("smtpd_recipient_limit", "1000", Int),
    p("smtpd_recipient_overshoot_limit", "1000", Int),
    p("smtpd_recipient_restrictions", "", Restrictions),
    p("smtpd_reject_unlisted_recipient", "yes", Bool),
    p("smtpd_reject_unlisted_sender", "no", Bool),
    p("smtpd_relay_before_recipient_restrictions", "yes", Bool),
    p(
        "smtpd_relay_restrictions",
        "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
        Restrictions,
    ),
    p("smtpd_restriction_classes", "", List),
    p("smtpd_sasl_auth_enable", "no", Bool),
    p("smtpd_sasl_authenticated_header", "no", Bool)
        .not_yet("the Received header does not name the SASL login"),
    p("smtpd_sasl_local_domain", "", Str),
    p("smtpd_sasl_path", "smtpd", Str).not_yet(BUILT_IN_SASL),
    p("smtpd_sasl_security_options", "noanonymous", SASL_OPTIONS),
    p(
        "smtpd_sasl_tls_security_options",
        "$smtpd_sasl_security_options",
        SASL_OPTIONS,
    ),
    p("smtpd_sasl_type", "postern", Str).not_yet(BUILT_IN_SASL),
    x("smtpd_sasl_users", "", Maps),
    p("smtpd_sender_login_maps", "", Maps),
    p("smtpd_sender_restrictions", "", Restrictions),
    p("smtpd_soft_error_limit", "10", Int),
    x(
        "smtpd_spf_fail_action",
        "tag",
        Enum(&["tag", "reject", "reject_at_data"]),
    ),
    p("smtpd_timeout", "300s", Time('s')),
    p("smtpd_tls_CAfile", "", Path),
    p("smtpd_tls_CApath", "", Path),
    p("smtpd_tls_ask_ccert", "no", Bool).not_yet(NO_CLIENT_CERT_REQUEST),
    p("smtpd_tls_auth_only", "no", Bool),
    p("smtpd_tls_cert_file", "", Path),
    p("smtpd_tls_chain_files", "", List),
    p("smtpd_tls_ciphers", "medium", CIPHER_GRADES).not_yet(RUSTLS_CIPHERS),
    p("smtpd_tls_key_file", "$smtpd_tls_cert_file", Path),
    p("smtpd_tls_loglevel", "1", Enum(&["0", "1"])),
    p("smtpd_tls_mandatory_ciphers", "medium", CIPHER_GRADES).not_yet(RUSTLS_CIPHERS),
    p("smtpd_tls_mandatory_protocols", ">=TLSv1", TlsProtocols),
    p("smtpd_tls_protocols", ">=TLSv1", TlsProtocols),
    p("smtpd_tls_received_header", "yes", Bool),
    p("smtpd_tls_req_ccert", "no", Bool).not_yet(NO_CLIENT_CERT_REQUEST),
    p(
        "smtpd_tls_security_level",
        "",
        Enum(&[
            "",
            "none",
            "may",
            "encrypt",
            "dane",
            "dane-only",
            "fingerprint",
            "verify",
            "secure",
        ]),
    ),
    p("smtpd_tls_session_cache_database", "", Str),
    p("smtpd_tls_session_cache_timeout", "3600s", Time('s')),
    p("smtpd_tls_wrappermode", "no", Bool),
    p("stale_lock_time", "500s", Time('s')),
    p("swap_bangpath", "yes", Bool),
    p("syslog_name", "postern", Str),
    p("transport_maps", "", Maps),
    p("unknown_address_reject_code", "450", Code),
    p("unknown_client_reject_code", "450", Code),
    p("unknown_hostname_reject_code", "450", Code),
    p("unknown_local_recipient_reject_code", "550", Code),
    p("unknown_relay_recipient_reject_code", "550", Code),
    p("unknown_virtual_alias_reject_code", "550", Code),
    p("unknown_virtual_mailbox_reject_code", "550", Code),
    p("virtual_alias_domains", "$virtual_alias_maps", Domains),
    p("virtual_alias_expansion_limit", "1000", Positive),
    p("virtual_alias_maps", "", Maps),
    p("virtual_alias_recursion_limit", "1000", Positive),
    p("virtual_mailbox_base", "", Path),
    p("virtual_mailbox_domains", "$virtual_mailbox_maps", Domains),
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

    /// lookup() searches by halves.
    #[test]
    fn the_table_is_sorted() {
        for pair in PARAMS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
    }

    #[test]
    fn lookup_finds_entries() {
        assert_eq!(lookup("message_size_limit").unwrap().kind, Kind::Int);
        assert!(lookup("drain_timeout").unwrap().postern);
        assert!(lookup("mynetwork").is_none());
    }
}
