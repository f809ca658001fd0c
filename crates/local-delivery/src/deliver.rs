//! One delivery request: for each recipient, resolve it (local user,
//! aliases, .forward, or virtual mailbox), carry out every destination it
//! expands to, and fold the outcomes into one `RecipientResult`.

use postern_envelope::{EnhancedStatus, Relay};
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_auth::ArcSealer;
use postern_config::{Maps, Params};
use postern_ipc::delivery::{
    AddressClass, DeliveryRecipient, DeliveryRequest, DeliveryStatus, RecipientResult,
};
use postern_routing::LocalDomains;

use crate::command::{self, CommandJob};
use crate::helper::{self, Job, Kind};
use crate::mailbox::LockPolicy;
use crate::outcome::Outcome;
use crate::resolve::{self, Account, Dest, Env, Item, Rules};

/// A queued message spooled to an unlinked temporary file.
#[derive(Debug)]
pub struct Spooled {
    pub file: File,
    /// Delivered-To header values, lowercased, for loop detection.
    pub delivered_to: Vec<String>,
}

impl Spooled {
    /// A new reader at offset 0 with its own file position, so several
    /// deliveries can read the message independently.
    pub fn reader(&self) -> std::io::Result<File> {
        File::open(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// Reads the header section for the Delivered-To loop check.
    pub fn scan_headers(&mut self, limit: usize) -> std::io::Result<()> {
        let mut r = BufReader::new(self.reader()?);
        self.delivered_to = crate::copy::read_headers(&mut r, limit)?
            .into_iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("delivered-to"))
            .map(|(_, v)| v.to_lowercase())
            .collect();
        Ok(())
    }
}

/// The local domains of the configuration in force, or why there are
/// none (a missing table file).
pub type Local = Result<LocalDomains, String>;

/// State kept across requests: opened lookup tables (they reload
/// themselves when their files change) and the local domains.
pub struct Agent {
    maps: Mutex<HashMap<String, Maps>>,
    /// postern-routing's local domains (which qmgr routes by), built once
    /// per configuration.
    local: Box<dyn Fn() -> Local + Send + Sync>,
    /// The ARC sealer of forwarded mail (`arc_sealing_key`), built once
    /// per configuration.
    sealer: Box<dyn Fn() -> Sealer + Send + Sync>,
}

/// The ARC sealer, none, or why it cannot be built (forwarded mail then
/// goes unsealed, with a warning).
pub type Sealer = Result<Option<Arc<ArcSealer>>, String>;

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").finish_non_exhaustive()
    }
}

impl Agent {
    pub fn new(
        local: impl Fn() -> Local + Send + Sync + 'static,
        sealer: impl Fn() -> Sealer + Send + Sync + 'static,
    ) -> Agent {
        Agent {
            maps: Mutex::default(),
            local: Box::new(local),
            sealer: Box::new(sealer),
        }
    }

    /// Opens (or reuses) the tables named by parameter `name`.
    fn maps(&self, params: &Params, name: &str) -> Result<Maps, String> {
        let key = format!("{name}={}", params.get(name));
        self.cached(key, || params.maps(name))
    }

    fn cached(
        &self,
        key: String,
        open: impl FnOnce() -> Result<Maps, postern_config::TableError>,
    ) -> Result<Maps, String> {
        let mut cache = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(&key) {
            return Ok(m.clone());
        }
        // A table that fails to open is not cached: the next request retries.
        let m = open().map_err(|e| e.to_string())?;
        cache.insert(key, m.clone());
        Ok(m)
    }

