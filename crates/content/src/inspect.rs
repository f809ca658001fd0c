//! [`Inspector`]: one message's content, inspected as it streams through
//! (cleanup_message.c's callbacks over mime_state.c's state machine).
//!
//! Input is cut into Postfix's records: a line without its line end, or
//! `line_length_limit` bytes of a longer line (a continued record).
//! Records in a header block build logical headers (continuation lines
//! joined with `\n`, at most about `header_size_limit` bytes kept); a
//! header is looked up when the record after it shows it is complete.
//! Body records are looked up one at a time.

use memchr::memchr;
use postern_config::TableError;

use crate::action::Action;
use postern_envelope::ContentFilter;

use crate::log::LogContext;
use crate::mime::{self, ContentType};
use crate::{ContentChecks, Maps};

/// How the inspection of a message ended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub verdict: Verdict,
    /// FILTER `transport:destination` (the last one wins).
    pub filter: Option<ContentFilter>,
    /// REDIRECT `user@domain`: the message goes there instead of to its
    /// recipients.
    pub redirect: Option<String>,
    /// BCC recipients to add (with NOTIFY=NONE), in order.
    pub bcc: Vec<String>,
    /// The Received headers of the content, in any header block and
    /// before any action dropped them ([`Inspector::received_headers`]
    /// at the end).
    pub received: usize,
    /// The lines logged (already sent to `tracing`), warnings with their
    /// `warning: ` prefix.
    pub log: Vec<String>,
}

/// What becomes of the message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Verdict {
    /// Queue it as usual.
    #[default]
    Accept,
    /// Queue it on hold; the reason is HOLD's text (maybe empty).
    Hold { reason: String },
    /// Answer as if queued, and drop it.
    Discard { reason: String },
    /// Refuse it: `code` is 550, or 451 for a 4.x.x text or a table that
    /// failed; `text` starts with the enhanced status code.
    Reject { code: u16, text: String },
}

impl Verdict {
    /// The SMTP reply for a rejected message (`550 5.7.1 text`).
    pub fn reply(&self) -> Option<String> {
        match self {
            Verdict::Reject { code, text } => Some(format!("{code} {text}")),
            _ => None,
        }
    }
}

/// Where in the MIME structure the next record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The message's own headers.
    Primary,
    /// Headers after a `--boundary` line.
    Multipart,
    /// Headers at the start of an attached message/rfc822.
    Nested,
    Body,
}

/// What the current header block says its body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PartType {
    /// text/*, and every part without a Content-Type.
    Plain,
    /// message/rfc822 or message/global: headers follow the blank line.
    Message,
    Multipart,
    Other,
}

/// An open multipart: its boundary and the default type of its parts.
#[derive(Debug)]
struct Boundary {
    text: Vec<u8>,
    part_type: PartType,
}

/// Which table a header goes to.
#[derive(Clone, Copy, Debug)]
enum Class {
    Primary,
    Mime,
    Nested,
}

/// What an action does to the line it matched.
enum Edit {
    Keep,
    Drop,
    Replace(String),
}

/// Inspects one message. Feed it the content as it arrives
/// ([`Inspector::push`], chunks of any size; lines end in CRLF or LF),
/// write out what it returns (lines end in CRLF), and call
/// [`Inspector::finish`] at the end of the content.
#[derive(Debug)]
pub struct Inspector {
    checks: ContentChecks,
    context: LogContext,
    /// The record being read (at most `line_limit` + 1 bytes).
    record: Vec<u8>,
    state: State,
    part_type: PartType,
    boundaries: Vec<Boundary>,
    /// The logical header being built; empty when none.
    header: Vec<u8>,
    /// The previous record was a piece of a longer line.
    prev_continued: bool,
    /// Bytes into the current body part (a line end counts one), for
    /// `body_checks_size_limit`.
    body_offset: u64,
    /// header/body checks are still on (PASS, REDIRECT, REJECT and
    /// DISCARD turn them off).
    inspecting: bool,
    /// After REJECT, DISCARD or a failed lookup nothing more is examined
    /// or written: the message will not be queued.
    stopped: bool,
    /// A nesting too deep was seen (reported only with header checks).
    nesting_error: bool,
    received: usize,
    outcome: Outcome,
}

