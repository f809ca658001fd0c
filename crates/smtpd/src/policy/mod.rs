//! SMTP access policy: Postfix's `smtpd_*_restrictions`, relay control and
//! the recipient table checks (Postfix's smtpd_check.c).
//!
//! [`Policy::from_params`] compiles the restriction lists once (opening
//! every table they name); [`Policy::check`] evaluates the lists that apply
//! at a [`Stage`] for one [`Check`] context and returns a [`Refusal`] with
//! Postfix's exact reply when the request must be refused.
//!
//! Evaluation follows Postfix:
//!
//! * Each list is read left to right; the first restriction that permits
//!   or refuses decides that list. A permit ends only its own list; a
//!   refusal anywhere refuses the request.
//! * With `smtpd_delay_reject = yes` (the default) everything happens at
//!   RCPT: client, HELO, sender, then relay, then recipient restrictions
//!   (recipient before relay when
//!   `smtpd_relay_before_recipient_restrictions = no`); earlier stages
//!   pass. With `no`, Connect, Helo and Mail evaluate their
//!   own list and Rcpt only the relay and recipient lists. Data evaluates
//!   `smtpd_data_restrictions`.
//! * After the recipient lists, unless something already refused, the
//!   implicit `reject_unlisted_recipient` check runs
//!   (`smtpd_reject_unlisted_recipient = yes`), and at the end of the sender
//!   list `reject_unlisted_sender` when `smtpd_reject_unlisted_sender = yes`.
//! * The unqualified recipient `postmaster` is always accepted (RFC 5321).
//! * Address classes and relay permission come from postern-routing's
//!   [`Router`], the same code that routes the mail in qmgr: the address
//!   is resolved as trivial-rewrite does (local domains stripped, `%`,
//!   `!` and quoted `@` followed), so a local part with routing operators
//!   never earns relay access for a domain it does not really go to.
//!
//! Where Postern differs:
//!
//! * `reject_unknown_sender_domain`, `reject_unknown_recipient_domain`
//!   and `reject_unknown_helo_hostname` make no DNS query: they treat a
//!   non-local domain as unknown only when it is not a valid host name or
//!   has no dot; a domain that merely lacks A/AAAA/MX records passes.
//!   Policy servers, client certificates and MX/NS access checks are
//!   refused at load as unsupported. DNS lists are in `dns_lists`.
//! * An unknown restriction name, a missing table argument or a bare
//!   `type:table` in `smtpd_data_restrictions` is an error at load
//!   ([`PolicyError`]), not a `451 4.3.5` at run time; Postfix's check that
//!   relay or recipient restrictions can refuse use relaying is an error too.
//!   Restriction names inside access table results are still only known at
//!   run time and answer `451 4.3.5 Server configuration error`.
//! * Access table actions HOLD, DISCARD, FILTER, REDIRECT, BCC and PREPEND
//!   (and WARN and INFO, which only log) come back from
//!   [`Policy::check_actions`] as [`Fired`] values for the session to log
//!   and apply to the message; the policy itself does not know the
//!   transaction.
//! * With `smtpd_delay_reject = no`, a `defer_if_permit` raised at Connect,
//!   Helo or Mail is not carried to Rcpt (each call is independent).
//! * `smtpd_sender_login_maps` is looked up with the whole sender address,
//!   then without its address extension, then `@domain`; Postfix also
//!   tries the bare local part for local domains. The owners are a list of
//!   login names (`553 5.7.1 <addr>: Sender address rejected: not owned by
//!   user NAME`, or `... not logged in`).
//!
//! # Layout
//!
//! * `mod.rs` — the public interface, compiling lists, stage drivers and
//!   the evaluation of each restriction.
//! * `restriction` — restriction names to [`Restriction`] values.
//! * `access` — access(5) table lookups and their results; recipient table
//!   checks (`reject_unlisted_*`).
//! * `dns_lists` — DNS blocklists and allowlists (`reject_rbl_client`...).

mod access;
mod dns_lists;
mod restriction;
#[cfg(test)]
mod tests;

use crate::peername::NameStatus;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use postern_auth::verify::SpfResults;
use postern_config::{Maps, NetworkList, Params, Table, TableError};
use postern_envelope::{ContentFilter, EnhancedStatus};
use postern_routing::{AddressClass, Router, RoutingError};
use postern_smtp::{Address, Reply};

use restriction::{AccessKind, LoginCheck, ParseError, Restriction};

/// The protocol stage a check is made at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
}

/// What is known about the session when a check is made.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    pub client_addr: IpAddr,
    /// The verified client host name, or `unknown`.
    pub client_name: &'a str,
    /// The PTR name, verified or not, or `unknown`.
    pub reverse_name: &'a str,
    /// How the name lookup went, and the PTR lookup.
    pub name_status: NameStatus,
    pub reverse_status: NameStatus,
    pub helo: Option<&'a str>,
    /// The MAIL FROM address; `Some(null)` for `<>`.
    pub sender: Option<&'a Address>,
    pub recipient: Option<&'a Address>,
    /// Set once the client authenticated.
    pub sasl_username: Option<&'a str>,
    /// The SPF results of the sender, once checked (RCPT and later).
    pub spf: Option<&'a SpfResults>,
}

