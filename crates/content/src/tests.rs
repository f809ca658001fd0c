//! The inspector over real regexp:/pcre: table files in a temp dir. Every
//! message is inspected twice, whole and one byte at a time, and both
//! must give the same content and outcome.

use std::path::Path;

use postern_config::Config;

use crate::{ContentChecks, Inspector, LogContext, Outcome, Verdict};

struct Setup {
    _dir: tempfile::TempDir,
    checks: ContentChecks,
}

/// `main` is the `[main]` table's body; `files` are written beside the
/// config file (tables name them relatively).
fn setup(main: &str, files: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let cfg = Config::from_str(
        &format!("[main]\n{main}\n"),
        &dir.path().join("master.toml"),
        &[],
    )
    .unwrap();
    let checks = ContentChecks::from_params(cfg.main()).unwrap().unwrap();
    Setup { _dir: dir, checks }
}

/// A setup with just one table: `param = "pcre:t"`.
fn one_table(param: &str, table: &str) -> Setup {
    setup(&format!("{param} = \"pcre:t\""), &[("t", table)])
}

fn context() -> LogContext {
    LogContext {
        queue_id: "QID".into(),
        client: "client.example[192.0.2.1]".into(),
        sender: Some("a@b".into()),
        recipient: Some("c@d".into()),
        protocol: Some("ESMTP".into()),
        helo: Some("x".into()),
    }
}

fn inspect_in(checks: &ContentChecks, input: &[u8], chunk: usize) -> (String, Outcome) {
    let mut i = Inspector::new(checks, context());
    let mut out = Vec::new();
    for c in input.chunks(chunk.max(1)) {
        i.push(c, &mut out);
    }
    let outcome = i.finish(&mut out);
    (String::from_utf8(out).unwrap(), outcome)
}

/// Inspects `input` whole and byte by byte; both must agree.
fn inspect(s: &Setup, input: &str) -> (String, Outcome) {
    let whole = inspect_in(&s.checks, input.as_bytes(), input.len());
    let bytes = inspect_in(&s.checks, input.as_bytes(), 1);
    assert_eq!(whole, bytes, "whole vs. one byte at a time");
    whole
}

const ORIGIN: &str = " from client.example[192.0.2.1]; from=<a@b> to=<c@d> proto=ESMTP helo=<x>";

/// `QID: ACTION: PLACE LINE` + origin + `: TEXT`.
fn line(action: &str, place_line: &str, text: &str) -> String {
    let text = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    format!("QID: {action}: {place_line}{ORIGIN}{text}")
}

#[test]
fn no_tables_no_inspector() {
    let cfg = Config::from_str("[main]\n", Path::new("/tmp/master.toml"), &[]).unwrap();
    assert!(ContentChecks::from_params(cfg.main()).unwrap().is_none());
}

