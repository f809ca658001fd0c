//! The EHLO reply: built by the server from a list of [`Extension`]s, read
//! by the client into [`Capabilities`].
//!
//! The server's first line is just the hostname, as Postfix sends it
//! (`250-mx.example.com`), followed by one keyword per line.

use std::fmt;

use crate::reply::Reply;

/// One EHLO keyword line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Extension {
    /// `PIPELINING` (RFC 2920).
    Pipelining,
    /// `SIZE n` (RFC 1870); `SIZE` alone when there is no fixed limit.
    Size(Option<u64>),
    /// `VRFY`.
    Vrfy,
    /// `ETRN` (RFC 1985).
    Etrn,
    /// `STARTTLS` (RFC 3207).
    Starttls,
    /// `AUTH mech...` (RFC 4954).
    Auth(Vec<String>),
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    EnhancedStatusCodes,
    /// `8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BINARYMIME` (RFC 3030).
    BinaryMime,
    /// `DSN` (RFC 3461).
    Dsn,
    /// `SMTPUTF8` (RFC 6531).
    SmtpUtf8,
    /// `CHUNKING` (RFC 3030).
    Chunking,
    /// Anything else, written as given.
    Other(String),
}

impl fmt::Display for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Extension::Pipelining => f.write_str("PIPELINING"),
            Extension::Size(Some(n)) => write!(f, "SIZE {n}"),
            Extension::Size(None) => f.write_str("SIZE"),
            Extension::Vrfy => f.write_str("VRFY"),
            Extension::Etrn => f.write_str("ETRN"),
            Extension::Starttls => f.write_str("STARTTLS"),
            Extension::Auth(mechs) => write!(f, "AUTH {}", mechs.join(" ")),
            Extension::EnhancedStatusCodes => f.write_str("ENHANCEDSTATUSCODES"),
            Extension::EightBitMime => f.write_str("8BITMIME"),
            Extension::BinaryMime => f.write_str("BINARYMIME"),
            Extension::Dsn => f.write_str("DSN"),
            Extension::SmtpUtf8 => f.write_str("SMTPUTF8"),
            Extension::Chunking => f.write_str("CHUNKING"),
            Extension::Other(s) => f.write_str(s),
        }
    }
}

/// The server's `250` reply to EHLO.
pub fn ehlo_reply(hostname: &str, extensions: &[Extension]) -> Reply {
    let lines =
        std::iter::once(hostname.to_owned()).chain(extensions.iter().map(|e| e.to_string()));
    Reply::multiline(250, None, lines)
}

/// What a server announced in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The first line: the server's name and greeting text.
    pub greeting: String,
    /// PIPELINING.
    pub pipelining: bool,
    /// SIZE: `Some(0)` when announced without a limit (RFC 1870 says 0
    /// means none), `None` when not announced.
    pub size: Option<u64>,
    /// 8BITMIME.
    pub eight_bit_mime: bool,
    /// BINARYMIME.
    pub binary_mime: bool,
    /// STARTTLS.
    pub starttls: bool,
    /// AUTH mechanisms, uppercased, from `AUTH` and the old `AUTH=` form.
    pub auth: Vec<String>,
    /// SMTPUTF8.
    pub smtputf8: bool,
    /// DSN.
    pub dsn: bool,
    /// CHUNKING.
    pub chunking: bool,
    /// ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
    /// Other keywords (uppercased) with their parameters.
    pub other: Vec<(String, String)>,
}

impl Capabilities {
    /// Read an EHLO reply. Non-positive replies announce nothing.
    pub fn from_reply(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        if !reply.is_positive() {
            return caps;
        }
        let mut lines = reply.lines().iter();
        caps.greeting = lines.next().cloned().unwrap_or_default();
        for line in lines {
            let line = line.trim();
            let (keyword, params) = match line.find([' ', '=']) {
                Some(i) => (&line[..i], line[i + 1..].trim()),
                None => (line, ""),
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    // A garbled number must not make us send unlimited
                    // mail: treat it as "no declared limit" like a bare SIZE.
                    caps.size = Some(params.parse().unwrap_or(0));
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "BINARYMIME" => caps.binary_mime = true,
                "STARTTLS" => caps.starttls = true,
                "AUTH" => {
                    for mech in params.split_whitespace() {
                        let mech = mech.to_ascii_uppercase();
                        if !caps.auth.contains(&mech) {
                            caps.auth.push(mech);
                        }
                    }
                }
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "CHUNKING" => caps.chunking = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "" => {}
                other => caps.other.push((other.to_owned(), params.to_owned())),
            }
        }
        caps
    }

    /// True when the server offers the SASL mechanism `mech` (any case).
    pub fn has_auth(&self, mech: &str) -> bool {
        self.auth.iter().any(|m| m.eq_ignore_ascii_case(mech))
    }

    /// True when the server announced `keyword` among the other keywords.
    pub fn has_other(&self, keyword: &str) -> bool {
        self.other
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(keyword))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyParser;
    use postern_envelope::EnhancedStatus;

    #[test]
    fn builds_postfix_style_reply() {
        let r = ehlo_reply(
            "mx.example.com",
            &[
                Extension::Pipelining,
                Extension::Size(Some(10240000)),
                Extension::Vrfy,
                Extension::Etrn,
                Extension::Starttls,
                Extension::Auth(vec!["PLAIN".into(), "LOGIN".into()]),
                Extension::EnhancedStatusCodes,
                Extension::EightBitMime,
                Extension::Dsn,
                Extension::SmtpUtf8,
                Extension::Chunking,
            ],
        );
        assert_eq!(
            String::from_utf8(r.to_wire()).unwrap(),
            "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
             250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n\
             250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n250 CHUNKING\r\n"
        );
        let caps = Capabilities::from_reply(&r);
        assert_eq!(caps.greeting, "mx.example.com");
        assert!(caps.pipelining && caps.starttls && caps.dsn && caps.smtputf8);
        assert!(caps.chunking && caps.enhanced_status_codes && caps.eight_bit_mime);
        assert_eq!(caps.size, Some(10240000));
        assert!(caps.has_auth("plain") && caps.has_auth("LOGIN") && !caps.has_auth("CRAM-MD5"));
        assert!(caps.has_other("VRFY") && caps.has_other("etrn"));
    }

    #[test]
    fn parses_server_variants() {
        let mut p = ReplyParser::new();
        p.push(
            b"250-smtp.example.net Hello [192.0.2.1]\r\n250-size\r\n250-AUTH=login plain\r\n\
              250-AUTH PLAIN XOAUTH2\r\n250-X-EXPS GSSAPI\r\n250 binarymime\r\n",
        );
        let caps = Capabilities::from_reply(&p.next_reply().unwrap().unwrap());
        assert_eq!(caps.greeting, "smtp.example.net Hello [192.0.2.1]");
        assert_eq!(caps.size, Some(0));
        assert_eq!(caps.auth, ["LOGIN", "PLAIN", "XOAUTH2"]);
        assert!(caps.binary_mime && !caps.pipelining);
        assert_eq!(caps.other, [("X-EXPS".to_owned(), "GSSAPI".to_owned())]);
    }

    #[test]
    fn garbled_size_and_failure() {
        let r = Reply::multiline(250, None, ["mx", "SIZE lots"]);
        assert_eq!(Capabilities::from_reply(&r).size, Some(0));
        let r = Reply::new(
            502,
            Some(EnhancedStatus::of(5, 5, 2)),
            "Error: command not recognized",
        );
        assert_eq!(Capabilities::from_reply(&r), Capabilities::default());
    }
}
