//! SMTP command lines: [`parse_command`] for the server, `Display` for the
//! client.
//!
//! The parser takes one line without its CRLF and returns a [`Command`] or a
//! [`CommandError`] carrying the reply Postfix's smtpd gives for the same
//! mistake. It checks syntax only: whether a command is allowed now (HELO
//! first, MAIL before RCPT, SMTPUTF8 declared for a UTF-8 recipient, the
//! SIZE limit) is the session's decision.
//!
//! Framing is the caller's job: it cuts lines at CRLF (or bare LF, per
//! its bare newline policy) and bounds their length (Postfix's
//! `line_length_limit`, 2048) before calling the parser.
//!
//! Leniency follows Postfix's defaults: verbs and `FROM:`/`TO:` in any case,
//! spaces after the colon, paths without angle brackets, HELO/VRFY
//! arguments with spaces collapsed to one.
//!
//! Replies that differ from a plain reading of RFC 5321, taken from Postfix
//! because clients and scripts know them: an unknown verb gets
//! `502 5.5.2 Error: command not recognized`; HELO/EHLO syntax errors carry
//! no enhanced code (RFC 2034 exempts them); ETRN's is `500 Syntax: ETRN
//! domain`; a line that looks like a mail header or a web request gets
//! `221 2.7.0 Error: I can break rules, too. Goodbye.` and the session
//! ends (Postfix 3.9's `smtpd_forbid_cmds` default).

use std::fmt;

use crate::address::Address;
use crate::reply::Reply;
pub use postern_envelope::{Notify, Orcpt, Ret};

/// A `MAIL FROM` path; may be null (`<>`).
pub type ReversePath = Address;

/// A `RCPT TO` path; never null, may be the unqualified `<postmaster>`.
pub type ForwardPath = Address;

/// One parsed SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `HELO name`: arguments joined by single spaces.
    Helo(String),
    /// `EHLO name`.
    Ehlo(String),
    /// `MAIL FROM:<path> params`.
    Mail {
        /// The reverse-path, null for bounces.
        from: ReversePath,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> params`.
    Rcpt {
        /// The forward-path.
        to: ForwardPath,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030). The next `size` octets are raw
    /// message content, read without any decoding.
    Bdat {
        /// Chunk length in octets.
        size: u64,
        /// True for the final chunk.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP`.
    Noop,
    /// `QUIT` (arguments ignored, as Postfix does).
    Quit,
    /// `VRFY string`.
    Vrfy(String),
    /// `EXPN string`.
    Expn(String),
    /// `HELP` (arguments ignored).
    Help,
    /// `STARTTLS`.
    Starttls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// Mechanism name, uppercased.
        mechanism: String,
        /// Initial response as sent (base64, or `=` for empty).
        initial: Option<String>,
    },
    /// `ETRN [@#]domain` (RFC 1985), argument as sent.
    Etrn(String),
}

/// `BODY=` (RFC 1652, RFC 3030).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Body {
    /// `BODY=7BIT`.
    SevenBit,
    /// `BODY=8BITMIME`.
    EightBitMime,
    /// `BODY=BINARYMIME` (needs BDAT).
    BinaryMime,
}

/// ESMTP parameters of `MAIL FROM`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n` (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<Body>,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `RET=` (RFC 3461).
    pub ret: Option<Ret>,
    /// `ENVID=`, xtext-decoded (RFC 3461).
    pub envid: Option<String>,
    /// `AUTH=`, xtext-decoded (RFC 4954); `<>` means "no trusted identity".
    pub auth: Option<String>,
}

/// ESMTP parameters of `RCPT TO`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=`.
    pub notify: Option<Notify>,
    /// `ORCPT=`.
    pub orcpt: Option<Orcpt>,
}

/// What kind of mistake a [`CommandError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Empty line, NUL or another control character.
    BadSyntax,
    /// Not valid UTF-8.
    BadUtf8,
    /// Unknown verb.
    Unrecognized,
    /// A mail header, `CONNECT`/`GET`/`POST`, or a verb not starting with a
    /// letter: someone is talking something else than SMTP. Close.
    NonSmtp,
    /// Wrong arguments for a known verb.
    Syntax,
    /// The MAIL FROM address does not parse.
    BadSender,
    /// The RCPT TO address does not parse, or is null.
    BadRecipient,
    /// A known ESMTP parameter with a bad value.
    BadParameter,
    /// An ESMTP parameter we do not know.
    UnsupportedParameter,
    /// `SIZE=` beyond what a u64 holds.
    SizeOverflow,
    /// A malformed BDAT. With `Some(n)` the count was readable: the server
    /// must read and discard `n` octets. With `None` it cannot find the
    /// next command and must close after the reply.
    BdatSyntax(Option<u64>),
}