#[test]
fn header_actions() {
    let s = one_table(
        "header_checks",
        "/^Subject: warn/ WARN watch it\n\
         /^Subject: info/ INFO\n\
         /^X-Drop:/ IGNORE\n\
         /^X-Strip:/ STRIP gone\n\
         /^X-Old: (.*)/ REPLACE X-New: $1\n\
         /^X-Tag:/ PREPEND X-Tagged: yes\n\
         /^X-Filter:/ FILTER smtp:[127.0.0.1]:10025\n\
         /^X-Filter2:/ FILTER relay:other\n\
         /^X-Bcc: (.*)/ BCC $1\n\
         /^X-Hold:/ HOLD held\n\
         /^X-Hold2:/ HOLD again\n\
         /^X-Dunno:/ DUNNO\n\
         /^X-Ok:/ OK\n\
         /^X-Bogus:/ FROB it\n\
         /^X-BadFilter:/ FILTER nocolon\n\
         /^X-BadPrepend:/ PREPEND not a header\n\
         /^X-BadReplace:/ REPLACE not a header\n\
         /^X-BadBcc:/ BCC nobody\n",
    );
    let (out, o) = inspect(
        &s,
        "Subject: warn me\r\nSubject: info\r\nX-Drop: 1\r\nX-Strip: 2\r\nX-Old: value\r\n\
         X-Tag: t\r\nX-Filter: f\r\nX-Filter2: f\r\nX-Bcc: one@example.com\r\n\
         X-Bcc: two@example.com\r\nX-Hold: h\r\nX-Hold2: h\r\nX-Dunno: d\r\nX-Ok: o\r\n\
         X-Bogus: b\r\nX-BadFilter: b\r\nX-BadPrepend: b\r\nX-BadReplace: b\r\nX-BadBcc: b\r\n\
         \r\nbody\r\n",
    );
    assert_eq!(
        out,
        "Subject: warn me\r\nSubject: info\r\nX-New: value\r\nX-Tagged: yes\r\nX-Tag: t\r\n\
         X-Filter: f\r\nX-Filter2: f\r\nX-Bcc: one@example.com\r\nX-Bcc: two@example.com\r\n\
         X-Hold: h\r\nX-Hold2: h\r\nX-Dunno: d\r\nX-Ok: o\r\nX-Bogus: b\r\nX-BadFilter: b\r\n\
         X-BadPrepend: b\r\nX-BadReplace: b\r\nX-BadBcc: b\r\n\r\nbody\r\n"
    );
    assert_eq!(
        o.log,
        vec![
            line("warning", "header Subject: warn me", "watch it"),
            line("info", "header Subject: info", ""),
            line("strip", "header X-Strip: 2", "gone"),
            line("replace", "header X-Old: value", "X-New: value"),
            line("prepend", "header X-Tag: t", "X-Tagged: yes"),
            line("filter", "header X-Filter: f", "smtp:[127.0.0.1]:10025"),
            line("filter", "header X-Filter2: f", "relay:other"),
            line("bcc", "header X-Bcc: one@example.com", "one@example.com"),
            line("bcc", "header X-Bcc: two@example.com", "two@example.com"),
            line("hold", "header X-Hold: h", "held"),
            "warning: unknown command in header_checks map: FROB it".into(),
            "warning: bad FILTER command nocolon in header_checks -- need transport:destination"
                .into(),
            "warning: bad PREPEND header text \"not a header\" in header_checks map -- \
             need \"headername: headervalue\""
                .into(),
            "warning: bad REPLACE header text \"not a header\" in header_checks map -- \
             need \"headername: headervalue\""
                .into(),
            "warning: bad BCC address \"nobody\" in header_checks map -- need user@domain".into(),
        ]
    );
    assert_eq!(
        o.verdict,
        Verdict::Hold {
            reason: "held".into()
        }
    );
    assert_eq!(
        o.filter.map(|f| f.to_string()).as_deref(),
        Some("relay:other")
    );
    assert_eq!(o.bcc, vec!["one@example.com", "two@example.com"]);
    assert_eq!(o.redirect, None);
}

#[test]
fn folded_headers_are_looked_up_joined() {
    for kind in ["regexp", "pcre"] {
        let s = setup(
            &format!("header_checks = \"{kind}:t\""),
            &[("t", "/^Subject: one.*two$/ REJECT folded\n")],
        );
        let (_, o) = inspect(&s, "Subject: one\r\n\ttwo\r\n\r\nbody\r\n");
        assert_eq!(
            o.verdict.reply().as_deref(),
            Some("550 5.7.1 folded"),
            "{kind}"
        );
        assert_eq!(
            o.log,
            vec![line("reject", "header Subject: one??two", "5.7.1 folded")]
        );
    }
    // Unmatched, the folding is kept as it came.
    let s = one_table("header_checks", "/^X-None:/ REJECT\n");
    let (out, o) = inspect(&s, "Subject: one\n two\n\tthree\nX: y\n\nbody\n");
    assert_eq!(
        out,
        "Subject: one\r\n two\r\n\tthree\r\nX: y\r\n\r\nbody\r\n"
    );
    assert_eq!(o, Outcome::default());
}

