//! A message as filters see it, and their changes applied: [`Split`]
//! cuts the content into what filters must not see, the headers they
//! see and the body, and makes the header and body modifications;
//! [`EnvelopeChanges`] collects the sender and recipient ones as plain
//! values for the caller's envelope. smtpd and the path of non-SMTP
//! mail share them (Postfix's cleanup_milter.c edits the queue file
//! for both).

use postern_smtp::Address;

use crate::client::Header;
use crate::verdict::Modification;

/// A message split for the filters: what they must not see (our
/// Received header and anything PREPENDed before it stays first), the
/// headers they see, and the body.
#[derive(Debug)]
pub struct Split {
    pub hidden: Vec<u8>,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl Split {
    /// Splits `content` (CRLF lines) after its first `hidden` bytes.
    pub fn new(content: &[u8], hidden: usize) -> Split {
        let hidden_len = hidden.min(content.len());
        let rest = &content[hidden_len..];
        let mut headers: Vec<Header> = Vec::new();
        let mut at = 0;
        while at < rest.len() {
            let end = rest[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| at + i + 1);
            let line = &rest[at..end];
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.is_empty() {
                at = end;
                break;
            }
            let text = String::from_utf8_lossy(text);
            match (text.starts_with([' ', '\t']), headers.last_mut()) {
                (true, Some(last)) => {
                    last.value.push('\n');
                    last.value.push_str(&text);
                }
                _ => match text.split_once(':') {
                    Some((name, value)) => headers.push(Header::new(name.trim_end(), value)),
                    // Not a header: the body starts here (the receiver
                    // added the empty line before it).
                    None => break,
                },
            }
            at = end;
        }
        Split {
            hidden: content[..hidden_len].to_vec(),
            headers,
            body: rest[at.min(rest.len())..].to_vec(),
        }
    }

    /// Makes every modification, in the order the filters asked: the
    /// header and body ones here, the envelope ones returned.
    pub fn edit(&mut self, modifications: &[Modification]) -> EnvelopeChanges {
        let mut changes = EnvelopeChanges::default();
        for m in modifications {
            self.apply(m);
            changes.note(m);
        }
        changes
    }

    /// Makes one header or body change (envelope changes are ignored).
    pub fn apply(&mut self, m: &Modification) {
        match m {
            Modification::AddHeader { name, value } => {
                self.headers.push(Header::new(name, value));
            }
            Modification::InsertHeader { index, name, value } => {
                let at = (*index as usize).min(self.headers.len());
                self.headers.insert(at, Header::new(name, value));
            }
            Modification::ChangeHeader { index, name, value } => {
                let found = self
                    .headers
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.name.eq_ignore_ascii_case(name))
                    .nth((*index as usize).max(1) - 1)
                    .map(|(i, _)| i);
                match (found, value.is_empty()) {
                    (Some(i), true) => {
                        self.headers.remove(i);
                    }
                    (Some(i), false) => self.headers[i].value = value.clone(),
                    // libmilter: changing a header that is not there adds it.
                    (None, false) => self.headers.push(Header::new(name, value)),
                    (None, true) => {}
                }
            }
            Modification::ReplaceBody(body) => self.body = crlf(body),
            _ => {}
        }
    }

