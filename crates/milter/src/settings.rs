//! Which filters to use and how: `smtpd_milters` / `non_smtpd_milters`
//! with Postfix's per-filter settings, the `milter_*` parameters, read
//! once from [`Params`].
//!
//! A list entry is an endpoint or a group with settings of its own:
//!
//! ```text
//! smtpd_milters = inet:127.0.0.1:8891,
//!     { unix:/run/clamav/clamav-milter.ctl, connect_timeout=10s,
//!       command_timeout=20s, content_timeout=60s, default_action=accept,
//!       protocol=6 }
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use postern_config::Params;

use crate::macros::MacroLists;
use crate::negotiate::Offer;
use crate::verdict::DefaultAction;

/// Which list of filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MilterList {
    /// `smtpd_milters`: mail that arrives over SMTP.
    Smtpd,
    /// `non_smtpd_milters`: mail from the sendmail command and pickup.
    NonSmtpd,
}

impl MilterList {
    pub fn param(self) -> &'static str {
        match self {
            MilterList::Smtpd => "smtpd_milters",
            MilterList::NonSmtpd => "non_smtpd_milters",
        }
    }
}

/// Where a filter listens.
pub use postern_config::PeerEndpoint as Endpoint;

/// One filter and the settings it runs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MilterSpec {
    /// As written in the list: the name in every log line.
    pub name: String,
    pub endpoint: Endpoint,
    /// `milter_connect_timeout`, or the group's `connect_timeout`.
    pub connect_timeout: Duration,
    /// `milter_command_timeout`: each read and write outside the message.
    pub command_timeout: Duration,
    /// `milter_content_timeout`: each read and write of the message.
    pub content_timeout: Duration,
    /// `milter_default_action`.
    pub default_action: DefaultAction,
    /// `milter_protocol`.
    pub protocol: Offer,
}

impl MilterSpec {
    /// A filter at `endpoint` with Postfix's default settings.
    pub fn new(endpoint: &str) -> Result<MilterSpec, String> {
        Ok(MilterSpec {
            name: endpoint.to_string(),
            endpoint: Endpoint::parse(endpoint, std::path::Path::new("/"), MILTER)?,
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(30),
            content_timeout: Duration::from_secs(300),
            default_action: DefaultAction::Tempfail,
            protocol: Offer::parse("6")?,
        })
    }
}

/// Everything a chain of filters needs, for one list.
#[derive(Clone, Debug)]
pub struct MilterSettings {
    /// The filters, in list order.
    pub milters: Vec<Arc<MilterSpec>>,
    /// The `milter_*_macros` lists.
    pub macros: MacroLists,
    /// `milter_macro_daemon_name`: the `{daemon_name}` macro.
    pub daemon_name: String,
    /// `milter_macro_v`: the `v` macro.
    pub macro_v: String,
}

/// A parameter whose value cannot be used; a start-up error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("parameter \"{param}\": {reason}")]
pub struct SettingsError {
    pub param: String,
    pub reason: String,
}

/// Reads the milter settings of `[main]` and of every service as smtpd
/// will, so that a malformed entry stops the master at start (or refuses
/// a reload) naming master.toml's file, line and parameter.
pub fn check_config(config: &postern_config::Config) -> Result<(), postern_config::ConfigError> {
    config.check_each_service(|params| {
        for which in [MilterList::Smtpd, MilterList::NonSmtpd] {
            MilterSettings::from_params(params, which).map_err(|e| (e.param, e.reason))?;
        }
        Ok(())
    })
}

impl MilterSettings {
    /// Reads `which` list and the `milter_*` parameters; an entry that
    /// does not parse is an error naming the parameter.
    pub fn from_params(
        params: &Params,
        which: MilterList,
    ) -> Result<MilterSettings, SettingsError> {
        let err = |param: &str, reason: String| SettingsError {
            param: param.to_string(),
            reason,
        };
        let default_action = DefaultAction::parse(&params.choice("milter_default_action"))
            .ok_or_else(|| {
                err(
                    "milter_default_action",
                    "expected accept, reject, tempfail or quarantine".into(),
                )
            })?;
        let protocol =
            Offer::parse(&params.get("milter_protocol")).map_err(|e| err("milter_protocol", e))?;
        let base = MilterSpec {
            name: String::new(),
            endpoint: Endpoint::Unix(PathBuf::new()),
            connect_timeout: params.time("milter_connect_timeout"),
            command_timeout: params.time("milter_command_timeout"),
            content_timeout: params.time("milter_content_timeout"),
            default_action,
            protocol,
        };
        let queue_dir = params.path("queue_directory");
        let mut milters = Vec::new();
        for entry in params.list(which.param()) {
            let spec = parse_entry(&entry, &base, &queue_dir).map_err(|e| err(which.param(), e))?;
            milters.push(Arc::new(spec));
        }
        Ok(MilterSettings {
            milters,
            macros: MacroLists::from_params(params),
            daemon_name: params.get("milter_macro_daemon_name"),
            macro_v: params.get("milter_macro_v"),
        })
    }

    /// Settings for these filters with Postfix's defaults otherwise.
    pub fn with_milters(milters: Vec<MilterSpec>) -> MilterSettings {
        MilterSettings {
            milters: milters.into_iter().map(Arc::new).collect(),
            macros: MacroLists::postfix_defaults(),
            daemon_name: String::new(),
            macro_v: "Postern".into(),
        }
    }
}