    /// Delivers `msg` to every recipient of `req`.
    pub async fn deliver(
        &self,
        params: &Params,
        req: &DeliveryRequest,
        msg: &Spooled,
    ) -> Vec<RecipientResult> {
        let ctx = Ctx::new(self, params);
        let mut done: HashMap<String, Outcome> = HashMap::new();
        let mut results = Vec::with_capacity(req.recipients.len());
        for rcpt in &req.recipients {
            let started = Instant::now();
            let outcome = ctx.recipient(req, rcpt, msg, &mut done).await;
            // qmgr writes the Postfix `to=<...>, status=...` line from
            // this result; a second one here would count mail twice.
            tracing::debug!(
                "{}: local delivery for <{}>: dsn={}, status={} ({})",
                req.queue_id,
                rcpt.address,
                outcome.dsn,
                outcome.status.name(),
                outcome.text
            );
            results.push(RecipientResult {
                index: rcpt.index,
                status: outcome.status,
                dsn: outcome.dsn,
                relay: Relay::Local,
                detail: outcome.text,
                remote_reply: None,
                connect_secs: 0.0,
                transmit_secs: started.elapsed().as_secs_f64(),
            });
        }
        results
    }
}

/// One request's view of the configuration.
struct Ctx<'a> {
    agent: &'a Agent,
    params: &'a Params,
    local: Result<LocalDomains, String>,
    rules: Rules,
    hostname: String,
    lock: LockPolicy,
}