/// A command line that cannot be accepted, with the reply to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reply}")]
pub struct CommandError {
    kind: ErrorKind,
    reply: Reply,
}

impl CommandError {
    fn new(kind: ErrorKind, reply: &str) -> CommandError {
        let reply = Reply::parse_line(reply).unwrap_or_else(|| Reply::new(500, None, reply));
        CommandError { kind, reply }
    }

    /// The kind of mistake.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The reply to send, Postfix's wording.
    pub fn reply(&self) -> &Reply {
        &self.reply
    }

    /// True when the server must close the session after the reply.
    pub fn closes_session(&self) -> bool {
        matches!(self.kind, ErrorKind::NonSmtp | ErrorKind::BdatSyntax(None))
    }
}

const BAD_SYNTAX: &str = "500 5.5.2 Error: bad syntax";
const BAD_UTF8: &str = "500 5.5.2 Error: bad UTF-8 syntax";
const UNRECOGNIZED: &str = "502 5.5.2 Error: command not recognized";
const NON_SMTP: &str = "221 2.7.0 Error: I can break rules, too. Goodbye.";
const MAIL_SYNTAX: &str = "501 5.5.4 Syntax: MAIL FROM:<address>";
const RCPT_SYNTAX: &str = "501 5.5.4 Syntax: RCPT TO:<address>";
const BAD_SENDER: &str = "501 5.1.7 Bad sender address syntax";
const BAD_RECIPIENT: &str = "501 5.1.3 Bad recipient address syntax";
const BDAT_SYNTAX: &str = "Syntax: BDAT count [LAST]";

fn err(kind: ErrorKind, reply: &str) -> CommandError {
    CommandError::new(kind, reply)
}

/// Parse one command line, without its CRLF.
pub fn parse_command(line: &[u8]) -> Result<Command, CommandError> {
    // NUL and other controls have no place in a command; a stray CR or LF
    // here means the framing was bypassed.
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(err(ErrorKind::BadSyntax, BAD_SYNTAX));
    }
    let line = std::str::from_utf8(line).map_err(|_| err(ErrorKind::BadUtf8, BAD_UTF8))?;
    let line = trim(line);
    if line.is_empty() {
        return Err(err(ErrorKind::BadSyntax, BAD_SYNTAX));
    }
    let (verb, rest) = match line.find(is_space) {
        Some(i) => (&line[..i], trim(&line[i..])),
        None => (line, ""),
    };
    if is_non_smtp(verb) {
        return Err(err(ErrorKind::NonSmtp, NON_SMTP));
    }
    let args: Vec<&str> = rest.split(is_space).filter(|s| !s.is_empty()).collect();
    let upper = verb.to_ascii_uppercase();
    match upper.as_str() {
        "HELO" => joined_args(&args, "501 Syntax: HELO hostname").map(Command::Helo),
        "EHLO" => joined_args(&args, "501 Syntax: EHLO hostname").map(Command::Ehlo),
        "MAIL" => parse_mail(rest),
        "RCPT" => parse_rcpt(rest),
        "DATA" => no_args(&args, "DATA", Command::Data),
        "RSET" => no_args(&args, "RSET", Command::Rset),
        "NOOP" => no_args(&args, "NOOP", Command::Noop),
        "STARTTLS" => no_args(&args, "STARTTLS", Command::Starttls),
        "QUIT" => Ok(Command::Quit),
        "HELP" => Ok(Command::Help),
        "VRFY" => joined_args(&args, "501 5.5.4 Syntax: VRFY address").map(Command::Vrfy),
        "EXPN" => joined_args(&args, "501 5.5.4 Syntax: EXPN address").map(Command::Expn),
        "BDAT" => parse_bdat(&args),
        "AUTH" => parse_auth(&args),
        "ETRN" => parse_etrn(&args),
        _ => Err(err(ErrorKind::Unrecognized, UNRECOGNIZED)),
    }
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Postfix's `smtpd_forbid_cmds` default (3.9): `CONNECT GET POST` and any
/// "verb" not starting with a letter, plus anything shaped like a header
/// (`Subject:`), as when a client sends the message without DATA.
fn is_non_smtp(verb: &str) -> bool {
    let looks_like_header = verb
        .find(':')
        .is_some_and(|i| i > 0 && verb[..i].bytes().all(|b| (33..=126).contains(&b)));
    looks_like_header
        || !verb.starts_with(|c: char| c.is_ascii_alphabetic())
        || ["CONNECT", "GET", "POST"]
            .iter()
            .any(|v| verb.eq_ignore_ascii_case(v))
}