#[test]
fn reject_texts_and_codes() {
    let s = one_table(
        "header_checks",
        "/^X-A:/ REJECT\n/^X-B:/ REJECT 4.7.0 try later\n/^X-C:/ REJECT 5.7.9 no\n\
         /^X-D:/ REJECT 2.0.0 odd\n",
    );
    for (header, reply) in [
        ("X-A: 1", "550 5.7.1 message content rejected"),
        ("X-B: 1", "451 4.7.0 try later"),
        ("X-C: 1", "550 5.7.9 no"),
        ("X-D: 1", "451 4.0.0 odd"),
    ] {
        let (_, o) = inspect(&s, &format!("{header}\r\n\r\nbody\r\n"));
        assert_eq!(o.verdict.reply().as_deref(), Some(reply));
    }
}

#[test]
fn reject_and_discard_stop_examining_and_writing() {
    let s = one_table(
        "header_checks",
        "/^X-Reject:/ REJECT no\n/^X-Discard:/ DISCARD bye\n/^X-Hold:/ HOLD\n/^X-Warn:/ WARN\n",
    );
    let (out, o) = inspect(&s, "X-Warn: 1\r\nX-Reject: x\r\nX-Warn: 2\r\n\r\nbody\r\n");
    assert_eq!(out, "X-Warn: 1\r\n");
    assert_eq!(o.log.len(), 2, "{:?}", o.log);
    assert_eq!(
        o.verdict,
        Verdict::Reject {
            code: 550,
            text: "5.7.1 no".into()
        }
    );

    let (_, o) = inspect(&s, "X-Hold: 1\r\nX-Discard: x\r\nX-Reject: y\r\n\r\n");
    assert_eq!(
        o.verdict,
        Verdict::Discard {
            reason: "bye".into()
        }
    );
    assert_eq!(
        o.log,
        vec![
            line("hold", "header X-Hold: 1", ""),
            line("discard", "header X-Discard: x", "bye"),
        ]
    );
    assert_eq!(o.verdict.reply(), None);
}

#[test]
fn pass_and_redirect_stop_examining_but_keep_writing() {
    let s = one_table(
        "header_checks",
        "/^X-Pass:/ PASS trusted\n/^X-Redirect:/ REDIRECT spam@example.com\n/^X-Drop:/ IGNORE\n",
    );
    for (first, action, text) in [
        ("X-Pass: 1", "pass", "trusted"),
        ("X-Redirect: 1", "redirect", "spam@example.com"),
    ] {
        let (out, o) = inspect(
            &s,
            &format!("{first}\r\nX-Drop: 2\r\nX-Redirect: 3\r\n\r\nb\r\n"),
        );
        assert_eq!(
            out,
            format!("{first}\r\nX-Drop: 2\r\nX-Redirect: 3\r\n\r\nb\r\n")
        );
        assert_eq!(o.log, vec![line(action, &format!("header {first}"), text)]);
        assert_eq!(o.verdict, Verdict::Accept);
    }
    let (_, o) = inspect(&s, "X-Redirect: 1\r\n\r\n");
    assert_eq!(o.redirect.as_deref(), Some("spam@example.com"));
}

#[test]
fn body_actions() {
    let s = one_table(
        "body_checks",
        "/^$/ REJECT empty lines are never looked up\n\
         /^warn/ WARN w\n/^drop/ IGNORE\n/^strip/ STRIP\n/^old (.*)/ REPLACE new $1\n\
         /^tag/ PREPEND tagged\n/^bcc/ BCC b@example.com\n/^hold/ HOLD h\n\
         /^Subject:/ REJECT headers are not body\n/^reject/ REJECT body text\n\
         /^after/ WARN never\n",
    );
    let (out, o) = inspect(
        &s,
        "Subject: s\r\n\r\nwarn 1\r\n\r\ndrop 2\r\nstrip 3\r\nold line\r\ntag 4\r\nbcc\r\nhold\r\n\
         reject\r\nafter\r\n",
    );
    assert_eq!(
        out,
        "Subject: s\r\n\r\nwarn 1\r\n\r\nnew line\r\ntagged\r\ntag 4\r\nbcc\r\nhold\r\n"
    );
    assert_eq!(
        o.log,
        vec![
            line("warning", "body warn 1", "w"),
            line("strip", "body strip 3", ""),
            line("replace", "body old line", "new line"),
            line("prepend", "body tag 4", "tagged"),
            line("bcc", "body bcc", "b@example.com"),
            line("hold", "body hold", "h"),
            line("reject", "body reject", "5.7.1 body text"),
        ]
    );
    assert_eq!(o.verdict.reply().as_deref(), Some("550 5.7.1 body text"));
    assert_eq!(o.bcc, vec!["b@example.com"]);
}