impl<'a> Ctx<'a> {
    fn new(agent: &'a Agent, params: &'a Params) -> Ctx<'a> {
        Ctx {
            agent,
            params,
            local: (agent.local)(),
            rules: Rules {
                delimiter: params.get("recipient_delimiter"),
                allow_commands: params.words("allow_mail_to_commands"),
                allow_files: params.words("allow_mail_to_files"),
                propagate: params.words("propagate_unmatched_extensions"),
                myorigin: params.get("myorigin"),
            },
            hostname: params.get("myhostname"),
            lock: LockPolicy {
                attempts: u32::try_from(params.int("deliver_lock_attempts")).unwrap_or(1),
                delay: params.time("deliver_lock_delay"),
                stale_after: params.time("stale_lock_time"),
            },
        }
    }

    async fn recipient(
        &self,
        req: &DeliveryRequest,
        rcpt: &DeliveryRecipient,
        msg: &Spooled,
        done: &mut HashMap<String, Outcome>,
    ) -> Outcome {
        let address = rcpt.address.as_str();
        let lower = address.to_lowercase();
        if msg.delivered_to.contains(&lower) {
            return Outcome::failed(
                EnhancedStatus::of(5, 4, 6),
                format!("mail forwarding loop for {address}"),
            );
        }
        let (local, domain) = match lower.rsplit_once('@') {
            Some((l, d)) => (l.to_string(), d.to_string()),
            None => (lower.clone(), String::new()),
        };
        let local = match local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
            Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
            None => local,
        };
        // qmgr's router classed the recipient; the class decides.
        if rcpt.class == AddressClass::VirtualMailbox {
            return self
                .virtual_mailbox(req, address, &lower, &domain, msg)
                .await;
        }
        if let Err(e) = &self.local {
            tracing::warn!("mydestination: {e}");
            return Outcome::failed(EnhancedStatus::TEMP_SYSTEM, "table lookup failure");
        }
        let env = match SysEnv::new(self) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!("alias_maps: {e}");
                return Outcome::failed(EnhancedStatus::of(4, 3, 0), "alias database unavailable");
            }
        };
        let items = resolve::resolve_local(&env, &self.rules, &local, address);
        if let Some(o) = self.fallback(&items) {
            return o;
        }
        self.carry_out(req, address, items, msg, done).await
    }

    /// With `fallback_transport` set, a recipient that is no local user
    /// (its whole expansion is "unknown user") goes back to qmgr, which
    /// routes it there, instead of bouncing (Postfix local(8)'s
    /// fallback_transport; qmgr holds the routing here).
    fn fallback(&self, items: &[Item]) -> Option<Outcome> {
        if self.params.get("fallback_transport").trim().is_empty() {
            return None;
        }
        let unknown = |i: &Item| matches!(i, Item::Fail(o) if o.dsn == "5.1.1" && o.text.starts_with("unknown user:"));
        match items.first() {
            Some(Item::Fail(o)) if items.iter().all(unknown) => Some(Outcome {
                status: DeliveryStatus::Fallback,
                ..o.clone()
            }),
            _ => None,
        }
    }

    /// Performs each destination and folds the outcomes into one.
    async fn carry_out(
        &self,
        req: &DeliveryRequest,
        address: &str,
        items: Vec<Item>,
        msg: &Spooled,
        done: &mut HashMap<String, Outcome>,
    ) -> Outcome {
        let mut outcomes = Vec::new();
        // Remote addresses by envelope sender (an owner- alias changes it),
        // in the order they came.
        let mut remote: Vec<(String, Vec<String>)> = Vec::new();
        for item in items {
            let (dest, sender) = match item {
                Item::Fail(o) => {
                    outcomes.push(o);
                    continue;
                }
                Item::Deliver(d) => (d, req.sender.clone()),
                Item::DeliverAs(d, sender) => (d, sender),
            };
            if let Dest::Remote(a) = dest {
                match remote.iter_mut().find(|(s, _)| *s == sender) {
                    Some((_, list)) => list.push(a),
                    None => remote.push((sender, vec![a])),
                }
                continue;
            }
            let key = format!("{dest:?}");
            if let Some(o) = done.get(&key) {
                outcomes.push(o.clone());
                continue;
            }
            let o = if sender == req.sender {
                self.destination(req, address, dest, msg).await
            } else {
                let req = DeliveryRequest {
                    sender,
                    ..req.clone()
                };
                self.destination(&req, address, dest, msg).await
            };
            done.insert(key, o.clone());
            outcomes.push(o);
        }
        for (sender, list) in remote {
            let req = DeliveryRequest {
                sender,
                ..req.clone()
            };
            outcomes.push(self.forward(&req, address, &list, msg).await);
        }
        fold(outcomes)
    }

    async fn destination(
        &self,
        req: &DeliveryRequest,
        address: &str,
        dest: Dest,
        msg: &Spooled,
    ) -> Outcome {
        let base = |kind, path: PathBuf, user: &str| Job {
            kind,
            path,
            sender: req.sender.clone(),
            delivered_to: address.to_string(),
            limit: self.params.int("mailbox_size_limit").max(0) as u64,
            user: user.to_string(),
            chown: None,
            hostname: self.hostname.clone(),
            lock: self.lock,
        };
        match dest {
            Dest::Mailbox(acct) => {
                // Taken as written: `$EXTENSION` and friends are for the
                // shell, from the environment the command gets.
                let mailbox_command = self.params.get("mailbox_command");
                let mailbox_command = mailbox_command.trim();
                if !mailbox_command.is_empty() {
                    let cmd = mailbox_command.to_string();
                    return self.command(req, address, cmd, &acct, msg).await;
                }
                let home_mailbox = self.params.get("home_mailbox");
                let spool = self.params.path("mail_spool_directory");
                let spool_text = self.params.get("mail_spool_directory");
                if !home_mailbox.is_empty() {
                    let kind = if home_mailbox.ends_with('/') {
                        Kind::Maildir
                    } else {
                        Kind::Mailbox
                    };
                    let job = base(kind, acct.home.join(&home_mailbox), &acct.name);
                    run_helper(job, Some((acct.uid, acct.gid)), msg).await
                } else if spool_text.ends_with('/') {
                    let job = base(Kind::Maildir, spool.join(&acct.name), &acct.name);
                    run_helper(job, Some((acct.uid, acct.gid)), msg).await
                } else {
                    let mut job = base(Kind::Mailbox, spool.join(&acct.name), &acct.name);
                    let ids = spool_rights(&spool, &acct);
                    if ids.0 != acct.uid {
                        job.chown = Some((acct.uid, acct.gid));
                    }
                    run_helper(job, Some(ids), msg).await
                }
            }
            Dest::File { path, rights } => {
                let kind = if path.ends_with('/') {
                    Kind::Maildir
                } else {
                    Kind::File
                };
                let job = base(kind, PathBuf::from(&path), &rights.name);
                run_helper(job, Some((rights.uid, rights.gid)), msg).await
            }
            Dest::Command { command, rights } => {
                self.command(req, address, command, &rights, msg).await
            }
            // Collected by the caller and forwarded together.
            Dest::Remote(a) => Outcome::internal(format!("internal error: stray address {a}")),
        }
    }

    /// Pipes the message to `command` as `rights` (alias, .forward,
    /// :include: or mailbox_command).
    async fn command(
        &self,
        req: &DeliveryRequest,
        address: &str,
        command: String,
        rights: &Account,
        msg: &Spooled,
    ) -> Outcome {
        let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
        let (user, ext) = self.rules.split_extension(local);
        let env = vec![
            ("HOME".to_string(), rights.home.display().to_string()),
            ("LOGNAME".to_string(), rights.name.clone()),
            ("USER".to_string(), rights.name.clone()),
            ("SHELL".to_string(), rights.shell.display().to_string()),
            ("SENDER".to_string(), req.sender.clone()),
            ("RECIPIENT".to_string(), address.to_string()),
            ("LOCAL".to_string(), local.to_string()),
            ("USER_PART".to_string(), user.to_string()),
            ("EXTENSION".to_string(), ext.unwrap_or("").to_string()),
            ("DOMAIN".to_string(), domain.to_string()),
            ("ORIGINAL_RECIPIENT".to_string(), address.to_string()),
        ];
        let job = CommandJob {
            command,
            uid: rights.uid,
            gid: rights.gid,
            home: rights.home.clone(),
            env,
            sender: req.sender.clone(),
            delivered_to: address.to_string(),
            time_limit: self.params.time("command_time_limit"),
        };
        let file = match msg.reader() {
            Ok(f) => f,
            Err(e) => {
                return Outcome::internal(format!("cannot reopen queued message: {e}"));
            }
        };
        tokio::task::spawn_blocking(move || command::run(&job, file))
            .await
            .unwrap_or_else(|e| Outcome::internal(format!("command delivery: {e}")))
    }

    async fn forward(
        &self,
        req: &DeliveryRequest,
        address: &str,
        remote: &[String],
        msg: &Spooled,
    ) -> Outcome {
        let file = match msg.reader() {
            Ok(f) => f,
            Err(e) => return Outcome::internal(format!("cannot reopen queued message: {e}")),
        };
        let qmgr = self
            .params
            .path("queue_directory")
            .join(postern_ipc::qmgr::SOCKET);
        let timeout = self
            .params
            .time("ipc_timeout")
            .min(Duration::from_secs(300));
        // Forwarded mail passes the content filter as all mail does in
        // Postfix, where cleanup reads content_filter.
        let filter = self.params.filter("content_filter");
        let sealer = match (self.agent.sealer)() {
            Ok(sealer) => sealer,
            Err(e) => {
                tracing::warn!("{}: ARC sealing unusable: {e}", req.queue_id);
                None
            }
        };
        let hop = crate::forward::Hop {
            qmgr: &qmgr,
            delivered_to: address,
            filter,
            timeout,
            seal: sealer.as_deref().map(|s| (s, self.hostname.as_str())),
        };
        match crate::forward::forward(&hop, req, remote, file).await {
            Ok(id) => Outcome::sent(format!("forwarded as {id}")),
            Err(e) => {
                tracing::warn!("{}: forwarding for {address}: {e}", req.queue_id);
                Outcome::internal(format!("cannot forward mail: {e}"))
            }
        }
    }

    /// Whether an address an alias or .forward names is delivered here:
    /// no domain, or a local domain as the router decides it. A lookup
    /// that fails forwards the address through qmgr, whose routing defers
    /// it if the table stays broken.
    fn is_local_domain(&self, domain: &str) -> bool {
        let Ok(local) = &self.local else {
            return false;
        };
        domain.is_empty()
            || local.contains(domain).unwrap_or_else(|e| {
                tracing::warn!("mydestination: {e}");
                false
            })
    }

    /// Postfix virtual(8): the full address (with, then without the
    /// extension), then `@domain`, in
    /// virtual_mailbox_maps; the result is a path under
    /// virtual_mailbox_base, a Maildir when it ends in `/`. Written as
    /// mail_owner.
    async fn virtual_mailbox(
        &self,
        req: &DeliveryRequest,
        address: &str,
        lower: &str,
        domain: &str,
        msg: &Spooled,
    ) -> Outcome {
        let maps = match self.agent.maps(self.params, "virtual_mailbox_maps") {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("virtual_mailbox_maps: {e}");
                return Outcome::failed(EnhancedStatus::of(4, 3, 0), "table lookup failure");
            }
        };
        // As virtual(8): user+ext@domain, user@domain, then @domain.
        let mut keys = vec![lower.to_string()];
        if let Some((local, _)) = lower.rsplit_once('@')
            && let (user, Some(_)) = self.rules.split_extension(local)
        {
            keys.push(format!("{user}@{domain}"));
        }
        keys.push(format!("@{domain}"));
        let mut found = Ok(None);
        for key in &keys {
            found = maps.lookup(key);
            if !matches!(found, Ok(None)) {
                break;
            }
        }
        let rel = match found {
            Ok(Some(v)) => v,
            Ok(None) => return resolve::unknown_user(lower),
            Err(e) => {
                tracing::warn!("virtual_mailbox_maps: {e}");
                return Outcome::failed(EnhancedStatus::of(4, 3, 0), "table lookup failure");
            }
        };
        let base = self.params.path("virtual_mailbox_base");
        let path = base.join(rel.trim_start_matches('/'));
        let kind = if rel.ends_with('/') {
            Kind::Maildir
        } else {
            Kind::Mailbox
        };
        let owner = self.params.get("mail_owner");
        let ids = match postern_daemon::privs::mail_owner_ids(&owner) {
            Ok((u, g)) => (u.as_raw(), g.as_raw()),
            // Not root (development): the helper keeps our own ids anyway.
            Err(_) if !nix::unistd::geteuid().is_root() => (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
            Err(e) => return Outcome::internal(e.to_string()),
        };
        let limit = self
            .params
            .get("virtual_mailbox_limit")
            .trim()
            .parse::<u64>()
            .unwrap_or(51_200_000);
        let job = Job {
            kind,
            path,
            sender: req.sender.clone(),
            delivered_to: address.to_string(),
            limit,
            user: lower.to_string(),
            chown: None,
            hostname: self.hostname.clone(),
            lock: self.lock,
        };
        run_helper(job, Some(ids), msg).await
    }
}