/// The arguments joined by single spaces (HELO, EHLO, VRFY, EXPN); at
/// least one is required.
fn joined_args(args: &[&str], syntax: &str) -> Result<String, CommandError> {
    if args.is_empty() {
        Err(err(ErrorKind::Syntax, syntax))
    } else {
        Ok(args.join(" "))
    }
}

fn no_args(args: &[&str], verb: &str, cmd: Command) -> Result<Command, CommandError> {
    if args.is_empty() {
        Ok(cmd)
    } else {
        Err(err(ErrorKind::Syntax, &format!("501 5.5.4 Syntax: {verb}")))
    }
}

/// Split `FROM:` / `TO:` off, then the path, then the parameters.
fn split_envelope<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let after = trim(&rest[keyword.len()..]);
    (!after.is_empty()).then_some(after)
}

/// Cut the path token off the front: `<...>` up to the `>` outside quotes,
/// or a bare word up to whitespace outside quotes. `None` when a quote or
/// bracket is left open or junk is glued to the `>`.
fn split_path(s: &str) -> Option<(&str, &str)> {
    let bracketed = s.starts_with('<');
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if bracketed && !in_quote => {
                let rest = &s[i + 1..];
                if !rest.is_empty() && !rest.starts_with(is_space) {
                    return None;
                }
                return Some((&s[..=i], rest));
            }
            c if !bracketed && !in_quote && is_space(c) => return Some((&s[..i], &s[i..])),
            _ => {}
        }
    }
    if bracketed || in_quote {
        return None;
    }
    Some((s, ""))
}

fn parse_mail(rest: &str) -> Result<Command, CommandError> {
    let after = split_envelope(rest, "FROM:").ok_or_else(|| err(ErrorKind::Syntax, MAIL_SYNTAX))?;
    let bad = || err(ErrorKind::BadSender, BAD_SENDER);
    let (path, params) = split_path(after).ok_or_else(bad)?;
    let from = Address::parse_path(path).map_err(|_| bad())?;
    let mut p = MailParams::default();
    let mut auth_seen = false;
    for param in params.split(is_space).filter(|s| !s.is_empty()) {
        let (key, value) = split_param(param);
        let bad_value = |what: &str| {
            err(
                ErrorKind::BadParameter,
                &format!("501 5.5.4 Bad {what} parameter syntax"),
            )
        };
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => {
                let v = value.unwrap_or("");
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err(
                        ErrorKind::BadParameter,
                        "501 5.5.4 Bad message size syntax",
                    ));
                }
                let n = v.parse().map_err(|_| {
                    err(
                        ErrorKind::SizeOverflow,
                        "552 5.3.4 Message size exceeds file system imposed limit",
                    )
                })?;
                p.size = Some(n);
            }
            "BODY" => {
                p.body = Some(match value.map(str::to_ascii_uppercase).as_deref() {
                    Some("7BIT") => Body::SevenBit,
                    Some("8BITMIME") => Body::EightBitMime,
                    Some("BINARYMIME") => Body::BinaryMime,
                    _ => return Err(unsupported(param)),
                });
            }
            "SMTPUTF8" if value.is_none() => p.smtputf8 = true,
            "RET" => {
                let ret = match value.map(str::to_ascii_uppercase).as_deref() {
                    Some("FULL") => Ret::Full,
                    Some("HDRS") => Ret::Hdrs,
                    _ => return Err(bad_value("RET")),
                };
                if p.ret.replace(ret).is_some() {
                    return Err(bad_value("RET"));
                }
            }
            "ENVID" => {
                let v = value
                    .and_then(xtext_decode)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| (32..=126).contains(&b)))
                    .ok_or_else(|| bad_value("ENVID"))?;
                if p.envid.replace(v).is_some() {
                    return Err(bad_value("ENVID"));
                }
            }
            "AUTH" => {
                if auth_seen {
                    return Err(err(
                        ErrorKind::BadParameter,
                        "503 5.5.4 Error: multiple AUTH= options",
                    ));
                }
                auth_seen = true;
                let v = value
                    .and_then(xtext_decode)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| bad_value("AUTH"))?;
                p.auth = Some(v);
            }
            _ => return Err(unsupported(param)),
        }
    }
    Ok(Command::Mail { from, params: p })
}