/// Every table answers INFO with its own name, so the log tells which
/// table saw which line.
fn routing_setup(extra: &str) -> Setup {
    setup(
        &format!(
            "header_checks = \"pcre:h\"\nmime_header_checks = \"pcre:m\"\n\
             nested_header_checks = \"pcre:n\"\nbody_checks = \"pcre:b\"\n{extra}"
        ),
        &[
            ("h", "/./ INFO primary\n"),
            ("m", "/./ INFO mime\n"),
            ("n", "/./ INFO nested\n"),
            ("b", "/./ INFO body\n"),
        ],
    )
}

/// (table, line) of each INFO logged.
fn routes(o: &Outcome) -> Vec<(String, String)> {
    o.log
        .iter()
        .map(|l| {
            let (what, text) = l.split_once(ORIGIN).unwrap();
            let what = what.strip_prefix("QID: info: ").unwrap();
            let what = what
                .strip_prefix("header ")
                .or_else(|| what.strip_prefix("body "))
                .unwrap();
            (text.trim_start_matches(": ").to_string(), what.to_string())
        })
        .collect()
}

const MIME_MESSAGE: &str = "From: a@b\r\nSubject: top\r\nMIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed;\r\n\tboundary=\"XX\"\r\n\r\npreamble\r\n\
    --XX\r\nContent-Type: text/plain\r\nX-Part: one\r\n\r\npart one\r\n\
    --XX\r\nContent-Type: message/rfc822\r\n\r\n\
    From: inner@x\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n\
    --XX--\r\nepilogue\r\n";

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn mime_parts_and_nested_messages_go_to_their_tables() {
    let s = routing_setup("");
    let (out, o) = inspect(&s, MIME_MESSAGE);
    assert_eq!(out, MIME_MESSAGE);
    assert_eq!(
        routes(&o),
        pairs(&[
            ("primary", "From: a@b"),
            ("primary", "Subject: top"),
            ("mime", "MIME-Version: 1.0"),
            ("mime", "Content-Type: multipart/mixed;??boundary=\"XX\""),
            ("body", "preamble"),
            ("body", "--XX"),
            ("mime", "Content-Type: text/plain"),
            ("mime", "X-Part: one"),
            ("body", "part one"),
            ("body", "--XX"),
            ("mime", "Content-Type: message/rfc822"),
            ("nested", "From: inner@x"),
            ("nested", "Subject: inner"),
            ("mime", "Content-Type: text/plain"),
            ("body", "inner body"),
            ("body", "--XX--"),
            ("body", "epilogue"),
        ])
    );
}

#[test]
fn disabled_mime_processing_makes_all_after_the_headers_body() {
    let s = routing_setup("disable_mime_input_processing = true");
    let (_, o) = inspect(&s, MIME_MESSAGE);
    let r = routes(&o);
    // The message's own MIME headers still go to mime_header_checks.
    assert_eq!(
        r[..4],
        pairs(&[
            ("primary", "From: a@b"),
            ("primary", "Subject: top"),
            ("mime", "MIME-Version: 1.0"),
            ("mime", "Content-Type: multipart/mixed;??boundary=\"XX\""),
        ])
    );
    assert!(r[4..].iter().all(|(t, _)| t == "body"), "{r:?}");
    assert_eq!(r.len(), 4 + 13);
}

#[test]
fn mime_and_nested_default_to_header_checks() {
    let s = one_table("header_checks", "/./ INFO any\n");
    let (_, o) = inspect(&s, MIME_MESSAGE);
    // Headers only: the three lists share header_checks; body lines are
    // not looked up.
    assert_eq!(routes(&o).len(), 10);
}

