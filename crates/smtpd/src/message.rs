//! The message as it goes to the queue: our Received header first, then
//! the client's content, with `Message-ID:` and `Date:` added at the end
//! of the header section when the client sent none (Postfix's cleanup does
//! this; Postern has no cleanup daemon, so smtpd does it on the fly).
//!
//! Content is examined line by line while in the header section only, to
//! count Received headers (`hopcount_limit`) and spot Message-ID and Date;
//! the body passes through untouched. With header_checks or body_checks
//! set, postern-content's [`Inspector`] sees everything first, our
//! Received header included (as cleanup inspects what smtpd sends it),
//! and the header scan runs on what the inspector keeps: a Message-ID
//! that an IGNORE removed is added again, as Postfix's cleanup does. Nothing here holds more than one
//! chunk of [`BODY_CHUNK`] plus one read of input: the session ships the
//! chunks to qmgr as they fill.

use postern_content::{Inspector, Outcome};
use postern_envelope::ClientProtocol;
use postern_ipc::BODY_CHUNK;

/// What the header scan found and where it is.
#[derive(Debug)]
struct Scanner {
    in_headers: bool,
    /// The start of the header line being read, at most `line_limit` bytes.
    line: Vec<u8>,
    /// The current line outgrew `line_limit`: its rest passes unexamined.
    mid_line: bool,
    /// No line has been completed yet.
    first: bool,
    line_limit: usize,
    header_bytes: usize,
    header_limit: usize,
    received: usize,
    has_message_id: bool,
    has_date: bool,
    /// Headers to add when the section ends without them.
    message_id: String,
    date: String,
    /// The last byte written was a LF (the content ends with a line end).
    at_line_start: bool,
}

impl Scanner {
    fn process(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if !self.in_headers {
                self.emit(input, out);
                return;
            }
            let (piece, ended) = match input.iter().position(|&b| b == b'\n') {
                Some(i) => (&input[..=i], true),
                None => (input, false),
            };
            input = &input[piece.len()..];
            self.count(piece.len());
            if self.mid_line {
                self.emit(piece, out);
                self.mid_line = !ended;
                continue;
            }
            self.line.extend_from_slice(piece);
            if ended {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, out);
            } else if self.line.len() >= self.line_limit {
                // Judge the line by its start; the rest streams through.
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, out);
                self.mid_line = true;
            }
        }
    }

    fn count(&mut self, n: usize) {
        self.header_bytes += n;
        if self.header_bytes > self.header_limit && self.in_headers {
            // Past header_size_limit nothing more is examined or added.
            self.in_headers = false;
        }
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let first = std::mem::replace(&mut self.first, false);
        let text = trim_eol(line);
        if text.is_empty() {
            self.end_headers(out, false);
        } else if matches!(text[0], b' ' | b'\t') && !first {
            // A folded continuation of the previous header.
        } else if let Some(name) = header_name(text) {
            if name.eq_ignore_ascii_case(b"received") {
                self.received += 1;
            } else if name.eq_ignore_ascii_case(b"message-id") {
                self.has_message_id = true;
            } else if name.eq_ignore_ascii_case(b"date") {
                self.has_date = true;
            }
        } else {
            // Body text without the empty line: end the headers here.
            self.end_headers(out, true);
        }
        self.emit(line, out);
    }

    /// Adds the missing headers, and the empty line when the client's body
    /// started without one.
    fn end_headers(&mut self, out: &mut Vec<u8>, add_separator: bool) {
        if !self.in_headers {
            return;
        }
        self.in_headers = false;
        if !self.has_message_id {
            let h = format!("Message-ID: <{}>\r\n", self.message_id);
            self.emit(h.as_bytes(), out);
        }
        if !self.has_date {
            let h = format!("Date: {}\r\n", self.date);
            self.emit(h.as_bytes(), out);
        }
        if add_separator {
            self.emit(b"\r\n", out);
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.in_headers {
            return;
        }
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out);
        }
        if !self.at_line_start {
            self.emit(b"\r\n", out);
        }
        self.end_headers(out, false);
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Some(&last) = bytes.last() {
            self.at_line_start = last == b'\n';
            out.extend_from_slice(bytes);
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The field name when `line` starts a header field (`Name:` with
/// printable, non-space name characters; blanks before the colon allowed
/// as in RFC 5322's obsolete syntax).
fn header_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let trimmed = match name.iter().rposition(|&b| b != b' ' && b != b'\t') {
        Some(end) => &name[..=end],
        None => return None,
    };
    trimmed
        .iter()
        .all(|&b| (33..=126).contains(&b))
        .then_some(trimmed)
}

/// One message on its way to qmgr.
#[derive(Debug)]
pub struct Message {
    scanner: Scanner,
    /// Content not yet handed to qmgr.
    pending: Vec<u8>,
    /// Bytes received from the client so far.
    size: u64,
    /// `message_size_limit`; 0 is none.
    limit: u64,
    too_big: bool,
    /// header_checks and body_checks, when set.
    inspector: Option<Inspector>,
    /// What the inspector kept of the last input, for the scanner.
    inspected: Vec<u8>,
    /// The inspector's outcome, once the content ended.
    outcome: Option<Outcome>,
    hold_whole: bool,
    /// What smtpd put on top (PREPENDed headers and our Received).
    own_header: Vec<u8>,
}

/// Limits and names a [`Message`] needs.
#[derive(Debug)]
pub struct MessageSetup<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub received: String,
    pub date: &'a str,
    pub size_limit: u64,
    pub line_limit: usize,
    pub header_limit: usize,
    /// Content inspection (header_checks, body_checks), if any.
    pub inspector: Option<Inspector>,
    /// Keep the whole message until its end (milters judge it whole):
    /// no chunk is ready before [`Message::finish`].
    pub hold_whole: bool,
}

