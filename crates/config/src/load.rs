//! `master.toml` text to a validated [`Config`]. TOML is parsed into
//! toml's spanned `DeTable` so every error can name its line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::host::HostInfo;
use crate::params::Params;
use crate::service::{Service, ServiceType, parse_inet_listen};
use crate::{Config, ConfigError, defs, expand, valid_name, value};

const SERVICE_KEYS: &[&str] = &[
    "name",
    "type",
    "listen",
    "command",
    "process_limit",
    "privileged",
    "wakeup",
    "options",
];

struct Ctx<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn syntax(&self, offset: usize, message: String) -> ConfigError {
        ConfigError::Syntax {
            file: self.file.to_path_buf(),
            line: self.line(offset),
            message,
        }
    }
}

pub(crate) fn parse(
    text: &str,
    file: &Path,
    overrides: &[(String, String)],
    host: HostInfo,
) -> Result<Config, ConfigError> {
    let cx = Ctx { text, file };
    let doc = DeTable::parse(text).map_err(|e| {
        cx.syntax(
            e.span().map(|s| s.start).unwrap_or(0),
            e.message().trim().to_string(),
        )
    })?;
    let base_dir = base_dir(file);
    let mut base = Params::new(file, &base_dir, Arc::new(host));
    let mut services = Vec::new();
    // Option lines, for error messages: (service, option) -> line.
    let mut option_lines: BTreeMap<(String, String), usize> = BTreeMap::new();

    for (key, val) in doc.get_ref() {
        let k = key.get_ref().as_ref();
        let at = key.span().start;
        match k {
            "main" => {
                let DeValue::Table(t) = val.get_ref() else {
                    return Err(cx.syntax(at, "\"main\" must be a table".into()));
                };
                for (pk, pv) in t {
                    let name = pk.get_ref().as_ref();
                    let line = cx.line(pk.span().start);
                    if !valid_name(name) {
                        return Err(
                            cx.syntax(pk.span().start, format!("bad parameter name \"{name}\""))
                        );
                    }
                    let raw = to_raw(pv.get_ref()).map_err(|r| {
                        cx.syntax(pv.span().start, format!("parameter \"{name}\": {r}"))
                    })?;
                    base.insert(name, &raw, Some(line));
                }
            }
            "service" => {
                let DeValue::Array(items) = val.get_ref() else {
                    return Err(cx.syntax(
                        at,
                        "\"service\" must be an array of tables ([[service]])".into(),
                    ));
                };
                for item in items {
                    let (svc, lines) = parse_service(&cx, item)?;
                    if let Some(first) = services.iter().find(|s: &&Service| s.name == svc.name) {
                        return Err(cx.syntax(
                            item.span().start,
                            format!(
                                "service \"{}\": duplicate service name (first defined at line {})",
                                svc.name, first.line
                            ),
                        ));
                    }
                    for (opt, line) in lines {
                        option_lines.insert((svc.name.clone(), opt), line);
                    }
                    services.push(svc);
                }
            }
            other => {
                return Err(cx.syntax(at, format!("unknown top-level table \"{other}\"")));
            }
        }
    }

    let mut main = base.clone();
    for (k, v) in overrides {
        if !valid_name(k) {
            return Err(ConfigError::Override {
                arg: format!("{k}={v}"),
                reason: "bad parameter name".into(),
            });
        }
        main.insert(k, v, None);
    }
    services.sort_by_key(|s| s.line);

    let mut cfg = Config {
        file: file.to_path_buf(),
        services,
        warnings: Vec::new(),
        unused: BTreeSet::new(),
        base,
        main,
        overrides: overrides.to_vec(),
        option_lines,
    };
    let (warnings, unused) = validate(&cfg)?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    cfg.warnings = warnings;
    cfg.unused = unused;
    Ok(cfg)
}

/// The config file's directory, made absolute because daemons may chdir.
fn base_dir(file: &Path) -> PathBuf {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&dir).unwrap_or(dir)
}

