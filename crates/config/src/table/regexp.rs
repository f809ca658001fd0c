//! `regexp:` and `pcre:` table files (regexp_table(5), pcre_table(5)):
//! `/pattern/flags result`, `!/pattern/flags result`, and
//! `if /pattern/flags` ... `endif` blocks; first match wins; `$1`/`${1}`
//! in a result insert captures. Patterns use Rust `regex` syntax, which
//! covers the POSIX extended and common PCRE forms. Flags are Postfix's:
//! matching is case-insensitive and `.` matches a newline unless a flag
//! toggles it (`i`; pcre's `s`, regexp's `m`).

use std::path::Path;

use regex::{Regex, RegexBuilder};

use super::{TableError, read_logical_lines};

#[derive(Debug)]
pub(super) struct RegexpTable {
    rules: Vec<Rule>,
}

#[derive(Debug)]
enum Rule {
    Match {
        re: Regex,
        negate: bool,
        result: String,
    },
    If {
        re: Regex,
        negate: bool,
        body: Vec<Rule>,
    },
}

impl RegexpTable {
    pub(super) fn parse(path: &Path, text: &str, pcre: bool) -> Result<RegexpTable, TableError> {
        // Stack of open `if` blocks: (line, re, negate, rules so far).
        let mut stack: Vec<(usize, Regex, bool, Vec<Rule>)> = Vec::new();
        let mut top: Vec<Rule> = Vec::new();
        for (line, l) in read_logical_lines(text) {
            let err = |reason: String| TableError::Syntax {
                path: path.to_path_buf(),
                line,
                reason,
            };
            let word = l.split_whitespace().next().unwrap_or("");
            if word.eq_ignore_ascii_case("endif") {
                let (_, re, negate, body) =
                    stack.pop().ok_or_else(|| err("endif without if".into()))?;
                let rule = Rule::If { re, negate, body };
                match stack.last_mut() {
                    Some(frame) => frame.3.push(rule),
                    None => top.push(rule),
                }
                continue;
            }
            if word.eq_ignore_ascii_case("if") {
                let rest = l[2..].trim_start();
                let (re, negate, tail) = parse_pattern(rest, pcre).map_err(err)?;
                if !tail.trim().is_empty() {
                    return Err(err(format!(
                        "unexpected text after if pattern: \"{}\"",
                        tail.trim()
                    )));
                }
                stack.push((line, re, negate, Vec::new()));
                continue;
            }
            let (re, negate, tail) = parse_pattern(&l, pcre).map_err(err)?;
            let result = tail.trim().to_string();
            if result.is_empty() {
                return Err(err("missing result after pattern".into()));
            }
            let max = max_capture_ref(&result);
            if negate && max > 0 {
                return Err(err("$number in result of a negated pattern".into()));
            }
            if max >= re.captures_len() {
                return Err(err(format!("out of range replacement ${max}")));
            }
            let rule = Rule::Match { re, negate, result };
            match stack.last_mut() {
                Some(frame) => frame.3.push(rule),
                None => top.push(rule),
            }
        }
        if let Some((line, ..)) = stack.last() {
            return Err(TableError::Syntax {
                path: path.to_path_buf(),
                line: *line,
                reason: "if without endif".into(),
            });
        }
        Ok(RegexpTable { rules: top })
    }

    pub(super) fn lookup(&self, key: &str) -> Option<String> {
        find(&self.rules, key)
    }
}

fn find(rules: &[Rule], key: &str) -> Option<String> {
    for rule in rules {
        match rule {
            Rule::If { re, negate, body } => {
                if re.is_match(key) != *negate
                    && let Some(r) = find(body, key)
                {
                    return Some(r);
                }
            }
            Rule::Match {
                re,
                negate: true,
                result,
            } => {
                if !re.is_match(key) {
                    return Some(substitute(result, None));
                }
            }
            Rule::Match { re, result, .. } => {
                if let Some(caps) = re.captures(key) {
                    return Some(substitute(result, Some(&caps)));
                }
            }
        }
    }
    None
}

