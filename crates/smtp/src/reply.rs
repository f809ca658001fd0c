//! SMTP replies: building them (server side), writing them to the wire,
//! and reading them back incrementally (client side).
//!
//! A reply is a three-digit code, an optional RFC 3463 enhanced status code
//! and one or more text lines. On the wire every line but the last uses
//! `code-` and the last uses `code ` (RFC 5321 4.2.1); when an enhanced code
//! is present it prefixes the text of every line, as Postfix writes it.
//! The enhanced code is postern-envelope's [`EnhancedStatus`], the one the
//! delivery outcome and the queue carry, so no hop re-parses it from text.

use std::fmt;

use postern_envelope::EnhancedStatus;

/// RFC 5321 4.5.3.1.5: a reply line is at most 512 octets including CRLF.
/// Longer text is split over continuation lines when written.
pub const MAX_REPLY_LINE: usize = 512;

/// One SMTP reply, possibly multi-line.
///
/// Invariants kept by every constructor: `code` is in 200..=599, the
/// enhanced code's class is the reply code's (a 3xx carries none), there is
/// at least one line, and no line contains CR or LF (so a reply can never
/// inject extra lines into the session).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    code: u16,
    enhanced: Option<EnhancedStatus>,
    lines: Vec<String>,
}

impl Reply {
    /// A reply whose text may hold several lines separated by `\n`.
    ///
    /// Codes outside 200..=599 are clamped to 451 (a local error defers, it
    /// never bounces); the enhanced code takes the reply code's class, as
    /// Postfix's smtpd_check_reject() does; CR characters are dropped.
    pub fn new(code: u16, enhanced: Option<EnhancedStatus>, text: &str) -> Reply {
        Reply::multiline(code, enhanced, text.split('\n'))
    }

    /// A reply from explicit lines. Any `\n` inside a line starts a new line.
    pub fn multiline<I, S>(code: u16, enhanced: Option<EnhancedStatus>, lines: I) -> Reply
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let code = if (200..=599).contains(&code) {
            code
        } else {
            451
        };
        let mut out = Vec::new();
        for line in lines {
            for part in line.as_ref().split('\n') {
                out.push(part.replace('\r', ""));
            }
        }
        if out.is_empty() {
            out.push(String::new());
        }
        Reply {
            code,
            enhanced: enhanced.and_then(|e| e.with_class((code / 100) as u8)),
            lines: out,
        }
    }

    /// Parse a single reply written in Postfix's literal style:
    /// `"501 5.5.4 Syntax: MAIL FROM:<address>"`. Returns `None` when the
    /// text does not start with a valid code. Meant for constants and tests.
    pub fn parse_line(text: &str) -> Option<Reply> {
        let line = parse_reply_line(text.as_bytes())?;
        let (enhanced, rest) = split_enhanced(line.code, &line.text);
        Some(Reply::new(line.code, enhanced, rest))
    }

    /// The three-digit reply code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The enhanced status code, when the reply carries one.
    pub fn enhanced(&self) -> Option<EnhancedStatus> {
        self.enhanced
    }

    /// The text lines, without codes.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The text lines joined with a single space, handy for logging
    /// (`status=sent (250 2.0.0 Ok: queued as ...)`).
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// 2xx: the command succeeded.
    pub fn is_positive(&self) -> bool {
        self.code / 100 == 2
    }

    /// 3xx: send more (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        self.code / 100 == 3
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        self.code / 100 == 4
    }

    /// 5xx: do not retry.
    pub fn is_permanent(&self) -> bool {
        self.code / 100 == 5
    }

    /// The reply as wire bytes, every line ending in CRLF.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_wire(&mut out);
        out
    }

    /// Append the wire form to `out`. Text that would push a line past
    /// [`MAX_REPLY_LINE`] continues on the next line.
    pub fn write_wire(&self, out: &mut Vec<u8>) {
        let prefix_len = 4 + self.enhanced.map_or(0, |e| e.to_string().len() + 1);
        // Room for text on one line: 512 minus code, separator, enhanced
        // code and CRLF.
        let room = MAX_REPLY_LINE.saturating_sub(prefix_len + 2).max(1);
        let mut pieces: Vec<&str> = Vec::new();
        for line in &self.lines {
            let mut rest = line.as_str();
            loop {
                if rest.len() <= room {
                    pieces.push(rest);
                    break;
                }
                let mut cut = room;
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                pieces.push(&rest[..cut]);
                rest = &rest[cut..];
            }
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{}", self.code, sep).as_bytes());
            if let Some(e) = self.enhanced {
                out.extend_from_slice(e.to_string().as_bytes());
                if !piece.is_empty() {
                    out.push(b' ');
                }
            }
            out.extend_from_slice(piece.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// One line per reply line, as on the wire but without CRLF, joined by
/// `\n`. A single-line reply prints exactly as Postfix logs it.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len() - 1;
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{}", self.code, sep)?;
            if let Some(e) = self.enhanced {
                write!(f, "{e}")?;
                if !line.is_empty() {
                    f.write_str(" ")?;
                }
            }
            f.write_str(line)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reply({:?})", self.to_string())
    }
}

/// Why the reply stream from a server cannot be read. The session is not
/// recoverable after any of these: the client should close and defer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line grew past the parser's line limit without a newline.
    #[error("reply line longer than {0} bytes")]
    LineTooLong(usize),
    /// A multi-line reply went on for more lines than allowed.
    #[error("reply with more than {0} lines")]
    TooManyLines(usize),
    /// A line did not start with a three-digit code and ` `, `-` or its end.
    #[error("malformed reply line: {0:?}")]
    Malformed(String),
    /// The code changed in the middle of a multi-line reply.
    #[error("reply code changed within a multi-line reply: {first} then {then}")]
    CodeMismatch {
        /// Code of the first line.
        first: u16,
        /// Code of the offending line.
        then: u16,
    },
}

