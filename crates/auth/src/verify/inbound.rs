//! What smtpd checks on mail from outside and what it does with the
//! results, read once from the parameters (the names, defaults and
//! values are documented in smtpd's manual):
//!
//! * `smtpd_message_authentication` (`spf, dkim, dmarc, arc`): the
//!   methods; empty turns inbound verification off. DMARC needs both SPF
//!   and DKIM, and a list with it but without them is refused at start.
//! * `smtpd_message_authentication_timeout` (10s): the bound on each
//!   method ([`Verifier`]).
//! * `smtpd_spf_fail_action` (`tag`): `reject` refuses each RCPT of a
//!   sender whose MAIL FROM or HELO identity fails SPF, `reject_at_data`
//!   refuses the message at the end of DATA, `tag` only records it.
//! * `smtpd_dmarc_reject_action` and `smtpd_dmarc_quarantine_action`
//!   (`tag`): what a DMARC failure under `p=reject` or `p=quarantine`
//!   gets: `reject` (550 5.7.1), `hold` (the hold queue) or `tag`.

use std::net::SocketAddr;
use std::time::Duration;

use postern_config::Params;

use super::{DmarcCheck, DmarcPolicy, Methods, Verdict, Verifier, VerifyError};

/// `smtpd_spf_fail_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfFailAction {
    Tag,
    /// At RCPT.
    Reject,
    /// At the end of DATA.
    RejectAtData,
}

/// `smtpd_dmarc_reject_action`, `smtpd_dmarc_quarantine_action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcAction {
    Tag,
    Hold,
    Reject,
}

impl DmarcAction {
    fn from_word(word: &str) -> DmarcAction {
        match word {
            "reject" => DmarcAction::Reject,
            "hold" => DmarcAction::Hold,
            _ => DmarcAction::Tag,
        }
    }
}

/// Inbound verification as configured.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub methods: Methods,
    pub verifier: Verifier,
    pub spf_fail: SpfFailAction,
    pub dmarc_reject: DmarcAction,
    pub dmarc_quarantine: DmarcAction,
}

/// The methods `smtpd_message_authentication` names.
fn methods(params: &Params) -> Result<Methods, (&'static str, String)> {
    let words = params.words("smtpd_message_authentication");
    let has = |m: &str| words.iter().any(|w| w == m);
    let methods = Methods {
        spf: has("spf"),
        dkim: has("dkim"),
        dmarc: has("dmarc"),
        arc: has("arc"),
    };
    if methods.dmarc && !(methods.spf && methods.dkim) {
        return Err((
            "smtpd_message_authentication",
            "dmarc needs both spf and dkim in the list".to_string(),
        ));
    }
    Ok(methods)
}

impl Inbound {
    /// The configuration `params` give; None when no method is on.
    pub fn from_params(params: &Params) -> Result<Option<Inbound>, VerifyError> {
        let methods = methods(params).map_err(|(_, reason)| VerifyError::Config(reason))?;
        if !methods.any() {
            return Ok(None);
        }
        let servers: Vec<SocketAddr> = params.resolvers("dns_servers");
        let timeout = params
            .time("smtpd_message_authentication_timeout")
            .max(Duration::from_millis(100));
        let verifier = Verifier::new(&servers, timeout)?.with_hostname(&params.get("myhostname"));
        Ok(Some(Inbound {
            methods,
            verifier,
            spf_fail: match params.choice("smtpd_spf_fail_action").as_str() {
                "reject" => SpfFailAction::Reject,
                "reject_at_data" => SpfFailAction::RejectAtData,
                _ => SpfFailAction::Tag,
            },
            dmarc_reject: DmarcAction::from_word(&params.choice("smtpd_dmarc_reject_action")),
            dmarc_quarantine: DmarcAction::from_word(
                &params.choice("smtpd_dmarc_quarantine_action"),
            ),
        }))
    }

    /// What a DMARC result gets: the action for the policy of a message
    /// that fails; `Tag` for everything else.
    pub fn dmarc_action(&self, dmarc: &DmarcCheck) -> DmarcAction {
        if dmarc.result != Verdict::Fail {
            return DmarcAction::Tag;
        }
        match dmarc.policy {
            Some(DmarcPolicy::Reject) => self.dmarc_reject,
            Some(DmarcPolicy::Quarantine) => self.dmarc_quarantine,
            Some(DmarcPolicy::None) | None => DmarcAction::Tag,
        }
    }
}

/// The restriction lists smtpd evaluates.
const RESTRICTION_LISTS: [&str; 6] = [
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
];

/// An action or restriction that needs a method the list leaves out
/// would do nothing: refused, naming the parameter that asks for it.
fn needs(params: &Params, methods: Methods) -> Result<(), (String, String)> {
    let missing =
        |what: &str, method: &str| format!("{what} needs {method} in smtpd_message_authentication");
    if !methods.spf {
        if params.choice("smtpd_spf_fail_action") != "tag" {
            return Err(("smtpd_spf_fail_action".into(), missing("an action", "spf")));
        }
        let classes = params.list("smtpd_restriction_classes");
        for list in RESTRICTION_LISTS
            .iter()
            .copied()
            .chain(classes.iter().map(String::as_str))
        {
            if params
                .list(list)
                .iter()
                .any(|r| r.eq_ignore_ascii_case("reject_spf_fail"))
            {
                return Err((list.into(), missing("reject_spf_fail", "spf")));
            }
        }
    }
    if !methods.dmarc {
        for action in ["smtpd_dmarc_reject_action", "smtpd_dmarc_quarantine_action"] {
            if params.choice(action) != "tag" {
                return Err((action.into(), missing("an action", "dmarc")));
            }
        }
    }
    Ok(())
}

/// The start-up check of the inbound parameters of `[main]` and every
/// service.
pub fn check_config(config: &postern_config::Config) -> Result<(), postern_config::ConfigError> {
    config.check_each_service(|params| {
        let methods = methods(params).map_err(|(param, reason)| (param.to_string(), reason))?;
        needs(params, methods)
    })
}
