//! [`Params`]: a set of parameter values (the `[main]` table, or `[main]`
//! plus one service's options) with typed, expanded access.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::ConfigError;
use crate::defs::{self, Kind, PARAMS};
use crate::expand::{self, Loop};
use crate::host::{self, HostInfo};
use crate::table::{Maps, TableError};
use crate::value;

/// Parameter values with Postfix defaults behind them.
#[derive(Clone, Debug)]
pub struct Params {
    /// Explicit settings; anything absent takes its default.
    values: BTreeMap<String, Setting>,
    /// This machine's name and addresses, for derived defaults; shared
    /// because every service's `Params` needs the same facts.
    host: Arc<HostInfo>,
    /// Relative paths resolve here (the config file's directory).
    base_dir: PathBuf,
    /// The config file, named in errors.
    file: PathBuf,
}

/// One explicit value and where it came from.
#[derive(Clone, Debug)]
pub(crate) struct Setting {
    pub raw: String,
    /// Line in the config file; None for `-o` and [`Params::set`].
    pub line: Option<usize>,
}

/// One row of `qctl config` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    pub name: String,
    /// As written, or the default as Postfix writes it.
    pub raw: String,
    pub expanded: String,
    pub is_default: bool,
}

impl Params {
    pub(crate) fn new(file: &Path, base_dir: &Path, host: Arc<HostInfo>) -> Params {
        Params {
            values: BTreeMap::new(),
            host,
            base_dir: base_dir.to_path_buf(),
            file: file.to_path_buf(),
        }
    }

    pub(crate) fn insert(&mut self, name: &str, raw: &str, line: Option<usize>) {
        self.values.insert(
            name.to_string(),
            Setting {
                raw: raw.to_string(),
                line,
            },
        );
    }

    pub(crate) fn settings(&self) -> impl Iterator<Item = (&String, &Setting)> {
        self.values.iter()
    }

    /// The expanded value; "" for an unknown name.
    pub fn get(&self, name: &str) -> String {
        match self.expanded(name) {
            Ok(e) => e.text,
            Err(l) => {
                // Load and set() refuse loops, so this is a defensive path.
                tracing::error!("parameter \"{name}\": {l}");
                String::new()
            }
        }
    }