/// Who writes a spool mailbox, as Postfix decides: the recipient in a
/// world-writable spool, the recipient with the spool's group in a
/// group-writable one, otherwise root (and the new file is chowned).
fn spool_rights(spool: &Path, acct: &Account) -> (u32, u32) {
    match std::fs::metadata(spool) {
        Err(_) => (acct.uid, acct.gid),
        Ok(m) if m.permissions().mode() & 0o002 != 0 => (acct.uid, acct.gid),
        Ok(m) if m.permissions().mode() & 0o020 != 0 => (acct.uid, m.gid()),
        Ok(_) => (0, 0),
    }
}

async fn run_helper(job: Job, ids: Option<(u32, u32)>, msg: &Spooled) -> Outcome {
    let file = match msg.reader() {
        Ok(f) => f,
        Err(e) => return Outcome::internal(format!("cannot reopen queued message: {e}")),
    };
    tokio::task::spawn_blocking(move || helper::spawn(&job, ids, file))
        .await
        .unwrap_or_else(|e| Outcome::internal(format!("delivery helper: {e}")))
}

/// One result for a recipient from its destinations: any deferral defers
/// (the whole recipient is tried again), else any bounce bounces, else sent.
fn fold(outcomes: Vec<Outcome>) -> Outcome {
    if outcomes.is_empty() {
        return Outcome::sent("discarded: expanded to nothing");
    }
    for status in [DeliveryStatus::Deferred, DeliveryStatus::Bounced] {
        if let Some(o) = outcomes.iter().find(|o| o.status == status) {
            return o.clone();
        }
    }
    let mut texts: Vec<&str> = Vec::new();
    for o in &outcomes {
        if !texts.contains(&o.text.as_str()) {
            texts.push(&o.text);
        }
    }
    Outcome::sent(texts.join(", "))
}