fn parse_rcpt(rest: &str) -> Result<Command, CommandError> {
    let after = split_envelope(rest, "TO:").ok_or_else(|| err(ErrorKind::Syntax, RCPT_SYNTAX))?;
    let bad = || err(ErrorKind::BadRecipient, BAD_RECIPIENT);
    let (path, params) = split_path(after).ok_or_else(bad)?;
    let to = Address::parse_path(path).map_err(|_| bad())?;
    if to.is_null() {
        return Err(bad());
    }
    let mut p = RcptParams::default();
    for param in params.split(is_space).filter(|s| !s.is_empty()) {
        let (key, value) = split_param(param);
        match key.to_ascii_uppercase().as_str() {
            "NOTIFY" => {
                let bad = || {
                    err(
                        ErrorKind::BadParameter,
                        "501 5.5.4 Error: Bad NOTIFY parameter syntax",
                    )
                };
                let n = value.and_then(parse_notify).ok_or_else(bad)?;
                if p.notify.replace(n).is_some() {
                    return Err(bad());
                }
            }
            "ORCPT" => {
                let bad = || {
                    err(
                        ErrorKind::BadParameter,
                        "501 5.5.4 Error: Bad ORCPT parameter syntax",
                    )
                };
                let (addr_type, coded) = value.and_then(|v| v.split_once(';')).ok_or_else(bad)?;
                let addr = xtext_decode(coded).ok_or_else(bad)?;
                if addr_type.is_empty() || !addr_type.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(bad());
                }
                let o = Orcpt {
                    addr_type: addr_type.to_owned(),
                    addr,
                };
                if p.orcpt.replace(o).is_some() {
                    return Err(bad());
                }
            }
            _ => return Err(unsupported(param)),
        }
    }
    Ok(Command::Rcpt { to, params: p })
}

fn split_param(param: &str) -> (&str, Option<&str>) {
    match param.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (param, None),
    }
}

fn unsupported(param: &str) -> CommandError {
    err(
        ErrorKind::UnsupportedParameter,
        &format!("555 5.5.4 Unsupported option: {param}"),
    )
}

fn parse_notify(v: &str) -> Option<Notify> {
    if v.eq_ignore_ascii_case("NEVER") {
        return Some(Notify::default());
    }
    let mut n = Notify::default();
    for word in v.split(',') {
        let flag = match word.to_ascii_uppercase().as_str() {
            "SUCCESS" => &mut n.success,
            "FAILURE" => &mut n.failure,
            "DELAY" => &mut n.delay,
            _ => return None,
        };
        if std::mem::replace(flag, true) {
            return None;
        }
    }
    Some(n)
}

fn parse_bdat(args: &[&str]) -> Result<Command, CommandError> {
    let count = args
        .first()
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse::<u64>().ok());
    let Some(size) = count else {
        // Without a count nobody knows where the chunk ends: hang up.
        return Err(err(
            ErrorKind::BdatSyntax(None),
            &format!("521 5.5.4 {BDAT_SYNTAX}"),
        ));
    };
    match args.get(1..).unwrap_or(&[]) {
        [] => Ok(Command::Bdat { size, last: false }),
        [l] if l.eq_ignore_ascii_case("LAST") => Ok(Command::Bdat { size, last: true }),
        _ => Err(err(
            ErrorKind::BdatSyntax(Some(size)),
            &format!("501 5.5.4 {BDAT_SYNTAX}"),
        )),
    }
}

fn parse_auth(args: &[&str]) -> Result<Command, CommandError> {
    let syntax = || err(ErrorKind::Syntax, "501 5.5.4 Syntax: AUTH mechanism");
    let (mech, initial) = match args {
        [m] => (*m, None),
        [m, i] => (*m, Some((*i).to_owned())),
        _ => return Err(syntax()),
    };
    // RFC 4422 mechanism names: up to 20 of A-Z 0-9 - _.
    let ok = mech.len() <= 20
        && mech
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(syntax());
    }
    Ok(Command::Auth {
        mechanism: mech.to_ascii_uppercase(),
        initial,
    })
}