/// Default line limit for [`ReplyParser`]: Postfix's `line_length_limit`.
/// Real servers exceed RFC 5321's 512, so we are generous but bounded.
pub const DEFAULT_REPLY_LINE_LIMIT: usize = 2048;

/// Default limit on lines in one reply (an EHLO reply has about a dozen).
pub const DEFAULT_REPLY_LINES_LIMIT: usize = 100;

/// Reads server replies from a byte stream that arrives in arbitrary pieces.
///
/// Push bytes with [`ReplyParser::push`], then call
/// [`ReplyParser::next_reply`] until it returns `Ok(None)`; with pipelining
/// one read may hold several replies. Lines may end in CRLF or a bare LF
/// (tolerated from servers); a missing enhanced status code is fine.
#[derive(Debug, Clone)]
pub struct ReplyParser {
    /// Unparsed input; bytes before `start` are already used.
    buf: Vec<u8>,
    start: usize,
    /// Lines of a multi-line reply still waiting for its last line.
    pending: Vec<(u16, String)>,
    max_line: usize,
    max_lines: usize,
}

impl Default for ReplyParser {
    fn default() -> Self {
        ReplyParser::new()
    }
}

impl ReplyParser {
    /// A parser with the default limits.
    pub fn new() -> ReplyParser {
        ReplyParser::with_limits(DEFAULT_REPLY_LINE_LIMIT, DEFAULT_REPLY_LINES_LIMIT)
    }

    /// A parser with explicit limits on line length (excluding CRLF) and on
    /// the number of lines in one reply.
    pub fn with_limits(max_line: usize, max_lines: usize) -> ReplyParser {
        ReplyParser {
            buf: Vec::new(),
            start: 0,
            pending: Vec::new(),
            max_line: max_line.max(4),
            max_lines: max_lines.max(1),
        }
    }

    /// Add bytes read from the server.
    pub fn push(&mut self, input: &[u8]) {
        // Compact now and then so a long session does not grow the buffer.
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(input);
    }

