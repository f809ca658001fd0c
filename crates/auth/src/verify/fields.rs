//! The header section as a list of fields, and the Authentication-Results
//! fields that claim our authserv-id removed (RFC 8601 section 5): pure
//! functions over bytes, so they can be tested (and fuzzed) alone.

use std::borrow::Cow;
use std::ops::Range;

/// One header field: its bytes (name, colon, value, folded lines and the
/// final line ending) and where its name ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    pub bytes: Range<usize>,
    /// The name, without the colon or any space before it.
    pub name: Range<usize>,
}

/// The fields of `message` (a whole message or its header section alone),
/// and where the header section ends: at the empty line, which is not part
/// of it, or at the end of the input. A line without a colon that is no
/// continuation ends the header section as well, as mail parsers do.
pub(crate) fn header_fields(message: &[u8]) -> (Vec<Field>, usize) {
    let mut fields: Vec<Field> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let line_end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..line_end];
        match line.first() {
            Some(b' ' | b'\t') if !fields.is_empty() => {
                fields.last_mut().unwrap().bytes.end = line_end;
            }
            _ => {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    return (fields, pos); // the empty line, or not a field
                };
                let name_len = line[..colon]
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                    .map_or(0, |i| i + 1);
                if name_len == 0 {
                    return (fields, pos);
                }
                fields.push(Field {
                    bytes: pos..line_end,
                    name: pos..pos + name_len,
                });
            }
        }
        pos = line_end;
    }
    (fields, pos)
}

/// `message` without the `Authentication-Results:` fields whose
/// authserv-id is `authserv_id` (compared without regard to case, as
/// domain names are); fields of other ids, and everything after the header
/// section, are kept byte for byte. Borrowed when nothing is removed.
pub fn remove_our_auth_results<'m>(message: &'m [u8], authserv_id: &str) -> Cow<'m, [u8]> {
    let (fields, _) = header_fields(message);
    let ours: Vec<&Field> = fields
        .iter()
        .filter(|f| {
            message[f.name.clone()].eq_ignore_ascii_case(b"Authentication-Results")
                && authserv_id_of(&message[f.name.end..f.bytes.end])
                    .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id.as_bytes()))
        })
        .collect();
    if ours.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    for f in ours {
        out.extend_from_slice(&message[pos..f.bytes.start]);
        pos = f.bytes.end;
    }
    out.extend_from_slice(&message[pos..]);
    Cow::Owned(out)
}

/// The authserv-id at the start of an Authentication-Results value (from
/// the name on): the first token after any folding white space and
/// comments (RFC 8601 2.2, CFWS), ending at white space, `;` or `(`.
pub(crate) fn authserv_id_of(value: &[u8]) -> Option<&[u8]> {
    let mut rest = trim_start_ws(value).strip_prefix(b":")?;
    loop {
        rest = trim_start_ws(rest);
        if rest.first() == Some(&b'(') {
            rest = skip_comment(rest)?;
        } else {
            break;
        }
    }
    let end = rest
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b';' | b'('))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn trim_start_ws(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

/// What follows the comment `s` starts with (nested, with quoted pairs);
/// None when it never closes.
fn skip_comment(s: &[u8]) -> Option<&[u8]> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&s[i + 1..]);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(m: &str, id: &str) -> String {
        String::from_utf8(remove_our_auth_results(m.as_bytes(), id).into_owned()).unwrap()
    }

    #[test]
    fn splits_fields_and_finds_the_body() {
        let m = b"From: a@b\r\nSubject: one\r\n two\r\nX-Empty:\r\n\r\nbody: not a field\r\n";
        let (fields, end) = header_fields(m);
        assert_eq!(fields.len(), 3);
        assert_eq!(&m[fields[1].bytes.clone()], b"Subject: one\r\n two\r\n");
        assert_eq!(&m[fields[1].name.clone()], b"Subject");
        assert_eq!(&m[end..end + 2], b"\r\n");
        let (fields, end) = header_fields(b"A : 1\nB: 2");
        assert_eq!((fields.len(), end), (2, 10));
        assert_eq!(&b"A : 1\nB: 2"[fields[0].name.clone()], b"A");
    }

    #[test]
    fn removes_ours_keeps_others_and_the_body() {
        let m = "Received: x\r\n\
                 Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=a@b\r\n\
                 authentication-results:   MX.Example.Test 1;\r\n\tdkim=pass\r\n header.d=b\r\n\
                 Authentication-Results: other.test; dmarc=pass\r\n\
                 Authentication-Results: mx.example.test.evil; none\r\n\
                 Subject: hi\r\n\
                 \r\n\
                 Authentication-Results: mx.example.test; in the body\r\n";
        assert_eq!(
            strip(m, "mx.example.test"),
            "Received: x\r\n\
             Authentication-Results: other.test; dmarc=pass\r\n\
             Authentication-Results: mx.example.test.evil; none\r\n\
             Subject: hi\r\n\
             \r\n\
             Authentication-Results: mx.example.test; in the body\r\n"
        );
    }

    #[test]
    fn reads_the_id_past_folding_and_comments() {
        let m = "Authentication-Results :\r\n (forged (nested)) mx.example.test(c);\r\n\tspf=fail\r\n\
                 Authentication-Results: (mx.example.test) other.test; none\r\n\
                 Authentication-Results: mx.example.test\r\n\
                 Authentication-Results: (unclosed mx.example.test; none\r\n\
                 \r\n";
        assert_eq!(
            strip(m, "mx.example.test"),
            "Authentication-Results: (mx.example.test) other.test; none\r\n\
             Authentication-Results: (unclosed mx.example.test; none\r\n\
             \r\n"
        );
    }

    #[test]
    fn borrows_when_nothing_is_ours() {
        let m = b"Authentication-Results: other.test; none\n\nbody\n";
        assert!(matches!(
            remove_our_auth_results(m, "mx.example.test"),
            Cow::Borrowed(_)
        ));
        assert_eq!(&*remove_our_auth_results(b"", "mx"), b"");
        // Bare LF line endings, the last field without one.
        assert_eq!(
            strip("A: 1\nAuthentication-Results: mx; x\n", "mx"),
            "A: 1\n"
        );
        assert_eq!(strip("A: 1\nAuthentication-Results: mx", "mx"), "A: 1\n");
    }
}