/// What an access table action asks of the message (access(5)); the
/// session applies it to the transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessAction {
    /// Queue the message on hold.
    Hold,
    /// Accept the message and drop it.
    Discard,
    /// Send it through this after-queue content filter.
    Filter(ContentFilter),
    /// Deliver it to this address instead of its recipients.
    Redirect(String),
    /// Send a copy to this address.
    Bcc(String),
    /// Add this header line (`Name: value`).
    Prepend(String),
}

/// An action that fired during a check: what to log (Postfix's
/// log_whatsup: `hold`, `discard`, `filter`, `redirect`, `bcc`, `warn`,
/// `info`, and the text after the client) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// None for PREPEND, which Postfix does not log.
    pub whatsup: Option<&'static str>,
    pub text: String,
    pub action: Option<AccessAction>,
}

/// A refused request: the reply to send, and whether it is a temporary
/// (4xx) refusal.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reply: Reply,
    pub temporary: bool,
}

impl Refusal {
    /// The DSN class follows the reply code ([`Reply::new`]).
    fn new(code: u16, dsn: EnhancedStatus, text: String) -> Refusal {
        let reply = Reply::new(code, Some(dsn), &text);
        Refusal {
            temporary: reply.is_transient(),
            reply,
        }
    }
}

/// Why a configuration cannot be turned into a [`Policy`].
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("parameter \"{param}\": unknown restriction \"{name}\"")]
    UnknownRestriction { param: String, name: String },
    #[error("parameter \"{param}\": restriction \"{name}\" is not supported by Postern")]
    Unsupported { param: String, name: String },
    #[error("parameter \"{param}\": restriction \"{name}\" needs a type:table argument")]
    MissingTable { param: String, name: String },
    #[error(
        "parameter \"{param}\": a bare table \"{spec}\" needs a check_*_access \
         restriction before it"
    )]
    BareTable { param: String, spec: String },
    #[error("parameter \"{param}\": {source}")]
    Table { param: String, source: TableError },
    #[error("parameter \"{param}\": restriction \"{name}\": {reason}")]
    BadArg {
        param: String,
        name: String,
        reason: String,
    },
    /// The routing parameters (domain lists, transports) are unusable.
    #[error(transparent)]
    Routing(RoutingError),
    #[error(
        "in parameters smtpd_relay_restrictions and smtpd_recipient_restrictions, specify at \
         least one working instance of: reject_unauth_destination, defer_unauth_destination, \
         reject, defer or defer_if_permit"
    )]
    OpenRelay,
}

/// Reply codes Postfix makes configurable.
#[derive(Debug, Clone)]
struct Codes {
    reject: u16,
    defer: u16,
    relay: u16,
    access_reject: u16,
    access_defer: u16,
    non_fqdn: u16,
    invalid_hostname: u16,
    unknown_address: u16,
    unknown_hostname: u16,
    unknown_client: u16,
    local_rcpt: u16,
    relay_rcpt: u16,
    virtual_alias: u16,
    virtual_mailbox: u16,
}

impl Codes {
    fn from_params(p: &Params) -> Codes {
        Codes {
            reject: p.code("reject_code"),
            defer: p.code("defer_code"),
            relay: p.code("relay_domains_reject_code"),
            access_reject: p.code("access_map_reject_code"),
            access_defer: p.code("access_map_defer_code"),
            non_fqdn: p.code("non_fqdn_reject_code"),
            invalid_hostname: p.code("invalid_hostname_reject_code"),
            unknown_address: p.code("unknown_address_reject_code"),
            unknown_hostname: p.code("unknown_hostname_reject_code"),
            unknown_client: p.code("unknown_client_reject_code"),
            local_rcpt: p.code("unknown_local_recipient_reject_code"),
            relay_rcpt: p.code("unknown_relay_recipient_reject_code"),
            virtual_alias: p.code("unknown_virtual_alias_reject_code"),
            virtual_mailbox: p.code("unknown_virtual_mailbox_reject_code"),
        }
    }
}

/// The compiled policy of one smtpd service.
#[derive(Debug, Clone)]
pub struct Policy {
    client: Vec<Restriction>,
    helo: Vec<Restriction>,
    sender: Vec<Restriction>,
    relay: Vec<Restriction>,
    recipient: Vec<Restriction>,
    data: Vec<Restriction>,
    classes: HashMap<String, Vec<Restriction>>,
    class_names: HashSet<String>,
    delay_reject: bool,
    relay_before_recipient: bool,
    reject_unlisted_recipient: bool,
    /// Off with `receive_override_options = no_unknown_recipient_checks`.
    unknown_recipient_checks: bool,
    reject_unlisted_sender: bool,
    /// `smtpd_access_maps` is in `parent_domain_matches_subdomains`.
    access_parent: bool,
    mynetworks: NetworkList,
    /// Address classes and relay permission.
    router: Router,
    local_recipient_maps: Maps,
    relay_recipient_maps: Maps,
    virtual_alias_maps: Maps,
    virtual_mailbox_maps: Maps,
    /// canonical_maps and recipient_canonical_maps: a hit means "known".
    canonical_maps: Maps,
    /// sender_canonical_maps: a hit means "known" for senders.
    sender_canonical_maps: Maps,
    /// smtpd_sender_login_maps: sender address (or `@domain`) to the
    /// logins that may use it.
    sender_login_maps: Maps,
    recipient_delimiter: String,
    double_bounce: String,
    null_key: String,
    show_table: bool,
    codes: Codes,
    /// DNS lists: the resolver (`dns_servers`) and the replies.
    dns: Arc<dns_lists::DnsLists>,
}

