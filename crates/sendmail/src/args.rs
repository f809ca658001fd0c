//! The command line, as Postfix's sendmail(1) reads it: getopt-style
//! clusters (`-ti`, `-fuser`, `-f user`), `--` before recipients, and the
//! options Postfix accepts and ignores.

use std::path::PathBuf;

use postern_envelope::{Notify, Ret};

use crate::exit::{EX_USAGE, Fatal};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// `-bm` (the default): read a message and queue it.
    Deliver,
    /// `-bs`: SMTP on standard input and output.
    Smtp,
    /// `-bp`, or run as mailq: list the queue.
    Mailq,
    /// `-bi`, `-I`: check the aliases files.
    Newaliases,
    /// `-q`, `-qIqueueid`: retry deferred mail now.
    Flush(Option<String>),
    /// `-bv`: report on each recipient instead of delivering.
    Verify,
    /// `-bd`, `-bl`: the mail system runs under its master, not here.
    Daemon,
}

/// The parsed command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// `-C`: the master.toml, or a directory holding one.
    pub config: Option<PathBuf>,
    /// `-f` / `-r`.
    pub sender: Option<String>,
    /// `-F`.
    pub full_name: Option<String>,
    /// `-N`.
    pub notify: Option<Notify>,
    /// `-R`.
    pub ret: Option<Ret>,
    /// `-V`.
    pub envid: Option<String>,
    /// `-t`.
    pub extract: bool,
    /// A line with only `.` ends the message (cleared by `-i` / `-oi`).
    pub dot_ends: bool,
    /// `-v`, counted.
    pub verbose: u8,
    /// `-oA`: the aliases file `-bi` checks instead of alias_database.
    pub alias_file: Option<String>,
    pub recipients: Vec<String>,
}

/// Options that take a value (in the same word or the next one).
const WITH_VALUE: &[char] = &[
    'A', 'B', 'C', 'F', 'L', 'N', 'O', 'R', 'V', 'X', 'b', 'e', 'f', 'h', 'o', 'p', 'r',
];
/// Options that are accepted and do nothing here, as in Postfix.
const IGNORED_FLAGS: &[char] = &['G', 'U', 'c', 'm', 'n', 'x'];

fn usage(text: String) -> Fatal {
    Fatal::new(EX_USAGE, text)
}

/// Parses `args` (without the program name); `mode` is where the program
/// name already put it (mailq, newaliases).
pub fn parse(args: &[String], mode: Mode) -> Result<Options, Fatal> {
    let mut o = Options {
        mode,
        config: None,
        sender: None,
        full_name: None,
        notify: None,
        ret: None,
        envid: None,
        extract: false,
        dot_ends: true,
        verbose: 0,
        alias_file: None,
        recipients: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            o.recipients.extend(args[i..].iter().cloned());
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            o.recipients.push(arg.clone());
            continue;
        };
        for (at, c) in cluster.char_indices() {
            if c == 'q' {
                // -q, -qIqueueid, -qRsite, -q30m: the rest of the word.
                flush_option(&mut o, &cluster[at + 1..])?;
                break;
            }
            if WITH_VALUE.contains(&c) {
                let rest = &cluster[at + c.len_utf8()..];
                let value = if !rest.is_empty() {
                    rest.to_string()
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return Err(usage(format!("option requires an argument -- '{c}'")));
                };
                valued_option(&mut o, c, value)?;
                break;
            }
            match c {
                't' => o.extract = true,
                'i' => o.dot_ends = false,
                'v' => o.verbose = o.verbose.saturating_add(1),
                'I' => o.mode = Mode::Newaliases,
                c if IGNORED_FLAGS.contains(&c) => {}
                c => return Err(usage(format!("-{c} option not supported"))),
            }
        }
    }
    check_combinations(&o)?;
    Ok(o)
}

fn flush_option(o: &mut Options, rest: &str) -> Result<(), Fatal> {
    if rest.is_empty() {
        o.mode = Mode::Flush(None);
    } else if let Some(id) = rest.strip_prefix('I') {
        if id.is_empty() {
            return Err(usage("specify: -qIqueueid".into()));
        }
        o.mode = Mode::Flush(Some(id.to_string()));
    } else if rest.starts_with(|c: char| c.is_ascii_digit()) {
        // -q30m: a queue run interval, which qmgr's queue_run_delay sets.
    } else {
        let c = rest.chars().next().unwrap_or('q');
        return Err(usage(format!(
            "-q{c} is not implemented (use -q to retry all deferred mail)"
        )));
    }
    Ok(())
}