#[test]
fn multipart_digest_parts_are_messages() {
    let s = routing_setup("");
    let (_, o) = inspect(
        &s,
        "Content-Type: multipart/digest; boundary=D\r\n\r\n--D\r\n\r\nSubject: in digest\r\n\
         \r\nx\r\n--D--\r\n",
    );
    assert!(
        routes(&o).contains(&("nested".into(), "Subject: in digest".into())),
        "{:?}",
        o.log
    );
}

#[test]
fn body_checks_size_limit_counts_per_part() {
    let s = setup(
        "body_checks = \"pcre:b\"\nbody_checks_size_limit = 12",
        &[("b", "/^x/ INFO seen\n")],
    );
    // The empty line after a part's headers is offset 0, so the x lines
    // start at 1, 8 and 15: the third of each part is past the limit.
    let (_, o) = inspect(
        &s,
        "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\r\nx1234\r\nx2345\r\nx3456\r\n\
         --B\r\n\r\nx4567\r\nx5678\r\nx6789\r\n--B--\r\n",
    );
    let seen: Vec<_> = routes(&o).into_iter().map(|(_, l)| l).collect();
    assert_eq!(seen, ["x1234", "x2345", "x4567", "x5678"]);
}

#[test]
fn long_lines_are_inspected_in_pieces_and_headers_whole() {
    let s = setup(
        "header_checks = \"pcre:h\"\nbody_checks = \"pcre:b\"\nline_length_limit = 10",
        &[
            ("h", "/^Subject: (.*)$/ INFO $1\n"),
            ("b", "/^(x.*)/ INFO $1\n"),
        ],
    );
    let input = "Subject: a long subject line\r\n\r\nxxxxxyyyyyxxxyyyyyyyxy\r\nyyyyyyyyyy\r\n";
    let (out, o) = inspect(&s, input);
    assert_eq!(out, input);
    let texts: Vec<_> = routes(&o).into_iter().map(|(t, _)| t).collect();
    assert_eq!(
        texts,
        ["a long subject line", "xxxxxyyyyy", "xxxyyyyyyy", "xy"]
    );
    // A CR that arrives just past the limit still ends its line.
    let input = "Subject: x\r\n\r\nxxxxxxxxxx\r\n";
    let (out, o) = inspect(&s, input);
    assert_eq!(out, input);
    assert_eq!(o.log.len(), 2);
}

#[test]
fn header_size_limit_drops_the_excess() {
    let s = setup(
        "header_checks = \"pcre:h\"\nheader_size_limit = 20",
        &[("h", "/^X-Never:/ REJECT\n")],
    );
    let (out, _) = inspect(
        &s,
        "Subject: 0123456789\r\n more text\r\n dropped\r\nTo: x\r\n\r\n",
    );
    assert_eq!(out, "Subject: 0123456789\r\n more text\r\nTo: x\r\n\r\n");
}

#[test]
fn content_without_a_separator_or_final_line_end() {
    let s = one_table("header_checks", "/^Subject :/ REJECT obsolete form kept\n");
    // Text where a header belongs ends the headers with an empty line; an
    // obsolete `Name :` is written `Name:`; a last line gets its CRLF; a
    // bare LF becomes CRLF.
    let (out, o) = inspect(&s, "Subject : hi\nnot a header\nlast");
    assert_eq!(out, "Subject: hi\r\n\r\nnot a header\r\nlast\r\n");
    assert_eq!(o.verdict, Verdict::Accept);
    let (out, _) = inspect(&s, "Subject: only");
    assert_eq!(out, "Subject: only\r\n");
    let (out, _) = inspect(&s, "");
    assert_eq!(out, "");
}

#[test]
fn unknown_actions_warn_once_per_lookup() {
    let s = one_table("body_checks", "/^x/ BOGUS\n");
    let (out, o) = inspect(&s, "\r\nx\r\nx\r\n");
    assert_eq!(out, "\r\nx\r\nx\r\n");
    assert_eq!(
        o.log,
        vec!["warning: unknown command in body_checks map: BOGUS"; 2]
    );
}

