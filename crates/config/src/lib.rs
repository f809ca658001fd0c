//! Postern's configuration: `master.toml` and Postfix-style lookup tables.
//!
//! `master.toml` has two parts. `[main]` holds Postfix parameters
//! (main.cf) with Postfix's names, defaults and `$name` expansion;
//! `[[service]]` entries are master.cf lines (name, type, listen address
//! or, for a unix service, one or more socket names, command, process
//! limit, privilege, wakeup, and `-o`-like `options`).
//!
//! ```toml
//! [main]
//! myhostname = "mail.example.local"
//! mydestination = ["$myhostname", "localhost.$mydomain", "localhost"]
//! mynetworks = "127.0.0.0/8, [::1]/128"
//!
//! [[service]]
//! name = "smtp"
//! type = "inet"
//! listen = "127.0.0.1:2525"
//! command = "smtpd"
//! options = { syslog_name = "postern/smtp" }
//! ```
//!
//! A bad configuration is refused at load with file, line, parameter and
//! value named (`master.toml:12: parameter "message_size_limit": invalid
//! integer value "10M"`); unknown `[main]` parameters are warnings, kept in
//! [`Config::warnings`]. So is a value Postern would not honour: a
//! parameter it does not implement yet set to anything but its default, a
//! restriction name or a table type it does not have (see [`defs`] and
//! [`restrictions`]). Every parameter of every service's view is checked,
//! so the typed accessors of [`Params`] never fail.
//!
//! Precedence, as in Postfix: a service's `options` beat `[main]` (master.cf
//! `-o` beats main.cf), and the `-o name=value` overrides given to
//! [`Config::load`] for the whole run beat both.
//!
//! Where Postern differs from Postfix:
//!
//! * A parameter not in the table is kept as a user-defined macro, as
//!   Postfix does, so `$mua_client_restrictions`-style references work; it
//!   is reported as unknown only when nothing refers to it.
//! * Text tables (`hash:` and friends) are read directly; no postmap step.
//! * See [`defs`] for defaults that differ and Postern-only parameters.
//!
//! # Layout
//!
//! * `lib.rs` — [`Config`]: loading, validation, per-service views; errors.
//! * [`defs`] — the parameter table [`PARAMS`] (name, default, kind, and
//!   whether Postern implements it).
//! * [`restrictions`] — the restriction names of `smtpd_*_restrictions`.
//! * `params` — [`Params`]: typed access, defaults, expansion.
//! * `expand` — `$name` / `${name?value}` expansion with loop detection.
//! * `value` — parsing of integers, booleans, times, sizes and lists.
//! * `host` — derived defaults: host name and interface networks.
//! * `service` — [`Service`], [`Endpoint`]: where a service listens.
//! * `load` — TOML (with spans for line numbers) to `Config`.
//! * [`table`] — lookup tables, [`Maps`],
//!   [`NetworkList`].

pub mod defs;
pub mod dnsbl;
mod expand;
mod host;
mod load;
mod params;
mod peer;
pub mod policy_server;
pub mod restrictions;
mod service;
pub mod table;
mod value;

use std::path::{Path, PathBuf};

pub use defs::{Kind, PARAMS, ParamDef};
pub use params::{ParamEntry, Params, ReceiveOverrides};
pub use peer::{PeerEndpoint, parse_group};
pub use service::{Endpoint, Service, ServiceType};
pub use table::{Maps, NetworkList, Table, TableError};
pub use value::{TlsProtocols, parse_code};
/// Fills in a reply template (`default_rbl_reply`, `rbl_reply_maps`
/// results) with Postfix's `$name`, `${name?text}` and `${name:text}`
/// forms; `vars` gives each name's value, taken literally.
pub fn fill_template(template: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let lookup = |name: &str, _: &[String]| Ok(vars(name).map(|v| v.replace('$', "$$")));
    expand::expand(template, Vec::new(), &lookup)
        .map(|e| e.text)
        .unwrap_or_else(|_| template.to_string())
}

/// Postfix's time syntax (`30s`, `5m`), for values inside parameters
/// (the per-milter settings of `smtpd_milters`).
pub use value::parse_time;