/// `smtpd_delay_reject`: whether client, HELO and sender restrictions wait
/// until RCPT.
pub fn delay_reject(params: &Params) -> bool {
    params.bool("smtpd_delay_reject")
}

impl Policy {
    pub fn from_params(params: &Params) -> Result<Policy, PolicyError> {
        let base = params.base_dir().to_path_buf();
        let table_err = |param: &str| {
            let param = param.to_string();
            move |source| PolicyError::Table {
                param: param.clone(),
                source,
            }
        };
        let class_names: HashSet<String> = params
            .list("smtpd_restriction_classes")
            .into_iter()
            .collect();
        let compile = |param: &str, allow_bare: bool| -> Result<Vec<Restriction>, PolicyError> {
            let mut open = |spec: &str| Table::open(spec, &base);
            let list = restriction::parse_list(&params.list(param), &class_names, &mut open)
                .map_err(|e| match e {
                    ParseError::Unknown(name) => PolicyError::UnknownRestriction {
                        param: param.into(),
                        name,
                    },
                    ParseError::Unsupported(name) => PolicyError::Unsupported {
                        param: param.into(),
                        name,
                    },
                    ParseError::MissingTable(name) => PolicyError::MissingTable {
                        param: param.into(),
                        name,
                    },
                    ParseError::Table(source) => PolicyError::Table {
                        param: param.into(),
                        source,
                    },
                    ParseError::BadArg(name, reason) => PolicyError::BadArg {
                        param: param.into(),
                        name,
                        reason,
                    },
                })?;
            if !allow_bare
                && let Some(Restriction::BareMap(t)) =
                    list.iter().find(|r| matches!(r, Restriction::BareMap(_)))
            {
                return Err(PolicyError::BareTable {
                    param: param.into(),
                    spec: t.spec().to_string(),
                });
            }
            Ok(list)
        };
        let mut classes = HashMap::new();
        for name in &class_names {
            classes.insert(name.clone(), compile(name, true)?);
        }
        let policy_tables = |name: &str| -> Result<Vec<Table>, PolicyError> {
            let aliases = params.list("alias_maps");
            let tables = params
                .list(name)
                .iter()
                .map(|spec| {
                    // `$alias_maps` inside local_recipient_maps keeps the
                    // aliases(5) file format.
                    if aliases.contains(spec) {
                        Table::open_aliases(spec, &base)
                    } else {
                        Table::open(spec, &base)
                    }
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(table_err(name))?;
            Ok(tables)
        };
        let policy_maps = |name: &str| policy_tables(name).map(Maps::from_tables);
        let mut canonical = policy_tables("recipient_canonical_maps")?;
        canonical.extend(policy_tables("canonical_maps")?);

        let policy = Policy {
            client: compile("smtpd_client_restrictions", true)?,
            helo: compile("smtpd_helo_restrictions", true)?,
            sender: compile("smtpd_sender_restrictions", true)?,
            relay: compile("smtpd_relay_restrictions", true)?,
            recipient: compile("smtpd_recipient_restrictions", true)?,
            data: compile("smtpd_data_restrictions", false)?,
            classes,
            class_names,
            delay_reject: delay_reject(params),
            relay_before_recipient: params.bool("smtpd_relay_before_recipient_restrictions"),
            reject_unlisted_recipient: params.bool("smtpd_reject_unlisted_recipient"),
            unknown_recipient_checks: !postern_config::ReceiveOverrides::from_params(params)
                .no_unknown_recipient_checks,
            reject_unlisted_sender: params.bool("smtpd_reject_unlisted_sender"),
            access_parent: params
                .list("parent_domain_matches_subdomains")
                .iter()
                .any(|p| p == "smtpd_access_maps"),
            mynetworks: NetworkList::parse(&params.list("mynetworks"), &base)
                .map_err(table_err("mynetworks"))?,
            router: Router::from_params(params).map_err(|e| match e {
                RoutingError::Table { param, source } => PolicyError::Table {
                    param: param.into(),
                    source,
                },
                other => PolicyError::Routing(other),
            })?,
            local_recipient_maps: policy_maps("local_recipient_maps")?,
            relay_recipient_maps: policy_maps("relay_recipient_maps")?,
            virtual_alias_maps: policy_maps("virtual_alias_maps")?,
            virtual_mailbox_maps: policy_maps("virtual_mailbox_maps")?,
            canonical_maps: Maps::from_tables(canonical),
            sender_canonical_maps: policy_maps("sender_canonical_maps")?,
            sender_login_maps: policy_maps("smtpd_sender_login_maps")?,
            recipient_delimiter: params.get("recipient_delimiter"),
            double_bounce: params.get("double_bounce_sender"),
            null_key: params.get("smtpd_null_access_lookup_key"),
            show_table: params.bool("show_user_unknown_table_name"),
            codes: Codes::from_params(params),
            dns: Arc::new(
                dns_lists::DnsLists::from_params(params).map_err(table_err("rbl_reply_maps"))?,
            ),
        };
        if !restriction::restricts_relay(&policy.relay, &policy.classes, 0)
            && !restriction::restricts_relay(&policy.recipient, &policy.classes, 0)
        {
            return Err(PolicyError::OpenRelay);
        }
        Ok(policy)
    }

    /// Whether mail for `recipient` leaves for another domain through a
    /// virtual alias (what ARC sealing is for).
    pub fn forwards_outside(&self, recipient: &str) -> Result<bool, RoutingError> {
        self.router.forwards_outside(recipient)
    }

    /// Whether `addr` is in mynetworks (for what smtpd does for its own
    /// clients beyond access, such as DKIM signing).
    pub fn in_mynetworks(&self, addr: IpAddr) -> bool {
        self.mynetworks.contains(addr)
    }

    /// Evaluates the restriction lists that apply at `stage`; `Ok(())`
    /// means continue. See the module documentation for the order.
    #[cfg(test)]
    pub async fn check(&self, stage: Stage, ctx: &Check<'_>) -> Result<(), Refusal> {
        self.check_actions(stage, ctx).await.0
    }

    /// [`Policy::check`], and the actions that fired on the way (also
    /// when the request is refused: Postfix keeps them for the
    /// transaction).
    pub async fn check_actions(
        &self,
        stage: Stage,
        ctx: &Check<'_>,
    ) -> (Result<(), Refusal>, Vec<Fired>) {
        let mut ev = Eval::new(self, ctx);
        let result = ev.stage(stage).await;
        (result, ev.fired)
    }
}

impl Eval<'_, '_> {
    async fn stage(&mut self, stage: Stage) -> Result<(), Refusal> {
        match stage {
            Stage::Connect | Stage::Helo | Stage::Mail if self.policy.delay_reject => Ok(()),
            Stage::Connect => self.client_stage().await,
            Stage::Helo => self.helo_stage().await,
            Stage::Mail => self.sender_stage().await,
            Stage::Rcpt => self.rcpt_stage().await,
            Stage::Data => self.data_stage().await,
        }
    }
}

/// The outcome of one restriction or list.
#[derive(Debug)]
enum Verdict {
    Dunno,
    Permit,
    Refuse(Refusal),
    /// An access table or policy server answered with restrictions: they
    /// are evaluated in place by [`Eval::one`], which can wait for DNS and
    /// policy servers where table lookups cannot.
    Nested(Box<Nested>),
}

/// Restrictions found in a table result, still to be evaluated.
#[derive(Debug)]
struct Nested {
    list: Vec<Restriction>,
    subject: Subject,
    /// A permit becomes dunno (an OK for a recipient with routing in it).
    permit_is_dunno: bool,
}

/// What a list is about: the name and class printed in replies
/// (`<name>: Class rejected: ...`), and the check a bare table means.
#[derive(Debug, Clone)]
struct Subject {
    name: String,
    class: &'static str,
    acl: Option<AccessKind>,
}

impl Subject {
    fn new(name: String, class: &'static str, acl: Option<AccessKind>) -> Subject {
        Subject { name, class, acl }
    }
}

const CLIENT: &str = "Client host";
const HELO: &str = "Helo command";
const SENDER: &str = "Sender address";
const RECIPIENT: &str = "Recipient address";
const DATA: &str = "Data command";

/// Deepest nesting of restriction classes and table results.
const MAX_RECURSION: usize = 100;

/// The state of one [`Policy::check`] call.
#[derive(Debug)]
struct Eval<'p, 'c> {
    policy: &'p Policy,
    ctx: &'c Check<'c>,
    /// Set by defer_if_permit: a later permit becomes this deferral.
    defer_if_permit: Option<Refusal>,
    /// Set by defer_if_reject: a later policy reject becomes this deferral.
    defer_if_reject: Option<Refusal>,
    warn_if_reject: bool,
    /// The restriction being evaluated follows warn_if_reject.
    warning: bool,
    rcpt_maps_checked: bool,
    sender_maps_checked: bool,
    depth: usize,
    /// Actions that fired, in order.
    fired: Vec<Fired>,
}

impl<'p, 'c> Eval<'p, 'c> {
    fn new(policy: &'p Policy, ctx: &'c Check<'c>) -> Self {
        Eval {
            policy,
            ctx,
            defer_if_permit: None,
            defer_if_reject: None,
            warn_if_reject: false,
            warning: false,
            rcpt_maps_checked: false,
            sender_maps_checked: false,
            depth: 0,
            fired: Vec::new(),
        }
    }

    fn client_namaddr(&self) -> String {
        format!(
            "{}[{}]",
            self.ctx.client_name,
            self.ctx.client_addr.to_canonical()
        )
    }

    async fn client_stage(&mut self) -> Result<(), Refusal> {
        let subject = Subject::new(self.client_namaddr(), CLIENT, Some(AccessKind::Client));
        self.run_list(&self.policy.client, &subject).await
    }

    async fn helo_stage(&mut self) -> Result<(), Refusal> {
        let Some(helo) = self.ctx.helo else {
            return Ok(());
        };
        let subject = Subject::new(helo.to_string(), HELO, Some(AccessKind::Helo));
        self.run_list(&self.policy.helo, &subject).await
    }

    async fn sender_stage(&mut self) -> Result<(), Refusal> {
        let Some(sender) = self.ctx.sender else {
            return Ok(());
        };
        let subject = Subject::new(sender.to_string(), SENDER, Some(AccessKind::Sender));
        self.run_list(&self.policy.sender, &subject).await?;
        if self.policy.reject_unlisted_sender && !self.sender_maps_checked && !sender.is_null() {
            self.sender_maps_checked = true;
            if let Verdict::Refuse(r) = self.check_rcpt_maps(sender, SENDER) {
                return Err(r);
            }
        }
        Ok(())
    }

    async fn rcpt_stage(&mut self) -> Result<(), Refusal> {
        let Some(rcpt) = self.ctx.recipient else {
            return Ok(());
        };
        if rcpt.is_postmaster() {
            return Ok(());
        }
        if self.policy.delay_reject {
            self.client_stage().await?;
            self.helo_stage().await?;
            self.sender_stage().await?;
        }
        let subject = Subject::new(rcpt.to_string(), RECIPIENT, Some(AccessKind::Recipient));
        let p = self.policy;
        let (first, second) = match p.relay_before_recipient {
            true => (&p.relay, &p.recipient),
            false => (&p.recipient, &p.relay),
        };
        self.run_list(first, &subject).await?;
        self.run_list(second, &subject).await?;
        if let Some(deferral) = self.defer_if_permit.take() {
            return Err(deferral);
        }
        if self.policy.reject_unlisted_recipient && !self.rcpt_maps_checked {
            self.rcpt_maps_checked = true;
            if let Verdict::Refuse(r) = self.check_rcpt_maps(rcpt, RECIPIENT) {
                return Err(r);
            }
        }
        Ok(())
    }

    async fn data_stage(&mut self) -> Result<(), Refusal> {
        let subject = Subject::new("DATA".into(), DATA, None);
        self.run_list(&self.policy.data, &subject).await?;
        match self.defer_if_permit.take() {
            Some(deferral) => Err(deferral),
            None => Ok(()),
        }
    }

    /// One top-level list; `defer_if_reject` lasts only within it.
    async fn run_list(&mut self, list: &[Restriction], subject: &Subject) -> Result<(), Refusal> {
        self.defer_if_reject = None;
        self.warn_if_reject = false;
        match self.generic(list, subject).await {
            Verdict::Refuse(r) => Err(r),
            Verdict::Dunno | Verdict::Permit | Verdict::Nested(_) => Ok(()),
        }
    }

    /// Postfix's generic_checks(): the first decisive restriction wins.
    async fn generic(&mut self, list: &[Restriction], subject: &Subject) -> Verdict {
        if self.depth > MAX_RECURSION {
            tracing::warn!("restriction classes or access tables nest too deeply");
            return Verdict::Refuse(config_error());
        }
        self.depth += 1;
        let mut result = Verdict::Dunno;
        for r in list {
            if matches!(r, Restriction::WarnIfReject) {
                self.warn_if_reject = true;
                continue;
            }
            let warn = std::mem::take(&mut self.warn_if_reject);
            self.warning = warn;
            let v = self.one(r, subject).await;
            self.warning = false;
            let v = match v {
                Verdict::Refuse(refusal) if warn => {
                    tracing::warn!(
                        "reject_warning: {}: {}",
                        self.client_namaddr(),
                        refusal.reply
                    );
                    Verdict::Dunno
                }
                v => v,
            };
            if !matches!(v, Verdict::Dunno) {
                result = v;
                break;
            }
            if self.defer_if_permit.is_some() && self.defer_if_reject.is_some() {
                break;
            }
        }
        self.depth -= 1;
        result
    }

    /// A policy refusal, turned into the pending deferral when
    /// defer_if_reject was raised.
    fn reject(&self, code: u16, dsn: EnhancedStatus, text: String) -> Verdict {
        if code / 100 == 5
            && let Some(d) = &self.defer_if_reject
        {
            return Verdict::Refuse(d.clone());
        }
        Verdict::Refuse(Refusal::new(code, dsn, text))
    }

    /// One restriction. Those that ask the network wait here; nested
    /// lists are evaluated here (boxed: they recurse).
    async fn one(&mut self, r: &Restriction, s: &Subject) -> Verdict {
        let v = match r {
            Restriction::Class(name) => match self.policy.classes.get(name) {
                Some(list) => Box::pin(self.generic(list, s)).await,
                None => Verdict::Refuse(config_error()),
            },
            Restriction::Dns(list, site) => self.dns_list(*list, site).await,
            Restriction::Sleep(pause) => {
                tokio::time::sleep(*pause).await;
                Verdict::Dunno
            }
            r => self.immediate(r, s),
        };
        match v {
            Verdict::Nested(n) => match Box::pin(self.generic(&n.list, &n.subject)).await {
                Verdict::Permit if n.permit_is_dunno => Verdict::Dunno,
                v => v,
            },
            v => v,
        }
    }

    /// The restrictions that are decided from what is at hand.
    fn immediate(&mut self, r: &Restriction, s: &Subject) -> Verdict {
        use Restriction as R;
        let codes = &self.policy.codes;
        let ctx = self.ctx;
        match r {
            R::Permit => Verdict::Permit,
            R::Reject => self.reject(
                codes.reject,
                EnhancedStatus::of(5, 7, 1),
                format!("<{}>: {} rejected: Access denied", s.name, s.class),
            ),
            R::Defer => self.reject(
                codes.defer,
                EnhancedStatus::of(4, 3, 2),
                format!("<{}>: {} rejected: Try again later", s.name, s.class),
            ),
            R::DeferIfPermit => {
                self.defer_if_permit.get_or_insert_with(|| {
                    Refusal::new(
                        450,
                        EnhancedStatus::of(4, 7, 0),
                        format!(
                            "<{}>: {} rejected: defer_if_permit requested",
                            s.name, s.class
                        ),
                    )
                });
                Verdict::Dunno
            }
            R::DeferIfReject => {
                self.defer_if_reject.get_or_insert_with(|| {
                    Refusal::new(
                        450,
                        EnhancedStatus::of(4, 7, 0),
                        format!(
                            "<{}>: {} rejected: defer_if_reject requested",
                            s.name, s.class
                        ),
                    )
                });
                Verdict::Dunno
            }
            R::WarnIfReject | R::RejectUnauthPipelining => Verdict::Dunno,
            R::PermitMynetworks => match self.policy.mynetworks.contains(ctx.client_addr) {
                true => Verdict::Permit,
                false => Verdict::Dunno,
            },
            R::PermitSaslAuthenticated => match ctx.sasl_username {
                Some(_) => Verdict::Permit,
                None => Verdict::Dunno,
            },
            R::PermitAuthDestination => match ctx.recipient {
                Some(rcpt) => match self.auth_destination(rcpt) {
                    Ok(true) => Verdict::Permit,
                    Ok(false) => Verdict::Dunno,
                    Err(v) => v,
                },
                None => Verdict::Dunno,
            },
            R::RejectUnauthDestination | R::DeferUnauthDestination => {
                let Some(rcpt) = ctx.recipient else {
                    return Verdict::Dunno;
                };
                match self.auth_destination(rcpt) {
                    Ok(true) => Verdict::Dunno,
                    Ok(false) => {
                        let text = format!("<{rcpt}>: Relay access denied");
                        match r {
                            R::RejectUnauthDestination => {
                                self.reject(codes.relay, EnhancedStatus::of(5, 7, 1), text)
                            }
                            _ => Verdict::Refuse(Refusal::new(
                                454,
                                EnhancedStatus::of(4, 7, 1),
                                text,
                            )),
                        }
                    }
                    Err(v) => v,
                }
            }
            R::RejectUnlistedRecipient => match ctx.recipient {
                Some(rcpt) if !self.rcpt_maps_checked => {
                    // Only a real check counts as done (not a warning).
                    self.rcpt_maps_checked = !self.warning;
                    self.check_rcpt_maps(rcpt, RECIPIENT)
                }
                _ => Verdict::Dunno,
            },
            R::RejectUnlistedSender => match ctx.sender {
                Some(sender) if !sender.is_null() && !self.sender_maps_checked => {
                    self.sender_maps_checked = !self.warning;
                    self.check_rcpt_maps(sender, SENDER)
                }
                _ => Verdict::Dunno,
            },
            R::RejectUnknownClientHostname | R::RejectUnknownReverseClientHostname => {
                // As Postfix: RFC 7372's 4.7.25 for a name that does not
                // check out, 4.7.1 for a missing PTR; 450 while DNS fails.
                let (status, what, detail) = match r {
                    R::RejectUnknownClientHostname => (ctx.name_status, "hostname", 25),
                    _ => (ctx.reverse_status, "reverse hostname", 1),
                };
                if status.is_ok() {
                    return Verdict::Dunno;
                }
                let code = if status == NameStatus::Temporary {
                    450
                } else {
                    codes.unknown_client
                };
                self.reject(
                    code,
                    EnhancedStatus::of(4, 7, detail),
                    format!(
                        "Client host rejected: cannot find your {what}, [{}]",
                        ctx.client_addr.to_canonical()
                    ),
                )
            }
            R::RejectInvalidHeloHostname => match ctx.helo {
                Some(helo) if !valid_helo(helo) => self.reject(
                    codes.invalid_hostname,
                    EnhancedStatus::of(5, 5, 2),
                    match helo.starts_with('[') {
                        true => format!("<{helo}>: {HELO} rejected: Invalid ip address"),
                        false => format!("<{helo}>: {HELO} rejected: Invalid name"),
                    },
                ),
                _ => Verdict::Dunno,
            },
            R::RejectNonFqdnHeloHostname => match ctx.helo {
                Some(helo) => self.unqualified_helo(
                    helo,
                    codes.non_fqdn,
                    EnhancedStatus::of(5, 5, 2),
                    "need fully-qualified hostname",
                ),
                None => Verdict::Dunno,
            },
            R::RejectUnknownHeloHostname => match ctx.helo {
                Some(helo) => self.unqualified_helo(
                    helo,
                    codes.unknown_hostname,
                    EnhancedStatus::of(4, 7, 1),
                    "Host not found",
                ),
                None => Verdict::Dunno,
            },
            R::RejectNonFqdnSender => match ctx.sender {
                Some(a) if !a.is_null() => self.non_fqdn_address(a, SENDER),
                _ => Verdict::Dunno,
            },
            R::RejectNonFqdnRecipient => match ctx.recipient {
                Some(a) => self.non_fqdn_address(a, RECIPIENT),
                None => Verdict::Dunno,
            },
            R::RejectUnknownSenderDomain => match ctx.sender {
                Some(a) if !a.is_null() => self.unknown_address(a, SENDER),
                _ => Verdict::Dunno,
            },
            R::RejectUnknownRecipientDomain => match ctx.recipient {
                Some(a) => self.unknown_address(a, RECIPIENT),
                None => Verdict::Dunno,
            },
            R::RejectSpfFail => match ctx
                .spf
                .and_then(|r| crate::verify::spf_refusal(r, ctx.client_addr))
            {
                Some((code, dsn, text)) => Verdict::Refuse(Refusal::new(code, dsn, text)),
                None => Verdict::Dunno,
            },
            R::SenderLogin(check) => match ctx.sender {
                Some(a) if !a.is_null() => self.sender_login(*check, a),
                _ => Verdict::Dunno,
            },
            R::Access(kind, table) => self.access(*kind, table, s),
            R::BareMap(table) => match s.acl {
                Some(kind) => self.access(kind, table, s),
                None => {
                    tracing::warn!(
                        "bare table {} in {} restrictions needs check_*_access",
                        table.spec(),
                        s.class
                    );
                    Verdict::Refuse(config_error())
                }
            },
            R::Class(_) | R::Dns(..) | R::Sleep(_) => unreachable!("evaluated by one()"),
            R::RejectUnknownForwardClientHostname => {
                // A PTR name whose addresses do not list the client.
                if !ctx.reverse_status.is_ok() || ctx.name_status.is_ok() {
                    return Verdict::Dunno;
                }
                let code = match ctx.name_status {
                    NameStatus::Temporary => 450,
                    _ => codes.unknown_client,
                };
                self.reject(
                    code,
                    EnhancedStatus::of(4, 7, 25),
                    format!(
                        "Client host rejected: cannot find your hostname, [{}]",
                        ctx.client_addr.to_canonical()
                    ),
                )
            }
        }
    }

    /// reject_non_fqdn_helo_hostname and reject_unknown_helo_hostname (no
    /// DNS lookup is made): an address literal must be valid and a name
    /// fully qualified; `code`, `dsn` and `why` say how a name fails.
    fn unqualified_helo(&self, helo: &str, code: u16, dsn: EnhancedStatus, why: &str) -> Verdict {
        if helo.starts_with('[') {
            if valid_helo(helo) {
                return Verdict::Dunno;
            }
            return self.reject(
                self.policy.codes.invalid_hostname,
                EnhancedStatus::of(5, 5, 2),
                format!("<{helo}>: {HELO} rejected: Invalid ip address"),
            );
        }
        if is_fqdn(helo) {
            return Verdict::Dunno;
        }
        self.reject(code, dsn, format!("<{helo}>: {HELO} rejected: {why}"))
    }

    /// Postfix's reject_*sender_login_mismatch: the owners of `sender`
    /// in smtpd_sender_login_maps against the SASL login.
    fn sender_login(&self, check: LoginCheck, sender: &Address) -> Verdict {
        let owners = match self.sender_owners(sender) {
            Ok(o) => o,
            Err(v) => return v,
        };
        let refuse = |why: String| {
            Verdict::Refuse(Refusal::new(
                553,
                EnhancedStatus::of(5, 7, 1),
                format!("<{sender}>: {SENDER} rejected: {why}"),
            ))
        };
        match (self.ctx.sasl_username, owners) {
            (Some(user), owners)
                if matches!(check, LoginCheck::Mismatch | LoginCheck::Authenticated)
                    || (check == LoginCheck::Known && owners.is_some()) =>
            {
                let owned = owners
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o.eq_ignore_ascii_case(user));
                match owned {
                    true => Verdict::Dunno,
                    false => refuse(format!("not owned by user {user}")),
                }
            }
            (None, Some(_))
                if matches!(
                    check,
                    LoginCheck::Mismatch | LoginCheck::Unauthenticated | LoginCheck::Known
                ) =>
            {
                refuse("not logged in".into())
            }
            _ => Verdict::Dunno,
        }
    }

    /// The logins that own `sender`: looked up as the whole address, then
    /// without its address extension, then as `@domain`.
    fn sender_owners(&self, sender: &Address) -> Result<Option<Vec<String>>, Verdict> {
        let maps = &self.policy.sender_login_maps;
        if maps.is_empty() {
            return Ok(None);
        }
        let full = sender.to_string().to_ascii_lowercase();
        let mut keys = vec![full.clone()];
        if let Some((local, domain)) = full.rsplit_once('@') {
            let delims = &self.policy.recipient_delimiter;
            if let Some(i) = local.find(|c| !delims.is_empty() && delims.contains(c)) {
                keys.push(format!("{}@{domain}", &local[..i]));
            }
            keys.push(format!("@{domain}"));
        }
        for key in keys {
            match maps.lookup(&key) {
                Ok(Some(v)) => {
                    let owners = v
                        .split([',', ' ', '\t'])
                        .filter(|o| !o.is_empty())
                        .map(str::to_string)
                        .collect();
                    return Ok(Some(owners));
                }
                Ok(None) => {}
                Err(e) => return Err(table_failure(&e, &full)),
            }
        }
        Ok(None)
    }

    /// Resolves an address; a table failure becomes Postfix's temporary
    /// lookup failure (or its configuration error, for a missing table).
    fn resolve(&self, addr: &Address) -> Result<Resolved, Verdict> {
        resolve(&self.policy.router, addr).map_err(|e| match e {
            RoutingError::Table { source, .. } => table_failure(&source, &addr.to_string()),
            e => {
                tracing::warn!("{e}");
                lookup_failure(&addr.to_string())
            }
        })
    }

    /// Postfix's permit_auth_destination, as the router decides it.
    fn auth_destination(&self, rcpt: &Address) -> Result<bool, Verdict> {
        let res = self.resolve(rcpt)?;
        Ok(self.policy.router.is_authorized_route(&res.route))
    }

    fn non_fqdn_address(&self, a: &Address, class: &str) -> Verdict {
        if a.is_address_literal() {
            return Verdict::Dunno;
        }
        match a.domain() {
            Some(d) if is_fqdn(d) => Verdict::Dunno,
            _ => self.reject(
                self.policy.codes.non_fqdn,
                EnhancedStatus::of(5, 5, 2),
                format!("<{a}>: {class} rejected: need fully-qualified address"),
            ),
        }
    }

    /// reject_unknown_*_domain without DNS: local and virtual destinations
    /// and address literals pass; a domain that is not a valid host name or
    /// has no dot is "not found".
    fn unknown_address(&self, a: &Address, class: &str) -> Verdict {
        let res = match self.resolve(a) {
            Ok(r) => r,
            Err(v) => return v,
        };
        if res.class.is_final() || res.domain.starts_with('[') || is_fqdn(&res.domain) {
            return Verdict::Dunno;
        }
        let detail = if class == SENDER { 8 } else { 2 };
        self.reject(
            self.policy.codes.unknown_address,
            EnhancedStatus::of(4, 1, detail),
            format!("<{a}>: {class} rejected: Domain not found"),
        )
    }
}

/// Where an address really goes, as the router resolves it, with the
/// lower-case parts that access and recipient tables are asked for.
#[derive(Debug, Clone)]
struct Resolved {
    local: String,
    domain: String,
    class: AddressClass,
    route: postern_routing::Route,
}

impl Resolved {
    /// `local@domain`, the key for access and recipient tables.
    fn address(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

/// The address in Postfix's internal form, canonicalized (an unqualified
/// one gets `@$myorigin`) and resolved, as trivial-rewrite answers smtpd.
fn resolve(router: &Router, addr: &Address) -> Result<Resolved, RoutingError> {
    let internal = match addr.domain() {
        Some(d) => format!("{}@{d}", addr.local()),
        None => addr.local().to_string(),
    };
    let route = router.resolve(&router.canonicalize(&internal))?;
    let lower = route.recipient.to_lowercase();
    let (local, domain) = lower.rsplit_once('@').unwrap_or((&lower, ""));
    Ok(Resolved {
        local: local.to_string(),
        domain: domain.to_string(),
        class: route.class,
        route,
    })
}

/// `451 4.3.5 Server configuration error`, Postfix's answer when a
/// restriction cannot be evaluated as configured.
fn config_error() -> Refusal {
    Refusal::new(
        451,
        EnhancedStatus::of(4, 3, 5),
        "Server configuration error".into(),
    )
}

/// The answer to a failed table lookup: a table that is not there is the
/// configuration's error (`451 4.3.5 Server configuration error`, as
/// Postfix answers for its surrogate tables), anything else a passing
/// `451 4.3.0 <name>: Temporary lookup failure`.
fn table_failure(e: &TableError, name: &str) -> Verdict {
    match e {
        // Its absence was logged when it was opened.
        TableError::Unavailable { spec, .. } => {
            tracing::warn!("{spec} lookup error for \"{name}\"");
            Verdict::Refuse(config_error())
        }
        e => {
            tracing::warn!("{e}");
            lookup_failure(name)
        }
    }
}

/// `451 4.3.0 <name>: Temporary lookup failure`.
fn lookup_failure(name: &str) -> Verdict {
    Verdict::Refuse(Refusal::new(
        451,
        EnhancedStatus::of(4, 3, 0),
        format!("<{name}>: Temporary lookup failure"),
    ))
}

/// Postfix's valid_hostname(): labels of letters, digits, `-` and `_`, not
/// starting or ending with `-`, at most 63 characters, 255 in all, and not
/// all-numeric. One trailing dot is allowed.
fn valid_hostname(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut all_numeric = true;
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return false;
        }
        if !label.chars().all(|c| c.is_ascii_digit()) {
            all_numeric = false;
        }
    }
    !all_numeric
}

fn is_fqdn(name: &str) -> bool {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    valid_hostname(name) && trimmed.contains('.')
}

/// A HELO name is valid as a host name, an address literal `[1.2.3.4]` /
/// `[IPv6:...]`, or (Postfix's backward compatibility) a bare address.
fn valid_helo(helo: &str) -> bool {
    if let Some(inner) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let bare = match inner.get(..5) {
            Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &inner[5..],
            _ => inner,
        };
        return bare.parse::<IpAddr>().is_ok();
    }
    valid_hostname(helo) || helo.parse::<IpAddr>().is_ok()
}
