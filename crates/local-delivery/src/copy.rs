//! Copying a queued message into a local destination, like Postfix's
//! `mail_copy()`: the envelope lines local delivery adds on top (`From `
//! line, `Return-Path:`, `Delivered-To:`), CRLF to LF conversion, `>From `
//! quoting for mbox files, and a size limit checked while writing.

use std::io::{self, BufRead, Write};

use postern_daemon::date::{self, Tm};

/// What to add to and how to transform a message on its way into a file.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Envelope sender; empty for the null sender.
    pub sender: String,
    /// The recipient written in `Delivered-To:`; empty writes none.
    pub delivered_to: String,
    /// Start with a `From sender date` line (mbox files, commands).
    pub from_line: bool,
    /// Write `>From ` for body lines that start with `From ` (mbox files).
    pub quote_from: bool,
    /// End with an empty line, which separates messages in an mbox file.
    pub blank_line: bool,
    /// Most bytes this copy may add; 0 is unlimited.
    pub limit: u64,
}

/// The error a copy reports when it would pass [`CopyOptions::limit`]:
/// EFBIG, as Postfix gets from its file size resource limit.
pub fn too_large() -> io::Error {
    io::Error::from_raw_os_error(nix::libc::EFBIG)
}

/// Copies `src` (the queued message, CRLF or LF lines) to `dst`, returning
/// the bytes written; fails with [`too_large`] once `limit` would be passed.
pub fn copy_message(
    src: &mut dyn BufRead,
    dst: &mut dyn Write,
    opts: &CopyOptions,
) -> io::Result<u64> {
    let mut out = Counter {
        inner: dst,
        written: 0,
        limit: opts.limit,
    };
    if opts.from_line {
        let who = if opts.sender.is_empty() {
            "MAILER-DAEMON"
        } else {
            &opts.sender
        };
        // Local time, as Postfix's mail_copy(3) writes it.
        let now = Tm::local(date::unix_now());
        writeln!(out, "From {who}  {}", now.asctime())?;
    }
    writeln!(out, "Return-Path: <{}>", opts.sender)?;
    if !opts.delivered_to.is_empty() {
        writeln!(out, "Delivered-To: {}", opts.delivered_to)?;
    }
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if src.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let had_newline = line.last() == Some(&b'\n');
        if had_newline {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        if opts.quote_from && line.starts_with(b"From ") {
            out.write_all(b">")?;
        }
        out.write_all(&line)?;
        // An unterminated last line still gets its newline: mbox readers
        // would glue it onto the next message's From line otherwise.
        out.write_all(b"\n")?;
    }
    if opts.blank_line {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(out.written)
}

/// Counts bytes and refuses to pass the limit.
struct Counter<'a> {
    inner: &'a mut dyn Write,
    written: u64,
    limit: u64,
}

impl Write for Counter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.limit > 0 && self.written + buf.len() as u64 > self.limit {
            return Err(too_large());
        }
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The header section of a message (up to the first empty line, at most
/// `limit` bytes), unfolded into `(name, value)` pairs.
pub fn read_headers(src: &mut dyn BufRead, limit: usize) -> io::Result<Vec<(String, String)>> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut line = Vec::new();
    let mut total = 0;
    loop {
        line.clear();
        let n = src.read_until(b'\n', &mut line)?;
        total += n;
        if n == 0 || total > limit {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            break;
        }
        if text.starts_with([' ', '\t']) {
            if let Some((_, v)) = headers.last_mut() {
                v.push(' ');
                v.push_str(text.trim());
            }
            continue;
        }
        match text.split_once(':') {
            Some((name, value)) if !name.contains(' ') => {
                headers.push((name.to_string(), value.trim().to_string()))
            }
            // Not a header: the body began without an empty line.
            _ => break,
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(msg: &str, opts: &CopyOptions) -> io::Result<String> {
        let mut out = Vec::new();
        copy_message(&mut msg.as_bytes(), &mut out, opts)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn mbox_copy_adds_envelope_lines_and_quotes_from() {
        let opts = CopyOptions {
            sender: "a@example.org".into(),
            delivered_to: "root@example.local".into(),
            from_line: true,
            quote_from: true,
            blank_line: true,
            limit: 0,
        };
        let got = copy("Subject: hi\r\n\r\nFrom here\r\n>From there\r\nend", &opts).unwrap();
        let mut lines = got.lines();
        assert!(lines.next().unwrap().starts_with("From a@example.org  "));
        assert_eq!(
            got.split_once('\n').unwrap().1,
            "Return-Path: <a@example.org>\nDelivered-To: root@example.local\n\
             Subject: hi\n\n>From here\n>From there\nend\n\n"
        );
    }

    #[test]
    fn maildir_copy_keeps_from_lines_and_null_sender() {
        let opts = CopyOptions::default();
        let got = copy("A: b\r\n\r\nFrom x\r\n", &opts).unwrap();
        assert_eq!(got, "Return-Path: <>\nA: b\n\nFrom x\n");
    }

    #[test]
    fn limit_stops_the_copy() {
        let opts = CopyOptions {
            limit: 40,
            ..Default::default()
        };
        let err = copy(&"x".repeat(100), &opts).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(nix::libc::EFBIG));
        assert!(copy("short\r\n", &opts).is_ok());
    }

    #[test]
    fn headers_are_unfolded_and_stop_at_the_body() {
        let msg = "Delivered-To: a@b\r\nSubject: x\r\n  y\r\n\r\nDelivered-To: body@x\r\n";
        let h = read_headers(&mut msg.as_bytes(), 1000).unwrap();
        assert_eq!(
            h,
            vec![
                ("Delivered-To".into(), "a@b".into()),
                ("Subject".into(), "x y".into())
            ]
        );
    }
}