impl Message {
    pub fn new(setup: MessageSetup<'_>) -> Message {
        let mut msg = Message {
            scanner: Scanner {
                in_headers: true,
                line: Vec::new(),
                mid_line: false,
                first: true,
                line_limit: setup.line_limit.max(1),
                header_bytes: 0,
                header_limit: setup.header_limit,
                received: 0,
                has_message_id: false,
                has_date: false,
                message_id: format!("{}@{}", setup.id, setup.hostname),
                date: setup.date.to_string(),
                at_line_start: true,
            },
            pending: Vec::new(),
            size: 0,
            limit: setup.size_limit,
            too_big: false,
            inspector: setup.inspector,
            inspected: Vec::new(),
            outcome: None,
            hold_whole: setup.hold_whole,
            own_header: Vec::new(),
        };
        let received = setup.received.into_bytes();
        if msg.hold_whole {
            msg.own_header = received.clone();
        }
        match msg.inspector.as_mut() {
            Some(inspector) => {
                inspector.push(&received, &mut msg.inspected);
                msg.scanner.process(&msg.inspected, &mut msg.pending);
                msg.inspected.clear();
            }
            // Our own header needs no scan.
            None => msg.pending = received,
        }
        msg
    }

    /// Adds client content. Past the size limit the content is dropped and
    /// only counted.
    pub fn push(&mut self, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.limit > 0 && self.size > self.limit {
            self.too_big = true;
            self.pending = Vec::new();
        }
        if self.too_big {
            return;
        }
        match self.inspector.as_mut() {
            Some(inspector) => {
                inspector.push(bytes, &mut self.inspected);
                self.scanner.process(&self.inspected, &mut self.pending);
                self.inspected.clear();
            }
            None => self.scanner.process(bytes, &mut self.pending),
        }
    }

    /// Full chunks ready for qmgr.
    pub fn take_chunks(&mut self) -> Vec<Vec<u8>> {
        if self.hold_whole {
            return Vec::new();
        }
        self.split_chunks()
    }