#[test]
fn received_headers_are_counted_before_actions() {
    let s = one_table("header_checks", "/^Received: .*ESMTPSA/ IGNORE\n");
    let mut i = Inspector::new(&s.checks, context());
    let mut out = Vec::new();
    i.push(
        b"Received: from a by b with ESMTPSA\r\nReceived: from c\r\n\r\n",
        &mut out,
    );
    assert_eq!(i.received_headers(), 2);
    i.finish(&mut out);
    assert_eq!(out, b"Received: from c\r\n\r\n");
}

#[test]
fn nesting_beyond_the_limit_rejects_when_header_checks_are_set() {
    let nested = "Content-Type: multipart/mixed; boundary=A\r\n\r\n--A\r\n\
        Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n\
        Content-Type: multipart/mixed; boundary=C\r\n\r\n--C\r\n\
        Content-Type: multipart/mixed; boundary=D\r\n\r\n--D\r\n\r\nx\r\n";
    let s = setup(
        "header_checks = \"pcre:h\"\nmime_nesting_limit = 1",
        &[("h", "/^X-Never/ REJECT\n")],
    );
    let (_, o) = inspect(&s, nested);
    assert_eq!(
        o.verdict.reply().as_deref(),
        Some("550 5.6.0 MIME nesting exceeds safety limit")
    );
    assert_eq!(
        o.log,
        vec![
            "QID: reject: mime-error MIME nesting exceeds safety limit: \
             Content-Type: multipart/mixed; boundary=D from client.example[192.0.2.1]; \
             from=<a@b> to=<c@d>"
        ]
    );
    let s = setup(
        "body_checks = \"pcre:b\"\nmime_nesting_limit = 1",
        &[("b", "/^X-Never/ REJECT\n")],
    );
    assert_eq!(inspect(&s, nested).1.verdict, Verdict::Accept);
}

#[test]
fn a_broken_pattern_is_a_load_error_with_file_and_line() {
    for kind in ["regexp", "pcre"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("hc"),
            "/^Subject: ok/ WARN\n\n/^From: (x/ REJECT\n",
        )
        .unwrap();
        let cfg = Config::from_str(
            &format!("[main]\nbody_checks = \"{kind}:hc\"\n"),
            &dir.path().join("master.toml"),
            &[],
        )
        .unwrap();
        let e = ContentChecks::from_params(cfg.main()).unwrap_err();
        let want = format!(
            "body_checks: {}:3: bad regular expression",
            dir.path().join("hc").display()
        );
        assert!(e.to_string().starts_with(&want), "{e}");
    }
}

#[test]
fn a_missing_table_defers_the_message() {
    let s = setup("header_checks = \"pcre:missing\"", &[]);
    let (out, o) = inspect(&s, "Subject: x\r\n\r\nbody\r\n");
    assert_eq!(out, "");
    assert_eq!(
        o.verdict.reply().as_deref(),
        Some("451 4.3.5 Server configuration error")
    );
    assert_eq!(
        o.log,
        vec![
            "warning: QID: header_checks map lookup problem -- message not accepted, \
             try again later"
        ]
    );
}

#[test]
fn a_mixed_message_in_every_chunk_size() {
    let s = setup(
        "header_checks = \"pcre:h\"\nbody_checks = \"pcre:b\"\nline_length_limit = 16",
        &[
            (
                "h",
                "/^X-Drop/ IGNORE\n/^Subject: (.*)/ REPLACE Subject: [x] $1\n",
            ),
            ("b", "/^--XX/ PREPEND seen\n/^drop/ IGNORE\n"),
        ],
    );
    let input = format!("X-Drop: 1\n\tmore\r\n{MIME_MESSAGE}drop me\r\nlast line");
    let whole = inspect_in(&s.checks, input.as_bytes(), input.len());
    for chunk in 1..input.len() {
        assert_eq!(
            inspect_in(&s.checks, input.as_bytes(), chunk),
            whole,
            "chunk {chunk}"
        );
    }
    let out = &whole.0;
    assert!(
        out.starts_with("From: a@b\r\nSubject: [x] top\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\nseen\r\n--XX\r\n"), "{out}");
    assert!(out.ends_with("epilogue\r\nlast line\r\n"), "{out}");
}