    /// Bytes received but not yet part of a returned reply (for example a
    /// TLS handshake must not start while the server still has data queued).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete reply, `Ok(None)` when more input is needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let rest = &self.buf[self.start..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > self.max_line + 1 {
                    return Err(ReplyError::LineTooLong(self.max_line));
                }
                return Ok(None);
            };
            let mut line = &rest[..nl];
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            if line.len() > self.max_line {
                return Err(ReplyError::LineTooLong(self.max_line));
            }
            let parsed = parse_reply_line(line)
                .ok_or_else(|| ReplyError::Malformed(String::from_utf8_lossy(line).into_owned()))?;
            self.start += nl + 1;
            if let Some(&(first, _)) = self.pending.first()
                && first != parsed.code
            {
                return Err(ReplyError::CodeMismatch {
                    first,
                    then: parsed.code,
                });
            }
            if self.pending.len() >= self.max_lines {
                return Err(ReplyError::TooManyLines(self.max_lines));
            }
            self.pending.push((parsed.code, parsed.text));
            if parsed.last {
                return Ok(Some(self.finish_reply()));
            }
        }
    }

    fn finish_reply(&mut self) -> Reply {
        let lines = std::mem::take(&mut self.pending);
        let code = lines[0].0;
        let (enhanced, _) = split_enhanced(code, &lines[0].1);
        let texts: Vec<String> = lines
            .iter()
            .map(|(_, text)| {
                let (e, rest) = split_enhanced(code, text);
                if e.is_some() && e == enhanced {
                    rest.to_owned()
                } else {
                    text.clone()
                }
            })
            .collect();
        // Text from a server is untrusted: keep it on its own lines.
        Reply::multiline(code, enhanced, texts)
    }
}

/// One parsed reply line.
struct ReplyLine {
    code: u16,
    last: bool,
    text: String,
}

fn parse_reply_line(line: &[u8]) -> Option<ReplyLine> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&digits[0]) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    let (last, text) = match line.get(3) {
        None => (true, &[][..]),
        Some(b' ') => (true, &line[4..]),
        Some(b'-') => (false, &line[4..]),
        Some(_) => return None,
    };
    // Server text is untrusted and only logged or relayed: like Postfix's
    // printable(), replace invalid UTF-8 and control characters instead of
    // failing the delivery over them.
    let text = String::from_utf8_lossy(text)
        .chars()
        .map(|c| if c.is_control() && c != '\t' { '?' } else { c })
        .collect();
    Some(ReplyLine { code, last, text })
}

