//! What Postfix's cleanup(8) does to a locally submitted message, as pure
//! functions over bytes: our Received header on top naming the uid, the
//! headers of `message_drop_headers`'s default removed (Bcc, Resent-Bcc,
//! Content-Length, Return-Path), and From:, Date: and Message-ID: added at
//! the end of the header section when the message has none.

use postern_content::header_name_len;

/// Headers removed from every submission, as Postfix's
/// `message_drop_headers` default.
const DROPPED: [&str; 4] = ["bcc", "resent-bcc", "content-length", "return-path"];

/// The values the added headers need.
#[derive(Debug)]
pub struct Local<'a> {
    pub queue_id: &'a str,
    /// myhostname.
    pub hostname: &'a str,
    /// mail_name.
    pub mail_name: &'a str,
    /// The submitting user, from the maildrop file's owner.
    pub uid: u32,
    /// The arrival date, RFC 5322.
    pub date: &'a str,
    /// The envelope sender, qualified (`user@$myorigin`); empty for the
    /// null sender.
    pub sender: &'a str,
    /// `-F` / NAME, else the user's full name from the passwd file.
    pub full_name: Option<&'a str>,
}

/// `content` as it goes to the queue.
pub fn clean(content: &[u8], local: &Local<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 512);
    out.extend_from_slice(
        format!(
            "Received: by {} ({}, from userid {})\r\n\tid {}; {}\r\n",
            local.hostname, local.mail_name, local.uid, local.queue_id, local.date
        )
        .as_bytes(),
    );
    let (mut from, mut date, mut message_id) = (false, false, false);
    let mut dropping = false;
    let mut pos = 0;
    // Where the body starts, and whether it needs the empty line before it.
    let mut body: Option<(usize, bool)> = None;
    while pos < content.len() {
        let end = content[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(content.len(), |i| pos + i + 1);
        let line = &content[pos..end];
        if line == b"\r\n" || line == b"\n" {
            body = Some((pos, false));
            break;
        }
        if matches!(line[0], b' ' | b'\t') && pos > 0 {
            if !dropping {
                out.extend_from_slice(line);
            }
        } else if let Some(len) = header_name_len(line) {
            let name = String::from_utf8_lossy(&line[..len]).to_ascii_lowercase();
            dropping = DROPPED.contains(&name.as_str());
            match name.as_str() {
                "from" => from = true,
                "date" => date = true,
                "message-id" => message_id = true,
                _ => {}
            }
            if !dropping {
                out.extend_from_slice(line);
            }
        } else {
            // Body text with no empty line before it.
            body = Some((pos, true));
            break;
        }
        pos = end;
    }
    if !out.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    // In the order Postfix's cleanup adds them.
    if !message_id {
        out.extend_from_slice(
            format!("Message-Id: <{}@{}>\r\n", local.queue_id, local.hostname).as_bytes(),
        );
    }
    if !date {
        out.extend_from_slice(format!("Date: {}\r\n", local.date).as_bytes());
    }
    if !from {
        out.extend_from_slice(from_header(local).as_bytes());
    }
    match body {
        Some((start, add_separator)) => {
            if add_separator {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(&content[start..]);
        }
        None => out.extend_from_slice(b"\r\n"),
    }
    out
}

/// `From: Full Name <user@origin>`, Postfix's `hfrom_format = standard`;
/// the null sender is MAILER-DAEMON.
fn from_header(local: &Local<'_>) -> String {
    if local.sender.is_empty() {
        return "From: MAILER-DAEMON\r\n".to_string();
    }
    match local.full_name {
        Some(name) => format!("From: {} <{}>\r\n", phrase(name), local.sender),
        None => format!("From: {}\r\n", local.sender),
    }
}

/// A display name as an RFC 5322 phrase: quoted when it holds specials.
fn phrase(name: &str) -> String {
    let specials = |c: char| "()<>[]:;@\\,.\"".contains(c);
    if !name.contains(specials) {
        return name.to_string();
    }
    let mut q = String::from("\"");
    for c in name.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local<'a>(sender: &'a str, full_name: Option<&'a str>) -> Local<'a> {
        Local {
            queue_id: "4XB1",
            hostname: "mail.example.local",
            mail_name: "Postern",
            uid: 1000,
            date: "Wed, 2 Dec 2026 14:00:00 +0000",
            sender,
            full_name,
        }
    }

    fn clean_str(content: &str, l: &Local<'_>) -> String {
        String::from_utf8(clean(content.as_bytes(), l)).unwrap()
    }

    #[test]
    fn adds_what_is_missing_and_drops_bcc() {
        let out = clean_str(
            "To: a@x\r\nBcc: secret@x,\r\n\tmore@x\r\nSubject: s\r\n\r\nBcc: body stays\r\n",
            &local("alice@example.local", Some("Alice Q. User")),
        );
        assert_eq!(
            out,
            "Received: by mail.example.local (Postern, from userid 1000)\r\n\
             \tid 4XB1; Wed, 2 Dec 2026 14:00:00 +0000\r\n\
             To: a@x\r\nSubject: s\r\n\
             Message-Id: <4XB1@mail.example.local>\r\n\
             Date: Wed, 2 Dec 2026 14:00:00 +0000\r\n\
             From: \"Alice Q. User\" <alice@example.local>\r\n\
             \r\nBcc: body stays\r\n"
        );
    }

    #[test]
    fn keeps_what_is_there_and_handles_odd_shapes() {
        let out = clean_str(
            "From: Bob <bob@x>\r\nDate: yesterday\r\nMessage-ID: <m@x>\r\nReturn-Path: <x>\r\n\r\nhi\r\n",
            &local("alice@example.local", None),
        );
        assert!(
            out.ends_with(
                "From: Bob <bob@x>\r\nDate: yesterday\r\nMessage-ID: <m@x>\r\n\r\nhi\r\n"
            )
        );
        // Body text without an empty line, an empty message, a null sender.
        let out = clean_str("just text\r\n", &local("", None));
        assert!(out.contains("From: MAILER-DAEMON\r\n"), "{out}");
        assert!(
            out.ends_with("From: MAILER-DAEMON\r\n\r\njust text\r\n"),
            "{out}"
        );
        let out = clean_str("", &local("alice@example.local", None));
        assert!(out.ends_with(
            "Message-Id: <4XB1@mail.example.local>\r\nDate: Wed, 2 Dec 2026 14:00:00 +0000\r\nFrom: alice@example.local\r\n\r\n"
        ));
        let out = clean_str("\r\nbody only\r\n", &local("a@b", None));
        assert!(out.ends_with("From: a@b\r\n\r\nbody only\r\n"), "{out}");
    }
}
