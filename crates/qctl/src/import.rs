//! `qctl config import MAIN.CF`: a master.toml that runs what a Postfix
//! main.cf says, on standard output, and on standard error each line that
//! could not be carried over and why.
//!
//! Every parameter is carried over in Postfix's syntax (`$name`
//! references and all), as a TOML string in `[main]`, except:
//! * Postfix's own directories, paths and accounts (`queue_directory`,
//!   `daemon_directory`, `mail_owner`, ...): Postern's are kept, from
//!   the master.toml it installs;
//! * parameters Postern does not know;
//! * values Postern refuses (a parameter it does not implement set to
//!   other than its default, a table type it cannot read, a value that
//!   does not parse): what load says about them is reported, and they
//!   are left out until the rest loads.
//!
//! With MASTER.CF, its services become `[[service]]` entries: smtpd on
//! inet ports (`smtp` is 25, `submission` 587, `smtps` and `submissions`
//! 465, `host:port` as written; the `-o` options and the process limit
//! kept), and qmgr, pickup, smtp (as `smtp-client`), relay, local and
//! tlsmgr; the Postfix daemons Postern has no counterpart for (cleanup,
//! trivial-rewrite, bounce, showq, pipe, virtual, lmtp, ...) are reported
//! and left out. Without it, the services are the installed master.toml's.
//! A line that does not parse is reported with its line, and nothing is
//! written.

use std::path::Path;

use anyhow::bail;
use postern_config::{Config, ConfigError, defs};

/// The master.toml Postern installs: its `[main]` defaults and services.
const INSTALLED: &str = include_str!("../../../master.toml");

/// Postfix's own directories, programs and accounts, which are not
/// Postern's.
const POSTFIX_OWN: &[&str] = &[
    "command_directory",
    "daemon_directory",
    "data_directory",
    "html_directory",
    "mail_owner",
    "mailq_path",
    "manpage_directory",
    "meta_directory",
    "newaliases_path",
    "queue_directory",
    "readme_directory",
    "sample_directory",
    "sendmail_path",
    "setgid_group",
    "shlib_directory",
];

/// One `name = value` of main.cf, or a `-o` of master.cf.
#[derive(Clone)]
struct Setting {
    line: usize,
    name: String,
    value: String,
}

/// main.cf's logical lines as settings (a line that starts with white
/// space continues the one before; `#` lines are comments).
fn parse(file: &Path, text: &str) -> anyhow::Result<Vec<Setting>> {
    let mut settings: Vec<Setting> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            match settings.last_mut() {
                Some(s) => {
                    if !s.value.is_empty() {
                        s.value.push(' ');
                    }
                    s.value.push_str(trimmed);
                    continue;
                }
                None => bail!(
                    "{}:{}: a continuation line before any parameter",
                    file.display(),
                    i + 1
                ),
            }
        }
        let Some((name, value)) = trimmed.split_once('=') else {
            bail!(
                "{}:{}: missing '=' after parameter name: \"{trimmed}\"",
                file.display(),
                i + 1
            );
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!(
                "{}:{}: bad parameter name \"{name}\"",
                file.display(),
                i + 1
            );
        }
        settings.push(Setting {
            line: i + 1,
            name: name.to_string(),
            value: value.trim().to_string(),
        });
    }
    // The last setting of a name wins, as in Postfix.
    let mut last = Vec::new();
    for s in settings.into_iter().rev() {
        if !last.iter().any(|l: &Setting| l.name == s.name) {
            last.push(s);
        }
    }
    last.reverse();
    Ok(last)
}