impl Inspector {
    pub fn new(checks: &ContentChecks, context: LogContext) -> Inspector {
        Inspector {
            checks: checks.clone(),
            context,
            record: Vec::new(),
            state: State::Primary,
            part_type: PartType::Plain,
            boundaries: Vec::new(),
            header: Vec::new(),
            prev_continued: false,
            body_offset: 0,
            inspecting: true,
            stopped: false,
            nesting_error: false,
            received: 0,
            outcome: Outcome::default(),
        }
    }

    /// Whether the message is already refused or discarded: the rest of
    /// the content is read and dropped (the SMTP session stays in step)
    /// and nothing more is written.
    pub fn is_final(&self) -> bool {
        self.stopped
    }

    /// The Received headers seen so far, in any header block and before
    /// any action dropped them, as cleanup(8) counts hops.
    pub fn received_headers(&self) -> usize {
        self.received
    }

    /// Inspects `input` and appends the content to keep to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        let limit = self.checks.inner.line_limit;
        while !input.is_empty() && !self.stopped {
            let lf = memchr(b'\n', input);
            let mut segment = &input[..lf.unwrap_or(input.len())];
            input = match lf {
                Some(i) => &input[i + 1..],
                None => &[],
            };
            loop {
                let n = (limit + 1 - self.record.len()).min(segment.len());
                self.record.extend_from_slice(&segment[..n]);
                segment = &segment[n..];
                if self.record.len() <= limit {
                    break;
                }
                // More than a record's worth: the first `limit` bytes are a
                // continued record, unless the byte over is a CR that may
                // yet end the line.
                if self.record[limit] == b'\r' && segment.is_empty() {
                    break;
                }
                let mut record = std::mem::take(&mut self.record);
                let over = record[limit];
                record.truncate(limit);
                self.on_record(&record, true, out);
                record.clear();
                record.push(over);
                self.record = record;
            }
            if lf.is_some() {
                let mut record = std::mem::take(&mut self.record);
                if record.last() == Some(&b'\r') {
                    record.pop();
                }
                self.on_record(&record, false, out);
                record.clear();
                self.record = record;
            }
        }
    }

    /// Ends the content: a last line without its line end gets one, a
    /// pending header is inspected, and the outcome is told.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Outcome {
        if !self.stopped {
            let mut record = std::mem::take(&mut self.record);
            if !record.is_empty() {
                if record.last() == Some(&b'\r') {
                    record.pop();
                }
                self.on_record(&record, false, out);
            }
            if !self.stopped && !self.header.is_empty() {
                self.flush_header(out);
            }
        }
        let reject = !matches!(
            self.outcome.verdict,
            Verdict::Reject { .. } | Verdict::Discard { .. }
        );
        if self.nesting_error && reject {
            self.outcome.verdict = Verdict::Reject {
                code: 550,
                text: "5.6.0 MIME nesting exceeds safety limit".into(),
            };
        }
        self.outcome.received = self.received;
        self.outcome
    }

    /// One record (mime_state_update for a text record).
    fn on_record(&mut self, text: &[u8], continued: bool, out: &mut Vec<u8>) {
        if self.stopped {
            return;
        }
        if self.state != State::Body {
            if !self.header.is_empty() {
                let folded = !self.prev_continued && matches!(text.first(), Some(b' ' | b'\t'));
                if self.prev_continued || folded {
                    if self.header.len() < self.checks.inner.header_limit {
                        if folded {
                            self.header.push(b'\n');
                        }
                        self.header.extend_from_slice(text);
                    }
                    self.prev_continued = continued;
                    return;
                }
                self.flush_header(out);
                self.prev_continued = false;
                if self.stopped {
                    return;
                }
            }
            if let Some(name_len) = mime::header_name_len(text) {
                // `Name :` (RFC 822's obsolete form) becomes `Name:`.
                let rest = &text[name_len..];
                let blanks = rest
                    .iter()
                    .take_while(|b| matches!(b, b' ' | b'\t'))
                    .count();
                self.header.extend_from_slice(&text[..name_len]);
                self.header.extend_from_slice(&rest[blanks..]);
                self.prev_continued = continued;
                return;
            }
            // The header block ends here.
            if text.is_empty() {
                self.body_offset = 0;
                match self.part_type {
                    PartType::Message => {
                        self.state = State::Nested;
                        self.part_type = PartType::Plain;
                    }
                    PartType::Multipart => {
                        self.state = State::Body;
                        self.part_type = PartType::Other;
                    }
                    PartType::Plain | PartType::Other => self.state = State::Body,
                }
            } else {
                // Text where a header should be. The message's own headers
                // get the empty line that should have ended them; a body
                // part is left as it is.
                if self.state == State::Primary {
                    self.body_line(b"", false, out);
                }
                self.state = State::Body;
                self.body_offset = 0;
            }
        }
        self.find_boundary(text);
        self.body_line(text, continued, out);
        self.prev_continued = continued;
    }

    /// A `--boundary` or `--boundary--` line of an open multipart (the
    /// innermost first) changes the state; a line that does not start a
    /// record (a piece of a long line) is never one.
    fn find_boundary(&mut self, text: &[u8]) {
        if self.boundaries.is_empty()
            || self.prev_continued
            || text.len() <= 2
            || !text.starts_with(b"--")
        {
            return;
        }
        let found = self
            .boundaries
            .iter()
            .rposition(|b| text[2..].starts_with(&b.text));
        let Some(i) = found else {
            return;
        };
        self.boundaries.truncate(i + 1);
        let bound_len = self.boundaries[i].text.len();
        if text[2 + bound_len..].starts_with(b"--") {
            self.boundaries.pop();
            self.state = State::Body;
            self.part_type = PartType::Other;
            self.body_offset = 0;
        } else {
            self.state = State::Multipart;
            self.part_type = self.boundaries[i].part_type;
        }
    }

    /// A complete logical header: MIME structure first, then the checks,
    /// then out.
    fn flush_header(&mut self, out: &mut Vec<u8>) {
        let header = std::mem::take(&mut self.header);
        let name_len = header
            .iter()
            .position(|&b| b == b':')
            .unwrap_or(header.len());
        let name = &header[..name_len];
        if !self.checks.inner.disable_mime && name.eq_ignore_ascii_case(b"content-type") {
            self.content_type(&header[name_len + 1..]);
        }
        if name.eq_ignore_ascii_case(b"received") {
            self.received += 1;
        }
        let class = if mime::is_mime_header(name) {
            Class::Mime
        } else {
            match self.state {
                State::Primary => Class::Primary,
                State::Nested => Class::Nested,
                State::Multipart | State::Body => Class::Mime,
            }
        };
        let checks = self.checks.clone();
        let (param, maps) = match class {
            Class::Primary => ("header_checks", &checks.inner.header),
            Class::Mime => ("mime_header_checks", &checks.inner.mime_header),
            Class::Nested => ("nested_header_checks", &checks.inner.nested_header),
        };
        let mut edit = Edit::Keep;
        if self.inspecting
            && let Some(maps) = maps
        {
            edit = self.check(Place::Header, param, maps, &header, out);
        }
        if self.stopped {
            return;
        }
        let text = match &edit {
            Edit::Drop => return,
            Edit::Keep => &header[..],
            Edit::Replace(r) => r.as_bytes(),
        };
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// A Content-Type header sets what follows the header block.
    fn content_type(&mut self, value: &[u8]) {
        self.part_type = match mime::content_type(value) {
            ContentType::Text => PartType::Plain,
            ContentType::Message { nested: true } => PartType::Message,
            ContentType::Message { nested: false } | ContentType::Other => PartType::Other,
            ContentType::Multipart { digest, boundaries } => {
                let part_type = if digest {
                    PartType::Message
                } else {
                    PartType::Plain
                };
                for mut text in boundaries {
                    // mime_state.c's level counts from -1 (the first push
                    // makes it 0) and refuses a push above the limit.
                    if self.boundaries.len() > self.checks.inner.nesting_limit + 1 {
                        self.nesting_error(value);
                    } else {
                        text.truncate(self.checks.inner.boundary_limit);
                        self.boundaries.push(Boundary { text, part_type });
                    }
                }
                PartType::Multipart
            }
        };
    }

    /// Reported (once) only when header checks are set, as cleanup asks
    /// mime_state for it.
    fn nesting_error(&mut self, value: &[u8]) {
        let checks = &self.checks.inner;
        let reported = checks.header.is_some()
            || checks.mime_header.is_some()
            || checks.nested_header.is_some();
        if reported && !self.nesting_error {
            self.nesting_error = true;
            let mut text = b"Content-Type:".to_vec();
            text.extend_from_slice(value);
            let line = self
                .context
                .mime_error_line("MIME nesting exceeds safety limit", &text);
            self.info(line);
        }
    }

    /// A body record, checked while within body_checks_size_limit.
    fn body_line(&mut self, text: &[u8], continued: bool, out: &mut Vec<u8>) {
        let offset = self.body_offset;
        self.body_offset += text.len() as u64 + 1;
        let checks = self.checks.clone();
        let limit = checks.inner.body_size_limit;
        let mut edit = Edit::Keep;
        if self.inspecting
            && let Some(maps) = &checks.inner.body
            && (limit == 0 || offset < limit)
        {
            edit = self.check(Place::Body, "body_checks", maps, text, out);
        }
        if self.stopped {
            return;
        }
        match edit {
            Edit::Drop => return,
            Edit::Keep => out.extend_from_slice(text),
            Edit::Replace(r) => out.extend_from_slice(r.as_bytes()),
        }
        if !continued {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Looks `line` up and acts on the result. An empty line is never
    /// looked up (Postfix's maps_find refuses empty keys).
    fn check(
        &mut self,
        place: Place,
        param: &'static str,
        maps: &Maps,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Edit {
        if line.is_empty() {
            return Edit::Keep;
        }
        match maps.lookup(&String::from_utf8_lossy(line)) {
            Ok(None) => Edit::Keep,
            Ok(Some(result)) => self.act(place, param, line, &result, out),
            Err(e) => {
                self.lookup_failed(param, &e);
                Edit::Keep
            }
        }
    }

    /// The table failed: the message is not accepted, and the client is
    /// asked to try again (Postfix: CLEANUP_STAT_WRITE).
    fn lookup_failed(&mut self, param: &str, e: &TableError) {
        self.warn(format!(
            "{}: {param} map lookup problem -- message not accepted, try again later",
            self.context.queue_id
        ));
        tracing::warn!("{e}");
        let text = if e.is_configuration_error() {
            "4.3.5 Server configuration error"
        } else {
            "4.3.0 Error: queue file write error"
        };
        self.outcome.verdict = Verdict::Reject {
            code: 451,
            text: text.into(),
        };
        self.stop();
    }

    /// cleanup_act: what one table result does.
    fn act(
        &mut self,
        place: Place,
        param: &str,
        line: &[u8],
        result: &str,
        out: &mut Vec<u8>,
    ) -> Edit {
        let place_name = place.name();
        let log = |me: &mut Inspector, action: &str, text: &str| {
            let l = me.context.action_line(action, place_name, line, text);
            me.info(l);
        };
        match Action::parse(result) {
            Action::Reject(text) => {
                let mut reason = if text.is_empty() {
                    "5.7.1 message content rejected".to_string()
                } else {
                    with_status("5.7.1", &text)
                };
                if !reason.starts_with(['4', '5']) {
                    self.warn(format!("bad DSN action in {text} -- need 4.x.x or 5.x.x"));
                    reason.replace_range(..1, "4");
                }
                let code = if reason.starts_with('4') { 451 } else { 550 };
                log(self, "reject", &reason);
                self.outcome.verdict = Verdict::Reject { code, text: reason };
                self.stop();
            }
            Action::Warn(text) => log(self, "warning", &text),
            Action::Info(text) => log(self, "info", &text),
            Action::Filter(text) => {
                if text.is_empty() {
                    self.warn(format!("missing FILTER command argument in {param} map"));
                } else if let Ok(filter) = text.parse::<ContentFilter>() {
                    log(self, "filter", &text);
                    self.outcome.filter = Some(filter);
                } else {
                    self.warn(format!(
                        "bad FILTER command {text} in {param} -- need transport:destination"
                    ));
                }
            }
            Action::Pass(text) => {
                log(self, "pass", &text);
                self.inspecting = false;
            }
            Action::Discard(text) => {
                log(self, "discard", &text);
                self.outcome.verdict = Verdict::Discard { reason: text };
                self.stop();
            }
            Action::Hold(text) => {
                if self.outcome.verdict == Verdict::Accept {
                    log(self, "hold", &text);
                    self.outcome.verdict = Verdict::Hold { reason: text };
                }
            }
            Action::Prepend(text) => {
                if text.is_empty() {
                    self.warn(format!("PREPEND action without text in {param} map"));
                } else if place == Place::Header && !is_header(&text) {
                    self.warn(format!(
                        "bad PREPEND header text \"{text}\" in {param} map -- \
                         need \"headername: headervalue\""
                    ));
                } else {
                    log(self, "prepend", &text);
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
            Action::Replace(text) => {
                if text.is_empty() {
                    self.warn(format!("REPLACE action without text in {param} map"));
                } else if place == Place::Header && !is_header(&text) {
                    self.warn(format!(
                        "bad REPLACE header text \"{text}\" in {param} map -- \
                         need \"headername: headervalue\""
                    ));
                } else {
                    log(self, "replace", &text);
                    return Edit::Replace(text);
                }
            }
            Action::Redirect(text) => {
                if !text.contains('@') {
                    self.warn(format!(
                        "bad REDIRECT target \"{text}\" in {param} map -- need user@domain"
                    ));
                } else {
                    log(self, "redirect", &text);
                    self.outcome.redirect = Some(text);
                    self.inspecting = false;
                }
            }
            Action::Bcc(text) => {
                if !text.contains('@') {
                    self.warn(format!(
                        "bad BCC address \"{text}\" in {param} map -- need user@domain"
                    ));
                } else {
                    log(self, "bcc", &text);
                    self.outcome.bcc.push(text);
                }
            }
            Action::Strip(text) => {
                log(self, "strip", &text);
                return Edit::Drop;
            }
            Action::Ignore => return Edit::Drop,
            Action::Dunno => {}
            Action::Unknown(result) => {
                self.warn(format!("unknown command in {param} map: {result}"));
            }
        }
        Edit::Keep
    }

    fn stop(&mut self) {
        self.inspecting = false;
        self.stopped = true;
        self.header.clear();
        self.record.clear();
    }

    fn info(&mut self, line: String) {
        tracing::info!("{line}");
        self.outcome.log.push(line);
    }

    fn warn(&mut self, line: String) {
        tracing::warn!("{line}");
        self.outcome.log.push(format!("warning: {line}"));
    }
}

/// Where the line an action matched was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Header,
    Body,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Header => "header",
            Place::Body => "body",
        }
    }
}

/// PREPEND and REPLACE text for a header must be one.
fn is_header(text: &str) -> bool {
    mime::header_name_len(text.as_bytes()).is_some()
}

/// dsn_prepend: `text` keeps its own enhanced status code (`4.7.0 ...`),
/// or gets `default` in front.
fn with_status(default: &str, text: &str) -> String {
    let text = text.trim_start();
    match status_len(text) {
        Some(n) => format!("{} {}", &text[..n], text[n..].trim_start()),
        None => format!("{default} {text}"),
    }
}

/// The length of a leading `[245].d{1,3}.d{1,3}` followed by a blank or
/// the end (dsn_valid).
fn status_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if !matches!(b.first(), Some(b'2' | b'4' | b'5')) || b.get(1) != Some(&b'.') {
        return None;
    }
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let d2 = digits(2);
    if !(1..=3).contains(&d2) || b.get(2 + d2) != Some(&b'.') {
        return None;
    }
    let start = 3 + d2;
    let d3 = digits(start);
    let end = start + d3;
    if !(1..=3).contains(&d3) || b.get(end).is_some_and(|c| !c.is_ascii_whitespace()) {
        return None;
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_are_kept_or_added() {
        assert_eq!(with_status("5.7.1", "go away"), "5.7.1 go away");
        assert_eq!(with_status("5.7.1", "4.7.0  later"), "4.7.0 later");
        assert_eq!(with_status("5.7.1", "5.7.12"), "5.7.12 ");
        assert_eq!(with_status("5.7.1", "5.7.1234 x"), "5.7.1 5.7.1234 x");
        assert_eq!(with_status("5.7.1", "3.1.1 x"), "5.7.1 3.1.1 x");
    }
}
