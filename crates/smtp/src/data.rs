//! The `DATA` body: decoding on the server, encoding on the client.
//!
//! [`DataDecoder`] removes dot-stuffing and finds the end of the message.
//! The message ends **only** at `<CR><LF>.<CR><LF>` (the `<CR><LF>` may be
//! the one that ended the `DATA` command). A bare LF or a bare CR never
//! ends it and never splits it: `\n.\n`, `\r\n.\n`, `\n.\r\n`, `\r.\r`,
//! `\r\n.\r` are content. Otherwise a second, "smuggled" message could
//! follow a false end that this server and the next hop read differently
//! (SMTP smuggling, CVE-2023-51764).
//!
//! What happens to bare LF is the [`BareNewlinePolicy`], after Postfix's
//! `smtpd_forbid_bare_newline`. In all policies a bare LF ends a *line* for
//! dot-unstuffing (a following `..x` becomes `.x`) but never the message,
//! and a line that is just `.` but is not framed by CRLF on both sides is
//! kept as the content line `.`. A bare CR is always plain content.
//!
//! The decoder takes input in any chunking; its output does not depend on
//! where the chunks were cut. Long lines are counted, not refused: the
//! session decides what to do with them.
//!
//! `BDAT` (RFC 3030) carries raw octets with no stuffing and no terminator,
//! so it needs none of this: read exactly the announced count.

use postern_envelope::EnhancedStatus;

use crate::reply::Reply;

/// RFC 5321 4.5.3.1.6: 1000 octets per line including CRLF.
pub const RFC5321_MAX_LINE: usize = 998;

/// What to do with a bare LF in message content (Postfix's
/// `smtpd_forbid_bare_newline`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BareNewlinePolicy {
    /// Accept a bare LF as a line end and store it as CRLF (Postfix's
    /// default since 3.9).
    #[default]
    Normalize,
    /// Decode as with `Normalize`, and report the bare LF so the session
    /// answers [`bare_newline_reply`] once the data has ended.
    Reject,
    /// Keep a bare LF as it is (Postfix's old behaviour, minus the false
    /// end of data).
    No,
}

/// Result of one [`DataDecoder::feed`] call. The flags and the count are
/// cumulative since the start of the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataProgress {
    /// Input bytes used. Less than the input only when `done`: the rest
    /// (pipelined commands) belongs to the command reader.
    pub consumed: usize,
    /// The terminating `<CR><LF>.<CR><LF>` has been read.
    pub done: bool,
    /// A LF not preceded by CR was seen.
    pub bare_newline_seen: bool,
    /// A CR not followed by LF was seen.
    pub bare_cr_seen: bool,
    /// Lines longer than the decoder's limit (excluding the line end).
    pub long_lines: u64,
}

/// How the previous line ended; decides whether a `.` line may end the
/// message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    Crlf,
    BareLf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    Start(LineEnd),
    /// Read `.` at the start of a line.
    Dot(LineEnd),
    /// Read `.` CR at the start of a line.
    DotCr(LineEnd),
    /// Inside a line.
    Mid,
    /// Read a CR; the next byte tells whether it ends the line.
    Cr,
    /// The message has ended.
    Done,
}

/// Incremental decoder for the body that follows `354`.
#[derive(Debug, Clone)]
pub struct DataDecoder {
    state: State,
    policy: BareNewlinePolicy,
    max_line: usize,
    line_len: usize,
    bare_newline_seen: bool,
    bare_cr_seen: bool,
    long_lines: u64,
}

impl DataDecoder {
    /// A decoder for a message that starts right after the CRLF of the
    /// `DATA` command. `max_line` is the longest line (without CRLF) not
    /// reported as long; 0 means no limit.
    pub fn new(policy: BareNewlinePolicy, max_line: usize) -> DataDecoder {
        DataDecoder {
            state: State::Start(LineEnd::Crlf),
            policy,
            max_line: if max_line == 0 { usize::MAX } else { max_line },
            line_len: 0,
            bare_newline_seen: false,
            bare_cr_seen: false,
            long_lines: 0,
        }
    }

