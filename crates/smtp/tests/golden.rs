//! Golden tests in the Postfix style (`smtpd_check.in` / `.ref`): each
//! `.in` file is run through the parser and the result compared with the
//! `.ref` file beside it.
//!
//! After a deliberate change, rewrite the `.ref` files with
//! `UPDATE_GOLDEN=1 cargo test -p postern-smtp --test golden` and review
//! the diff.
//!
//! `.in` syntax: lines starting with `#` are comments; `\r`, `\n`, `\t`,
//! `\0`, `\\` and `\xHH` are escapes. In `commands.in` each line is one
//! command line (the CRLF is not part of it). In `data/*.in` the physical
//! line breaks are ignored and only escapes make bytes, so a stream can be
//! laid out readably; `#! max_line=N` and `#! after_bare_newline` set up
//! the decoder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use postern_smtp::{BareNewlinePolicy, DataDecoder, DataProgress, parse_command};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let (byte, skip) = match b[i + 1] {
                b'r' => (b'\r', 2),
                b'n' => (b'\n', 2),
                b't' => (b'\t', 2),
                b'0' => (0, 2),
                b'\\' => (b'\\', 2),
                b'x' => {
                    let hex = &s[i + 2..i + 4];
                    (u8::from_str_radix(hex, 16).expect("bad \\x escape"), 4)
                }
                other => panic!("unknown escape \\{}", other as char),
            };
            out.push(byte);
            i += skip;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Bytes as escaped text, broken after each LF so the `.ref` shows lines.
fn escape_lines(bytes: &[u8]) -> String {
    let mut out = String::from("  |");
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => {
                out.push_str("\\n");
                if i + 1 < bytes.len() {
                    out.push_str("\n  |");
                }
            }
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

/// Compare with the `.ref`, or rewrite it under `UPDATE_GOLDEN=1`.
fn check(ref_path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(ref_path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(ref_path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", ref_path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs at line {}:\n  expected: {:?}\n  actual:   {:?}\n(UPDATE_GOLDEN=1 rewrites it)",
            ref_path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first),
        );
    }
}

#[test]
fn commands() {
    let dir = golden_dir();
    let input = std::fs::read_to_string(dir.join("commands.in")).unwrap();
    let mut out = String::new();
    for line in input.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let bytes = unescape(line);
        let _ = writeln!(out, ">>> {line}");
        match parse_command(&bytes) {
            Ok(cmd) => {
                let _ = writeln!(out, "{cmd:?}");
                // What the client would send parses back to the same text
                // (source routes are dropped on output, so compare text).
                let again = parse_command(cmd.to_string().as_bytes()).unwrap();
                assert_eq!(again.to_string(), cmd.to_string(), "round trip of {line:?}");
            }
            Err(e) => {
                let close = if e.closes_session() { " (close)" } else { "" };
                let _ = writeln!(out, "{} [{:?}]{close}", e.reply(), e.kind());
            }
        }
    }
    check(&dir.join("commands.ref"), &out);
}

fn run_decoder(
    policy: BareNewlinePolicy,
    max_line: usize,
    after_lf: bool,
    input: &[u8],
    chunk: usize,
) -> (Vec<u8>, DataProgress, usize) {
    let mut d = DataDecoder::new(policy, max_line);
    if after_lf {
        d = d.after_bare_newline();
    }
    let mut out = Vec::new();
    let mut pos = 0;
    let mut progress = DataProgress::default();
    while pos < input.len() {
        let end = (pos + chunk).min(input.len());
        progress = d.feed(&input[pos..end], &mut out);
        pos += progress.consumed;
        if progress.done {
            break;
        }
    }
    progress.consumed = pos;
    (out, progress, pos)
}

#[test]
fn data() {
    let dir = golden_dir().join("data");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "in"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut max_line = 998;
        let mut after_lf = false;
        let mut stream = String::new();
        for line in text.lines() {
            if let Some(directive) = line.strip_prefix("#!") {
                for word in directive.split_whitespace() {
                    if let Some(n) = word.strip_prefix("max_line=") {
                        max_line = n.parse().unwrap();
                    } else if word == "after_bare_newline" {
                        after_lf = true;
                    } else {
                        panic!("{}: unknown directive {word}", path.display());
                    }
                }
            } else if !line.starts_with('#') {
                stream.push_str(line);
            }
        }
        let input = unescape(&stream);
        let mut out = String::new();
        for policy in [
            BareNewlinePolicy::Normalize,
            BareNewlinePolicy::Reject,
            BareNewlinePolicy::No,
        ] {
            let (msg, p, used) = run_decoder(policy, max_line, after_lf, &input, usize::MAX);
            let bytewise = run_decoder(policy, max_line, after_lf, &input, 1);
            assert_eq!(
                (msg.clone(), p, used),
                bytewise,
                "{} {policy:?}: chunking",
                path.display()
            );
            let _ = writeln!(
                out,
                "== {policy:?}: done={} consumed={used} bare_lf={} bare_cr={} long_lines={}",
                p.done, p.bare_newline_seen, p.bare_cr_seen, p.long_lines
            );
            let _ = writeln!(out, "message:\n{}", escape_lines(&msg));
            if used < input.len() {
                let _ = writeln!(
                    out,
                    "left for the command reader:\n{}",
                    escape_lines(&input[used..])
                );
            }
        }
        check(&path.with_extension("ref"), &out);
    }
}