fn parse_etrn(args: &[&str]) -> Result<Command, CommandError> {
    let [arg] = args else {
        return Err(err(ErrorKind::Syntax, "500 Syntax: ETRN domain"));
    };
    // `@domain` (subdomains too) and `#queue` prefixes, as Postfix skips.
    let name = arg.strip_prefix(['@', '#']).unwrap_or(arg);
    let valid = !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid {
        return Err(err(
            ErrorKind::BadParameter,
            "501 Error: invalid parameter syntax",
        ));
    }
    Ok(Command::Etrn((*arg).to_owned()))
}

/// Decode RFC 3461 xtext (`+2B` for `+`). `None` when malformed or when the
/// result is not UTF-8.
pub fn xtext_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'=' => return None,
            b @ 33..=126 => {
                out.push(b);
                i += 1;
            }
            // UTF-8 is allowed in xtext under SMTPUTF8 (RFC 6533).
            b if b >= 0x80 => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Encode as RFC 3461 xtext: `+`, `=`, controls, space and non-ASCII
/// become `+XX`.
pub fn xtext_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// The command as the client sends it, without CRLF.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Helo(h) => write!(f, "HELO {h}"),
            Command::Ehlo(h) => write!(f, "EHLO {h}"),
            Command::Mail { from, params } => write!(f, "MAIL FROM:{}{params}", from.to_path()),
            Command::Rcpt { to, params } => write!(f, "RCPT TO:{}{params}", to.to_path()),
            Command::Data => f.write_str("DATA"),
            Command::Bdat { size, last } => {
                write!(f, "BDAT {size}{}", if *last { " LAST" } else { "" })
            }
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Quit => f.write_str("QUIT"),
            Command::Vrfy(s) => write!(f, "VRFY {s}"),
            Command::Expn(s) => write!(f, "EXPN {s}"),
            Command::Help => f.write_str("HELP"),
            Command::Starttls => f.write_str("STARTTLS"),
            Command::Auth { mechanism, initial } => match initial {
                Some(i) => write!(f, "AUTH {mechanism} {i}"),
                None => write!(f, "AUTH {mechanism}"),
            },
            Command::Etrn(s) => write!(f, "ETRN {s}"),
        }
    }
}

/// Each parameter preceded by a space, ready to follow the path.
impl fmt::Display for MailParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.size {
            write!(f, " SIZE={n}")?;
        }
        if let Some(b) = self.body {
            let b = match b {
                Body::SevenBit => "7BIT",
                Body::EightBitMime => "8BITMIME",
                Body::BinaryMime => "BINARYMIME",
            };
            write!(f, " BODY={b}")?;
        }
        if self.smtputf8 {
            f.write_str(" SMTPUTF8")?;
        }
        if let Some(r) = self.ret {
            write!(f, " RET={}", r.keyword())?;
        }
        if let Some(e) = &self.envid {
            write!(f, " ENVID={}", xtext_encode(e))?;
        }
        if let Some(a) = &self.auth {
            if a == "<>" {
                f.write_str(" AUTH=<>")?;
            } else {
                write!(f, " AUTH={}", xtext_encode(a))?;
            }
        }
        Ok(())
    }
}