/// A TOML value as the Postfix text it stands for.
fn to_raw(v: &DeValue<'_>) -> Result<String, String> {
    match v {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            i64::from_str_radix(&digits, i.radix())
                .map(|n| n.to_string())
                .map_err(|_| format!("integer out of range: {}", i.as_str()))
        }
        DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Ok(if *b { "yes" } else { "no" }.to_string()),
        DeValue::Array(a) => {
            let mut parts = Vec::new();
            for item in a {
                match item.get_ref() {
                    DeValue::Array(_) | DeValue::Table(_) => {
                        return Err("arrays may hold only strings, numbers and booleans".into());
                    }
                    other => parts.push(to_raw(other)?),
                }
            }
            Ok(parts.join(", "))
        }
        DeValue::Datetime(_) => Err("dates are not parameter values".into()),
        DeValue::Table(_) => Err("a table is not a parameter value".into()),
    }
}

/// The `[[service]]` key `key` read by `parse` (`None` when absent); a
/// value it refuses is an error saying what the key `must` be.
fn scalar<'v, T>(
    get: &dyn Fn(&str) -> Option<&'v Spanned<DeValue<'v>>>,
    err: &dyn Fn(usize, String) -> ConfigError,
    key: &str,
    must: &str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    let Some(v) = get(key) else {
        return Ok(None);
    };
    match to_raw(v.get_ref()).ok().and_then(|s| parse(&s)) {
        Some(value) => Ok(Some(value)),
        None => Err(err(v.span().start, format!("\"{key}\" must be {must}"))),
    }
}

/// One `[[service]]`; also returns each option's line.
fn parse_service(
    cx: &Ctx<'_>,
    item: &Spanned<DeValue<'_>>,
) -> Result<(Service, Vec<(String, usize)>), ConfigError> {
    let at = item.span().start;
    let DeValue::Table(t) = item.get_ref() else {
        return Err(cx.syntax(at, "service entries must be tables ([[service]])".into()));
    };
    let get = |k: &str| t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v);
    let name = match get("name").map(|v| v.get_ref()) {
        Some(DeValue::String(s)) => s.to_string(),
        Some(_) => return Err(cx.syntax(at, "service: \"name\" must be a string".into())),
        None => return Err(cx.syntax(at, "service: missing \"name\"".into())),
    };
    let err = |off: usize, msg: String| cx.syntax(off, format!("service \"{name}\": {msg}"));
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(err(
            at,
            "name may hold only letters, digits, '_', '-' and '.'".into(),
        ));
    }
    for (key, _) in t {
        let k = key.get_ref().as_ref();
        if !SERVICE_KEYS.contains(&k) {
            return Err(err(key.span().start, format!("unknown key \"{k}\"")));
        }
    }
    let string = |k: &str| -> Result<Option<String>, ConfigError> {
        match get(k) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                DeValue::String(s) => Ok(Some(s.to_string())),
                DeValue::Integer(_) => Ok(Some(to_raw(v.get_ref()).unwrap_or_default())),
                _ => Err(err(v.span().start, format!("\"{k}\" must be a string"))),
            },
        }
    };

    let kind = match get("type") {
        None => return Err(err(at, "missing \"type\" (inet or unix)".into())),
        Some(v) => match v.get_ref() {
            DeValue::String(s) if s == "inet" => ServiceType::Inet,
            DeValue::String(s) if s == "unix" => ServiceType::Unix,
            other => {
                let shown = to_raw(other).unwrap_or_default();
                return Err(err(
                    v.span().start,
                    format!("bad type \"{shown}\" (expected inet or unix)"),
                ));
            }
        },
    };
    // A unix service may listen on several sockets: an array of names.
    let listen = match get("listen").map(|v| (v, v.get_ref())) {
        Some((v, DeValue::Array(_))) if kind == ServiceType::Unix => {
            Some(to_raw(v.get_ref()).map_err(|r| err(v.span().start, format!("\"listen\": {r}")))?)
        }
        _ => string("listen")?,
    };
    let listen = match (listen, &kind) {
        (Some(l), _) => l,
        (None, ServiceType::Unix) => name.clone(),
        (None, ServiceType::Inet) => {
            return Err(err(
                at,
                "inet services need \"listen\" (host:port or port)".into(),
            ));
        }
    };
    if kind == ServiceType::Inet
        && let Err(reason) = parse_inet_listen(&listen)
    {
        let off = get("listen").map(|v| v.span().start).unwrap_or(at);
        return Err(err(off, format!("bad listen address: {reason}")));
    }
    if kind == ServiceType::Unix && listen.trim().is_empty() {
        return Err(err(at, "empty \"listen\"".into()));
    }
    let command = string("command")?.unwrap_or_else(|| name.clone());
    if command.trim().is_empty() {
        return Err(err(at, "empty \"command\"".into()));
    }

    let process_limit = scalar(&get, &err, "process_limit", "a number >= 0", |s| {
        s.parse::<u32>().ok()
    })?
    .unwrap_or(1);
    let privileged = scalar(&get, &err, "privileged", "true or false", |s| {
        value::parse_bool(s)
    })?
    .unwrap_or(false);
    let wakeup = scalar(&get, &err, "wakeup", "a time like \"60s\"", |s| {
        value::parse_time(s.trim_end_matches('?'), 's')
    })?
    .filter(|d| *d > Duration::ZERO);

    let mut options = BTreeMap::new();
    let mut lines = Vec::new();
    if let Some(v) = get("options") {
        let DeValue::Table(opts) = v.get_ref() else {
            return Err(err(v.span().start, "\"options\" must be a table".into()));
        };
        for (ok, ov) in opts {
            let oname = ok.get_ref().to_string();
            if !valid_name(&oname) {
                return Err(err(
                    ok.span().start,
                    format!("bad parameter name \"{oname}\""),
                ));
            }
            let raw = to_raw(ov.get_ref())
                .map_err(|r| err(ov.span().start, format!("option \"{oname}\": {r}")))?;
            lines.push((oname.clone(), cx.line(ok.span().start)));
            options.insert(oname, raw);
        }
    }

    Ok((
        Service {
            name,
            kind,
            listen,
            command,
            process_limit,
            privileged,
            wakeup,
            options,
            line: cx.line(at),
        },
        lines,
    ))
}

