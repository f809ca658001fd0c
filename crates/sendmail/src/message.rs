//! The message and its addresses as sendmail reads them: standard input
//! with its line endings fixed, the recipients of `-t`, and addresses
//! given as RFC 5322 address lists (`a@b, Name <c@d>`), as Postfix's
//! sendmail parses both its arguments and the headers.

use std::io::BufRead;

use mail_parser::{HeaderName, HeaderValue, MessageParser};
use postern_smtp::Address;

use crate::exit::{EX_DATAERR, Fatal};

/// Reads the message: every line ends in CRLF whether it ended in LF or
/// CRLF (Postfix's `sendmail_fix_line_endings = always`), a last line
/// without a line end gets one, leading `From ` lines (mbox separators)
/// are dropped, and, when `dot_ends`, a line with only `.` ends the
/// input. More than `limit` bytes (0: no limit), read or stored, is
/// refused; nothing is kept of such a message.
pub fn read_message(input: impl BufRead, dot_ends: bool, limit: u64) -> Result<Vec<u8>, Fatal> {
    let bound = if limit == 0 { u64::MAX } else { limit + 1 };
    let mut input = input.take(bound);
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut leading = true;
    let mut read = 0u64;
    loop {
        line.clear();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| Fatal::new(EX_DATAERR, format!("error reading input: {e}")))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if limit > 0 && read > limit {
            return Err(too_big(limit));
        }
        let mut text = line.strip_suffix(b"\n").unwrap_or(&line);
        while let Some(t) = text.strip_suffix(b"\r") {
            text = t;
        }
        if leading {
            let unquoted = text.iter().position(|&b| b != b'>').unwrap_or(text.len());
            if text[unquoted..].starts_with(b"From ") {
                continue;
            }
            leading = false;
        }
        if dot_ends && text == b"." {
            break;
        }
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
        // What is stored counts (LF became CRLF).
        if limit > 0 && out.len() as u64 > limit {
            return Err(too_big(limit));
        }
    }
    Ok(out)
}

fn too_big(limit: u64) -> Fatal {
    Fatal::new(
        EX_DATAERR,
        format!("message file too big (message_size_limit is {limit} bytes)"),
    )
}

/// The header section of `content` (CRLF lines), with its empty line.
fn header_section(content: &[u8]) -> &[u8] {
    match content.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &content[..end + 4],
        None => content,
    }
}