/// Replaces `$n`, `${n}` and `$$` in a result.
fn substitute(result: &str, caps: Option<&regex::Captures<'_>>) -> String {
    let mut out = String::with_capacity(result.len());
    let mut rest = result;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
            continue;
        }
        let (digits, skip) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').unwrap_or(inner.len());
            (&inner[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match digits.parse::<usize>() {
            Ok(n) => {
                if let Some(m) = caps.and_then(|c| c.get(n)) {
                    out.push_str(m.as_str());
                }
                rest = &after[skip.min(after.len())..];
            }
            Err(_) => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn max_capture_ref(result: &str) -> usize {
    let mut max = 0;
    let b = result.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            if b.get(i + 1) == Some(&b'$') {
                i += 2;
                continue;
            }
            let mut j = i + 1;
            if b.get(j) == Some(&b'{') {
                j += 1;
            }
            let s = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if let Ok(n) = result[s..j].parse::<usize>() {
                max = max.max(n);
            }
            i = j.max(i + 1);
        } else {
            i += 1;
        }
    }
    max
}

/// Parses `[!]/pattern/flags` at the start of `s`; returns the compiled
/// regex, the negation, and the text after the flags.
fn parse_pattern(s: &str, pcre: bool) -> Result<(Regex, bool, &str), String> {
    let (negate, s) = match s.strip_prefix('!') {
        Some(r) => (true, r.trim_start()),
        None => (false, s),
    };
    let delim = s
        .chars()
        .next()
        .filter(|c| !c.is_alphanumeric() && !c.is_whitespace() && *c != '\\')
        .ok_or_else(|| format!("expected /pattern/ at \"{s}\""))?;
    let body = &s[delim.len_utf8()..];
    // Find the closing delimiter, skipping backslash escapes.
    let mut end = None;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            chars.next();
        } else if c == delim {
            end = Some(i);
            break;
        }
    }
    let end = end.ok_or_else(|| format!("missing closing {delim} in \"{s}\""))?;
    let pattern = &body[..end];
    // `\/` is how the delimiter is written inside; regex does not need it.
    let pattern = if regex_syntax_meta(delim) {
        pattern.to_string()
    } else {
        pattern.replace(&format!("\\{delim}"), &delim.to_string())
    };
    let after = &body[end + delim.len_utf8()..];
    let flags_end = after.find(char::is_whitespace).unwrap_or(after.len());
    let (flags, tail) = after.split_at(flags_end);
    // Postfix matches case-insensitively unless the `i` flag toggles it
    // off, and lets `.` match a newline (a folded header is looked up
    // joined with newlines): pcre's DOTALL is on until `s` toggles it, and
    // a POSIX regexp has no REG_NEWLINE until `m` sets it, which also
    // makes `^`/`$` match at line ends.
    let (mut icase, mut multi, mut dotall, mut ext, mut ungreedy, mut anchored) =
        (true, false, true, false, false, false);
    for f in flags.chars() {
        match f {
            'i' => icase = !icase,
            'm' if pcre => multi = !multi,
            'm' => {
                multi = !multi;
                dotall = !dotall;
            }
            // regexp_table's `x` toggles POSIX extended syntax, which is
            // always on here; pcre's `x` allows whitespace and comments.
            'x' if !pcre => {}
            'x' => ext = !ext,
            's' if pcre => dotall = !dotall,
            'U' if pcre => ungreedy = !ungreedy,
            'A' if pcre => anchored = !anchored,
            // DOLLAR_ENDONLY is how `$` always behaves here; EXTRA is
            // unknown to PCRE2 as well.
            'E' | 'X' if pcre => {}
            _ => return Err(format!("unknown regexp flag \"{f}\"")),
        }
    }
    let source = if anchored {
        format!("\\A(?:{pattern})")
    } else {
        pattern.clone()
    };
    let mut b = RegexBuilder::new(&source);
    b.case_insensitive(icase)
        .multi_line(multi)
        .dot_matches_new_line(dotall)
        .ignore_whitespace(ext)
        .swap_greed(ungreedy);
    let re = b
        .build()
        .map_err(|e| format!("bad regular expression \"{pattern}\": {e}"))?;
    Ok((re, negate, tail))
}