/// The system behind [`resolve::Env`]: alias_maps, the password file and
/// users' files.
struct SysEnv<'a> {
    ctx: &'a Ctx<'a>,
    aliases: Maps,
    default_privs: String,
}

impl<'a> SysEnv<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Result<SysEnv<'a>, String> {
        Ok(SysEnv {
            ctx,
            aliases: ctx.agent.maps(ctx.params, "alias_maps")?,
            default_privs: ctx.params.get("default_privs"),
        })
    }

    /// Rights of a file's owner, unless root owns it (then None).
    fn owner_rights(uid: u32) -> Option<Account> {
        if uid == 0 {
            return None;
        }
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => Some(account(u)),
            _ => Some(Account {
                name: uid.to_string(),
                uid,
                gid: uid,
                home: "/".into(),
                shell: "/bin/sh".into(),
            }),
        }
    }

    fn default_privs(&self) -> Result<Account, String> {
        match nix::unistd::User::from_name(&self.default_privs) {
            Ok(Some(u)) if !u.uid.is_root() => Ok(account(u)),
            Ok(Some(_)) => Err(format!(
                "default_privs {} must not be root",
                self.default_privs
            )),
            Ok(None) => Err(format!(
                "default_privs {}: no such user",
                self.default_privs
            )),
            Err(e) => Err(format!("default_privs {}: {e}", self.default_privs)),
        }
    }
}

