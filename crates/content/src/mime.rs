//! The pieces of MIME that the inspector needs (Postfix's is_header.c,
//! header_opts.c and header_token.c): where a header's name ends, which
//! headers are MIME's, and what a Content-Type says.

/// The length of the header name when `line` starts a header: printable
/// ASCII other than `:` and blanks, then optional blanks (RFC 822's
/// obsolete form), then `:`. None for anything else.
pub fn header_name_len(line: &[u8]) -> Option<usize> {
    let mut len = 0;
    let mut after_blank = false;
    for &c in line {
        match c {
            b':' => return (len > 0).then_some(len),
            b' ' | b'\t' if len > 0 => after_blank = true,
            33..=126 if !after_blank => len += 1,
            _ => return None,
        }
    }
    None
}

/// The headers cleanup(8) hands to mime_header_checks wherever they are
/// (header_opts.c's HDR_OPT_MIME).
pub(crate) fn is_mime_header(name: &[u8]) -> bool {
    const MIME: &[&str] = &[
        "content-description",
        "content-disposition",
        "content-id",
        "content-transfer-encoding",
        "content-type",
        "mime-version",
    ];
    MIME.iter().any(|m| m.as_bytes().eq_ignore_ascii_case(name))
}

/// What a Content-Type header tells the MIME state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ContentType {
    Text,
    /// message/rfc822 or message/global: the part starts with headers.
    Message {
        nested: bool,
    },
    /// multipart/*: the boundaries given (the default type of a part is
    /// message/rfc822 in multipart/digest).
    Multipart {
        digest: bool,
        boundaries: Vec<Vec<u8>>,
    },
    Other,
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    Atom(Vec<u8>),
    Quoted(Vec<u8>),
    Special(u8),
}

impl Token {
    fn is_atom(&self, word: &str) -> bool {
        matches!(self, Token::Atom(a) if a.eq_ignore_ascii_case(word.as_bytes()))
    }

    fn value(&self) -> &[u8] {
        match self {
            Token::Atom(v) | Token::Quoted(v) => v,
            Token::Special(c) => std::slice::from_ref(c),
        }
    }
}

/// RFC 2045's tspecials.
const TSPECIALS: &[u8] = b"()<>@,;:\\\"/[]?=";

/// Up to three tokens of the next `;`-terminated item at `*pos`; None when
/// nothing is left (header_token with `;` as terminator).
fn item(s: &[u8], pos: &mut usize) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut i = *pos;
    let mut ended = false;
    while i < s.len() {
        let c = s[i];
        i += 1;
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b';' => {
                ended = true;
                break;
            }
            b'(' => {
                let mut depth = 1;
                while i < s.len() {
                    let c = s[i];
                    i += 1;
                    match c {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        b'\\' => i += 1,
                        _ => {}
                    }
                }
            }
            b'"' => {
                let mut v = Vec::new();
                while i < s.len() {
                    let c = s[i];
                    i += 1;
                    match c {
                        b'"' => break,
                        // A folded quoted string: drop the blanks before
                        // the line break.
                        b'\n' => {
                            while v.last().is_some_and(|b| b" \t\r\n".contains(b)) {
                                v.pop();
                            }
                        }
                        b'\\' if i < s.len() => {
                            v.push(s[i]);
                            i += 1;
                        }
                        b'\\' => {}
                        _ => v.push(c),
                    }
                }
                out.push(Token::Quoted(v));
            }
            _ if TSPECIALS.contains(&c) || c.is_ascii_control() => out.push(Token::Special(c)),
            _ => {
                let start = i - 1;
                while i < s.len()
                    && !b" \t\r\n".contains(&s[i])
                    && !s[i].is_ascii_control()
                    && !TSPECIALS.contains(&s[i])
                {
                    i += 1;
                }
                out.push(Token::Atom(s[start..i].to_vec()));
            }
        }
    }
    *pos = i;
    if out.is_empty() && !ended {
        return None;
    }
    out.truncate(3);
    Some(out)
}

/// Parses a Content-Type header's value (after the colon) as
/// mime_state.c does: the type, and for multipart every `boundary=`.
pub(crate) fn content_type(value: &[u8]) -> ContentType {
    let mut pos = 0;
    let Some(t) = item(value, &mut pos) else {
        return ContentType::Other;
    };
    let Some(first) = t.first() else {
        return ContentType::Other;
    };
    let sub = |word: &str| t.len() >= 3 && t[1] == Token::Special(b'/') && t[2].is_atom(word);
    if first.is_atom("text") {
        ContentType::Text
    } else if first.is_atom("message") {
        ContentType::Message {
            nested: sub("rfc822") || sub("global"),
        }
    } else if first.is_atom("multipart") {
        let digest = sub("digest");
        let mut boundaries = Vec::new();
        while let Some(p) = item(value, &mut pos) {
            if p.len() >= 3 && p[0].is_atom("boundary") && p[1] == Token::Special(b'=') {
                boundaries.push(p[2].value().to_vec());
            }
        }
        ContentType::Multipart { digest, boundaries }
    } else {
        ContentType::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names() {
        assert_eq!(header_name_len(b"Subject: x"), Some(7));
        assert_eq!(header_name_len(b"Subject \t: x"), Some(7));
        assert_eq!(header_name_len(b"X:"), Some(1));
        assert_eq!(header_name_len(b": x"), None);
        assert_eq!(header_name_len(b" Subject: x"), None);
        assert_eq!(header_name_len(b"From a@b"), None);
        assert_eq!(header_name_len(b"Two words: x"), None);
        assert_eq!(header_name_len(b"Subject"), None);
        assert!(is_mime_header(b"Content-TYPE"));
        assert!(!is_mime_header(b"Content-Length"));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type(b" text/plain; charset=utf-8"),
            ContentType::Text
        );
        assert_eq!(
            content_type(b" Message/RFC822"),
            ContentType::Message { nested: true }
        );
        assert_eq!(
            content_type(b" message/partial; id=x"),
            ContentType::Message { nested: false }
        );
        assert_eq!(
            content_type(b" multipart/mixed; (comment) boundary=\"a b\n\t c\";\n\tBOUNDARY=plain"),
            ContentType::Multipart {
                digest: false,
                boundaries: vec![b"a b\t c".to_vec(), b"plain".to_vec()],
            }
        );
        assert_eq!(
            content_type(b"multipart/digest;boundary=x"),
            ContentType::Multipart {
                digest: true,
                boundaries: vec![b"x".to_vec()],
            }
        );
        assert_eq!(content_type(b" application/pdf"), ContentType::Other);
        assert_eq!(content_type(b""), ContentType::Other);
    }
}