    /// The value as written; None when the default applies.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(|s| s.raw.as_str())
    }

    /// The default as Postfix would show it (`postconf -d`): the table entry,
    /// or the value derived from this host for myhostname, mydomain and
    /// mynetworks. None for unknown names.
    pub fn default_value(&self, name: &str) -> Option<String> {
        self.default_raw(name, &[]).ok().flatten()
    }

    /// An integer parameter (a size parameter counts too).
    pub fn int(&self, name: &str) -> i64 {
        self.declared(name, |k| {
            matches!(k, Kind::Int | Kind::Positive | Kind::Size)
        });
        let v = self.get(name);
        value::parse_int(&v)
            .or_else(|| value::parse_size(&v).and_then(|n| i64::try_from(n).ok()))
            .unwrap_or_else(|| unvalidated(name, &v))
    }

    pub fn bool(&self, name: &str) -> bool {
        self.declared(name, |k| k == Kind::Bool);
        let v = self.get(name);
        value::parse_bool(&v).unwrap_or_else(|| unvalidated(name, &v))
    }

    /// A time value; a bare number uses the parameter's default unit.
    pub fn time(&self, name: &str) -> Duration {
        let unit = match self.declared(name, |k| matches!(k, Kind::Time(_))) {
            Some(Kind::Time(u)) => u,
            _ => 's',
        };
        let v = self.get(name);
        value::parse_time(&v, unit).unwrap_or_else(|| unvalidated(name, &v))
    }

    /// Bytes; plain integers and binary suffixes (`64MiB`, `10m`) work.
    pub fn size(&self, name: &str) -> u64 {
        self.declared(name, |k| matches!(k, Kind::Int | Kind::Size));
        let v = self.get(name);
        value::parse_size(&v).unwrap_or_else(|| unvalidated(name, &v))
    }

    /// An SMTP reply code parameter (`*_reject_code`, `*_defer_code`).
    pub fn code(&self, name: &str) -> u16 {
        self.declared(name, |k| k == Kind::Code);
        let v = self.get(name);
        value::parse_code(&v).unwrap_or_else(|| unvalidated(name, &v))
    }

    /// An enumerated parameter: one of the words of its [`Kind::Enum`],
    /// in lower case.
    pub fn choice(&self, name: &str) -> String {
        self.declared(name, |k| matches!(k, Kind::Enum(_)));
        self.get(name).trim().to_ascii_lowercase()
    }

    /// A [`Kind::Words`] list, in lower case.
    pub fn words(&self, name: &str) -> Vec<String> {
        self.declared(name, |k| matches!(k, Kind::Words(_)));
        value::split_list(&self.get(name).to_ascii_lowercase())
    }

    /// An IPv4 address parameter; None when empty.
    pub fn ipv4(&self, name: &str) -> Option<std::net::Ipv4Addr> {
        self.declared(name, |k| k == Kind::Ipv4);
        let v = self.get(name);
        value::parse_addr(&v).unwrap_or_else(|()| unvalidated(name, &v))
    }

    /// An IPv6 address parameter; None when empty.
    pub fn ipv6(&self, name: &str) -> Option<std::net::Ipv6Addr> {
        self.declared(name, |k| k == Kind::Ipv6);
        let v = self.get(name);
        value::parse_addr(&v).unwrap_or_else(|()| unvalidated(name, &v))
    }

    /// A [`Kind::Resolvers`] list.
    pub fn resolvers(&self, name: &str) -> Vec<std::net::SocketAddr> {
        self.declared(name, |k| k == Kind::Resolvers);
        self.list(name)
            .iter()
            .map(|r| value::parse_resolver(r).unwrap_or_else(|| unvalidated(name, r)))
            .collect()
    }

    /// A [`Kind::TlsProtocols`] list: the TLS versions it allows.
    pub fn tls_protocols(&self, name: &str) -> value::TlsProtocols {
        self.declared(name, |k| k == Kind::TlsProtocols);
        let v = self.get(name);
        value::parse_tls_protocols(&v).unwrap_or_else(|_| unvalidated(name, &v))
    }

    /// A [`Kind::Filter`]: the content filter, or none when empty.
    pub fn filter(&self, name: &str) -> Option<postern_envelope::ContentFilter> {
        self.declared(name, |k| k == Kind::Filter);
        let v = self.get(name);
        value::parse_filter(&v).unwrap_or_else(|_| unvalidated(name, &v))
    }

    /// The expanded value split on commas and whitespace, keeping `{...}`
    /// groups whole, as Postfix does. Works for user-defined parameters
    /// too (restriction classes).
    pub fn list(&self, name: &str) -> Vec<String> {
        value::split_list(&self.get(name))
    }

    /// The expanded value as a path, relative ones joined to the config
    /// directory; empty stays empty.
    pub fn path(&self, name: &str) -> PathBuf {
        self.declared(name, |k| k == Kind::Path);
        let v = self.get(name);
        let v = v.trim();
        if v.is_empty() {
            PathBuf::new()
        } else {
            self.base_dir.join(v)
        }
    }

    /// The kind of a parameter a daemon reads with a typed accessor. Every
    /// such parameter must be in [`PARAMS`] with a kind `fits` accepts;
    /// debug builds (and so the tests) stop at one that is not.
    fn declared(&self, name: &str, fits: fn(Kind) -> bool) -> Option<Kind> {
        let kind = defs::lookup(name).map(|d| d.kind);
        debug_assert!(
            kind.is_some_and(fits),
            "parameter \"{name}\" is read as a {kind:?} but not declared so in defs::PARAMS"
        );
        kind
    }

    /// Opens the tables listed in `name`. `alias_maps` and `alias_database`
    /// open their text files in aliases(5) `name: value` format.
    pub fn maps(&self, name: &str) -> Result<Maps, TableError> {
        self.declared(name, |k| k == Kind::Maps);
        let specs = self.list(name);
        if matches!(name, "alias_maps" | "alias_database") {
            Maps::open_aliases(&specs, &self.base_dir)
        } else {
            Maps::open(&specs, &self.base_dir)
        }
    }

    /// Whether the user list `name` ([`Kind::Users`], as
    /// `authorized_submit_users`) admits the login name `user`: the first
    /// entry that matches decides (`!` refuses), no match refuses. A table
    /// that cannot be read is an error, never a yes.
    pub fn user_allowed(&self, name: &str, user: &str) -> Result<bool, TableError> {
        self.declared(name, |k| k == Kind::Users);
        for entry in self.list(name) {
            let (negated, entry) = match entry.strip_prefix('!') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, entry.as_str()),
            };
            let matched = if entry.starts_with('/') {
                // A file of names, as Postfix's match lists read one.
                let text = std::fs::read_to_string(entry).map_err(|e| TableError::Io {
                    path: PathBuf::from(entry),
                    source: e,
                })?;
                value::split_list(&text).iter().any(|n| n == user)
            } else if entry.contains(':') {
                crate::Table::open(entry, &self.base_dir)?
                    .lookup(user)?
                    .is_some()
            } else {
                entry == user
            };
            if matched {
                return Ok(!negated);
            }
        }
        Ok(false)
    }

    pub fn is_default(&self, name: &str) -> bool {
        !self.values.contains_key(name)
    }

    /// Every known parameter plus any user-defined one that is set, sorted
    /// by name.
    pub fn entries(&self) -> Vec<ParamEntry> {
        let mut out: Vec<ParamEntry> = PARAMS
            .iter()
            .map(|d| d.name)
            .chain(
                self.values
                    .keys()
                    .map(String::as_str)
                    .filter(|n| defs::lookup(n).is_none()),
            )
            .map(|name| ParamEntry {
                name: name.to_string(),
                raw: self
                    .raw(name)
                    .map(str::to_string)
                    .or_else(|| self.default_value(name))
                    .unwrap_or_default(),
                expanded: self.get(name),
                is_default: self.is_default(name),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Sets a value as `-o name=value` would, refusing it (and keeping the
    /// old one) when it does not parse or makes an expansion loop.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        if !crate::valid_name(name) {
            return Err(ConfigError::Override {
                arg: format!("{name}={value}"),
                reason: "bad parameter name".into(),
            });
        }
        let old = self.values.get(name).cloned();
        self.insert(name, value, None);
        if let Err(reason) = self.validate(name) {
            match old {
                Some(s) => self.values.insert(name.to_string(), s),
                None => self.values.remove(name),
            };
            return Err(ConfigError::Invalid {
                file: self.file.clone(),
                line: None,
                param: name.to_string(),
                value: value.to_string(),
                reason,
            });
        }
        Ok(())
    }

    /// This host's interface addresses, found when the configuration was
    /// loaded (what `inet_interfaces = all` stands for).
    pub fn interface_addresses(&self) -> Vec<std::net::IpAddr> {
        self.host.interfaces.iter().map(|&(ip, _)| ip).collect()
    }

    /// The config directory that relative paths resolve against.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// Expands `name` and checks the result against its kind. Ok carries the
    /// undefined names it referred to.
    pub(crate) fn validate(&self, name: &str) -> Result<Vec<String>, String> {
        let e = self.expanded(name).map_err(|l| l.to_string())?;
        if let Some(def) = defs::lookup(name) {
            match def.kind {
                Kind::Restrictions => self.check_restrictions(&e.text)?,
                kind => value::check(kind, &e.text)?,
            }
            if let Some(why) = def.unsupported
                && !self.default_in_force(def)
            {
                return Err(format!(
                    "not supported by Postern yet: {why}; remove the setting, or set the \
                     default \"{}\"",
                    def.default
                ));
            }
        } else if self
            .list("smtpd_restriction_classes")
            .iter()
            .any(|c| c == name)
        {
            self.check_restrictions(&e.text)?;
        }
        Ok(e.undefined)
    }

    /// The explicit setting a parameter's value comes from, for error
    /// messages: its own, or one it refers to (through `$name`, at any
    /// depth), the first for which `prefer` holds if any does (a service
    /// names its options). Gives (line, name, value as written).
    pub(crate) fn origin(
        &self,
        name: &str,
        prefer: impl Fn(&str) -> bool,
    ) -> (Option<usize>, String, String) {
        let mut todo = vec![name.to_string()];
        let mut seen = std::collections::BTreeSet::new();
        let mut found = Vec::new();
        while let Some(n) = todo.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            let raw = match self.values.get(&n) {
                Some(s) => {
                    found.push((s.line, n.clone(), s.raw.clone()));
                    Some(s.raw.clone())
                }
                None => self.default_raw(&n, &[]).ok().flatten(),
            };
            if let Some(raw) = raw {
                todo.extend(expand::references(&raw).into_iter().rev());
            }
        }
        let pick = found.iter().position(|(_, n, _)| prefer(n)).unwrap_or(0);
        if found.is_empty() {
            return (
                None,
                name.to_string(),
                self.default_value(name).unwrap_or_default(),
            );
        }
        found.swap_remove(pick)
    }

    /// Whether a parameter's value means the same as its default (`no` for
    /// a default of `no`, the same list in other spacing...).
    fn default_in_force(&self, def: &defs::ParamDef) -> bool {
        let lookup = |n: &str, stack: &[String]| self.raw_or_default(n, stack);
        let default = expand::expand(def.default, vec![def.name.to_string()], &lookup)
            .map(|e| e.text)
            .unwrap_or_default();
        let value = self.get(def.name);
        value::canonical(def.kind, &value) == value::canonical(def.kind, &default)
    }

    fn check_restrictions(&self, value: &str) -> Result<(), String> {
        let classes = self.list("smtpd_restriction_classes");
        crate::restrictions::check_list(&value::split_list(value), &classes)
            .map_err(|e| e.to_string())
    }

    fn expanded(&self, name: &str) -> Result<expand::Expanded, Loop> {
        let raw = self.raw_or_default(name, &[])?.unwrap_or_default();
        if defs::lookup(name).is_some_and(|d| matches!(d.kind, Kind::Command | Kind::Template)) {
            return Ok(expand::Expanded {
                text: raw,
                undefined: Vec::new(),
            });
        }
        let lookup = |n: &str, stack: &[String]| self.raw_or_default(n, stack);
        expand::expand(&raw, vec![name.to_string()], &lookup)
    }

    fn raw_or_default(&self, name: &str, stack: &[String]) -> Result<Option<String>, Loop> {
        match self.values.get(name) {
            Some(s) => Ok(Some(s.raw.clone())),
            None => self.default_raw(name, stack),
        }
    }

    /// Defaults; the derived ones expand what they depend on, continuing
    /// `stack` so that e.g. `myhostname = $mydomain` is caught as a loop.
    fn default_raw(&self, name: &str, stack: &[String]) -> Result<Option<String>, Loop> {
        let nested = |dep: &str| -> Result<String, Loop> {
            let mut st = stack.to_vec();
            st.push(name.to_string());
            let lookup = |n: &str, s: &[String]| self.raw_or_default(n, s);
            Ok(expand::expand(&format!("${{{dep}}}"), st, &lookup)?.text)
        };
        Ok(match name {
            "myhostname" => {
                let domain = match self.values.contains_key("mydomain") {
                    true => Some(nested("mydomain")?),
                    false => None,
                };
                Some(self.host.myhostname(domain.as_deref()))
            }
            "mydomain" => Some(host::mydomain_from(&nested("myhostname")?)),
            "mynetworks" => Some(self.host.mynetworks(&nested("mynetworks_style")?)),
            _ => defs::lookup(name).map(|d| d.default.to_string()),
        })
    }

    #[cfg(test)]
    pub(crate) fn for_test(host: HostInfo) -> Params {
        Params::new(
            Path::new("master.toml"),
            Path::new("/etc/postern"),
            Arc::new(host),
        )
    }
}