/// `~/.forward`, when it is a regular file that the user (or root) owns
/// and that is not world-writable; None when there is no usable one.
fn read_forward(acct: &Account) -> Result<Option<String>, String> {
    let path = acct.home.join(".forward");
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // An unreadable home is no .forward (Postfix does the same).
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    // Someone else's file, or one anyone may write, must not redirect
    // the user's mail.
    if !meta.is_file()
        || (meta.uid() != acct.uid && meta.uid() != 0)
        || meta.permissions().mode() & 0o002 != 0
    {
        tracing::warn!("{}: ignored: not a safe .forward file", path.display());
        return Ok(None);
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Whether the permission bits let `who` read the file (root always may).
fn may_read(meta: &std::fs::Metadata, who: &Account) -> bool {
    let mode = meta.permissions().mode();
    who.uid == 0
        || (meta.uid() == who.uid && mode & 0o400 != 0)
        || (meta.gid() == who.gid && mode & 0o040 != 0)
        || mode & 0o004 != 0
}

fn account(u: nix::unistd::User) -> Account {
    Account {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir,
        shell: u.shell,
    }
}

impl Env for SysEnv<'_> {
    fn alias(&self, name: &str) -> Result<Option<(String, Account)>, String> {
        for table in self.aliases.tables() {
            if let Some(v) = table.lookup(name).map_err(|e| e.to_string())? {
                // Postfix: an alias database owned by someone other than
                // root delivers with that owner's rights, else default_privs.
                let owner = table
                    .path()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .and_then(|m| Self::owner_rights(m.uid()));
                let rights = match owner {
                    Some(r) => r,
                    None => self.default_privs()?,
                };
                return Ok(Some((v, rights)));
            }
        }
        Ok(None)
    }

    fn account(&self, name: &str) -> Result<Option<Account>, String> {
        if name.is_empty() || name.contains(['/', '\0']) {
            return Ok(None);
        }
        match nix::unistd::User::from_name(name) {
            Ok(u) => Ok(u.map(account)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn forward(&self, acct: &Account) -> Result<Option<String>, String> {
        read_forward(acct)
    }

    fn include(
        &self,
        path: &str,
        reader: &Account,
    ) -> Result<(String, Option<Account>), (EnhancedStatus, String)> {
        let fail = |e: std::io::Error| {
            let dsn = if e.kind() == std::io::ErrorKind::NotFound {
                EnhancedStatus::of(5, 3, 0)
            } else {
                EnhancedStatus::TEMP_SYSTEM
            };
            (
                dsn,
                format!(
                    "cannot open include file {path}: {}",
                    crate::mailbox::strerror(&e)
                ),
            )
        };
        if !path.starts_with('/') {
            return Err((
                EnhancedStatus::of(5, 3, 5),
                format!(":include:{path} uses a relative path"),
            ));
        }
        let meta = std::fs::metadata(path).map_err(fail)?;
        // We read as root on behalf of `reader`: a .forward must not name
        // /etc/shadow and get its lines back in a bounce.
        if !may_read(&meta, reader) {
            return Err(fail(std::io::Error::from_raw_os_error(nix::libc::EACCES)));
        }
        let text = std::fs::read_to_string(path).map_err(fail)?;
        Ok((text, Self::owner_rights(meta.uid())))
    }

    fn is_local_domain(&self, domain: &str) -> bool {
        self.ctx.is_local_domain(domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_users_go_back_to_qmgr_only_with_a_fallback_transport() {
        let params = |extra: &str| {
            let text = format!("[main]\nmyhostname = \"mail.example.local\"\n{extra}\n");
            postern_config::Config::from_str(&text, Path::new("/tmp/master.toml"), &[])
                .unwrap()
                .main()
                .clone()
        };
        let agent = Agent::new(|| Err("not needed here".into()), || Ok(None));
        let unknown = vec![Item::Fail(resolve::unknown_user("bob"))];
        let mixed = vec![
            Item::Fail(resolve::unknown_user("bob")),
            Item::Deliver(Dest::Remote("bob@example.net".into())),
        ];
        let without = params("");
        assert_eq!(Ctx::new(&agent, &without).fallback(&unknown), None);
        let with = params("fallback_transport = \"smtp:[10.0.0.1]\"");
        let ctx = Ctx::new(&agent, &with);
        let o = ctx.fallback(&unknown).expect("fallback");
        assert_eq!(o.status, DeliveryStatus::Fallback);
        assert_eq!(o.dsn, "5.1.1");
        assert_eq!(
            ctx.fallback(&mixed),
            None,
            "only a wholly unknown expansion"
        );
        assert_eq!(ctx.fallback(&[]), None);
    }

    #[test]
    fn only_a_safe_forward_file_counts() {
        let dir = tempfile::tempdir().unwrap();
        let me = Account {
            name: "me".into(),
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            home: dir.path().to_path_buf(),
            shell: "/bin/sh".into(),
        };
        assert_eq!(read_forward(&me), Ok(None));
        let f = dir.path().join(".forward");
        std::fs::write(&f, "me@example.net\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_forward(&me), Ok(Some("me@example.net\n".into())));
        // Writable by others: anyone could redirect the mail.
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read_forward(&me), Ok(None));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let other = Account {
            uid: me.uid + 1,
            ..me.clone()
        };
        let owned_by_root = nix::unistd::getuid().is_root();
        assert_eq!(read_forward(&other).unwrap().is_some(), owned_by_root);
    }

    #[test]
    fn include_permissions_follow_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("list");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let stranger = Account {
            name: "s".into(),
            uid: meta.uid() + 1000,
            gid: meta.gid() + 1000,
            home: "/".into(),
            shell: "/bin/sh".into(),
        };
        assert!(!may_read(&meta, &stranger));
        let owner = Account {
            uid: meta.uid(),
            ..stranger.clone()
        };
        assert!(meta.uid() == 0 || may_read(&meta, &owner));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(may_read(&std::fs::metadata(&f).unwrap(), &stranger));
    }

    #[test]
    fn fold_prefers_defer_then_bounce() {
        let s = Outcome::sent("delivered to mailbox");
        let b = Outcome::failed(EnhancedStatus::of(5, 1, 1), "unknown user: \"x\"");
        let d = Outcome::failed(EnhancedStatus::of(4, 2, 0), "locked");
        assert_eq!(fold(vec![s.clone(), b.clone(), d.clone()]), d);
        assert_eq!(fold(vec![s.clone(), b.clone()]), b);
        assert_eq!(
            fold(vec![
                s.clone(),
                s.clone(),
                Outcome::sent("delivered to file: /x")
            ])
            .text,
            "delivered to mailbox, delivered to file: /x"
        );
    }
}