/// Checks every explicit value and collects warnings, then every
/// parameter of every service's view (a value can make another one bad
/// through `$name`, and a service's options apply to it alone).
fn validate(cfg: &Config) -> Result<(Vec<String>, BTreeSet<String>), ConfigError> {
    let file = cfg.file.display().to_string();
    let mut warnings = Vec::new();

    // Names referred to anywhere make an unknown parameter a macro.
    let mut referenced = BTreeSet::new();
    for (_, s) in cfg.main.settings().chain(cfg.base.settings()) {
        referenced.extend(expand::references(&s.raw));
    }
    for svc in &cfg.services {
        for v in svc.options.values() {
            referenced.extend(expand::references(v));
        }
    }
    for d in defs::PARAMS {
        referenced.extend(expand::references(d.default));
    }
    let unknown = |name: &str| defs::lookup(name).is_none() && !referenced.contains(name);
    let mut unused = BTreeSet::new();

    let where_ = |line: Option<usize>, name: &str, raw: &str| match line {
        Some(l) => format!("{file}:{l}"),
        None => format!("command line -o {name}={raw}"),
    };

    // [main] and -o, in file order, -o last.
    let mut settings: Vec<_> = cfg.main.settings().collect();
    settings.sort_by_key(|(_, s)| s.line.unwrap_or(usize::MAX));
    for (name, s) in settings {
        let loc = where_(s.line, name, &s.raw);
        if unknown(name) {
            warnings.push(format!("{loc}: unknown parameter \"{name}\" (ignored)"));
            unused.insert(name.clone());
            continue;
        }
        check_one(cfg, &cfg.main, name, &s.raw, s.line, &loc, &mut warnings)?;
    }

    for svc in &cfg.services {
        let params = cfg.params_for(&svc.name);
        for (name, raw) in &svc.options {
            if cfg.overrides.iter().any(|(k, _)| k == name) {
                continue; // the -o value wins and was checked above
            }
            let line = cfg
                .option_lines
                .get(&(svc.name.clone(), name.clone()))
                .copied()
                .unwrap_or(svc.line);
            let loc = format!("{file}:{line}");
            if unknown(name) {
                warnings.push(format!(
                    "{loc}: service \"{}\": unknown parameter \"{name}\" (ignored)",
                    svc.name
                ));
                unused.insert(name.clone());
                continue;
            }
            check_one(cfg, &params, name, raw, Some(line), &loc, &mut warnings)?;
        }
    }

    let views = std::iter::once((cfg.main.clone(), None)).chain(
        cfg.services
            .iter()
            .map(|s| (cfg.params_for(&s.name), Some(s))),
    );
    for (view, svc) in views {
        let classes = view.list("smtpd_restriction_classes");
        let names = defs::PARAMS
            .iter()
            .map(|d| d.name)
            .chain(classes.iter().map(String::as_str));
        for name in names {
            if let Err(reason) = view.validate(name) {
                return Err(cfg.invalid(svc.map(|s| s.name.as_str()), name, reason));
            }
        }
    }
    warnings.dedup();
    Ok((warnings, unused))
}