/// A value derived from one configuration (a service's parameters, a
/// router, a client's settings), built once and rebuilt only when the
/// daemon's configuration is replaced by a reload.
#[derive(Debug)]
pub struct PerConfig<T> {
    current: std::sync::Mutex<Option<Built<T>>>,
}

#[derive(Debug)]
struct Built<T> {
    config: std::sync::Arc<Config>,
    value: T,
    at: std::time::Instant,
}

impl<T> Default for PerConfig<T> {
    fn default() -> Self {
        PerConfig {
            current: std::sync::Mutex::new(None),
        }
    }
}

impl<T: Clone> PerConfig<T> {
    /// The value for `config`, built by `build` if `config` is not the
    /// one the value was built from. `build` gets the value of the
    /// previous configuration, to keep what a broken new one cannot give
    /// (smtpd keeps its certificates). A value for which `broken` holds
    /// (it failed for want of a file, a table not there yet) is built
    /// again once RETRY_BROKEN_CONFIG has passed, where Postfix's daemon
    /// would exit and be restarted by its master.
    pub fn get(
        &self,
        config: &std::sync::Arc<Config>,
        broken: impl FnOnce(&T) -> bool,
        build: impl FnOnce(&Config, Option<&T>) -> T,
    ) -> T {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = current.as_ref()
            && std::sync::Arc::ptr_eq(&b.config, config)
            && (b.at.elapsed() < RETRY_BROKEN_CONFIG || !broken(&b.value))
        {
            return b.value.clone();
        }
        let value = build(config, current.as_ref().map(|b| &b.value));
        *current = Some(Built {
            config: config.clone(),
            value: value.clone(),
            at: std::time::Instant::now(),
        });
        value
    }
}

/// How often a daemon tries again to build what a configuration could not
/// give it (a missing table file), between reloads.
pub const RETRY_BROKEN_CONFIG: std::time::Duration = std::time::Duration::from_secs(5);

/// A SASL login name as `smtpd_sasl_users` holds it and smtpd reports it
/// (`sasl_username=`): a name without a realm (`@`) of its own gets
/// `@$smtpd_sasl_local_domain` when that is set, as Cyrus SASL's user realm
/// does. smtpd and `qctl passwd` agree through this.
pub fn sasl_login_name(params: &Params, user: &str) -> String {
    qualify_login(&params.get("smtpd_sasl_local_domain"), user)
}

/// [`sasl_login_name`] with the realm already read.
pub fn qualify_login(realm: &str, user: &str) -> String {
    let realm = realm.trim();
    if realm.is_empty() || user.contains('@') {
        user.to_string()
    } else {
        format!("{user}@{realm}")
    }
}

/// Where the master and tools look without `-c`.
pub fn default_config_path() -> PathBuf {
    PathBuf::from("/etc/postern/master.toml")
}

/// Errors that refuse a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax, or a table/key that does not belong.
    #[error("{}:{line}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        message: String,
    },
    /// A parameter value that does not parse (after expansion) or loops.
    /// `line` is None for values from `-o` (and [`Params::set`]).
    #[error("{}: parameter \"{param}\": {reason}", location(file, *line, param, value))]
    Invalid {
        file: PathBuf,
        line: Option<usize>,
        param: String,
        value: String,
        reason: String,
    },
    /// A malformed `-o` argument.
    #[error("bad -o argument \"{arg}\": {reason}")]
    Override { arg: String, reason: String },
    /// A service whose listen address cannot be turned into sockets.
    #[error("service \"{service}\": listen \"{listen}\": {reason}")]
    Endpoint {
        service: String,
        listen: String,
        reason: String,
    },
}

fn location(file: &Path, line: Option<usize>, param: &str, value: &str) -> String {
    match line {
        Some(l) => format!("{}:{l}", file.display()),
        None => format!("command line -o {param}={value}"),
    }
}