/// `receive_override_options`: what a service (typically the one a
/// content filter hands mail back to) leaves out of receiving.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveOverrides {
    /// `no_unknown_recipient_checks`: no reject_unlisted_recipient.
    pub no_unknown_recipient_checks: bool,
    /// `no_address_mappings`: no canonical maps or virtual aliases.
    pub no_address_mappings: bool,
    /// `no_header_body_checks`.
    pub no_header_body_checks: bool,
    /// `no_milters`.
    pub no_milters: bool,
}

impl ReceiveOverrides {
    pub fn from_params(params: &Params) -> ReceiveOverrides {
        let words = params.words("receive_override_options");
        let has = |w: &str| words.iter().any(|x| x == w);
        ReceiveOverrides {
            no_unknown_recipient_checks: has("no_unknown_recipient_checks"),
            no_address_mappings: has("no_address_mappings"),
            no_header_body_checks: has("no_header_body_checks"),
            no_milters: has("no_milters"),
        }
    }
}

/// A typed read of a value that load did not validate: a bug, since
/// [`crate::Config`] refuses every value that does not fit its kind.
fn unvalidated<T>(name: &str, value: &str) -> T {
    panic!("parameter \"{name}\": value \"{value}\" escaped validation at load")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            hostname: "mx1.example.com".into(),
            interfaces: vec![
                ("127.0.0.1".parse().unwrap(), 8),
                ("192.168.1.7".parse().unwrap(), 24),
            ],
        }
    }

    #[test]
    fn every_default_is_valid() {
        let p = Params::for_test(host());
        for d in PARAMS {
            assert!(p.validate(d.name).is_ok(), "{}", d.name);
            assert!(
                p.validate(d.name).unwrap().is_empty(),
                "{} refers to an undefined name",
                d.name
            );
        }
    }

    #[test]
    fn user_lists_first_match_decides() {
        let mut p = Params::for_test(host());
        let name = "authorized_submit_users";
        assert!(p.user_allowed(name, "anyone").unwrap());
        p.set(name, "!daemon, static:anyone").unwrap();
        assert!(!p.user_allowed(name, "daemon").unwrap());
        assert!(p.user_allowed(name, "alice").unwrap());
        p.set(name, "root, alice").unwrap();
        assert!(p.user_allowed(name, "alice").unwrap());
        assert!(!p.user_allowed(name, "bob").unwrap());
        p.set(name, "").unwrap();
        assert!(!p.user_allowed(name, "root").unwrap());
        p.set(name, "inline:{ alice=ok }").unwrap();
        assert!(p.user_allowed(name, "alice").unwrap());
        assert!(!p.user_allowed(name, "bob").unwrap());
        p.set(name, "hash:/nonexistent/users").unwrap();
        assert!(p.user_allowed(name, "alice").is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        std::fs::write(&file, "root\nalice, bob\n").unwrap();
        p.set(name, &file.display().to_string()).unwrap();
        assert!(p.user_allowed(name, "bob").unwrap());
        assert!(!p.user_allowed(name, "carol").unwrap());
    }

    #[test]
    fn derived_defaults() {
        let mut p = Params::for_test(host());
        assert_eq!(p.get("myhostname"), "mx1.example.com");
        assert_eq!(p.get("mydomain"), "example.com");
        assert_eq!(p.get("myorigin"), "mx1.example.com");
        assert_eq!(
            p.list("mydestination"),
            vec!["mx1.example.com", "localhost.example.com", "localhost"]
        );
        assert_eq!(p.get("mynetworks"), "127.0.0.0/8 [::1]/128 192.168.1.7/32");
        assert_eq!(p.get("smtpd_banner"), "mx1.example.com ESMTP Postern");
        assert_eq!(p.get("local_transport"), "local:mx1.example.com");
        p.set("mynetworks_style", "subnet").unwrap();
        assert_eq!(p.get("mynetworks"), "127.0.0.0/8 [::1]/128 192.168.1.0/24");
        p.set("myhostname", "mail.other.org").unwrap();
        assert_eq!(p.get("mydomain"), "other.org");
        assert_eq!(p.default_value("myhostname").unwrap(), "mx1.example.com");

        let mut short = Params::for_test(HostInfo {
            hostname: "box".into(),
            interfaces: vec![],
        });
        assert_eq!(short.get("myhostname"), "box.localdomain");
        assert_eq!(short.get("mydomain"), "localdomain");
        short.set("mydomain", "corp.test").unwrap();
        assert_eq!(short.get("myhostname"), "box.corp.test");
    }

    #[test]
    fn derived_default_loops_are_caught() {
        let mut p = Params::for_test(host());
        let e = p.set("myhostname", "x.$mydomain").unwrap_err();
        assert!(e.to_string().contains("loop"), "{e}");
        assert_eq!(p.get("myhostname"), "mx1.example.com");
    }

    #[test]
    fn typed_accessors() {
        let mut p = Params::for_test(host());
        assert_eq!(p.int("message_size_limit"), 10240000);
        assert!(!p.bool("smtpd_sasl_auth_enable"));
        assert!(p.bool("smtpd_delay_reject"));
        assert_eq!(p.time("service_throttle_time"), Duration::from_secs(60));
        assert_eq!(
            p.time("maximal_queue_lifetime"),
            Duration::from_secs(5 * 86400)
        );
        assert_eq!(p.size("sled_cache_capacity"), 64 << 20);
        assert_eq!(p.size("message_size_limit"), 10240000);
        p.set("maximal_queue_lifetime", "2").unwrap();
        assert_eq!(
            p.time("maximal_queue_lifetime"),
            Duration::from_secs(2 * 86400)
        );
        p.set("delay_warning_time", "4").unwrap();
        assert_eq!(p.time("delay_warning_time"), Duration::from_secs(4 * 3600));
        assert_eq!(
            p.path("queue_directory"),
            PathBuf::from("/var/spool/postern")
        );
        p.set("queue_directory", "spool").unwrap();
        assert_eq!(
            p.path("queue_directory"),
            PathBuf::from("/etc/postern/spool")
        );
        assert_eq!(p.path("maillog_file"), PathBuf::new());
        assert_eq!(p.get("no_such_param"), "");
        assert_eq!(p.list("no_such_param"), Vec::<String>::new());
    }

    #[test]
    fn set_validates_and_keeps_old_value() {
        let mut p = Params::for_test(host());
        p.set("message_size_limit", "2048").unwrap();
        let e = p.set("message_size_limit", "10M").unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line -o message_size_limit=10M: parameter \"message_size_limit\": \
             invalid integer value \"10M\""
        );
        assert_eq!(p.int("message_size_limit"), 2048);
        assert!(p.set("bad name", "x").is_err());
        assert!(p.set("smtpd_helo_required", "perhaps").is_err());
        p.set("my_macro", "hello").unwrap();
        assert_eq!(p.get("my_macro"), "hello");
    }

    #[test]
    fn typed_values_validated_after_expansion() {
        let mut p = Params::for_test(host());
        p.set("my_limit", "4096").unwrap();
        p.set("message_size_limit", "$my_limit").unwrap();
        assert_eq!(p.int("message_size_limit"), 4096);
        p.set("my_limit", "lots").unwrap();
        assert!(p.validate("message_size_limit").is_err());
    }

    #[test]
    fn raw_default_and_entries() {
        let mut p = Params::for_test(host());
        p.set("relayhost", "[smart.example.net]:587").unwrap();
        p.set("zz_custom", "1").unwrap();
        assert_eq!(p.raw("relayhost"), Some("[smart.example.net]:587"));
        assert_eq!(p.raw("mydestination"), None);
        assert!(p.is_default("mydestination"));
        assert!(!p.is_default("relayhost"));
        let entries = p.entries();
        assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
        let dest = entries.iter().find(|e| e.name == "mydestination").unwrap();
        assert_eq!(dest.raw, "$myhostname, localhost.$mydomain, localhost");
        assert_eq!(
            dest.expanded,
            "mx1.example.com, localhost.example.com, localhost"
        );
        assert!(dest.is_default);
        let rh = entries.iter().find(|e| e.name == "relayhost").unwrap();
        assert!(!rh.is_default);
        assert_eq!(entries.last().unwrap().name, "zz_custom");
        assert_eq!(entries.len(), PARAMS.len() + 1);
    }

    #[test]
    fn maps_from_params() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("aliases"), "postmaster: root\n").unwrap();
        std::fs::write(dir.path().join("transport"), "example.com smtp:[x]\n").unwrap();
        let mut p = Params::new(
            &dir.path().join("master.toml"),
            dir.path(),
            Arc::new(host()),
        );
        p.set("alias_maps", "hash:aliases").unwrap();
        p.set("transport_maps", "hash:transport, inline:{ a.org=relay }")
            .unwrap();
        let a = p.maps("alias_maps").unwrap();
        assert_eq!(a.lookup("postmaster").unwrap().as_deref(), Some("root"));
        let t = p.maps("transport_maps").unwrap();
        assert_eq!(
            t.lookup("example.com").unwrap().as_deref(),
            Some("smtp:[x]")
        );
        assert_eq!(t.lookup("a.org").unwrap().as_deref(), Some("relay"));
        assert!(p.maps("virtual_alias_maps").unwrap().is_empty());
        assert!(p.set("transport_maps", "bogus:x").is_err());
    }
}