    /// For a `DATA` command that itself ended in a bare LF (accepted under
    /// `Normalize`): then an immediate `.` CRLF is not preceded by CRLF and
    /// is content, not the end.
    pub fn after_bare_newline(mut self) -> DataDecoder {
        self.state = State::Start(LineEnd::BareLf);
        self
    }

    /// True once the end of data has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decode `input`, appending message content (CRLF line ends) to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if self.state == State::Mid {
                // Fast path: copy up to the next CR or LF in one go.
                let run = memchr::memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                if run > 0 {
                    self.content(&input[i..i + run], out);
                    i += run;
                    continue;
                }
            }
            self.step(input[i], out);
            i += 1;
        }
        DataProgress {
            consumed: i,
            done: self.state == State::Done,
            bare_newline_seen: self.bare_newline_seen,
            bare_cr_seen: self.bare_cr_seen,
            long_lines: self.long_lines,
        }
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Start(end) => {
                if b == b'.' {
                    self.state = State::Dot(end);
                } else {
                    self.mid(b, out);
                }
            }
            State::Mid => self.mid(b, out),
            State::Cr => {
                if b == b'\n' {
                    self.line_end(b"\r\n", out);
                    self.state = State::Start(LineEnd::Crlf);
                } else {
                    self.bare_cr(out);
                    self.mid(b, out);
                }
            }
            State::Dot(end) => match b {
                b'\r' => self.state = State::DotCr(end),
                // `.` LF: the line is just a dot, but not CRLF-framed.
                b'\n' => {
                    self.content(b".", out);
                    self.bare_lf(out);
                }
                // Dot-stuffed line: drop the first dot.
                _ => self.mid(b, out),
            },
            State::DotCr(end) => match (b, end) {
                (b'\n', LineEnd::Crlf) => self.state = State::Done,
                // `\n.\r\n`: the dot line was not preceded by CRLF.
                (b'\n', LineEnd::BareLf) => {
                    self.content(b".", out);
                    self.line_end(b"\r\n", out);
                    self.state = State::Start(LineEnd::Crlf);
                }
                // `.` CR x: a stuffed line whose text begins with a bare CR.
                _ => {
                    self.bare_cr(out);
                    self.mid(b, out);
                }
            },
            State::Done => {}
        }
    }

    /// One byte inside a line.
    fn mid(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = State::Cr,
            b'\n' => self.bare_lf(out),
            _ => {
                self.state = State::Mid;
                self.content(&[b], out);
            }
        }
    }

    fn content(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        let before = self.line_len;
        self.line_len = self.line_len.saturating_add(bytes.len());
        if before <= self.max_line && self.line_len > self.max_line {
            self.long_lines += 1;
        }
        out.extend_from_slice(bytes);
    }

    fn bare_cr(&mut self, out: &mut Vec<u8>) {
        self.bare_cr_seen = true;
        self.content(b"\r", out);
    }

    fn bare_lf(&mut self, out: &mut Vec<u8>) {
        self.bare_newline_seen = true;
        let end: &[u8] = match self.policy {
            BareNewlinePolicy::Normalize | BareNewlinePolicy::Reject => b"\r\n",
            BareNewlinePolicy::No => b"\n",
        };
        self.line_end(end, out);
        self.state = State::Start(LineEnd::BareLf);
    }

    fn line_end(&mut self, end: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(end);
        self.line_len = 0;
    }
}

/// The `354` reply that starts the body, in Postfix's words.
pub fn data_start_reply() -> Reply {
    Reply::new(354, None, "End data with <CR><LF>.<CR><LF>")
}

/// The reply after a message that had a bare LF under
/// [`BareNewlinePolicy::Reject`]; the session closes after it. The code is
/// a setting in Postfix (`smtpd_forbid_bare_newline_reject_code`), so it is
/// a parameter here; 521 says "closing" (RFC 7504).
pub fn bare_newline_reply(code: u16) -> Reply {
    Reply::new(
        code,
        Some(EnhancedStatus::of(5, 5, 2)),
        "Error: bare <LF> received",
    )
}