/// Each parameter preceded by a space, ready to follow the path.
impl fmt::Display for RcptParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.notify {
            write!(f, " NOTIFY={}", n.keywords().join(","))?;
        }
        if let Some(o) = &self.orcpt {
            write!(f, " ORCPT={};{}", o.addr_type, xtext_encode(&o.addr))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        parse_command(line.as_bytes()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn fail(line: &[u8]) -> (ErrorKind, String) {
        let e = parse_command(line).expect_err("should fail");
        (e.kind(), e.reply().to_string())
    }

    /// Each line is refused with its reply.
    fn refused(cases: &[(&str, &str)]) {
        for (line, reply) in cases {
            assert_eq!(fail(line.as_bytes()).1, *reply, "{line}");
        }
    }

    /// Each line is refused as `kind` with `reply`.
    fn refused_as(kind: ErrorKind, reply: &str, lines: &[&str]) {
        for line in lines {
            assert_eq!(fail(line.as_bytes()), (kind, reply.into()), "{line}");
        }
    }

    fn mail(line: &str) -> (Address, MailParams) {
        match ok(line) {
            Command::Mail { from, params } => (from, params),
            other => panic!("{other:?}"),
        }
    }

    fn rcpt(line: &str) -> (Address, RcptParams) {
        match ok(line) {
            Command::Rcpt { to, params } => (to, params),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn simple_verbs_any_case() {
        assert_eq!(ok("data"), Command::Data);
        assert_eq!(ok("RsEt"), Command::Rset);
        assert_eq!(ok("  NOOP  "), Command::Noop);
        assert_eq!(ok("quit now"), Command::Quit);
        assert_eq!(ok("help me"), Command::Help);
        assert_eq!(ok("starttls"), Command::Starttls);
    }

    #[test]
    fn helo_collapses_arguments() {
        assert_eq!(ok("helo localhost"), Command::Helo("localhost".into()));
        assert_eq!(ok("EHLO  a\tb  "), Command::Ehlo("a b".into()));
        assert_eq!(fail(b"HELO").1, "501 Syntax: HELO hostname");
        assert_eq!(fail(b"ehlo   ").1, "501 Syntax: EHLO hostname");
    }

    #[test]
    fn mail_forms() {
        for line in [
            "MAIL FROM:<user1@hogehoge.local>",
            "mail from: user1@hogehoge.local",
            "mail from:user1@hogehoge.local",
            "Mail From:   <user1@hogehoge.local>  ",
        ] {
            let (a, p) = mail(line);
            assert_eq!(a.to_string(), "user1@hogehoge.local", "{line}");
            assert_eq!(p, MailParams::default());
        }
        assert!(mail("MAIL FROM:<>").0.is_null());
        let (a, _) = mail("MAIL FROM:<\"john doe\"@example.com> SIZE=10");
        assert_eq!(a.local(), "john doe");
    }

    #[test]
    fn mail_syntax_errors() {
        refused_as(
            ErrorKind::Syntax,
            "501 5.5.4 Syntax: MAIL FROM:<address>",
            &["MAIL", "MAIL FROM:", "MAIL FROM", "MAIL TO:<a@b>"],
        );
        refused_as(
            ErrorKind::BadSender,
            "501 5.1.7 Bad sender address syntax",
            &[
                "MAIL FROM:<a@b",
                "MAIL FROM:<a@b>x",
                "MAIL FROM:<a b@c>",
                "MAIL FROM:\"a b@c",
            ],
        );
    }

    #[test]
    fn mail_params() {
        let (_, p) = mail(
            "MAIL FROM:<a@b> size=1000 body=8bitmime SMTPUTF8 RET=hdrs ENVID=QQ+2B1 AUTH=u+40x",
        );
        assert_eq!(
            p,
            MailParams {
                size: Some(1000),
                body: Some(Body::EightBitMime),
                smtputf8: true,
                ret: Some(Ret::Hdrs),
                envid: Some("QQ+1".into()),
                auth: Some("u@x".into()),
            }
        );
        assert_eq!(
            mail("MAIL FROM:<a@b> AUTH=<>").1.auth.as_deref(),
            Some("<>")
        );
        assert_eq!(
            mail("MAIL FROM:<a@b> BODY=BINARYMIME").1.body,
            Some(Body::BinaryMime)
        );
        refused_as(
            ErrorKind::UnsupportedParameter,
            "555 5.5.4 Unsupported option: XFOO=1",
            &["MAIL FROM:<a@b> XFOO=1"],
        );
        refused(&[
            (
                "MAIL FROM:<a@b> SIZE=12x",
                "501 5.5.4 Bad message size syntax",
            ),
            (
                "MAIL FROM:<a@b> SIZE=99999999999999999999999",
                "552 5.3.4 Message size exceeds file system imposed limit",
            ),
            (
                "MAIL FROM:<a@b> BODY=9BIT",
                "555 5.5.4 Unsupported option: BODY=9BIT",
            ),
            (
                "MAIL FROM:<a@b> SMTPUTF8=yes",
                "555 5.5.4 Unsupported option: SMTPUTF8=yes",
            ),
            (
                "MAIL FROM:<a@b> RET=FULL RET=FULL",
                "501 5.5.4 Bad RET parameter syntax",
            ),
            (
                "MAIL FROM:<a@b> ENVID=a+2",
                "501 5.5.4 Bad ENVID parameter syntax",
            ),
            (
                "MAIL FROM:<a@b> ENVID=a+0A",
                "501 5.5.4 Bad ENVID parameter syntax",
            ),
            (
                "MAIL FROM:<a@b> AUTH=x AUTH=y",
                "503 5.5.4 Error: multiple AUTH= options",
            ),
        ]);
    }

    #[test]
    fn rcpt_forms_and_params() {
        let (a, _) = rcpt("rcpt to: user@example.local");
        assert_eq!(a.to_string(), "user@example.local");
        assert!(rcpt("RCPT TO:<postmaster>").0.is_postmaster());
        let (a, _) = rcpt("RCPT TO:<@relay.example:user@[IPv6:::1]>");
        assert!(a.has_route());
        assert_eq!(a.to_string(), "user@[IPv6:::1]");
        let (_, p) = rcpt("RCPT TO:<a@b> NOTIFY=success,DELAY ORCPT=rfc822;a+2Bb@c");
        assert_eq!(
            p.notify,
            Some(Notify {
                success: true,
                failure: false,
                delay: true
            })
        );
        assert_eq!(
            p.orcpt,
            Some(Orcpt {
                addr_type: "rfc822".into(),
                addr: "a+b@c".into()
            })
        );
        assert!(
            rcpt("RCPT TO:<a@b> NOTIFY=NEVER")
                .1
                .notify
                .unwrap()
                .is_never()
        );
        let bad_notify = "501 5.5.4 Error: Bad NOTIFY parameter syntax";
        let bad_orcpt = "501 5.5.4 Error: Bad ORCPT parameter syntax";
        refused(&[
            ("RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", bad_notify),
            ("RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS", bad_notify),
            ("RCPT TO:<a@b> NOTIFY", bad_notify),
            ("RCPT TO:<a@b> ORCPT=a@b", bad_orcpt),
            ("RCPT TO:<a@b> ORCPT=;a@b", bad_orcpt),
            (
                "RCPT TO:<a@b> SIZE=1",
                "555 5.5.4 Unsupported option: SIZE=1",
            ),
        ]);
    }

    #[test]
    fn rcpt_errors() {
        let bad = "501 5.1.3 Bad recipient address syntax";
        refused_as(ErrorKind::BadRecipient, bad, &["RCPT TO:<>"]);
        refused(&[
            ("RCPT TO:<a@b@c>", bad),
            ("RCPT TO", "501 5.5.4 Syntax: RCPT TO:<address>"),
            ("RCPT FROM:<a@b>", "501 5.5.4 Syntax: RCPT TO:<address>"),
        ]);
    }

    #[test]
    fn controls_and_utf8() {
        assert_eq!(fail(b"NOOP\0"), (ErrorKind::BadSyntax, BAD_SYNTAX.into()));
        assert_eq!(
            fail(b"MAIL FROM:<a@b>\r"),
            (ErrorKind::BadSyntax, BAD_SYNTAX.into())
        );
        assert_eq!(fail(b"RCPT TO:<a\nb@c>").0, ErrorKind::BadSyntax);
        assert_eq!(fail(b"\x7f").0, ErrorKind::BadSyntax);
        assert_eq!(fail(b""), (ErrorKind::BadSyntax, BAD_SYNTAX.into()));
        assert_eq!(fail(b"   ").0, ErrorKind::BadSyntax);
        assert_eq!(
            fail(b"MAIL FROM:<\xff@b>"),
            (ErrorKind::BadUtf8, BAD_UTF8.into())
        );
        let (a, _) = rcpt("RCPT TO:<José@exämple.org>");
        assert!(!a.is_ascii());
    }

    #[test]
    fn unknown_and_non_smtp() {
        let e = parse_command(b"XYZZY").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unrecognized);
        assert_eq!(
            e.reply().to_string(),
            "502 5.5.2 Error: command not recognized"
        );
        assert!(!e.closes_session());
        for line in [
            &b"Subject: hello"[..],
            b"Subject:Send Test Mail",
            b"GET / HTTP/1.1",
            b"post /x",
            b"CONNECT host:25",
            b".",
            b"123",
        ] {
            let e = parse_command(line).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NonSmtp, "{line:?}");
            assert!(e.closes_session());
            assert_eq!(e.reply().code(), 221);
        }
    }

    #[test]
    fn argument_checks() {
        refused(&[
            ("DATA x", "501 5.5.4 Syntax: DATA"),
            ("RSET x", "501 5.5.4 Syntax: RSET"),
            ("NOOP x", "501 5.5.4 Syntax: NOOP"),
            ("STARTTLS x", "501 5.5.4 Syntax: STARTTLS"),
            ("VRFY", "501 5.5.4 Syntax: VRFY address"),
            ("EXPN", "501 5.5.4 Syntax: EXPN address"),
        ]);
        assert_eq!(ok("VRFY  john   doe"), Command::Vrfy("john doe".into()));
        assert_eq!(ok("expn staff"), Command::Expn("staff".into()));
    }

    #[test]
    fn bdat() {
        assert_eq!(
            ok("BDAT 100"),
            Command::Bdat {
                size: 100,
                last: false
            }
        );
        assert_eq!(
            ok("bdat 0 last"),
            Command::Bdat {
                size: 0,
                last: true
            }
        );
        let e = parse_command(b"BDAT x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BdatSyntax(None));
        assert!(e.closes_session());
        assert_eq!(e.reply().to_string(), "521 5.5.4 Syntax: BDAT count [LAST]");
        assert_eq!(fail(b"BDAT").0, ErrorKind::BdatSyntax(None));
        assert_eq!(fail(b"BDAT -1").0, ErrorKind::BdatSyntax(None));
        let e = parse_command(b"BDAT 5 X").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BdatSyntax(Some(5)));
        assert!(!e.closes_session());
        assert_eq!(e.reply().to_string(), "501 5.5.4 Syntax: BDAT count [LAST]");
    }

    #[test]
    fn auth() {
        assert_eq!(
            ok("auth plain AGEAYg=="),
            Command::Auth {
                mechanism: "PLAIN".into(),
                initial: Some("AGEAYg==".into())
            }
        );
        assert_eq!(
            ok("AUTH login"),
            Command::Auth {
                mechanism: "LOGIN".into(),
                initial: None
            }
        );
        assert_eq!(fail(b"AUTH").1, "501 5.5.4 Syntax: AUTH mechanism");
        assert_eq!(fail(b"AUTH a b c").1, "501 5.5.4 Syntax: AUTH mechanism");
        assert_eq!(fail(b"AUTH pl@in").1, "501 5.5.4 Syntax: AUTH mechanism");
    }

    #[test]
    fn etrn() {
        assert_eq!(
            ok("ETRN @example.com"),
            Command::Etrn("@example.com".into())
        );
        assert_eq!(ok("etrn #queue"), Command::Etrn("#queue".into()));
        assert_eq!(fail(b"ETRN").1, "500 Syntax: ETRN domain");
        assert_eq!(fail(b"ETRN a b").1, "500 Syntax: ETRN domain");
        assert_eq!(fail(b"ETRN a..b").1, "501 Error: invalid parameter syntax");
    }

    #[test]
    fn xtext_roundtrip() {
        for s in ["plain", "a+b=c", "sp ace", "ünï", "<>", ""] {
            assert_eq!(xtext_decode(&xtext_encode(s)).as_deref(), Some(s));
        }
        assert_eq!(xtext_encode("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext_decode("a+2b"), Some("a+".into()));
        assert_eq!(xtext_decode("a=b"), None);
        assert_eq!(xtext_decode("a+4"), None);
        assert_eq!(xtext_decode("a+zz"), None);
    }

    #[test]
    fn display_roundtrips() {
        for line in [
            "HELO localhost",
            "EHLO client.example",
            "MAIL FROM:<> BODY=8BITMIME",
            "MAIL FROM:<\"john doe\"@example.com> SIZE=10 BODY=BINARYMIME SMTPUTF8 RET=FULL ENVID=x+2By AUTH=<>",
            "RCPT TO:<postmaster>",
            "RCPT TO:<a@[127.0.0.1]> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c",
            "RCPT TO:<a@b> NOTIFY=NEVER",
            "DATA",
            "BDAT 10 LAST",
            "BDAT 7",
            "RSET",
            "NOOP",
            "QUIT",
            "VRFY john",
            "EXPN list",
            "HELP",
            "STARTTLS",
            "AUTH PLAIN =",
            "AUTH LOGIN",
            "ETRN @example.com",
        ] {
            let cmd = ok(line);
            assert_eq!(cmd.to_string(), line);
            assert_eq!(parse_command(cmd.to_string().as_bytes()).unwrap(), cmd);
        }
    }
}
