//! Recipient resolution, Postfix local(8) style: from one envelope
//! recipient to the destinations it expands to through aliases(5)
//! (lists, `:include:`, `|command`, `/file`, remote addresses), the
//! recipient delimiter, Unix accounts and their `~/.forward` files.
//!
//! The expansion is pure over an [`Env`] that answers table, account and
//! file questions, so it is tested without real users.

use postern_envelope::EnhancedStatus;
use std::collections::HashSet;
use std::path::PathBuf;

use crate::outcome::Outcome;

/// Deepest nesting of aliases, includes and forwards before a loop is
/// assumed (Postfix stops at 100 levels; real setups use a handful).
const MAX_DEPTH: usize = 20;

/// A Unix account, or the rights something runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Where one piece of an expansion goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// The account's mailbox (after its .forward was considered).
    Mailbox(Account),
    /// Append to a file (a path ending in `/` is a Maildir) with `rights`.
    File { path: String, rights: Account },
    /// Pipe to a command run with `rights`.
    Command { command: String, rights: Account },
    /// Another domain: forwarded through the queue.
    Remote(String),
}

/// One result of expanding a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Deliver with the message's own envelope sender.
    Deliver(Dest),
    /// Deliver with this sender: the expansion of an alias `name` that has
    /// an `owner-name` alias, so that errors go to the list's owner.
    DeliverAs(Dest, String),
    Fail(Outcome),
}

/// How a list was reached, for allow_mail_to_commands/files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Alias,
    Forward,
    Include,
}

impl Origin {
    pub fn name(self) -> &'static str {
        match self {
            Origin::Alias => "alias",
            Origin::Forward => "forward",
            Origin::Include => "include",
        }
    }
}

/// What the expansion needs to know about the system.
pub trait Env {
    /// The alias value for a (lowercased) name, and the rights its
    /// commands and files run with; Err defers.
    fn alias(&self, name: &str) -> Result<Option<(String, Account)>, String>;
    /// A Unix account by name; Err defers.
    fn account(&self, name: &str) -> Result<Option<Account>, String>;
    /// The user's .forward contents, if they have a usable one.
    fn forward(&self, account: &Account) -> Result<Option<String>, String>;
    /// An :include: file's contents, read on behalf of `reader`, and,
    /// when it is not root's, the rights of its owner. Err(dsn, text).
    fn include(
        &self,
        path: &str,
        reader: &Account,
    ) -> Result<(String, Option<Account>), (EnhancedStatus, String)>;
    /// Whether `domain` is one of ours (mydestination).
    fn is_local_domain(&self, domain: &str) -> bool;
}

/// Settings that shape expansion.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// recipient_delimiter: each character separates user from extension.
    pub delimiter: String,
    /// allow_mail_to_commands / allow_mail_to_files.
    pub allow_commands: Vec<String>,
    pub allow_files: Vec<String>,
    /// propagate_unmatched_extensions (alias, forward, include matter here).
    pub propagate: Vec<String>,
    /// The domain of `owner-name@$myorigin` senders.
    pub myorigin: String,
}

/// The list being expanded: how it was reached, whose rights its commands
/// and files get, whose list it is, and the extension it carries on.
#[derive(Debug, Clone)]
struct Scope {
    origin: Origin,
    rights: Account,
    /// Naming this again means its own mailbox, not another expansion.
    owner: String,
    /// `+ext` from `user+ext` when only `user` matched.
    suffix: Option<String>,
    /// The envelope sender from an `owner-` alias, for what this list
    /// (and the lists it names) delivers.
    sender: Option<String>,
}

impl Rules {
    /// `user+ext` -> (`user`, Some(`ext`)).
    pub fn split_extension<'a>(&self, local: &'a str) -> (&'a str, Option<&'a str>) {
        if self.delimiter.is_empty() {
            return (local, None);
        }
        match local.find(|c| self.delimiter.contains(c)) {
            Some(i) if i > 0 => (&local[..i], Some(&local[i + 1..])),
            _ => (local, None),
        }
    }
}

struct Expander<'a, E: Env> {
    env: &'a E,
    rules: &'a Rules,
    items: Vec<Item>,
    /// Aliases, includes and accounts already expanded for this recipient:
    /// the loop guard and duplicate suppression.
    seen: HashSet<String>,
    looped: bool,
    /// The address being resolved, for loop messages.
    address: String,
    /// The sender set by the innermost `owner-` alias being expanded.
    sender: Option<String>,
}