/// Split a leading enhanced status code off reply text. The class must
/// agree with the reply code (RFC 3463: 2xx/4xx/5xx only).
fn split_enhanced(code: u16, text: &str) -> (Option<EnhancedStatus>, &str) {
    let class = code / 100;
    if !matches!(class, 2 | 4 | 5) {
        return (None, text);
    }
    let end = text.find(' ').unwrap_or(text.len());
    match text[..end].parse::<EnhancedStatus>() {
        Ok(e) if u16::from(e.class()) == class => {
            let rest = text[end..].strip_prefix(' ').unwrap_or(&text[end..]);
            (Some(e), rest)
        }
        _ => (None, text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<Result<Reply, ReplyError>> {
        let mut p = ReplyParser::new();
        p.push(input);
        let mut out = Vec::new();
        loop {
            match p.next_reply() {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn formats_single_line() {
        let r = Reply::new(250, Some(EnhancedStatus::of(2, 1, 0)), "Ok");
        assert_eq!(r.to_wire(), b"250 2.1.0 Ok\r\n");
        assert_eq!(r.to_string(), "250 2.1.0 Ok");
        assert!(r.is_positive() && !r.is_transient() && !r.is_permanent());
    }

    #[test]
    fn formats_multiline_with_continuations() {
        let r = Reply::multiline(250, None, ["mail.example.com", "PIPELINING", "8BITMIME"]);
        assert_eq!(
            r.to_wire(),
            b"250-mail.example.com\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
        let r = Reply::new(550, Some(EnhancedStatus::of(5, 7, 1)), "first\nsecond");
        assert_eq!(r.to_wire(), b"550-5.7.1 first\r\n550 5.7.1 second\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(250, None, "Ok\r\n250 fake");
        assert_eq!(r.to_wire(), b"250-Ok\r\n250 250 fake\r\n");
    }

    #[test]
    fn the_enhanced_code_takes_the_reply_class() {
        let r = Reply::new(550, Some(EnhancedStatus::of(4, 7, 1)), "x");
        assert_eq!(r.to_string(), "550 5.7.1 x");
        let r = Reply::new(999, Some(EnhancedStatus::of(5, 1, 1)), "x");
        assert_eq!(r.enhanced(), Some(EnhancedStatus::of(4, 1, 1)));
        assert_eq!(
            Reply::new(334, Some(EnhancedStatus::OK), "x").enhanced(),
            None
        );
    }

    #[test]
    fn bad_code_is_clamped_to_deferral() {
        assert_eq!(Reply::new(999, None, "x").code(), 451);
        assert_eq!(Reply::new(42, None, "x").code(), 451);
    }

    #[test]
    fn long_text_is_split_within_limit() {
        let text = "x".repeat(1500);
        let wire = Reply::new(554, Some(EnhancedStatus::of(5, 7, 1)), &text).to_wire();
        let lines: Vec<&[u8]> = wire.split_inclusive(|&b| b == b'\n').collect();
        assert!(lines.len() >= 3);
        for l in &lines {
            assert!(l.len() <= MAX_REPLY_LINE, "{}", l.len());
        }
        let back = parse_all(&wire);
        let r = back[0].as_ref().unwrap();
        assert_eq!(r.lines().concat(), text);
    }

    #[test]
    fn parse_line_literal() {
        let r = Reply::parse_line("501 5.5.4 Syntax: MAIL FROM:<address>").unwrap();
        assert_eq!(r.code(), 501);
        assert_eq!(r.enhanced(), Some(EnhancedStatus::of(5, 5, 4)));
        assert_eq!(r.lines(), ["Syntax: MAIL FROM:<address>"]);
        let r = Reply::parse_line("501 Syntax: HELO hostname").unwrap();
        assert_eq!(r.enhanced(), None);
        assert!(Reply::parse_line("hello").is_none());
    }

    #[test]
    fn parses_multiline_reply_and_pipelined_replies() {
        let out = parse_all(
            b"250-mx.example.com\r\n250-SIZE 1000\r\n250 DSN\r\n250 2.1.0 Ok\r\n354 End data\r\n",
        );
        assert_eq!(out.len(), 3);
        let ehlo = out[0].as_ref().unwrap();
        assert_eq!(ehlo.lines(), ["mx.example.com", "SIZE 1000", "DSN"]);
        let mail = out[1].as_ref().unwrap();
        assert_eq!(mail.enhanced(), Some(EnhancedStatus::of(2, 1, 0)));
        assert_eq!(mail.lines(), ["Ok"]);
        assert_eq!(out[2].as_ref().unwrap().code(), 354);
    }

    #[test]
    fn incremental_any_split() {
        let wire = b"220 mx ESMTP\r\n250-a\r\n250-2.0.0 b\r\n250 2.0.0 c\r\n421 4.3.2 bye\n";
        let whole = parse_all(wire);
        for split in 0..wire.len() {
            let mut p = ReplyParser::new();
            let mut got = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                p.push(part);
                while let Some(r) = p.next_reply().unwrap() {
                    got.push(Ok(r));
                }
            }
            assert_eq!(got, whole, "split at {split}");
        }
        assert_eq!(whole.len(), 3);
        let r = whole[1].as_ref().unwrap();
        assert_eq!(r.enhanced(), None, "first line had no enhanced code");
        assert_eq!(r.lines(), ["a", "2.0.0 b", "2.0.0 c"]);
        let r = whole[2].as_ref().unwrap();
        assert!(r.is_transient());
        assert_eq!(r.enhanced(), Some(EnhancedStatus::of(4, 3, 2)));
    }

    #[test]
    fn enhanced_code_class_must_match() {
        let out = parse_all(b"250 5.1.1 odd\r\n550 5.1.1 <x@y>: User unknown\r\n");
        assert_eq!(out[0].as_ref().unwrap().enhanced(), None);
        assert_eq!(out[0].as_ref().unwrap().lines(), ["5.1.1 odd"]);
        assert_eq!(
            out[1].as_ref().unwrap().enhanced(),
            Some(EnhancedStatus::of(5, 1, 1))
        );
    }

    #[test]
    fn bare_code_line() {
        let out = parse_all(b"250\r\n");
        assert_eq!(out[0].as_ref().unwrap().lines(), [""]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_all(b"hello\r\n")[0],
            Err(ReplyError::Malformed(_))
        ));
        assert!(matches!(
            parse_all(b"250x\r\n")[0],
            Err(ReplyError::Malformed(_))
        ));
        assert_eq!(
            parse_all(b"250-a\r\n550 b\r\n")[0],
            Err(ReplyError::CodeMismatch {
                first: 250,
                then: 550
            })
        );
        let mut p = ReplyParser::with_limits(10, 2);
        p.push(b"250 0123456789abc");
        assert_eq!(p.next_reply(), Err(ReplyError::LineTooLong(10)));
        let mut p = ReplyParser::with_limits(10, 2);
        p.push(b"250-a\r\n250-b\r\n250 c\r\n");
        assert_eq!(p.next_reply(), Err(ReplyError::TooManyLines(2)));
    }
}