    /// The message again, CRLF line ends.
    pub fn into_content(self) -> Vec<u8> {
        let mut out = self.hidden;
        for h in &self.headers {
            out.extend_from_slice(h.name.as_bytes());
            out.push(b':');
            out.extend_from_slice(&crlf(h.value.as_bytes()));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// `bytes` with every bare LF made CRLF (filters fold headers with `\n`,
/// and may send a body with bare LFs).
fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32);
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

/// The envelope changes filters asked for: a new sender, recipients to
/// add, and recipients to delete (lowercased, without angle brackets).
/// A sender or recipient that does not parse is logged and left out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EnvelopeChanges {
    pub sender: Option<Address>,
    pub add: Vec<Address>,
    pub delete: Vec<String>,
}

impl EnvelopeChanges {
    /// Takes note of one modification (header and body ones are ignored).
    pub fn note(&mut self, m: &Modification) {
        let path = |text: &str| {
            let t = text.trim();
            match t.starts_with('<') {
                true => Address::parse_path(t),
                false => Address::parse(t),
            }
        };
        match m {
            Modification::ChangeSender { sender, .. } => match path(sender) {
                Ok(a) => self.sender = Some(a),
                Err(e) => tracing::warn!("milter: bad sender {sender}: {e}; not changed"),
            },
            Modification::AddRecipient { recipient, .. } => match path(recipient) {
                Ok(a) => self.add.push(a),
                Err(e) => tracing::warn!("milter: bad recipient {recipient}: {e}; not added"),
            },
            Modification::DeleteRecipient(r) => {
                let r = r.trim();
                let r = r
                    .strip_prefix('<')
                    .and_then(|r| r.strip_suffix('>'))
                    .unwrap_or(r);
                self.delete.push(r.to_ascii_lowercase());
            }
            _ => {}
        }
    }

    /// Whether a filter deleted `recipient` (the address, as its
    /// `Display` writes it or as the envelope holds it).
    pub fn deletes(&self, recipient: &str) -> bool {
        self.delete.contains(&recipient.to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] =
        b"Received: ours\r\n\tfolded\r\nSubject: hi\r\nX-A: 1\r\n  two\r\nX-A: 2\r\n\r\nbody\r\n";

    #[test]
    fn filters_see_the_headers_without_ours_and_their_changes_are_made() {
        let hidden = b"Received: ours\r\n\tfolded\r\n".len();
        let mut s = Split::new(MSG, hidden);
        let names: Vec<_> = s.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["Subject", "X-A", "X-A"]);
        assert_eq!(s.headers[1].value, " 1\n  two");
        assert_eq!(s.body, b"body\r\n");
        let changes = s.edit(&[
            Modification::ChangeHeader {
                index: 2,
                name: "x-a".into(),
                value: " second".into(),
            },
            Modification::ChangeHeader {
                index: 1,
                name: "X-A".into(),
                value: String::new(),
            },
            Modification::InsertHeader {
                index: 0,
                name: "DKIM-Signature".into(),
                value: " v=1;\n\tb=x".into(),
            },
            Modification::AddHeader {
                name: "X-Spam-Status".into(),
                value: " No".into(),
            },
            Modification::ReplaceBody(b"new\nbody\n".to_vec()),
        ]);
        assert_eq!(changes, EnvelopeChanges::default());
        assert_eq!(
            String::from_utf8(s.into_content()).unwrap(),
            "Received: ours\r\n\tfolded\r\nDKIM-Signature: v=1;\r\n\tb=x\r\nSubject: hi\r\n\
             X-A: second\r\nX-Spam-Status: No\r\n\r\nnew\r\nbody\r\n"
        );
    }

    #[test]
    fn envelope_changes_are_plain_values() {
        let mut s = Split::new(b"Subject: x\r\n\r\nb\r\n", 0);
        let changes = s.edit(&[
            Modification::ChangeSender {
                sender: "<new@example.org>".into(),
                args: None,
            },
            Modification::AddRecipient {
                recipient: "<more@example.net>".into(),
                args: None,
            },
            Modification::AddRecipient {
                recipient: "<bad@@>".into(),
                args: None,
            },
            Modification::DeleteRecipient("<Old@Example.NET>".into()),
        ]);
        assert_eq!(
            changes.sender.as_ref().unwrap().to_string(),
            "new@example.org"
        );
        let added: Vec<_> = changes.add.iter().map(Address::to_string).collect();
        assert_eq!(added, ["more@example.net"]);
        assert!(changes.deletes("old@example.net"));
        assert!(!changes.deletes("more@example.net"));
        assert_eq!(s.into_content(), b"Subject: x\r\n\r\nb\r\n");
    }
}
