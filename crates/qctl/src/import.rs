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
//! The services are those of the installed master.toml (master.cf's
//! import is not done yet). A line that is no `name = value` is a syntax
//! error: it is reported with its line, and nothing is written.

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

/// One `name = value` of main.cf.
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

/// The installed master.toml with `settings` added to its `[main]`.
fn render(settings: &[Setting]) -> String {
    let (head, services) = INSTALLED
        .split_once("\n# ====")
        .map_or((INSTALLED, ""), |(h, s)| (h, s));
    let mut out = String::from("# Imported from Postfix's main.cf by `qctl config import`.\n");
    out.push_str(head.trim_end());
    out.push_str("\n\n# From main.cf:\n");
    for s in settings {
        out.push_str(&format!("{} = {}\n", s.name, toml_string(&s.value)));
    }
    if !services.is_empty() {
        out.push_str("\n# ====");
        out.push_str(services);
    }
    out
}

/// Reads `main_cf` and prints the master.toml; `target` is where it will
/// live (relative paths in it are read from there).
pub(crate) fn import(main_cf: &Path, target: &Path) -> anyhow::Result<()> {
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
    for _ in 0..=kept.len() {
        let rendered = render(&kept);
        match Config::from_str(&rendered, target, &[]) {
            Ok(_) => {
                print!("{rendered}");
                return Ok(());
            }
            Err(ConfigError::Invalid { param, reason, .. }) => {
                let Some(pos) = kept.iter().position(|s| s.name == param) else {
                    bail!("the imported configuration does not load: parameter {param}: {reason}");
                };
                let s = kept.remove(pos);
                eprintln!("{}: {reason}; left out", at(&s));
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