fn valued_option(o: &mut Options, c: char, value: String) -> Result<(), Fatal> {
    match c {
        // pickup sees 8-bit content for itself.
        'B' if !value.eq_ignore_ascii_case("8BITMIME") && !value.eq_ignore_ascii_case("7BIT") => {
            return Err(usage("-B option needs 8BITMIME or 7BIT".into()));
        }
        'C' => o.config = Some(PathBuf::from(value)),
        'F' => o.full_name = Some(value),
        'f' | 'r' => o.sender = Some(value),
        'N' => o.notify = Some(parse_notify(&value)?),
        'R' => {
            o.ret = Some(if value.eq_ignore_ascii_case("full") {
                Ret::Full
            } else if value.eq_ignore_ascii_case("hdrs") {
                Ret::Hdrs
            } else {
                return Err(usage(format!("-R option requires full or hdrs: {value}")));
            })
        }
        'V' => {
            // RFC 3461: ENVID is printable ASCII, at most 100 characters.
            if value.is_empty()
                || value.len() > 100
                || !value.bytes().all(|b| (0x21..=0x7e).contains(&b))
            {
                return Err(usage(format!(
                    "-V option requires an envelope ID of 1 to 100 printable characters: {value}"
                )));
            }
            o.envid = Some(value);
        }
        'b' => {
            o.mode = match value.as_str() {
                "m" => Mode::Deliver,
                "s" => Mode::Smtp,
                "p" => Mode::Mailq,
                "i" => Mode::Newaliases,
                "v" => Mode::Verify,
                "d" | "l" => Mode::Daemon,
                // No host status database, as in Postfix.
                "h" | "H" => return Ok(()),
                other => return Err(usage(format!("unsupported: -b{other}"))),
            }
        }
        'o' => match value.chars().next() {
            Some('i') => o.dot_ends = false,
            Some('A') => {
                let file = value[1..].to_string();
                if file.is_empty() {
                    return Err(usage("-oA requires pathname".into()));
                }
                o.alias_file = Some(file);
            }
            // -om, -o7, -o8, -oem, -odb, ...: Sendmail's options, which
            // main.cf parameters stand for.
            _ => {}
        },
        // -A, -L, -O, -X, -e, -h, -p: ignored, as in Postfix.
        _ => {}
    }
    Ok(())
}

/// `-N`: `never`, or a comma-separated list of success, failure, delay.
fn parse_notify(value: &str) -> Result<Notify, Fatal> {
    let mut n = Notify::default();
    let words: Vec<String> = value
        .split(',')
        .map(|w| w.trim().to_ascii_lowercase())
        .collect();
    if words == ["never"] {
        return Ok(Notify::NEVER);
    }
    for w in &words {
        match w.as_str() {
            "success" => n.success = true,
            "failure" => n.failure = true,
            "delay" => n.delay = true,
            _ => {
                return Err(usage(format!(
                    "-N option requires never, or one or more of success, failure, delay: {value}"
                )));
            }
        }
    }
    Ok(n)
}

fn check_combinations(o: &Options) -> Result<(), Fatal> {
    let verify = o.mode == Mode::Verify;
    if o.extract && !matches!(o.mode, Mode::Deliver) {
        return Err(usage("-t can be used only in delivery mode".into()));
    }
    if verify && o.notify.is_some() {
        return Err(usage("-N option cannot be used with -bv".into()));
    }
    if verify && o.ret.is_some() {
        return Err(usage("-R option cannot be used with -bv".into()));
    }
    let no_recipients = matches!(
        o.mode,
        Mode::Smtp | Mode::Mailq | Mode::Newaliases | Mode::Flush(_) | Mode::Daemon
    );
    if no_recipients && !o.recipients.is_empty() {
        return Err(usage(format!(
            "{} mode requires no recipient",
            match o.mode {
                Mode::Smtp => "stand-alone SMTP server",
                Mode::Mailq => "mailq",
                Mode::Newaliases => "alias initialization",
                Mode::Flush(_) => "queue flush",
                _ => "daemon",
            }
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, Fatal> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args, Mode::Deliver)
    }

    #[test]
    fn clusters_values_and_ignored_options() {
        let o = p(&[
            "-ti",
            "-fbob@example.org",
            "-F",
            "Bob B",
            "-oem",
            "-odb",
            "-U",
            "-N",
            "success,delay",
            "-R",
            "hdrs",
            "-V",
            "id-1",
            "--",
            "-x@y",
        ])
        .unwrap();
        assert!(o.extract && !o.dot_ends);
        assert_eq!(o.sender.as_deref(), Some("bob@example.org"));
        assert_eq!(o.full_name.as_deref(), Some("Bob B"));
        let n = o.notify.unwrap();
        assert!(n.success && n.delay && !n.failure);
        assert_eq!(o.ret, Some(Ret::Hdrs));
        assert_eq!(o.envid.as_deref(), Some("id-1"));
        assert_eq!(o.recipients, vec!["-x@y"]);

        let o = p(&["-oi", "-r", "a@b", "alice", "carol"]).unwrap();
        assert!(!o.dot_ends);
        assert_eq!(o.sender.as_deref(), Some("a@b"));
        assert_eq!(o.recipients, vec!["alice", "carol"]);
        assert_eq!(p(&["-N", "never"]).unwrap().notify, Some(Notify::NEVER));
    }

    #[test]
    fn modes() {
        assert_eq!(p(&["-bs"]).unwrap().mode, Mode::Smtp);
        assert_eq!(p(&["-bp"]).unwrap().mode, Mode::Mailq);
        assert_eq!(p(&["-bi"]).unwrap().mode, Mode::Newaliases);
        assert_eq!(p(&["-I"]).unwrap().mode, Mode::Newaliases);
        assert_eq!(p(&["-q"]).unwrap().mode, Mode::Flush(None));
        assert_eq!(
            p(&["-qI4ABC"]).unwrap().mode,
            Mode::Flush(Some("4ABC".into()))
        );
        assert_eq!(p(&["-q30m"]).unwrap().mode, Mode::Deliver);
        assert_eq!(p(&["-bv", "x"]).unwrap().mode, Mode::Verify);
        let o = p(&["-bi", "-oA/etc/aliases2"]).unwrap();
        assert_eq!(o.alias_file.as_deref(), Some("/etc/aliases2"));
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for bad in [
            &["-Z"][..],
            &["-f"],
            &["-N", "sometimes"],
            &["-R", "most"],
            &["-V", "has space"],
            &["-bx"],
            &["-B", "binary"],
            &["-bs", "alice"],
            &["-bp", "-t"],
            &["-bv", "-N", "never", "x"],
            &["-qRexample.com"],
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.status, EX_USAGE, "{bad:?}: {}", e.text);
        }
    }
}