/// `-t`: the recipients in To:, Cc: and Bcc:, or, when the message has
/// any Resent-To:, Resent-Cc: or Resent-Bcc: header, in those alone
/// (it is being resent: the original recipients have it already).
pub fn extract_recipients(content: &[u8]) -> Result<Vec<String>, Fatal> {
    if content.starts_with(b"\r\n") {
        return Ok(Vec::new());
    }
    let headers = header_section(content);
    let Some(message) = MessageParser::new().parse_headers(headers) else {
        return Ok(Vec::new());
    };
    let resent = [
        HeaderName::ResentTo,
        HeaderName::ResentCc,
        HeaderName::ResentBcc,
    ];
    let normal = [HeaderName::To, HeaderName::Cc, HeaderName::Bcc];
    let names = if resent.iter().any(|h| message.header(h.clone()).is_some()) {
        resent
    } else {
        normal
    };
    let mut out = Vec::new();
    for name in names {
        for value in message.header_values(name) {
            if let HeaderValue::Address(list) = value {
                for addr in list.iter() {
                    if let Some(a) = address_of(addr) {
                        out.push(checked_address(a, "header").map_err(|t| {
                            Fatal::new(EX_DATAERR, format!("unable to extract recipients: {t}"))
                        })?);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The addresses in one argument, which may be a list (`a, b`) or carry
/// display names (`Bob <bob@example.org>`); an argument with no address
/// in it is an error.
pub fn argument_addresses(arg: &str) -> Result<Vec<String>, String> {
    if has_control(arg) {
        return Err(format!("recipient {arg:?} contains a control character"));
    }
    let plain = arg.trim();
    // The common case, and what a list parser would mangle: user, user@dom.
    if let Ok(a) = Address::parse(plain) {
        return Ok(vec![a.to_string()]);
    }
    let header = format!("To: {arg}\r\n\r\n");
    let parsed = MessageParser::new().parse_headers(header.as_bytes());
    let list: Vec<String> = parsed
        .as_ref()
        .and_then(|m| m.to())
        .map(|to| {
            to.iter()
                .filter_map(|a| address_of(a).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if list.is_empty() {
        return Err(format!("bad recipient address syntax: {arg}"));
    }
    list.iter()
        .map(|a| checked_address(a, "recipient"))
        .collect()
}

/// The `-f` sender: the first address in the value; `<>` or an empty
/// value is the null sender.
pub fn sender_address(value: &str) -> Result<String, String> {
    if has_control(value) {
        return Err(format!("-f: sender {value:?} contains a control character"));
    }
    let plain = value.trim();
    if plain.is_empty() || plain == "<>" {
        return Ok(String::new());
    }
    argument_addresses(plain)
        .map(|mut list| list.swap_remove(0))
        .map_err(|_| format!("-f: bad sender address syntax: {value}"))
}

/// The address of a list member; a lone word with no `@` (`bob`, which
/// parsers take for a display name) is a local address, as in Postfix.
fn address_of<'a>(addr: &'a mail_parser::Addr<'_>) -> Option<&'a str> {
    addr.address().or_else(|| {
        addr.name()
            .filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
    })
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// An address from a parser, in the canonical form qmgr is handed
/// (quoted where the local part needs it).
fn checked_address(addr: &str, what: &str) -> Result<String, String> {
    if has_control(addr) {
        return Err(format!("{what} {addr:?} contains a control character"));
    }
    let (local, domain) = match addr.rfind('@') {
        Some(at) => (&addr[..at], Some(&addr[at + 1..])),
        None => (addr, None),
    };
    Address::from_parts(local, domain)
        .map(|a| a.to_string())
        .map_err(|e| format!("bad {what} address {addr:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], dot_ends: bool, limit: u64) -> Result<String, Fatal> {
        read_message(input, dot_ends, limit).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn line_endings_from_lines_and_the_dot() {
        assert_eq!(
            read(
                b"From alice  Mon\nSubject: a\r\n\nbody\r\r\nno end",
                true,
                0
            )
            .unwrap(),
            "Subject: a\r\n\r\nbody\r\nno end\r\n"
        );
        assert_eq!(read(b"a\n.\nb\n", true, 0).unwrap(), "a\r\n");
        assert_eq!(read(b"a\n.\nb\n", false, 0).unwrap(), "a\r\n.\r\nb\r\n");
        // Only leading From_ lines go.
        assert_eq!(read(b"x\nFrom y\n", true, 0).unwrap(), "x\r\nFrom y\r\n");
        // Bare LFs count as the CRLFs they become.
        assert_eq!(
            read(&[b'\n'; 600], false, 1000).unwrap_err().status,
            EX_DATAERR
        );
        let long = vec![b'x'; 1 << 20];
        assert_eq!(read(&long, true, 0).unwrap().len(), (1 << 20) + 2);
        let e = read(&long, true, 1000).unwrap_err();
        assert_eq!(e.status, EX_DATAERR);
        assert!(e.text.contains("too big"), "{}", e.text);
    }

    #[test]
    fn extraction_takes_to_cc_bcc_or_the_resent_ones() {
        let m = b"To: Alice <alice@example.org>, bob\r\nCc: team: carol@x.test, dan@x.test;\r\n\
                  Bcc: eve@y.test\r\nSubject: hi\r\n\r\nTo: not@this.test\r\n";
        assert_eq!(
            extract_recipients(m).unwrap(),
            [
                "alice@example.org",
                "bob",
                "carol@x.test",
                "dan@x.test",
                "eve@y.test"
            ]
        );
        let m = b"To: old@example.org\r\nResent-To: new@example.org\r\n\r\nbody\r\n";
        assert_eq!(extract_recipients(m).unwrap(), ["new@example.org"]);
        assert!(
            extract_recipients(b"Subject: none\r\n\r\n")
                .unwrap()
                .is_empty()
        );
        assert!(extract_recipients(b"\r\nTo: x@y\r\n").unwrap().is_empty());
    }

    #[test]
    fn arguments_and_senders() {
        assert_eq!(argument_addresses("bob").unwrap(), ["bob"]);
        assert_eq!(
            argument_addresses("Bob <bob@example.org>, c@d.test").unwrap(),
            ["bob@example.org", "c@d.test"]
        );
        assert!(argument_addresses("bad\u{7}@x").is_err());
        assert!(argument_addresses("<>").is_err());
        assert_eq!(sender_address("<>").unwrap(), "");
        assert_eq!(sender_address("").unwrap(), "");
        assert_eq!(
            sender_address("Alice <alice@example.org>").unwrap(),
            "alice@example.org"
        );
        assert!(sender_address("alice\n@example.org").is_err());
    }
}