/// How errors name a filter.
const MILTER: &str = "Milter service";

/// One list entry: `endpoint` or `{ endpoint, name=value, ... }`.
fn parse_entry(
    entry: &str,
    base: &MilterSpec,
    queue_dir: &std::path::Path,
) -> Result<MilterSpec, String> {
    let mut spec = base.clone();
    let (name, settings) = postern_config::parse_group(entry, MILTER)?;
    spec.endpoint = Endpoint::parse(&name, queue_dir, MILTER)?;
    spec.name = name;
    for (key, value) in settings {
        let (key, value) = (key.as_str(), value.as_str());
        let time = || {
            postern_config::parse_time(value, 's')
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("bad time value: \"{key}={value}\""))
        };
        match key {
            "connect_timeout" => spec.connect_timeout = time()?,
            "command_timeout" => spec.command_timeout = time()?,
            "content_timeout" => spec.content_timeout = time()?,
            "default_action" => {
                spec.default_action = DefaultAction::parse(value)
                    .ok_or_else(|| format!("bad default_action: \"{value}\""))?
            }
            "protocol" => spec.protocol = Offer::parse(value)?,
            _ => return Err(format!("unknown attribute name: \"{key}\" in \"{entry}\"")),
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> MilterSpec {
        MilterSpec::new("inet:127.0.0.1:1").unwrap()
    }

    #[test]
    fn groups_override_the_defaults() {
        let q = std::path::Path::new("/q");
        let spec = parse_entry(
            "{ unix:/run/c.ctl, connect_timeout=10s, command_timeout=1m, content_timeout=5, \
             default_action=accept, protocol=4 }",
            &base(),
            q,
        )
        .unwrap();
        assert_eq!(spec.name, "unix:/run/c.ctl");
        assert_eq!(spec.connect_timeout, Duration::from_secs(10));
        assert_eq!(spec.command_timeout, Duration::from_secs(60));
        assert_eq!(spec.content_timeout, Duration::from_secs(5));
        assert_eq!(spec.default_action, DefaultAction::Accept);
        assert_eq!(spec.protocol.version, 4);
        let plain = parse_entry("inet:127.0.0.1:99", &base(), q).unwrap();
        assert_eq!(plain.command_timeout, Duration::from_secs(30));
        for bad in [
            "{ }",
            "{ inet:127.0.0.1:99, speed=fast }",
            "{ inet:127.0.0.1:99, connect_timeout=0 }",
            "{ inet:127.0.0.1:99, default_action=shrug }",
            "{ inet:127.0.0.1:99, protocol=5 }",
            "{ inet:127.0.0.1:99 nothing }",
        ] {
            assert!(parse_entry(bad, &base(), q).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod params_tests {
    use super::*;
    use postern_config::Config;

    fn params(main: &str) -> Params {
        let text = format!("[main]\nqueue_directory = \"/q\"\nmyhostname = \"mx.example\"\n{main}");
        Config::from_str(&text, std::path::Path::new("/etc/postern/master.toml"), &[])
            .unwrap()
            .main()
            .clone()
    }

    #[test]
    fn reads_the_lists_with_postfix_defaults() {
        let p = params(
            "smtpd_milters = \"inet:127.0.0.1:8891, { unix:private/clamav, default_action=accept }\"\n\
             milter_command_timeout = \"10s\"\n",
        );
        let s = MilterSettings::from_params(&p, MilterList::Smtpd).unwrap();
        assert_eq!(s.milters.len(), 2);
        assert_eq!(s.milters[0].name, "inet:127.0.0.1:8891");
        assert_eq!(s.milters[0].command_timeout, Duration::from_secs(10));
        assert_eq!(s.milters[0].content_timeout, Duration::from_secs(300));
        assert_eq!(s.milters[0].default_action, DefaultAction::Tempfail);
        assert_eq!(
            s.milters[1].endpoint,
            Endpoint::Unix("/q/private/clamav".into())
        );
        assert_eq!(s.milters[1].default_action, DefaultAction::Accept);
        assert_eq!(s.macros, MacroLists::postfix_defaults());
        assert_eq!(s.daemon_name, "mx.example");
        assert_eq!(s.macro_v, "Postern");
        let none = MilterSettings::from_params(&p, MilterList::NonSmtpd).unwrap();
        assert!(none.milters.is_empty());
    }

    #[test]
    fn a_bad_entry_names_its_parameter() {
        let p = params("non_smtpd_milters = \"inet:127.0.0.1\"\n");
        let e = MilterSettings::from_params(&p, MilterList::NonSmtpd).unwrap_err();
        assert_eq!(e.param, "non_smtpd_milters");
        assert!(
            e.to_string()
                .starts_with("parameter \"non_smtpd_milters\": "),
            "{e}"
        );
        let p = params("milter_protocol = \"5\"\n");
        let e = MilterSettings::from_params(&p, MilterList::Smtpd).unwrap_err();
        assert_eq!(e.param, "milter_protocol");
    }

    #[test]
    fn the_default_action_is_checked_at_load() {
        let text = "[main]\nmilter_default_action = \"shrug\"\n";
        assert!(Config::from_str(text, std::path::Path::new("/m.toml"), &[]).is_err());
    }
}