    fn split_chunks(&mut self) -> Vec<Vec<u8>> {
        let mut chunks = Vec::new();
        while self.pending.len() >= BODY_CHUNK {
            let rest = self.pending.split_off(BODY_CHUNK);
            chunks.push(std::mem::replace(&mut self.pending, rest));
        }
        chunks
    }

    /// The end of the content: whatever is still pending, headers added.
    pub fn finish(&mut self) -> Vec<Vec<u8>> {
        if let Some(inspector) = self.inspector.take() {
            let outcome = inspector.finish(&mut self.inspected);
            if !self.too_big {
                self.scanner.process(&self.inspected, &mut self.pending);
            }
            self.inspected.clear();
            self.outcome = Some(outcome);
        }
        if !self.too_big && !self.refused() {
            self.scanner.finish(&mut self.pending);
        }
        let mut chunks = self.split_chunks();
        if !self.pending.is_empty() {
            chunks.push(std::mem::take(&mut self.pending));
        }
        chunks
    }

    pub fn too_big(&self) -> bool {
        self.too_big
    }

    /// Received headers including ours.
    pub fn hops(&self) -> usize {
        match &self.outcome {
            // The inspector saw ours too.
            Some(o) => o.received.max(1),
            None => self.scanner.received + 1,
        }
    }

    /// The message is kept whole for the milters ([`MessageSetup::hold_whole`]).
    pub fn held_whole(&self) -> bool {
        self.hold_whole
    }

    /// What smtpd put on top of the client's content, which filters do
    /// not see (kept only for a message held whole).
    pub fn own_header(&self) -> &[u8] {
        &self.own_header
    }

    /// What header and body checks decided, once [`Message::finish`]ed
    /// (none when no checks are set).
    pub fn inspection(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// The checks refused or discarded the message: nothing more is
    /// added to it.
    fn refused(&self) -> bool {
        self.inspector.as_ref().is_some_and(Inspector::is_final)
            || self.outcome.as_ref().is_some_and(|o| {
                matches!(
                    o.verdict,
                    postern_content::Verdict::Reject { .. }
                        | postern_content::Verdict::Discard { .. }
                )
            })
    }
}

/// The Received header, Postfix's layout: the `for` clause only with
/// exactly one recipient.
#[derive(Debug, Clone)]
pub struct ReceivedHeader<'a> {
    /// The HELO argument; the client name stands in when there was none.
    pub helo: Option<&'a str>,
    pub client_name: &'a str,
    pub client_addr: &'a str,
    pub hostname: &'a str,
    pub mail_name: &'a str,
    pub protocol: ClientProtocol,
    /// `TLSv1.3 with cipher ... (256/256 bits)` when the session is
    /// encrypted and the clause is wanted.
    pub tls: Option<&'a str>,
    pub id: &'a str,
    pub single_recipient: Option<&'a str>,
    pub date: &'a str,
}

