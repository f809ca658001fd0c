//! The parameters one session runs with, read once from [`Params`] when
//! the session starts, so a SIGHUP reload applies to the next session and
//! never changes one in progress.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postern_auth::verify::Inbound;
use postern_auth::{ArcSealer, DkimSigner};
use postern_config::{Params, ReceiveOverrides};
use postern_content::ContentChecks;
use postern_envelope::ContentFilter;
use postern_milter::{MilterList, MilterSettings};
use postern_smtp::BareNewlinePolicy;

use crate::auth::Sasl;
use crate::policy::{self, Policy};
use crate::tls::Level;

/// Everything a session needs to know about its configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `$myhostname`: EHLO, Received, 421 replies, Message-ID.
    pub hostname: String,
    /// `smtpd_peername_lookup = yes`: the resolver (`dns_servers`) that
    /// finds each client's name.
    pub peername: Option<Arc<hickory_resolver::TokioResolver>>,
    /// `$smtpd_banner`, after `220 `.
    pub banner: String,
    /// `$mail_name`, in the Received header.
    pub mail_name: String,
    /// `$myorigin`: the domain of unqualified envelope addresses.
    pub myorigin: String,
    /// `message_size_limit`; 0 means no limit.
    pub message_size_limit: u64,
    /// `smtpd_recipient_limit`; 0 means no limit.
    pub recipient_limit: usize,
    /// Excess recipients answered 452 before each one counts as an error.
    pub recipient_overshoot_limit: u32,
    /// `smtpd_timeout`: for each read and write.
    pub timeout: Duration,
    /// `smtpd_hard_error_limit`: the session ends at this many errors.
    pub hard_error_limit: u32,
    /// `smtpd_soft_error_limit`: above it, every reply waits `error_sleep`.
    pub soft_error_limit: u32,
    /// `smtpd_error_sleep_time`.
    pub error_sleep: Duration,
    /// `smtpd_junk_command_limit`: NOOP/RSET/VRFY/ETRN/HELO beyond this
    /// count as errors.
    pub junk_command_limit: u32,
    /// `line_length_limit`: longest command line, and the unit in which
    /// header lines are examined.
    pub line_length_limit: usize,
    /// `header_size_limit`: how much of the header section is examined.
    pub header_size_limit: usize,
    /// `hopcount_limit`: Received headers (ours included) that bounce.
    pub hopcount_limit: usize,
    /// VRFY answered at all (see the manual: off unless set explicitly).
    pub vrfy_enabled: bool,
    /// `smtpd_forbid_bare_newline`.
    pub bare_newline: BareNewlinePolicy,
    /// `smtpd_forbid_bare_newline_reject_code`.
    pub bare_newline_code: u16,
    /// `smtpd_helo_required`.
    pub helo_required: bool,
    /// `smtpd_forbid_unauth_pipelining`: hang up on a client that sends
    /// ahead where RFC 2920 says it must wait.
    pub forbid_unauth_pipelining: bool,
    /// `smtpd_delay_reject`.
    pub delay_reject: bool,
    /// `$queue_directory/private/qmgr`.
    pub qmgr_socket: PathBuf,
    /// `smtpd_tls_security_level`.
    pub tls_level: Level,
    /// `smtpd_tls_wrappermode`: TLS from the first byte (SMTPS).
    pub wrappermode: bool,
    /// `smtpd_tls_auth_only` (implied by the `encrypt` level).
    pub tls_auth_only: bool,
    /// The `(using TLSv1.3 with cipher ...)` clause in Received (see the
    /// manual: on unless smtpd_tls_received_header is set to no).
    pub tls_received_header: bool,
    /// `smtpd_tls_loglevel` 1: log a summary of each TLS handshake.
    pub tls_log_summary: bool,
    /// SMTP AUTH, when `smtpd_sasl_auth_enable = yes`.
    pub sasl: Option<Arc<Sasl>>,
    /// The access policy, or why it could not be built (then every RCPT
    /// is deferred rather than allowed).
    pub policy: Result<Arc<Policy>, String>,
    /// `content_filter`: the after-queue filter for mail received here
    /// (a FILTER action overrides it).
    pub content_filter: Option<ContentFilter>,
    /// `receive_override_options`.
    pub overrides: ReceiveOverrides,
    /// header_checks, mime_header_checks, nested_header_checks and
    /// body_checks (none when all are empty), or why a table cannot be
    /// used (mail is then refused with 451 4.3.5).
    pub content: Result<Option<ContentChecks>, String>,
    /// `smtpd_milters` and the milter_* settings (none when the list is
    /// empty), or why they cannot be used (sessions are then refused with
    /// 451 4.3.5).
    pub milters: Result<Option<Arc<MilterSettings>>, String>,
    /// DKIM signing (`dkim_signing_table`, `dkim_key_table`) of mail
    /// from mynetworks and authenticated clients, or why it cannot be
    /// used (such mail is then deferred with 451 4.3.5).
    pub dkim: Result<Option<Arc<DkimSigner>>, String>,
    /// SPF, DKIM, DMARC and ARC checks of mail from outside mynetworks
    /// (none when `smtpd_message_authentication` is empty), or why they
    /// cannot be used (such mail is then deferred with 451 4.3.5).
    pub inbound: Result<Option<Arc<Inbound>>, String>,
    /// ARC sealing (`arc_sealing_key`) of checked mail that a virtual
    /// alias forwards to another domain, or why it cannot be used.
    pub arc: Result<Option<Arc<ArcSealer>>, String>,
}