fn toml_string(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// One master.cf service as Postern runs it.
struct Service {
    line: usize,
    name: String,
    kind: &'static str,
    listen: String,
    command: &'static str,
    process_limit: Option<String>,
    privileged: bool,
    wakeup: Option<String>,
    options: Vec<Setting>,
}

/// Where a line of the rendered file came from: a main.cf setting, or an
/// option of a service.
#[derive(Clone, Copy)]
enum Origin {
    Main(usize),
    Option(usize, usize),
}

/// The installed master.toml's `[main]` with `settings` added, then
/// `services` (None: the installed ones); and where each setting's line
/// is.
fn render(settings: &[Setting], services: Option<&[Service]>) -> (String, Vec<(usize, Origin)>) {
    let (head, installed) = INSTALLED
        .split_once("\n# ====")
        .map_or((INSTALLED, ""), |(h, s)| (h, s));
    let mut out =
        String::from("# Imported from Postfix's configuration by `qctl config import`.\n");
    out.push_str(head.trim_end());
    out.push_str("\n\n# From main.cf:\n");
    let mut origins = Vec::new();
    let line_no = |out: &String| out.matches('\n').count() + 1;
    for (i, s) in settings.iter().enumerate() {
        origins.push((line_no(&out), Origin::Main(i)));
        out.push_str(&format!("{} = {}\n", s.name, toml_string(&s.value)));
    }
    match services {
        None if !installed.is_empty() => {
            out.push_str("\n# ====");
            out.push_str(installed);
        }
        None => {}
        Some(services) => {
            for (i, svc) in services.iter().enumerate() {
                out.push_str(&format!(
                    "\n# master.cf line {}\n[[service]]\nname = {}\ntype = \"{}\"\nlisten = {}\ncommand = \"{}\"\n",
                    svc.line,
                    toml_string(&svc.name),
                    svc.kind,
                    if svc.command == "qmgr" {
                        // Enqueueing, administration, users' mailq.
                        format!(
                            "[{}, \"qmgr-admin\", \"public/showq\"]",
                            toml_string(&svc.name)
                        )
                    } else {
                        toml_string(&svc.listen)
                    },
                    svc.command
                ));
                if let Some(n) = &svc.process_limit {
                    out.push_str(&format!("process_limit = {n}\n"));
                }
                if svc.privileged {
                    out.push_str("privileged = true\n");
                }
                if let Some(w) = &svc.wakeup {
                    out.push_str(&format!("wakeup = \"{w}s\"\n"));
                }
                if !svc.options.is_empty() {
                    out.push_str("\n[service.options]\n");
                    for (j, o) in svc.options.iter().enumerate() {
                        origins.push((line_no(&out), Origin::Option(i, j)));
                        out.push_str(&format!("{} = {}\n", o.name, toml_string(&o.value)));
                    }
                }
            }
        }
    }
    (out, origins)
}

/// The port of a master.cf inet service name.
fn inet_listen(service: &str) -> String {
    match service {
        "smtp" => "25".to_string(),
        "submission" => "587".to_string(),
        "smtps" | "submissions" => "465".to_string(),
        other => other.to_string(),
    }
}

/// master.cf's services Postern can run; the others are reported.
fn parse_master(file: &Path, text: &str) -> anyhow::Result<Vec<Service>> {
    // Logical lines, as in main.cf.
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match lines.last_mut() {
            Some((_, prev)) if raw.starts_with([' ', '\t']) => {
                prev.push(' ');
                prev.push_str(trimmed);
            }
            _ => lines.push((i + 1, trimmed.to_string())),
        }
    }
    let mut services = Vec::new();
    for (line, l) in lines {
        let at = format!("{}:{line}", file.display());
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            bail!(
                "{at}: expected 8 fields (service type private unpriv chroot wakeup maxproc command), got \"{l}\""
            );
        }
        let (name, kind, unpriv, wakeup, maxproc, daemon) = (f[0], f[1], f[3], f[5], f[6], f[7]);
        let (postern_name, command, listen, privileged) = match (kind, daemon) {
            ("inet", "smtpd") => {
                let n = if name.contains(':') {
                    format!("smtpd-{}", name.rsplit(':').next().unwrap_or(name))
                } else {
                    name.to_string()
                };
                (n, "smtpd", inet_listen(name), false)
            }
            ("unix", "qmgr") => (name.to_string(), "qmgr", String::new(), false),
            ("unix", "smtp") if name == "smtp" => (
                "smtp-client".to_string(),
                "smtp-client",
                name.to_string(),
                false,
            ),
            ("unix", "smtp") => (name.to_string(), "smtp-client", name.to_string(), false),
            ("unix", "local") => (
                name.to_string(),
                "local-delivery",
                name.to_string(),
                unpriv == "n",
            ),
            ("unix", "tlsmgr") => (name.to_string(), "tlsmgr", name.to_string(), false),
            ("unix" | "fifo", "pickup") => (
                name.to_string(),
                "pickup",
                postern_ipc::maildrop::TRIGGER.to_string(),
                false,
            ),
            (_, d) => {
                let why = match d {
                    "cleanup" | "trivial-rewrite" | "bounce" | "flush" | "showq" | "error"
                    | "discard" | "anvil" | "scache" | "verify" | "proxymap" | "postlogd" => {
                        "Postern has no such daemon (qmgr and smtpd do its work, or it is not there yet)"
                    }
                    _ => "Postern has no such delivery agent or server",
                };
                eprintln!("{at}: {name} ({kind} {d}): {why}; left out");
                continue;
            }
        };
        let mut options = Vec::new();
        let mut args = f[8..].iter();
        while let Some(a) = args.next() {
            if *a == "-o" {
                let Some(first) = args.next() else {
                    bail!("{at}: -o without name=value");
                };
                // Postfix 3's `-o { name = value with spaces }`.
                let mut o = first.to_string();
                if first.starts_with('{') {
                    while !o.ends_with('}') {
                        let Some(more) = args.next() else {
                            bail!("{at}: -o {o}: no closing }}");
                        };
                        o.push(' ');
                        o.push_str(more);
                    }
                    o = o[1..o.len() - 1].trim().to_string();
                }
                match o.split_once('=') {
                    Some((n, v)) => options.push(Setting {
                        line,
                        name: n.trim().to_string(),
                        value: v.trim().to_string(),
                    }),
                    None => eprintln!("{at}: {name}: -o {o}: not name=value; left out"),
                }
            } else {
                eprintln!("{at}: {name}: argument {a}: Postern's daemons take none; left out");
            }
        }
        services.push(Service {
            line,
            name: postern_name,
            kind: if kind == "inet" { "inet" } else { "unix" },
            listen,
            command,
            process_limit: (maxproc != "-").then(|| maxproc.trim_end_matches('?').to_string()),
            privileged,
            wakeup: (matches!(command, "qmgr" | "pickup") && wakeup != "-")
                .then(|| wakeup.trim_end_matches('?').to_string()),
            options,
        });
    }
    Ok(services)
}