fn regex_syntax_meta(c: char) -> bool {
    regex::escape(&c.to_string()).len() > c.len_utf8()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> RegexpTable {
        RegexpTable::parse(Path::new("r"), text, false).unwrap()
    }

    #[test]
    fn matches_with_captures() {
        let t =
            table("# comment\n/^(.*)@example\\.com$/ ${1}@example.org\n/^postmaster@/ admin $$x\n");
        assert_eq!(
            t.lookup("Joe@EXAMPLE.com").as_deref(),
            Some("Joe@example.org")
        );
        assert_eq!(t.lookup("postmaster@foo").as_deref(), Some("admin $x"));
        assert_eq!(t.lookup("nobody@else"), None);
    }

    #[test]
    fn dollar_digit_form_and_case_flag() {
        let t = table("/^(a)(b)$/i $2$1\n/^(x)y$/ got-$1\n");
        assert_eq!(t.lookup("ab").as_deref(), Some("ba"));
        // `i` toggles case-insensitivity off.
        assert_eq!(t.lookup("AB"), None);
        assert_eq!(t.lookup("XY").as_deref(), Some("got-X"));
    }

    #[test]
    fn negation_and_if_blocks() {
        let t = table(
            "if /@example\\.com$/\n!/^admin@/ REJECT not admin\n/./ OK admin\nendif\n\
             if !/@example\\.com$/\n/^/ RELAY\nendif\n",
        );
        assert_eq!(
            t.lookup("bob@example.com").as_deref(),
            Some("REJECT not admin")
        );
        assert_eq!(t.lookup("admin@example.com").as_deref(), Some("OK admin"));
        assert_eq!(t.lookup("bob@other.net").as_deref(), Some("RELAY"));
    }

    #[test]
    fn continuation_and_delimiters() {
        let t = table("/a\\/b/ one\n  two\n#x\n");
        assert_eq!(t.lookup("a/b").as_deref(), Some("one two"));
        let t = table("%^x|y$% bar\n");
        assert_eq!(t.lookup("y").as_deref(), Some("bar"));
    }

    #[test]
    fn errors_name_line() {
        let e = RegexpTable::parse(Path::new("r"), "/a/ ok\n/(b/ x\n", false).unwrap_err();
        assert!(
            e.to_string().starts_with("r:2: bad regular expression"),
            "{e}"
        );
        let e = RegexpTable::parse(Path::new("r"), "/a/\n", false).unwrap_err();
        assert_eq!(e.to_string(), "r:1: missing result after pattern");
        let e = RegexpTable::parse(Path::new("r"), "if /a/\n/b/ c\n", false).unwrap_err();
        assert_eq!(e.to_string(), "r:1: if without endif");
        let e = RegexpTable::parse(Path::new("r"), "endif\n", false).unwrap_err();
        assert_eq!(e.to_string(), "r:1: endif without if");
        let e = RegexpTable::parse(Path::new("r"), "/(a)/ $2\n", false).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let e = RegexpTable::parse(Path::new("r"), "!/(a)/ $1\n", false).unwrap_err();
        assert!(e.to_string().contains("negated"), "{e}");
        let e = RegexpTable::parse(Path::new("r"), "/a/q x\n", false).unwrap_err();
        assert!(e.to_string().contains("flag"), "{e}");
    }

    #[test]
    fn pcre_flags() {
        let t = RegexpTable::parse(Path::new("p"), "/a b/x ok\n", true).unwrap();
        assert_eq!(t.lookup("ab").as_deref(), Some("ok"));
        let t = RegexpTable::parse(Path::new("p"), "/b/A anchored\n/./ any\n", true).unwrap();
        assert_eq!(t.lookup("ab").as_deref(), Some("any"));
        assert_eq!(t.lookup("ba").as_deref(), Some("anchored"));
    }

    /// A folded header is looked up joined with newlines (header_checks),
    /// so `.` must match them as Postfix's tables do: pcre's `s` flag is
    /// on by default, and a POSIX regexp without REG_NEWLINE (the `m`
    /// flag) matches newlines with `.`.
    #[test]
    fn dot_matches_newline_as_in_postfix() {
        let folded = "Subject: one\n\ttwo";
        for pcre in [false, true] {
            let t = RegexpTable::parse(Path::new("t"), "/^Subject:.*two$/ hit\n", pcre).unwrap();
            assert_eq!(t.lookup(folded).as_deref(), Some("hit"), "pcre={pcre}");
        }
        // pcre: `s` toggles DOTALL off; `m` leaves it alone.
        let t = RegexpTable::parse(Path::new("p"), "/^Subject:.*two$/s hit\n", true).unwrap();
        assert_eq!(t.lookup(folded), None);
        let t =
            RegexpTable::parse(Path::new("p"), "/^\\ttwo$/m hit\n/one.\\t/m dot\n", true).unwrap();
        assert_eq!(t.lookup(folded).as_deref(), Some("hit"));
        assert_eq!(t.lookup("one\n\tx").as_deref(), Some("dot"));
        // regexp: `m` is REG_NEWLINE: line anchors, and `.` stops at newlines.
        let t =
            RegexpTable::parse(Path::new("r"), "/one.\\t/m dot\n/^\\ttwo$/m hit\n", false).unwrap();
        assert_eq!(t.lookup(folded).as_deref(), Some("hit"));
        // The `s` flag is pcre's only.
        assert!(RegexpTable::parse(Path::new("r"), "/a/s x\n", false).is_err());
    }

    #[test]
    fn broken_pattern_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("header_checks");
        std::fs::write(&path, "# c\n/^Subject: ok/ WARN\n\n/^From: (x/ REJECT\n").unwrap();
        for kind in ["regexp", "pcre"] {
            let e = super::super::Table::open(&format!("{kind}:{}", path.display()), dir.path())
                .unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{}:4: bad regular expression", path.display())),
                "{msg}"
            );
        }
    }
}
