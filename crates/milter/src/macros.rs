//! Sendmail macros: which names each stage sends (Postfix's
//! `milter_*_macros` lists) and where their values come from.
//!
//! Before each stage's command the client sends `SMFIC_MACRO` with the
//! names of that stage's list that have a value, as Postfix does. A name
//! is sent as the list writes it (`j`, `{daemon_name}`); the caller is
//! asked for it without braces (`j`, `daemon_name`).

use postern_config::Params;

use crate::wire::{Command, Packet};

/// The stages that have a macro list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfHeader,
    EndOfData,
    Unknown,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Connect,
        Stage::Helo,
        Stage::Mail,
        Stage::Rcpt,
        Stage::Data,
        Stage::EndOfHeader,
        Stage::EndOfData,
        Stage::Unknown,
    ];

    /// The parameter that holds this stage's list.
    pub fn param(self) -> &'static str {
        match self {
            Stage::Connect => "milter_connect_macros",
            Stage::Helo => "milter_helo_macros",
            Stage::Mail => "milter_mail_macros",
            Stage::Rcpt => "milter_rcpt_macros",
            Stage::Data => "milter_data_macros",
            Stage::EndOfHeader => "milter_end_of_header_macros",
            Stage::EndOfData => "milter_end_of_data_macros",
            Stage::Unknown => "milter_unknown_command_macros",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Where macro values come from: the SMTP session. `name` comes without
/// braces. Which names have values at which stage is the caller's
/// knowledge; Postfix's smtpd gives, among others: `j` (myhostname),
/// `_` (client name and address), `{client_addr}`, `{client_name}`,
/// `{client_port}`, `{daemon_addr}` at connect; `{tls_version}`,
/// `{cipher}`, `{cipher_bits}`, `{cert_subject}` after STARTTLS;
/// `{auth_type}`, `{auth_authen}` after AUTH; `{mail_addr}`,
/// `{mail_host}`, `{mail_mailer}` at MAIL; `i` (the queue ID) from the
/// first accepted RCPT on; `{rcpt_addr}`, `{rcpt_host}`, `{rcpt_mailer}`
/// at RCPT. `{daemon_name}` and `v` need not be given: the chain answers
/// them from `milter_macro_daemon_name` and `milter_macro_v`.
pub trait MacroSource: Sync {
    fn macro_value(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String> + Sync> MacroSource for F {
    fn macro_value(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Macro values by name (without braces), gathered by the caller for
/// one event.
#[derive(Clone, Debug, Default)]
pub struct MacroValues(std::collections::HashMap<&'static str, String>);

impl MacroValues {
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.0.insert(name, value.into());
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }
}

impl MacroSource for MacroValues {
    fn macro_value(&self, name: &str) -> Option<String> {
        self.get(name)
    }
}

/// A source without values (tests, or a caller that sends none).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMacros;

impl MacroSource for NoMacros {
    fn macro_value(&self, _: &str) -> Option<String> {
        None
    }
}

/// The macro names of every stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MacroLists {
    lists: [Vec<String>; 8],
}

impl MacroLists {
    /// Postfix's defaults (the same in 3.7 and later).
    pub fn postfix_defaults() -> MacroLists {
        let mut m = MacroLists::default();
        let defaults = [
            (Stage::Connect, "j {daemon_name} {daemon_addr} v _"),
            (
                Stage::Helo,
                "{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}",
            ),
            (
                Stage::Mail,
                "i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}",
            ),
            (Stage::Rcpt, "i {rcpt_addr} {rcpt_host} {rcpt_mailer}"),
            (Stage::Data, "i"),
            (Stage::EndOfHeader, "i"),
            (Stage::EndOfData, "i"),
        ];
        for (stage, names) in defaults {
            m.set(stage, MacroLists::split(names));
        }
        m
    }

    /// The lists configured in `params`.
    pub fn from_params(params: &Params) -> MacroLists {
        let mut m = MacroLists::default();
        for stage in Stage::ALL {
            m.set(stage, MacroLists::split(&params.get(stage.param())));
        }
        m
    }

    /// Splits a list on commas and white space.
    pub fn split(names: &str) -> Vec<String> {
        names
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn get(&self, stage: Stage) -> &[String] {
        &self.lists[stage.index()]
    }

    pub fn set(&mut self, stage: Stage, names: Vec<String>) {
        self.lists[stage.index()] = names;
    }

    /// The `SMFIC_MACRO` packet for `event` with the values `source` has
    /// for the names of `stage`.
    pub(crate) fn packet(&self, stage: Stage, event: Command, source: &dyn MacroSource) -> Vec<u8> {
        let mut p = Packet::new(Command::Macro).octet(event.code());
        for name in self.get(stage) {
            let bare = name
                .strip_prefix('{')
                .and_then(|n| n.strip_suffix('}'))
                .unwrap_or(name);
            if let Some(value) = source.macro_value(bare) {
                p = p.string(name).string(&value);
            }
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_names_that_have_values() {
        let lists = MacroLists::postfix_defaults();
        let source = |name: &str| match name {
            "j" => Some("mx.example".to_string()),
            "daemon_name" => Some("postern".to_string()),
            _ => None,
        };
        let p = lists.packet(Stage::Connect, Command::Connect, &source);
        assert_eq!(&p[4..], b"DCj\0mx.example\0{daemon_name}\0postern\0");
        let p = lists.packet(Stage::Unknown, Command::Unknown, &source);
        assert_eq!(p, [0, 0, 0, 2, b'D', b'U']);
    }

    #[test]
    fn splits_lists() {
        assert_eq!(
            MacroLists::split(" i,{rcpt_addr}  {x}\t"),
            ["i", "{rcpt_addr}", "{x}"]
        );
        assert_eq!(
            MacroLists::postfix_defaults().get(Stage::Rcpt),
            ["i", "{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"]
        );
    }
}