/// Reads `main_cf` (and `master_cf`) and prints the master.toml; `target`
/// is where it will live (relative paths in it are read from there).
pub(crate) fn import(
    main_cf: &Path,
    master_cf: Option<&Path>,
    target: &Path,
) -> anyhow::Result<()> {
    let mut services = match master_cf {
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            Some(parse_master(file, &text)?)
        }
        None => None,
    };
    let text = std::fs::read_to_string(main_cf)
        .map_err(|e| anyhow::anyhow!("{}: {e}", main_cf.display()))?;
    let mut kept = Vec::new();
    let at = |s: &Setting| format!("{}:{}: {}", main_cf.display(), s.line, s.name);
    for s in parse(main_cf, &text)? {
        if POSTFIX_OWN.contains(&s.name.as_str()) {
            eprintln!("{}: Postfix's own; Postern's setting is kept", at(&s));
        } else if defs::lookup(&s.name).is_none() {
            eprintln!("{}: Postern has no such parameter; left out", at(&s));
        } else {
            kept.push(s);
        }
    }
    // Whatever load refuses is reported and left out, one at a time.
    let options: usize = services.iter().flatten().map(|s| s.options.len()).sum();
    let master_at = |svc: &Service, o: &Setting| {
        format!(
            "{}:{}: {} -o {}",
            master_cf.map_or(String::new(), |f| f.display().to_string()),
            o.line,
            svc.name,
            o.name
        )
    };
    for _ in 0..=kept.len() + options {
        let (rendered, origins) = render(&kept, services.as_deref());
        match Config::from_str(&rendered, target, &[]) {
            Ok(_) => {
                print!("{rendered}");
                return Ok(());
            }
            Err(ConfigError::Invalid {
                param,
                reason,
                line,
                ..
            }) => {
                let origin = origins
                    .iter()
                    .find(|(l, _)| Some(*l) == line)
                    .map(|(_, o)| *o)
                    .or_else(|| kept.iter().position(|s| s.name == param).map(Origin::Main));
                match origin {
                    Some(Origin::Main(i)) => {
                        let s = kept.remove(i);
                        eprintln!("{}: {reason}; left out", at(&s));
                    }
                    Some(Origin::Option(i, j)) => {
                        let svc = &mut services.as_mut().expect("options come from services")[i];
                        let o = svc.options.remove(j);
                        eprintln!("{}: {reason}; left out", master_at(svc, &o));
                    }
                    None => bail!(
                        "the imported configuration does not load: parameter {param}: {reason}"
                    ),
                }
            }
            Err(e) => bail!("the imported configuration does not load: {e}"),
        }
    }
    bail!("the imported configuration does not load")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_logical_lines_and_the_last_setting_wins() {
        let text = "# c\nmyhostname = a.example\nsmtpd_recipient_restrictions =\n  permit_mynetworks,\n\treject_unauth_destination\nmyhostname=b.example\n";
        let s = parse(Path::new("main.cf"), text).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "smtpd_recipient_restrictions");
        assert_eq!(s[0].value, "permit_mynetworks, reject_unauth_destination");
        assert_eq!((s[1].value.as_str(), s[1].line), ("b.example", 6));
        let e = parse(Path::new("main.cf"), "a = 1\nnonsense\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("main.cf:2:"), "{e}");
    }

    #[test]
    fn quotes_values_for_toml() {
        assert_eq!(toml_string("a \"b\" \\c"), "\"a \\\"b\\\" \\\\c\"");
    }
}