impl std::fmt::Display for ReceivedHeader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Received: from {} ({} [{}])\r\n\t",
            self.helo.unwrap_or(self.client_name),
            self.client_name,
            self.client_addr,
        )?;
        if let Some(tls) = self.tls {
            // Postfix's layout; Postern never asks for client certificates.
            write!(
                f,
                "(using {tls})\r\n\t(No client certificate requested)\r\n\t"
            )?;
        }
        write!(
            f,
            "by {} ({}) with {} id {}",
            self.hostname, self.mail_name, self.protocol, self.id
        )?;
        match self.single_recipient {
            Some(rcpt) => write!(f, "\r\n\tfor <{rcpt}>; {}\r\n", self.date),
            None => write!(f, ";\r\n\t{}\r\n", self.date),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(size_limit: u64) -> Message {
        Message::new(MessageSetup {
            id: "ABC",
            hostname: "mx.example",
            received: "Received: x\r\n".into(),
            date: "DATE",
            size_limit,
            line_limit: 2048,
            header_limit: 102_400,
            inspector: None,
            hold_whole: false,
        })
    }

    fn all(m: &mut Message) -> String {
        let mut out = Vec::new();
        for c in m.take_chunks().into_iter().chain(m.finish()) {
            out.extend(c);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn missing_headers_are_added_before_the_empty_line() {
        let mut m = message(0);
        m.push(b"Subject: hi\r\nReceived: a\r\n\tb\r\n\r\nbody\r\n");
        assert_eq!(
            all(&mut m),
            "Received: x\r\nSubject: hi\r\nReceived: a\r\n\tb\r\n\
             Message-ID: <ABC@mx.example>\r\nDate: DATE\r\n\r\nbody\r\n"
        );
        assert_eq!(m.hops(), 2);
    }

    #[test]
    fn present_headers_are_kept_and_chunking_does_not_matter() {
        let text = b"Message-Id: <x@y>\r\nDATE: now\r\n\r\nDate: not a header\r\n";
        let mut m = message(0);
        for b in text {
            m.push(&[*b]);
        }
        let expect = format!("Received: x\r\n{}", String::from_utf8_lossy(text));
        assert_eq!(all(&mut m), expect);
    }

    #[test]
    fn body_without_headers_gets_a_separator() {
        let mut m = message(0);
        m.push(b"just text\r\n");
        assert_eq!(
            all(&mut m),
            "Received: x\r\nMessage-ID: <ABC@mx.example>\r\nDate: DATE\r\n\r\njust text\r\n"
        );
        let mut m = message(0);
        m.push(b" indented first line\r\n");
        assert!(all(&mut m).ends_with("DATE\r\n\r\n indented first line\r\n"));
    }

    #[test]
    fn headers_only_message_ends_with_the_added_headers() {
        let mut m = message(0);
        m.push(b"Subject: x");
        assert_eq!(
            all(&mut m),
            "Received: x\r\nSubject: x\r\nMessage-ID: <ABC@mx.example>\r\nDate: DATE\r\n"
        );
    }

    #[test]
    fn size_limit_drops_content() {
        let mut m = message(10);
        m.push(b"Subject: 12345\r\n");
        assert!(m.too_big());
        assert!(m.finish().is_empty());
    }

    #[test]
    fn chunks_never_exceed_body_chunk() {
        let mut m = message(0);
        let big = vec![b'a'; 3 * BODY_CHUNK + 17];
        m.push(b"\r\n");
        m.push(&big);
        let chunks: Vec<_> = m.take_chunks().into_iter().chain(m.finish()).collect();
        assert!(chunks.iter().all(|c| c.len() <= BODY_CHUNK));
        let total: usize = chunks.iter().map(Vec::len).sum();
        assert!(total > big.len());
    }

    #[test]
    fn received_header_layout() {
        let mut h = ReceivedHeader {
            helo: Some("localhost"),
            client_name: "unknown",
            client_addr: "127.0.0.1",
            hostname: "mx",
            mail_name: "Postern",
            protocol: ClientProtocol::Smtp,
            tls: None,
            id: "ID1",
            single_recipient: Some("user@example.local"),
            date: "D",
        };
        assert_eq!(
            h.to_string(),
            "Received: from localhost (unknown [127.0.0.1])\r\n\tby mx (Postern) with SMTP id ID1\r\n\tfor <user@example.local>; D\r\n"
        );
        h.helo = None;
        h.single_recipient = None;
        h.protocol = ClientProtocol::Esmtp;
        assert_eq!(
            h.to_string(),
            "Received: from unknown (unknown [127.0.0.1])\r\n\tby mx (Postern) with ESMTP id ID1;\r\n\tD\r\n"
        );
        h.protocol = ClientProtocol::Esmtpsa;
        h.tls = Some("TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)");
        assert_eq!(
            h.to_string(),
            "Received: from unknown (unknown [127.0.0.1])\r\n\t\
             (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n\t\
             (No client certificate requested)\r\n\t\
             by mx (Postern) with ESMTPSA id ID1;\r\n\tD\r\n"
        );
    }
}