/// Expands the local part `local` (already lowercased) of `address`.
pub fn resolve_local<E: Env>(env: &E, rules: &Rules, local: &str, address: &str) -> Vec<Item> {
    let mut x = Expander {
        env,
        rules,
        items: Vec::new(),
        seen: HashSet::new(),
        looped: false,
        address: address.to_string(),
        sender: None,
    };
    x.name(local, 0);
    if x.items.is_empty() && x.looped {
        x.items.push(Item::Fail(Outcome::failed(
            EnhancedStatus::of(5, 4, 6),
            format!("mail forwarding loop for {address}"),
        )));
    }
    x.items
}

/// Postfix's unknown-user text.
pub fn unknown_user(local: &str) -> Outcome {
    Outcome::failed(
        EnhancedStatus::of(5, 1, 1),
        format!("unknown user: \"{local}\""),
    )
}

impl<E: Env> Expander<'_, E> {
    fn fail(&mut self, o: Outcome) {
        self.items.push(Item::Fail(o));
    }

    fn too_deep(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            let text = format!("mail forwarding loop for {}", self.address);
            self.fail(Outcome::failed(EnhancedStatus::of(5, 4, 6), text));
            return true;
        }
        false
    }

    /// A local name: alias (with, then without the extension), else account.
    fn name(&mut self, local: &str, depth: usize) {
        if self.too_deep(depth) {
            return;
        }
        let (base, ext) = self.rules.split_extension(local);
        // When only `user` matched for `user+ext`, the extension goes on to
        // the addresses the alias names (propagate_unmatched_extensions).
        let suffix = ext.map(|_| local[base.len()..].to_string());
        let mut keys = vec![(local, None)];
        if ext.is_some() {
            keys.push((base, suffix.clone()));
        }
        for (key, suffix) in keys {
            match self.env.alias(key) {
                Ok(Some((value, rights))) => {
                    if !self.seen.insert(format!("alias:{key}")) {
                        self.looped = true;
                        return;
                    }
                    let sender = self.owner_sender(key);
                    let scope = Scope {
                        origin: Origin::Alias,
                        rights,
                        owner: key.to_string(),
                        suffix,
                        sender,
                    };
                    return self.list(&value, &scope, depth + 1);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("alias lookup of {key}: {e}");
                    return self.fail(Outcome::failed(
                        EnhancedStatus::of(4, 3, 0),
                        "alias database unavailable",
                    ));
                }
            }
        }
        self.account(base, local, depth, true, suffix);
    }

    /// Delivers to an account: its .forward if allowed and present, else
    /// its mailbox. `shown` is the name for the unknown-user text.
    fn account(
        &mut self,
        name: &str,
        shown: &str,
        depth: usize,
        forward: bool,
        suffix: Option<String>,
    ) {
        let account = match self.env.account(name) {
            Ok(Some(a)) => a,
            Ok(None) => return self.fail(unknown_user(shown)),
            Err(e) => {
                tracing::warn!("error looking up passwd info for {name}: {e}");
                return self.fail(Outcome::failed(
                    EnhancedStatus::of(4, 0, 0),
                    "user lookup error",
                ));
            }
        };
        if forward && self.seen.insert(format!("forward:{}", account.name)) {
            match self.env.forward(&account) {
                Ok(Some(text)) => {
                    let scope = Scope {
                        origin: Origin::Forward,
                        rights: account.clone(),
                        owner: account.name.clone(),
                        suffix,
                        sender: None,
                    };
                    return self.list(&file_list(&text), &scope, depth + 1);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("{}: .forward: {e}", account.name);
                    return self.fail(Outcome::failed(
                        EnhancedStatus::of(4, 3, 0),
                        "cannot read .forward file",
                    ));
                }
            }
        }
        if self.seen.insert(format!("mailbox:{}", account.name)) {
            self.deliver(Dest::Mailbox(account));
        }
    }

    /// One alias value, include file or .forward: a list of destinations.
    fn list(&mut self, text: &str, scope: &Scope, depth: usize) {
        if self.too_deep(depth) {
            return;
        }
        let outer = self.sender.clone();
        if scope.sender.is_some() {
            self.sender = scope.sender.clone();
        }
        for item in split_list(text) {
            self.item(&item, scope, depth);
        }
        self.sender = outer;
    }

    fn item(&mut self, item: &str, scope: &Scope, depth: usize) {
        let origin = scope.origin;
        if let Some(command) = item.strip_prefix('|') {
            if !self.rules.allow_commands.iter().any(|a| a == origin.name()) {
                return self.fail(Outcome::failed(
                    EnhancedStatus::of(5, 7, 1),
                    "mail to command is restricted",
                ));
            }
            return self.push(Dest::Command {
                command: command.trim().to_string(),
                rights: scope.rights.clone(),
            });
        }
        if let Some(path) = strip_prefix_ci(item, ":include:") {
            let path = path.trim();
            if !self.seen.insert(format!("include:{path}")) {
                self.looped = true;
                return;
            }
            return match self.env.include(path, &scope.rights) {
                Ok((text, owner_rights)) => {
                    let inner = Scope {
                        origin: Origin::Include,
                        rights: owner_rights.unwrap_or_else(|| scope.rights.clone()),
                        owner: scope.owner.clone(),
                        suffix: scope.suffix.clone(),
                        sender: None,
                    };
                    self.list(&file_list(&text), &inner, depth + 1)
                }
                Err((dsn, text)) => self.fail(Outcome::failed(dsn, text)),
            };
        }
        if item.starts_with('/') {
            if !self.rules.allow_files.iter().any(|a| a == origin.name()) {
                return self.fail(Outcome::failed(
                    EnhancedStatus::of(5, 7, 1),
                    "mail to file is restricted",
                ));
            }
            return self.push(Dest::File {
                path: item.to_string(),
                rights: scope.rights.clone(),
            });
        }
        // `\user`: that user's mailbox, no aliases, no .forward.
        if let Some(name) = item.strip_prefix('\\') {
            let name = name.to_lowercase();
            let (base, _) = self.rules.split_extension(&name);
            let base = base.to_string();
            return self.account(&base, &name, depth, false, None);
        }
        let (local, domain) = match item.rsplit_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (item, None),
        };
        if local.is_empty() {
            return;
        }
        // The list's own name means its mailbox (`root: root, /var/log/x`).
        let self_reference = local.eq_ignore_ascii_case(&scope.owner)
            && domain.is_none_or(|d| self.env.is_local_domain(&d.to_lowercase()));
        if self_reference {
            let local = local.to_lowercase();
            let (base, _) = self.rules.split_extension(&local);
            let base = base.to_string();
            return self.account(&base, &local, depth, false, None);
        }
        let local = self.with_suffix(local, scope);
        match domain {
            Some(d) if !self.env.is_local_domain(&d.to_lowercase()) => {
                self.push(Dest::Remote(format!("{local}@{d}")))
            }
            _ => self.name(&local.to_lowercase(), depth + 1),
        }
    }

    /// `bob` -> `bob+ext` when the list was reached through `user+ext`
    /// and the address has no extension of its own.
    fn with_suffix(&self, local: &str, scope: &Scope) -> String {
        match &scope.suffix {
            Some(sfx)
                if self
                    .rules
                    .propagate
                    .iter()
                    .any(|p| p == scope.origin.name())
                    && self.rules.split_extension(local).1.is_none() =>
            {
                format!("{local}{sfx}")
            }
            _ => local.to_string(),
        }
    }

    fn push(&mut self, d: Dest) {
        let key = format!("{d:?}");
        if self.seen.insert(key) {
            self.deliver(d);
        }
    }

    fn deliver(&mut self, d: Dest) {
        self.items.push(match &self.sender {
            Some(s) => Item::DeliverAs(d, s.clone()),
            None => Item::Deliver(d),
        });
    }

    /// `owner-name@$myorigin` when the aliases have an `owner-name` entry
    /// (Postfix with expand_owner_alias = no, the default).
    fn owner_sender(&self, name: &str) -> Option<String> {
        if name.starts_with("owner-") {
            return None;
        }
        let owner = format!("owner-{name}");
        match self.env.alias(&owner) {
            Ok(Some(_)) if self.rules.myorigin.is_empty() => Some(owner),
            Ok(Some(_)) => Some(format!("{owner}@{}", self.rules.myorigin)),
            _ => None,
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// A .forward or :include: file as one list: `#` comment lines and blank
/// lines dropped, lines that start with whitespace continue the previous
/// one, and every line ends an item.
pub fn file_list(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for raw in text.lines() {
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match lines.last_mut() {
            Some(prev) if raw.starts_with([' ', '\t']) => {
                prev.push(' ');
                prev.push_str(t);
            }
            _ => lines.push(t.to_string()),
        }
    }
    lines.join(", ")
}

/// Splits an alias value into items: commas separate them, double quotes
/// protect commas and spaces (`"|cmd arg, more"`), and an unquoted item
/// that is not a command or file may also be separated by whitespace.
pub fn split_list(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let mut out = Vec::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        if let Some(inner) = p.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            out.push(inner.trim().to_string());
        } else if p.starts_with(['|', '/']) || strip_prefix_ci(p, ":include:").is_some() {
            out.push(p.to_string());
        } else {
            out.extend(
                p.split_whitespace()
                    .map(|w| w.trim_matches('"').to_string()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        aliases: HashMap<String, String>,
        users: Vec<&'static str>,
        forwards: HashMap<String, String>,
        includes: HashMap<String, String>,
    }

    fn acct(name: &str) -> Account {
        Account {
            name: name.into(),
            uid: 1000,
            gid: 1000,
            home: format!("/home/{name}").into(),
            shell: "/bin/sh".into(),
        }
    }

    impl Env for Fake {
        fn alias(&self, name: &str) -> Result<Option<(String, Account)>, String> {
            Ok(self.aliases.get(name).map(|v| (v.clone(), acct("nobody"))))
        }
        fn account(&self, name: &str) -> Result<Option<Account>, String> {
            Ok(self.users.contains(&name).then(|| acct(name)))
        }
        fn forward(&self, a: &Account) -> Result<Option<String>, String> {
            Ok(self.forwards.get(&a.name).cloned())
        }
        fn include(
            &self,
            path: &str,
            _reader: &Account,
        ) -> Result<(String, Option<Account>), (EnhancedStatus, String)> {
            self.includes.get(path).map(|t| (t.clone(), None)).ok_or((
                EnhancedStatus::of(5, 3, 0),
                format!("cannot open include file {path}"),
            ))
        }
        fn is_local_domain(&self, d: &str) -> bool {
            d == "example.local" || d == "localhost"
        }
    }

    fn rules() -> Rules {
        Rules {
            delimiter: "+".into(),
            allow_commands: vec!["alias".into(), "forward".into()],
            allow_files: vec!["alias".into(), "forward".into()],
            propagate: vec!["alias".into(), "forward".into(), "include".into()],
            myorigin: "example.local".into(),
        }
    }

    fn fake(aliases: &[(&str, &str)]) -> Fake {
        Fake {
            aliases: aliases
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            users: vec!["root", "alice", "bob"],
            ..Default::default()
        }
    }

    fn mailbox(n: &str) -> Item {
        Item::Deliver(Dest::Mailbox(acct(n)))
    }

    #[test]
    fn lists_files_commands_and_remote_addresses() {
        let env = fake(&[(
            "staff",
            "alice, Bob@example.local, /var/log/staff, \"|/usr/bin/log x, y\", carol@example.org",
        )]);
        let got = resolve_local(&env, &rules(), "staff", "staff@example.local");
        assert_eq!(
            got,
            vec![
                mailbox("alice"),
                mailbox("bob"),
                Item::Deliver(Dest::File {
                    path: "/var/log/staff".into(),
                    rights: acct("nobody")
                }),
                Item::Deliver(Dest::Command {
                    command: "/usr/bin/log x, y".into(),
                    rights: acct("nobody")
                }),
                Item::Deliver(Dest::Remote("carol@example.org".into())),
            ]
        );
    }

    #[test]
    fn delimiter_tries_the_full_name_then_the_base() {
        let env = fake(&[("alice+lists", "bob")]);
        let r = rules();
        assert_eq!(
            resolve_local(&env, &r, "alice+lists", "a"),
            vec![mailbox("bob")]
        );
        assert_eq!(
            resolve_local(&env, &r, "alice+other", "a"),
            vec![mailbox("alice")]
        );
        assert_eq!(
            resolve_local(&env, &r, "nobody+x", "a"),
            vec![Item::Fail(unknown_user("nobody+x"))]
        );
    }

    #[test]
    fn unmatched_extensions_follow_the_alias() {
        let env = fake(&[("team", "alice, bob+own, carol@example.org, team")]);
        let got = resolve_local(&env, &rules(), "team+x", "team+x@example.local");
        assert_eq!(
            got[..3],
            [
                mailbox("alice"),
                mailbox("bob"),
                Item::Deliver(Dest::Remote("carol+x@example.org".into())),
            ]
        );
        // `team` naming itself is its own (unknown) account, unextended.
        assert_eq!(got[3], Item::Fail(unknown_user("team")));
        let mut r = rules();
        r.propagate.clear();
        let got = resolve_local(&env, &r, "team+x", "team+x@example.local");
        assert_eq!(
            got[2],
            Item::Deliver(Dest::Remote("carol@example.org".into()))
        );
    }

    #[test]
    fn owner_aliases_set_the_sender_of_their_list() {
        let env = fake(&[
            ("list", "alice, far@example.org, sub"),
            ("owner-list", "bob"),
            ("sub", "root"),
        ]);
        let owner = "owner-list@example.local".to_string();
        assert_eq!(
            resolve_local(&env, &rules(), "list", "list@example.local"),
            vec![
                Item::DeliverAs(Dest::Mailbox(acct("alice")), owner.clone()),
                Item::DeliverAs(Dest::Remote("far@example.org".into()), owner.clone()),
                Item::DeliverAs(Dest::Mailbox(acct("root")), owner),
            ]
        );
        // The owner alias itself is an ordinary alias.
        assert_eq!(
            resolve_local(&env, &rules(), "owner-list", "owner-list@example.local"),
            vec![mailbox("bob")]
        );
    }

    #[test]
    fn self_reference_loops_and_duplicates() {
        let env = fake(&[
            ("root", "root, alice"),
            ("a", "b"),
            ("b", "a"),
            ("both", "alice, alice@localhost, root"),
        ]);
        let r = rules();
        assert_eq!(
            resolve_local(&env, &r, "root", "root@x"),
            vec![mailbox("root"), mailbox("alice")]
        );
        let looped = resolve_local(&env, &r, "a", "a@x");
        assert_eq!(
            looped,
            vec![Item::Fail(Outcome::failed(
                EnhancedStatus::of(5, 4, 6),
                "mail forwarding loop for a@x"
            ))]
        );
        assert_eq!(
            resolve_local(&env, &r, "both", "both@x"),
            vec![mailbox("alice"), mailbox("root")]
        );
    }

    #[test]
    fn includes_and_restrictions() {
        let mut env = fake(&[("list", ":include:/etc/list"), ("bad", ":include:/nope")]);
        env.includes
            .insert("/etc/list".into(), "alice\nbob, |cmd\n".into());
        let got = resolve_local(&env, &rules(), "list", "list@x");
        assert_eq!(
            got,
            vec![
                mailbox("alice"),
                mailbox("bob"),
                Item::Fail(Outcome::failed(
                    EnhancedStatus::of(5, 7, 1),
                    "mail to command is restricted"
                )),
            ]
        );
        let got = resolve_local(&env, &rules(), "bad", "bad@x");
        assert!(matches!(&got[0], Item::Fail(o) if o.text == "cannot open include file /nope"));
    }

    #[test]
    fn forward_files_and_backslash() {
        let mut env = fake(&[]);
        env.forwards
            .insert("alice".into(), "\\alice, bob@example.org".into());
        let got = resolve_local(&env, &rules(), "alice", "alice@x");
        assert_eq!(
            got,
            vec![
                mailbox("alice"),
                Item::Deliver(Dest::Remote("bob@example.org".into()))
            ]
        );
    }

    #[test]
    fn files_drop_comments_and_join_continuations() {
        assert_eq!(
            file_list("# who\nalice\n\n  # x\nbob,\n  carol\n|cmd a\n"),
            "alice, bob, carol, |cmd a"
        );
    }

    #[test]
    fn split_list_handles_quotes_and_whitespace() {
        assert_eq!(
            split_list(" a, b c ,\"|x y, z\", /f g, :include:/p"),
            vec!["a", "b", "c", "|x y, z", "/f g", ":include:/p"]
        );
    }
}