impl Settings {
    pub fn from_params(params: &Params) -> Settings {
        let bare_newline = match params.choice("smtpd_forbid_bare_newline").as_str() {
            "reject" | "yes" => BareNewlinePolicy::Reject,
            "no" => BareNewlinePolicy::No,
            _ => BareNewlinePolicy::Normalize,
        };
        let tls_level = Level::from_params(params);
        let peername = params
            .bool("smtpd_peername_lookup")
            .then(|| {
                let mut opts = hickory_resolver::config::ResolverOpts::default();
                opts.timeout = crate::session::PEERNAME_TIMEOUT / 2;
                opts.attempts = 1;
                postern_daemon::dns::resolver(&params.resolvers("dns_servers"), opts)
                    .map_err(|e| tracing::error!("smtpd_peername_lookup: {e}; no name lookups"))
                    .ok()
                    .map(Arc::new)
            })
            .flatten();
        Settings {
            peername,
            tls_level,
            wrappermode: params.bool("smtpd_tls_wrappermode"),
            tls_auth_only: params.bool("smtpd_tls_auth_only") || tls_level == Level::Encrypt,
            tls_received_header: params.bool("smtpd_tls_received_header"),
            tls_log_summary: params.choice("smtpd_tls_loglevel") != "0",
            sasl: Sasl::from_params(params).map(Arc::new),
            hostname: params.get("myhostname"),
            banner: params.get("smtpd_banner"),
            mail_name: params.get("mail_name"),
            myorigin: params.get("myorigin"),
            message_size_limit: params.int("message_size_limit").max(0) as u64,
            recipient_limit: params.int("smtpd_recipient_limit").max(0) as usize,
            recipient_overshoot_limit: count(params, "smtpd_recipient_overshoot_limit"),
            timeout: params.time("smtpd_timeout"),
            hard_error_limit: params.int("smtpd_hard_error_limit").max(1) as u32,
            soft_error_limit: params.int("smtpd_soft_error_limit").max(0) as u32,
            error_sleep: params.time("smtpd_error_sleep_time"),
            junk_command_limit: count(params, "smtpd_junk_command_limit"),
            line_length_limit: params.int("line_length_limit").max(512) as usize,
            header_size_limit: params.int("header_size_limit").max(0) as usize,
            hopcount_limit: params.int("hopcount_limit").max(1) as usize,
            vrfy_enabled: !params.bool("disable_vrfy_command"),
            bare_newline,
            bare_newline_code: params.code("smtpd_forbid_bare_newline_reject_code"),
            helo_required: params.bool("smtpd_helo_required"),
            forbid_unauth_pipelining: params.bool("smtpd_forbid_unauth_pipelining"),
            delay_reject: policy::delay_reject(params),
            qmgr_socket: params
                .path("queue_directory")
                .join(postern_ipc::qmgr::SOCKET),
            content_filter: params.filter("content_filter"),
            overrides: ReceiveOverrides::from_params(params),
            milters: match MilterSettings::from_params(params, MilterList::Smtpd) {
                Ok(m) if m.milters.is_empty() => Ok(None),
                Ok(m) => Ok(Some(Arc::new(m))),
                Err(e) => {
                    tracing::error!("{e}");
                    Err(e.to_string())
                }
            },
            dkim: DkimSigner::from_params(params)
                .map(|s| s.map(Arc::new))
                .map_err(|e| {
                    tracing::error!("{e}");
                    e.to_string()
                }),
            inbound: Inbound::from_params(params)
                .map(|i| i.map(Arc::new))
                .map_err(|e| {
                    tracing::error!("{e}");
                    e.to_string()
                }),
            arc: ArcSealer::from_params(params)
                .map(|s| s.map(Arc::new))
                .map_err(|e| {
                    tracing::error!("{e}");
                    e.to_string()
                }),
            content: ContentChecks::from_params(params).map_err(|e| {
                tracing::error!("{e}");
                e.to_string()
            }),
            policy: Policy::from_params(params).map(Arc::new).map_err(|e| {
                // Logged once here; each RCPT is then deferred with 4.3.5.
                tracing::error!("access policy: {e}");
                e.to_string()
            }),
        }
    }
}

/// A limit that cannot be negative (Postfix's minimum of 0).
fn count(params: &Params, name: &str) -> u32 {
    u32::try_from(params.int(name).max(0)).unwrap_or(u32::MAX)
}