/// Incremental encoder for the client: dot-stuffs, turns bare LF and bare
/// CR into CRLF, and ends with `.` CRLF.
///
/// Bare CRs become CRLF too, unlike Postfix's smtp client, so that nothing
/// Postern relays can be read as a different message boundary by a lax
/// next hop (the other side of SMTP smuggling).
#[derive(Debug, Clone)]
pub struct DataEncoder {
    at_line_start: bool,
    pending_cr: bool,
}

impl Default for DataEncoder {
    fn default() -> Self {
        DataEncoder::new()
    }
}

impl DataEncoder {
    /// An encoder at the start of a message.
    pub fn new() -> DataEncoder {
        DataEncoder {
            at_line_start: true,
            pending_cr: false,
        }
    }

    /// Encode a piece of the message. Text between line ends is copied a
    /// run at a time (found with memchr), not a byte at a time.
    pub fn encode(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + 2);
        while let Some((&b, rest)) = input.split_first() {
            if self.pending_cr {
                self.pending_cr = false;
                out.extend_from_slice(b"\r\n");
                self.at_line_start = true;
                if b == b'\n' {
                    input = rest;
                    continue;
                }
            }
            match b {
                b'\r' => {
                    self.pending_cr = true;
                    input = rest;
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    input = rest;
                }
                _ => {
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    let run = memchr::memchr2(b'\r', b'\n', input).unwrap_or(input.len());
                    out.extend_from_slice(&input[..run]);
                    self.at_line_start = false;
                    input = &input[run..];
                }
            }
        }
    }

    /// End the message: complete the last line and add `.` CRLF.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.pending_cr || !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Encode a whole message for sending after `354`.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut enc = DataEncoder::new();
    enc.encode(message, &mut out);
    enc.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decode in one piece; returns (output, progress).
    fn decode(policy: BareNewlinePolicy, input: &[u8]) -> (Vec<u8>, DataProgress) {
        let mut d = DataDecoder::new(policy, RFC5321_MAX_LINE);
        let mut out = Vec::new();
        let p = d.feed(input, &mut out);
        (out, p)
    }

    /// Decode in the given chunk sizes (cycled), stopping when done.
    fn decode_chunked(
        policy: BareNewlinePolicy,
        input: &[u8],
        sizes: &[usize],
    ) -> (Vec<u8>, DataProgress) {
        let mut d = DataDecoder::new(policy, RFC5321_MAX_LINE);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut last = DataProgress::default();
        let mut k = 0;
        while pos < input.len() {
            let n = sizes[k % sizes.len()].max(1).min(input.len() - pos);
            k += 1;
            let p = d.feed(&input[pos..pos + n], &mut out);
            pos += p.consumed;
            last = p;
            last.consumed = pos;
            if p.done {
                break;
            }
        }
        (out, last)
    }

    const ALL: [BareNewlinePolicy; 3] = [
        BareNewlinePolicy::Normalize,
        BareNewlinePolicy::Reject,
        BareNewlinePolicy::No,
    ];

    #[test]
    fn simple_message() {
        let input = b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n";
        let (out, p) = decode(BareNewlinePolicy::Normalize, input);
        assert_eq!(out, b"Subject: hi\r\n\r\nbody\r\n");
        assert!(p.done && !p.bare_newline_seen && !p.bare_cr_seen);
        assert_eq!(&input[p.consumed..], b"QUIT\r\n");
    }

    #[test]
    fn empty_message_ends_at_first_dot() {
        let (out, p) = decode(BareNewlinePolicy::Normalize, b".\r\n");
        assert!(p.done && out.is_empty());
        assert_eq!(p.consumed, 3);
    }

    #[test]
    fn after_bare_newline_start_dot_is_content() {
        let mut d = DataDecoder::new(BareNewlinePolicy::Normalize, 0).after_bare_newline();
        let mut out = Vec::new();
        let p = d.feed(b".\r\nx\r\n.\r\n", &mut out);
        assert!(p.done);
        assert_eq!(out, b".\r\nx\r\n");
    }

    #[test]
    fn dot_unstuffing() {
        let (out, p) = decode(
            BareNewlinePolicy::Normalize,
            b"..\r\n...x\r\n.y\r\na.b\r\n.\r\n",
        );
        assert!(p.done);
        assert_eq!(out, b".\r\n..x\r\ny\r\na.b\r\n");
    }

    #[test]
    fn smuggling_variants_never_end() {
        for policy in ALL {
            for evil in [
                &b"a\n.\nMAIL FROM:<x@y>\r\n"[..],
                b"a\r\n.\nMAIL FROM:<x@y>\r\n",
                b"a\n.\r\nMAIL FROM:<x@y>\r\n",
                b"a\r.\rMAIL FROM:<x@y>\r\n",
                b"a\r\n.\rMAIL FROM:<x@y>\r\n",
                b"a\r.\r\nMAIL FROM:<x@y>\r\n",
            ] {
                let (out, p) = decode(policy, evil);
                assert!(!p.done, "{policy:?} {evil:?}");
                assert_eq!(p.consumed, evil.len());
                assert!(out.windows(9).any(|w| w == b"MAIL FROM"), "content kept");
                // The real end still works afterwards.
                let mut all = evil.to_vec();
                all.extend_from_slice(b".\r\n");
                let (_, p) = decode(policy, &all);
                assert!(p.done && p.consumed == all.len(), "{policy:?} {evil:?}");
            }
        }
    }

    #[test]
    fn smuggling_outputs() {
        use BareNewlinePolicy::*;
        let cases: &[(BareNewlinePolicy, &[u8], &[u8])] = &[
            (Normalize, b"a\n.\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
            (No, b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n"),
            (Normalize, b"a\r\n.\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
            (Normalize, b"a\n.\r\nb\r\n.\r\n", b"a\r\n.\r\nb\r\n"),
            (No, b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n"),
            (Normalize, b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n"),
            (Normalize, b"a\r\n.\rb\r\n.\r\n", b"a\r\n\rb\r\n"),
            (Normalize, b"a\n..x\r\n.\r\n", b"a\r\n.x\r\n"),
        ];
        for (policy, input, want) in cases {
            let (out, p) = decode(*policy, input);
            assert!(p.done, "{input:?}");
            assert_eq!(
                out,
                *want,
                "{policy:?} {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn flags() {
        let (_, p) = decode(BareNewlinePolicy::Reject, b"a\nb\r\n.\r\n");
        assert!(p.done && p.bare_newline_seen && !p.bare_cr_seen);
        let (_, p) = decode(BareNewlinePolicy::Reject, b"a\rb\r\n.\r\n");
        assert!(p.done && !p.bare_newline_seen && p.bare_cr_seen);
        assert_eq!(
            bare_newline_reply(521).to_string(),
            "521 5.5.2 Error: bare <LF> received"
        );
        assert_eq!(
            data_start_reply().to_string(),
            "354 End data with <CR><LF>.<CR><LF>"
        );
    }

    #[test]
    fn long_lines_are_counted_once_each() {
        let mut d = DataDecoder::new(BareNewlinePolicy::Normalize, 4);
        let mut out = Vec::new();
        let p = d.feed(b"1234\r\n12345\r\n123456789\r\n..234\r\n.\r\n", &mut out);
        assert!(p.done);
        assert_eq!(p.long_lines, 2);
        assert_eq!(out, b"1234\r\n12345\r\n123456789\r\n.234\r\n");
    }

    #[test]
    fn nothing_consumed_after_done() {
        let mut d = DataDecoder::new(BareNewlinePolicy::Normalize, 0);
        let mut out = Vec::new();
        assert!(d.feed(b"x\r\n.\r\n", &mut out).done);
        let p = d.feed(b"more", &mut out);
        assert_eq!((p.consumed, p.done), (0, true));
        assert!(d.is_done());
    }

    /// A small deterministic PRNG so the tests need no dependency.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        /// Up to `max_len - 1` bytes of CR, LF, dots and letters.
        fn text(&mut self, max_len: u64) -> Vec<u8> {
            let alphabet = b"\r\n.ab";
            let len = (self.next() % max_len) as usize;
            (0..len)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn chunking_never_changes_output() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let mut input = rng.text(40);
            if rng.next().is_multiple_of(2) {
                input.extend_from_slice(b"\r\n.\r\ntail");
            }
            for policy in ALL {
                let whole = decode_chunked(policy, &input, &[usize::MAX]);
                let bytewise = decode_chunked(policy, &input, &[1]);
                let sizes: Vec<usize> = (0..5).map(|_| 1 + (rng.next() % 7) as usize).collect();
                let random = decode_chunked(policy, &input, &sizes);
                assert_eq!(whole, bytewise, "{policy:?} {input:?}");
                assert_eq!(whole, random, "{policy:?} {input:?} {sizes:?}");
            }
        }
    }

    #[test]
    fn encoder_stuffs_and_terminates() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b".\n..x\r\n"), b"..\r\n...x\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\rb\nc\r"), b"a\r\nb\r\nc\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n.\r\nb"), b"a\r\n..\r\nb\r\n.\r\n");
    }

    #[test]
    fn encoder_chunking_and_roundtrip() {
        let mut rng = XorShift(12345);
        for _ in 0..2000 {
            let msg = rng.text(30);
            let whole = dot_stuff(&msg);
            let mut enc = DataEncoder::new();
            let mut pieces = Vec::new();
            for b in &msg {
                enc.encode(std::slice::from_ref(b), &mut pieces);
            }
            enc.finish(&mut pieces);
            assert_eq!(whole, pieces);
            // What we send decodes back to the message with CRLF lines.
            let (out, p) = decode(BareNewlinePolicy::Reject, &whole);
            assert!(p.done && p.consumed == whole.len());
            assert!(!p.bare_newline_seen && !p.bare_cr_seen);
            let mut canon = Vec::new();
            let mut i = 0;
            while i < msg.len() {
                match msg[i] {
                    b'\r' if msg.get(i + 1) == Some(&b'\n') => {
                        canon.extend_from_slice(b"\r\n");
                        i += 1;
                    }
                    b'\r' | b'\n' => canon.extend_from_slice(b"\r\n"),
                    b => canon.push(b),
                }
                i += 1;
            }
            if !canon.is_empty() && !canon.ends_with(b"\r\n") {
                canon.extend_from_slice(b"\r\n");
            }
            assert_eq!(out, canon, "{msg:?}");
        }
    }

    /// The byte-at-a-time definition of dot-stuffing, to check the
    /// run-copying encoder against.
    fn encode_bytewise(input: &[u8]) -> Vec<u8> {
        let (mut out, mut at_line_start, mut pending_cr) = (Vec::new(), true, false);
        for &b in input {
            if pending_cr {
                pending_cr = false;
                out.extend_from_slice(b"\r\n");
                at_line_start = true;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => pending_cr = true,
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    at_line_start = true;
                }
                _ => {
                    if at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    at_line_start = false;
                }
            }
        }
        if pending_cr || !at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
        out
    }

    #[test]
    fn encoder_matches_the_bytewise_definition_in_any_chunking() {
        // A small generator (xorshift) over an alphabet rich in the bytes
        // that matter: CR, LF and dots.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let alphabet = b"..\r\n\r\nab .";
        for round in 0..2000 {
            let len = (round % 97) + 1;
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    alphabet[(x % alphabet.len() as u64) as usize]
                })
                .collect();
            let want = encode_bytewise(&input);
            for cut in [1, 2, 3, 7, len] {
                let mut enc = DataEncoder::new();
                let mut out = Vec::new();
                for piece in input.chunks(cut) {
                    enc.encode(piece, &mut out);
                }
                enc.finish(&mut out);
                assert_eq!(out, want, "input {input:?} in pieces of {cut}");
            }
        }
    }
}