fn check_one(
    cfg: &Config,
    params: &Params,
    name: &str,
    raw: &str,
    line: Option<usize>,
    loc: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match params.validate(name) {
        Ok(undefined) => {
            for u in undefined {
                warnings.push(format!(
                    "{loc}: parameter \"{name}\" refers to undefined parameter \"{u}\" (expands to empty)"
                ));
            }
            Ok(())
        }
        Err(reason) => Err(ConfigError::Invalid {
            file: cfg.file.clone(),
            line,
            param: name.to_string(),
            value: raw.to_string(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostInfo {
        HostInfo {
            hostname: "mx.example.com".into(),
            interfaces: vec![("192.0.2.10".parse().unwrap(), 24)],
        }
    }

    fn load(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("master.toml"), &[], host())
    }

    fn load_o(text: &str, o: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let o: Vec<(String, String)> = o
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse(text, Path::new("master.toml"), &o, host())
    }

    fn err(text: &str) -> String {
        load(text).unwrap_err().to_string()
    }

    const FULL: &str = r#"
[main]
myhostname = "mail.example.local"
mydestination = ["$myhostname", "localhost.$mydomain", "localhost"]
mynetworks = "127.0.0.0/8, [::1]/128 192.168.1.0/24"
message_size_limit = 10240000
smtpd_sasl_auth_enable = "yes"
smtpd_tls_auth_only = true
maximal_queue_lifetime = 3
sled_cache_capacity = "16MiB"
queue_directory = "spool"
mua_client_restrictions = "permit_sasl_authenticated, reject"

[[service]]
name = "smtp"
type = "inet"
listen = "127.0.0.1:2525"
command = "smtpd"
process_limit = 1
privileged = false

[[service]]
name = "submission"
type = "inet"
listen = 2587
command = "smtpd"
options = { syslog_name = "postern/submission", smtpd_tls_security_level = "encrypt", smtpd_client_restrictions = "$mua_client_restrictions" }

[[service]]
name = "qmgr"
type = "unix"
command = "qmgr"
wakeup = "60s"
process_limit = 1

[[service]]
name = "showq"
type = "unix"
listen = "public/showq"
privileged = "yes"
"#;

    #[test]
    fn full_example() {
        let c = load(FULL).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let m = c.main();
        assert_eq!(m.get("myhostname"), "mail.example.local");
        assert_eq!(m.get("mydomain"), "example.local");
        assert_eq!(
            m.list("mydestination"),
            vec!["mail.example.local", "localhost.example.local", "localhost"]
        );
        assert_eq!(
            m.list("mynetworks"),
            vec!["127.0.0.0/8", "[::1]/128", "192.168.1.0/24"]
        );
        assert_eq!(m.int("message_size_limit"), 10240000);
        assert!(m.bool("smtpd_sasl_auth_enable"));
        assert!(m.bool("smtpd_tls_auth_only"));
        assert_eq!(
            m.time("maximal_queue_lifetime"),
            Duration::from_secs(3 * 86400)
        );
        assert_eq!(m.size("sled_cache_capacity"), 16 << 20);
        assert!(c.base_dir().is_absolute());
        assert_eq!(m.path("queue_directory"), c.base_dir().join("spool"));

        assert_eq!(c.services.len(), 4);
        let smtp = c.service("smtp").unwrap();
        assert_eq!(smtp.kind, ServiceType::Inet);
        assert_eq!(smtp.listen, "127.0.0.1:2525");
        assert_eq!(smtp.command, "smtpd");
        assert_eq!(smtp.line, 14);
        let sub = c.service("submission").unwrap();
        assert_eq!(sub.listen, "2587");
        assert_eq!(sub.process_limit, 1);
        let qmgr = c.service("qmgr").unwrap();
        assert_eq!(qmgr.listen, "qmgr");
        assert_eq!(qmgr.wakeup, Some(Duration::from_secs(60)));
        let showq = c.service("showq").unwrap();
        assert!(showq.privileged);
        assert_eq!(showq.command, "showq");
        assert_eq!(
            showq.endpoint(m).unwrap(),
            crate::Endpoint::Unix(c.base_dir().join("spool/public/showq"))
        );
        assert!(c.service("nope").is_none());

        let p = c.params_for("submission");
        assert_eq!(p.get("syslog_name"), "postern/submission");
        assert_eq!(p.get("smtpd_tls_security_level"), "encrypt");
        assert_eq!(
            p.list("smtpd_client_restrictions"),
            vec!["permit_sasl_authenticated", "reject"]
        );
        assert_eq!(c.params_for("smtp").get("syslog_name"), "postern");
        assert_eq!(m.get("smtpd_tls_security_level"), "");
    }

    #[test]
    fn overrides_beat_main_and_service_options() {
        let c = load_o(
            FULL,
            &[
                ("smtpd_tls_security_level", "may"),
                ("message_size_limit", "5000"),
            ],
        )
        .unwrap();
        assert_eq!(c.main().int("message_size_limit"), 5000);
        assert_eq!(c.main().raw("message_size_limit"), Some("5000"));
        assert_eq!(
            c.params_for("submission").get("smtpd_tls_security_level"),
            "may"
        );
        assert_eq!(
            c.params_for("submission").get("syslog_name"),
            "postern/submission"
        );
        assert_eq!(c.params_for("smtp").int("message_size_limit"), 5000);
    }

    #[test]
    fn bad_override_names_command_line() {
        let e = load_o(FULL, &[("message_size_limit", "10M")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "command line -o message_size_limit=10M: parameter \"message_size_limit\": \
             invalid integer value \"10M\""
        );
        let c = load_o("", &[("mynetwork", "x")]).unwrap();
        assert_eq!(
            c.warnings,
            vec!["command line -o mynetwork=x: unknown parameter \"mynetwork\" (ignored)"]
        );
    }

    #[test]
    fn invalid_values_name_line() {
        let text = "[main]\n\n# size\nmessage_size_limit = \"10M\"\n";
        let e = load(text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "master.toml:4: parameter \"message_size_limit\": invalid integer value \"10M\""
        );
        match e {
            ConfigError::Invalid {
                line, param, value, ..
            } => {
                assert_eq!(
                    (line, param.as_str(), value.as_str()),
                    (Some(4), "message_size_limit", "10M")
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err("[main]\nsmtpd_helo_required = \"perhaps\"\n"),
            "master.toml:2: parameter \"smtpd_helo_required\": invalid boolean value \"perhaps\""
        );
        assert_eq!(
            err("[main]\nsmtpd_timeout = \"5 minutes\"\n"),
            "master.toml:2: parameter \"smtpd_timeout\": invalid time value \"5 minutes\""
        );
        assert_eq!(
            err("[main]\nsled_cache_capacity = \"lots\"\n"),
            "master.toml:2: parameter \"sled_cache_capacity\": invalid size value \"lots\""
        );
        // Checked after expansion.
        assert_eq!(
            err("[main]\nmy_limit = \"big\"\nmessage_size_limit = \"$my_limit\"\n"),
            "master.toml:3: parameter \"message_size_limit\": invalid integer value \"big\""
        );
        let e = err("[main]\ntransport_maps = \"hash:/x, nosuch:/y\"\n");
        assert!(e.starts_with("master.toml:2: parameter \"transport_maps\": unsupported dictionary type \"nosuch\""), "{e}");
    }

    #[test]
    fn kinds_are_checked_at_load() {
        assert_eq!(
            err("[main]\nsmtpd_forbid_bare_newline = \"sometimes\"\n"),
            "master.toml:2: parameter \"smtpd_forbid_bare_newline\": invalid value \
             \"sometimes\" (expected normalize, yes, reject or no)"
        );
        assert_eq!(
            err("[main]\nsmtp_tls_security_level = \"dane\"\n"),
            "master.toml:2: parameter \"smtp_tls_security_level\": invalid value \"dane\" \
             (expected \"\", none, may, encrypt, verify or secure)"
        );
        // A guide's typo: a comma for a dot.
        let e = err("[main]\nmynetworks = \"192.168.1.0/24, 192,168.10.0/24\"\n");
        assert!(
            e.starts_with("master.toml:2: parameter \"mynetworks\": ") && e.contains("\"192\""),
            "{e}"
        );
        assert_eq!(
            err("[main]\nmynetworks_style = \"hosts\"\n"),
            "master.toml:2: parameter \"mynetworks_style\": invalid value \"hosts\" \
             (expected host, subnet or class)"
        );
        assert_eq!(
            err("[main]\nsmtpd_sasl_security_options = \"noanonymous, noplain\"\n"),
            "master.toml:2: parameter \"smtpd_sasl_security_options\": invalid word \
             \"noplain\" in \"noanonymous, noplain\" (expected noplaintext, noactive, \
             nodictionary, noanonymous, mutual_auth or forward_secrecy)"
        );
        assert_eq!(
            err("[main]\nreject_code = 250\n"),
            "master.toml:2: parameter \"reject_code\": invalid reply code (4xx or 5xx) value \"250\""
        );
        assert_eq!(
            err("[main]\nsmtpd_hard_error_limit = 0\n"),
            "master.toml:2: parameter \"smtpd_hard_error_limit\": invalid integer (at least 1) \
             value \"0\""
        );
        let e = err("[main]\nrelay_domains = \"example.com, ldap:/etc/ldap-relay.cf\"\n");
        assert_eq!(
            e,
            "master.toml:2: parameter \"relay_domains\": unsupported dictionary type \"ldap\" \
             in table \"ldap:/etc/ldap-relay.cf\""
        );
        let e = err(
            "[main]\nsmtpd_relay_restrictions = \"permit_mynetworks, check_ccert_access hash:/x\"\n",
        );
        assert_eq!(
            e,
            "master.toml:2: parameter \"smtpd_relay_restrictions\": restriction \
             \"check_ccert_access\" is not supported by Postern"
        );
        // A restriction class is a restriction list too.
        let e = err(
            "[main]\nsmtpd_restriction_classes = \"strict\"\nstrict = \"check_sender_access mysql:/x\"\n",
        );
        assert!(
            e.starts_with(
                "master.toml:3: parameter \"strict\": unsupported dictionary type \"mysql\""
            ),
            "{e}"
        );
        assert_eq!(
            err("[main]\nsmtp_bind_address = \"::1\"\n"),
            "master.toml:2: parameter \"smtp_bind_address\": invalid IPv4 address value \"::1\""
        );
        assert_eq!(
            err("[main]\ndns_servers = \"127.0.0.53, resolver.example\"\n"),
            "master.toml:2: parameter \"dns_servers\": invalid resolver \"resolver.example\" \
             (expected ip or ip:port)"
        );
        let c = load(
            "[main]\nsmtp_bind_address = \"[192.0.2.1]\"\nsmtp_bind_address6 = \"2001:db8::1\"\n\
             dns_servers = \"127.0.0.53 [::1]:5353\"\n",
        )
        .unwrap();
        assert_eq!(c.main().ipv4("smtp_bind_address"), "192.0.2.1".parse().ok());
        assert_eq!(
            c.main().ipv6("smtp_bind_address6"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(
            c.main().resolvers("dns_servers"),
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert_eq!(load("").unwrap().main().ipv4("smtp_bind_address"), None);
        // Accepted forms.
        let c = load(
            "[main]\nsmtpd_forbid_bare_newline = \"Reject\"\nrelay_domains = \".example.com /etc/relay hash:/etc/relay2\"\n\
             mailbox_command = \"/usr/bin/procmail -a $EXTENSION\"\n",
        )
        .unwrap();
        assert_eq!(c.main().choice("smtpd_forbid_bare_newline"), "reject");
        assert_eq!(
            c.main().get("mailbox_command"),
            "/usr/bin/procmail -a $EXTENSION"
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn unimplemented_parameters_are_refused_unless_default() {
        let e = err("[main]\nmyhostname = \"a.b\"\nsmtpd_tls_req_ccert = true\n");
        assert_eq!(
            e,
            "master.toml:3: parameter \"smtpd_tls_req_ccert\": not supported by Postern yet: \
             client certificates are never requested; remove the setting, or set the default \"no\""
        );
        // The default, however it is spelled, is what Postern does.
        let c = load(
            "[main]\nsmtpd_tls_req_ccert = false\nsmtp_tls_policy_maps = \"\"\n\
             smtpd_client_connection_count_limit = 50\nmax_idle = \"100\"\n",
        )
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // A default that follows another parameter stays in force with it.
        load("[main]\nsmtp_tls_key_file = \"$smtp_tls_cert_file\"\n").unwrap();
        // Also per service, and through -o.
        let e = err(
            "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"25\"\n\
             options = { smtpd_client_connection_rate_limit = 30 }\n",
        );
        assert!(
            e.starts_with(
                "master.toml:5: parameter \"smtpd_client_connection_rate_limit\": not supported"
            ),
            "{e}"
        );
        let e = load_o("", &[("smtp_tls_policy_maps", "hash:/etc/tls_policy")]).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "command line -o smtp_tls_policy_maps=hash:/etc/tls_policy: parameter \
                 \"smtp_tls_policy_maps\": not supported"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_value_made_bad_by_a_service_option_names_the_option() {
        let e = err(
            "[main]\nmy_limit = 4096\nmessage_size_limit = \"$my_limit\"\n\n\
             [[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"25\"\n\
             options = { my_limit = \"big\" }\n",
        );
        assert_eq!(
            e,
            "master.toml:9: parameter \"message_size_limit\": invalid integer value \"big\""
        );
    }

    #[test]
    fn loops_are_errors() {
        let e = err(
            "[main]\nrelayhost = \"$default_transport\"\ndefault_transport = \"${relayhost}\"\n",
        );
        assert_eq!(
            e,
            "master.toml:2: parameter \"relayhost\": parameter expansion loop: \
             relayhost -> default_transport -> relayhost"
        );
        let e = err("[main]\nmyhostname = \"$mydomain\"\n");
        assert!(e.contains("loop"), "{e}");
    }

    #[test]
    fn toml_syntax_errors_have_lines() {
        let e = err("[main]\nmyhostname = \"a\"\nmydomain = \n");
        assert!(e.starts_with("master.toml:3: "), "{e}");
        let e = err("[main]\nmyhostname = \"a\"\nmyhostname = \"b\"\n");
        assert!(e.starts_with("master.toml:3: "), "{e}");
    }

    #[test]
    fn structure_errors() {
        assert_eq!(
            err("[main]\n[mian]\nx = 1\n"),
            "master.toml:2: unknown top-level table \"mian\""
        );
        assert_eq!(
            err("[main]\nmydestination = { a = 1 }\n"),
            "master.toml:2: parameter \"mydestination\": a table is not a parameter value"
        );
        assert_eq!(
            err(
                "[[service]]\nname = \"smtp\"\ntype = \"inet\"\nlisten = \"25\"\nproces_limit = 2\n"
            ),
            "master.toml:5: service \"smtp\": unknown key \"proces_limit\""
        );
        assert_eq!(
            err("[[service]]\nname = \"a\"\ntype = \"fifo\"\n"),
            "master.toml:3: service \"a\": bad type \"fifo\" (expected inet or unix)"
        );
        assert_eq!(
            err(
                "[[service]]\nname = \"a\"\ntype = \"unix\"\n\n[[service]]\nname = \"a\"\ntype = \"unix\"\n"
            ),
            "master.toml:5: service \"a\": duplicate service name (first defined at line 1)"
        );
        assert_eq!(
            err("[[service]]\ntype = \"unix\"\n"),
            "master.toml:1: service: missing \"name\""
        );
        assert_eq!(
            err("[[service]]\nname = \"s\"\ntype = \"inet\"\n"),
            "master.toml:1: service \"s\": inet services need \"listen\" (host:port or port)"
        );
        let e = err("[[service]]\nname = \"s\"\ntype = \"inet\"\nlisten = \"::1:25\"\n");
        assert!(
            e.starts_with("master.toml:4: service \"s\": bad listen address"),
            "{e}"
        );
        let e = err("[[service]]\nname = \"s\"\ntype = \"unix\"\nprocess_limit = -1\n");
        assert!(e.contains("process_limit"), "{e}");
        let e = err("[[service]]\nname = \"s\"\ntype = \"unix\"\nwakeup = \"soon\"\n");
        assert!(e.contains("wakeup"), "{e}");
    }

    #[test]
    fn service_options_are_validated() {
        let e = err(
            "[[service]]\nname = \"s\"\ntype = \"unix\"\n\n[service.options]\nsmtpd_timeout = \"x\"\n",
        );
        assert_eq!(
            e,
            "master.toml:6: parameter \"smtpd_timeout\": invalid time value \"x\""
        );
        let c = load(
            "[[service]]\nname = \"s\"\ntype = \"unix\"\noptions = { bogus_opt = \"1\", wakeup_x = 2 }\n",
        )
        .unwrap();
        assert_eq!(c.warnings.len(), 2);
        assert_eq!(
            c.warnings[0],
            "master.toml:4: service \"s\": unknown parameter \"bogus_opt\" (ignored)"
        );
    }

    #[test]
    fn a_unix_listen_may_be_an_array() {
        let c = load(
            "[[service]]\nname = \"qmgr\"\ntype = \"unix\"\nlisten = [\"qmgr\", \"qmgr-admin\"]\n",
        )
        .unwrap();
        assert_eq!(c.service("qmgr").unwrap().listen, "qmgr, qmgr-admin");
        let e = load("[[service]]\nname = \"s\"\ntype = \"inet\"\nlisten = [\"25\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"listen\" must be a string"), "{e}");
    }

    #[test]
    fn service_defaults_and_wakeup() {
        let c = load("[[service]]\nname = \"qmgr\"\ntype = \"unix\"\nwakeup = 0\n").unwrap();
        let s = c.service("qmgr").unwrap();
        assert_eq!((s.process_limit, s.privileged, s.wakeup), (1, false, None));
        assert_eq!(s.command, "qmgr");
        let c = load("[[service]]\nname = \"p\"\ntype = \"unix\"\nwakeup = 300\nprivileged = true\nprocess_limit = \"0\"\n").unwrap();
        let s = c.service("p").unwrap();
        assert_eq!(s.wakeup, Some(Duration::from_secs(300)));
        assert!(s.privileged);
        assert_eq!(s.process_limit, 0);
    }

    #[test]
    fn unknown_main_parameters_warn() {
        let text = "[main]\nmyhostname = \"a.b\"\n\n\n\n\nmynetwork = \"10.0.0.0/8\"\nmy_macro = \"x\"\nsmtpd_banner = \"$my_macro ${nothere}\"\n";
        let c = load(text).unwrap();
        assert_eq!(
            c.warnings,
            vec![
                "master.toml:7: unknown parameter \"mynetwork\" (ignored)",
                "master.toml:9: parameter \"smtpd_banner\" refers to undefined parameter \"nothere\" (expands to empty)",
            ]
        );
        assert_eq!(c.main().get("smtpd_banner"), "x ");
    }

    #[test]
    fn value_forms() {
        let c = load(
            "[main]\nsmtpd_recipient_limit = 0x10\nmessage_size_limit = 1_000\ncompatibility_level = 3.6\n\
             smtpd_helo_required = false\nsmtpd_sasl_security_options = [\"noanonymous\", \"noplaintext\"]\n\
             smtpd_recipient_restrictions = [\"permit_mynetworks\", \"check_client_access hash:clients\"]\n",
        )
        .unwrap();
        let m = c.main();
        assert_eq!(m.int("smtpd_recipient_limit"), 16);
        assert_eq!(m.int("message_size_limit"), 1000);
        assert_eq!(m.get("compatibility_level"), "3.6");
        assert_eq!(m.raw("smtpd_helo_required"), Some("no"));
        assert_eq!(
            m.words("smtpd_sasl_security_options"),
            vec!["noanonymous", "noplaintext"]
        );
        assert_eq!(
            m.list("smtpd_recipient_restrictions"),
            vec!["permit_mynetworks", "check_client_access", "hash:clients"]
        );
    }

    #[test]
    fn parse_override_forms() {
        assert_eq!(
            crate::parse_override("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert_eq!(
            crate::parse_override("relayhost=").unwrap(),
            ("relayhost".to_string(), String::new())
        );
        assert!(crate::parse_override("novalue").is_err());
        assert!(crate::parse_override("bad name=1").is_err());
    }

    #[test]
    fn load_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("master.toml");
        std::fs::write(&f, "[main]\nalias_maps = \"hash:aliases\"\n").unwrap();
        std::fs::write(dir.path().join("aliases"), "postmaster: root\n").unwrap();
        let c = Config::load(&f, &[]).unwrap();
        assert_eq!(c.file, f);
        assert_eq!(c.base_dir(), dir.path());
        let a = c.main().maps("alias_maps").unwrap();
        assert_eq!(a.lookup("postmaster").unwrap().as_deref(), Some("root"));
        let e = Config::load(&dir.path().join("missing.toml"), &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Io { .. }));
        assert_eq!(
            crate::default_config_path(),
            PathBuf::from("/etc/postern/master.toml")
        );
    }

    #[test]
    fn shipped_example_loads() {
        // The workspace's example master.toml must stay valid.
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../master.toml");
        if f.exists() {
            let c = Config::load(&f, &[]).unwrap();
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
            for s in &c.services {
                s.endpoint(&c.params_for(&s.name)).unwrap();
            }
        }
    }
}