/// Parameter names are Postfix's: letters, digits and underscores.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parses one `-o name=value` argument.
pub fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
    let bad = |reason: &str| ConfigError::Override {
        arg: arg.to_string(),
        reason: reason.to_string(),
    };
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected name=value"))?;
    let name = name.trim();
    if !valid_name(name) {
        return Err(bad("bad parameter name"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// A loaded, validated `master.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    pub file: PathBuf,
    pub services: Vec<Service>,
    /// Non-fatal problems found at load (also logged with tracing).
    pub warnings: Vec<String>,
    /// Parameters set in the file or with -o that nothing reads: unknown
    /// and referred to by no other value (the "ignored" warnings).
    unused: std::collections::BTreeSet<String>,
    /// `[main]` alone: the base of every per-service view.
    base: Params,
    /// `[main]` plus the `-o` overrides.
    main: Params,
    /// The `-o` overrides, re-applied on top of each service's options.
    overrides: Vec<(String, String)>,
    /// The line of each service option, by service and option name.
    option_lines: std::collections::BTreeMap<(String, String), usize>,
}

impl Config {
    /// Reads and validates the file; `overrides` are `-o name=value` pairs
    /// applied on top of `[main]` and every service's options.
    pub fn load(file: &Path, overrides: &[(String, String)]) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Io {
            file: file.to_path_buf(),
            source,
        })?;
        Self::from_str(&text, file, overrides)
    }

    /// Parses `text` as if it came from `file` (for tests).
    pub fn from_str(
        text: &str,
        file: &Path,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        load::parse(text, file, overrides, host::HostInfo::detect())
    }

    /// `[main]` plus the `-o` overrides.
    pub fn main(&self) -> &Params {
        &self.main
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Runs a start-up check over every set of parameters a daemon may run
    /// with: `[main]`, then each service's. `check` answers the parameter
    /// and the reason of what it refuses; the error names the file, line
    /// and parameter where that value was set.
    pub fn check_each_service(
        &self,
        mut check: impl FnMut(&Params) -> Result<(), (String, String)>,
    ) -> Result<(), ConfigError> {
        let views = std::iter::once(None).chain(self.services.iter().map(|s| Some(&s.name)));
        for service in views {
            let params = match service {
                Some(s) => self.params_for(s),
                None => self.main.clone(),
            };
            if let Err((param, reason)) = check(&params) {
                return Err(self.invalid(service.map(String::as_str), &param, reason));
            }
        }
        Ok(())
    }

    /// The parameters a service runs with: `[main]`, then its options, then
    /// the `-o` overrides. An unknown service gets [`Config::main`].
    pub fn params_for(&self, service: &str) -> Params {
        let Some(svc) = self.service(service) else {
            return self.main.clone();
        };
        let mut p = self.base.clone();
        for (k, v) in &svc.options {
            let line = self.option_lines.get(&(svc.name.clone(), k.clone()));
            p.insert(k, v, Some(line.copied().unwrap_or(svc.line)));
        }
        for (k, v) in &self.overrides {
            p.insert(k, v, None);
        }
        p
    }

    /// The error for a value of `name` that cannot be used in `service`'s
    /// view (`[main]` for None): it names the file and the line of the
    /// setting the value comes from (the service's option, the parameter,
    /// or one its value refers to). Load reports its own checks so, and a
    /// library that finds more at start (the router, a list file) does too.
    pub fn invalid(&self, service: Option<&str>, name: &str, reason: String) -> ConfigError {
        let svc = service.and_then(|s| self.service(s));
        let view = match svc {
            Some(s) => self.params_for(&s.name),
            None => self.main.clone(),
        };
        let option = |n: &str| svc.is_none_or(|s| s.options.contains_key(n));
        let (line, param, value) = view.origin(name, option);
        ConfigError::Invalid {
            file: self.file.clone(),
            line,
            param: name.to_string(),
            value: if param == name { value } else { view.get(name) },
            reason,
        }
    }

    /// Whether `name` is set but unknown and referred to by nothing, so
    /// not in force (postconf's "unused parameter").
    pub fn is_unused(&self, name: &str) -> bool {
        self.unused.contains(name)
    }

    /// Whether `name` is given with `-o` for the whole run (beating every
    /// service's options).
    pub fn is_overridden(&self, name: &str) -> bool {
        self.overrides.iter().any(|(k, _)| k == name)
    }

    /// The directory of the config file; relative paths resolve here.
    pub fn base_dir(&self) -> &Path {
        self.main.base_dir()
    }
}
