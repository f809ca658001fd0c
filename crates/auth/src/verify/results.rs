//! What the inbound checks found, as a value: each method's result with the
//! identity it judged, the DMARC policy that applies, and the two ways it is
//! written out: one `Authentication-Results:` header (RFC 8601) and the
//! mail log's line.

use std::fmt::Write;

/// A result value of RFC 8601 section 2.7; each method uses its own subset
/// (`softfail` is SPF's, `policy` DKIM's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    None,
    Pass,
    Fail,
    SoftFail,
    Neutral,
    Policy,
    TempError,
    PermError,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::None => "none",
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::SoftFail => "softfail",
            Verdict::Neutral => "neutral",
            Verdict::Policy => "policy",
            Verdict::TempError => "temperror",
            Verdict::PermError => "permerror",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which SPF identity was checked (RFC 7208 section 2.3 and 2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfIdentity {
    /// The MAIL FROM address; for the null sender, postmaster@ the HELO name.
    MailFrom,
    Helo,
}

/// One SPF check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpfCheck {
    pub identity: SpfIdentity,
    pub result: Verdict,
    /// What was checked: the MAIL FROM address (or the HELO name for the
    /// null sender), or the HELO name.
    pub subject: String,
    /// The domain whose record was evaluated.
    pub domain: String,
}

/// One DKIM signature's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimCheck {
    pub result: Verdict,
    /// d= and s= of the signature; empty when the signature did not parse.
    pub domain: String,
    pub selector: String,
    /// The first 8 characters of b= (RFC 6008), telling apart signatures
    /// of one domain and selector.
    pub b_prefix: String,
    /// Why it did not pass, in mail-auth's words.
    pub reason: Option<String>,
}

/// The policy a DMARC record asks for (RFC 7489 6.3: p=, or sp= for a
/// subdomain of the record's domain; one step lower under t=y).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

impl DmarcPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The DMARC evaluation of the From: domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcCheck {
    pub result: Verdict,
    /// The RFC 5322 From: domain; empty when the message has none (or
    /// several From: domains, which DMARC exempts).
    pub header_from: String,
    /// The policy that applies to this message when it fails; None when
    /// no record was found.
    pub policy: Option<DmarcPolicy>,
    /// Whether a passing SPF identity, or a passing DKIM signature, is
    /// aligned with the From: domain (relaxed or strict as the record says).
    pub spf_aligned: bool,
    pub dkim_aligned: bool,
}

/// The ARC chain's validation (RFC 8617 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArcCheck {
    /// none (no chain), pass or fail.
    pub result: Verdict,
    /// How many ARC sets the message carries.
    pub sets: usize,
}

/// Which methods a check runs (`smtpd_message_authentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Methods {
    pub spf: bool,
    pub dkim: bool,
    pub dmarc: bool,
    pub arc: bool,
}

impl Methods {
    pub const ALL: Methods = Methods {
        spf: true,
        dkim: true,
        dmarc: true,
        arc: true,
    };
    pub const NONE: Methods = Methods {
        spf: false,
        dkim: false,
        dmarc: false,
        arc: false,
    };

    pub fn any(self) -> bool {
        self.spf || self.dkim || self.dmarc || self.arc
    }
}

impl SpfCheck {
    /// The placeholder of an identity that was not checked.
    pub(crate) fn none(identity: SpfIdentity) -> SpfCheck {
        SpfCheck {
            identity,
            result: Verdict::None,
            subject: String::new(),
            domain: String::new(),
        }
    }
}

impl DmarcCheck {
    /// No DMARC evaluation (not checked, or no message to check).
    pub(crate) fn none() -> DmarcCheck {
        DmarcCheck {
            result: Verdict::None,
            header_from: String::new(),
            policy: None,
            spf_aligned: false,
            dkim_aligned: false,
        }
    }
}

/// Everything [`Verifier::check`](super::Verifier::check) found. A method
/// left out of `methods` was not checked: its field holds `none` and it
/// is left out of the header and the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    pub methods: Methods,
    pub spf_mail_from: SpfCheck,
    pub spf_helo: SpfCheck,
    /// One entry per verified signature, in header order.
    pub dkim: Vec<DkimCheck>,
    /// Signatures beyond the cap, not verified (and not in `dkim`).
    pub dkim_unverified: usize,
    pub dmarc: DmarcCheck,
    pub arc: ArcCheck,
}

impl AuthResults {
    /// The `Authentication-Results:` header, folded one result per line,
    /// ending in CRLF.
    pub fn header(&self, authserv_id: &str) -> String {
        let mut h = format!("Authentication-Results: {}", value(authserv_id));
        for r in self.resinfos() {
            let _ = write!(h, ";\r\n\t{r}");
        }
        h.push_str("\r\n");
        h
    }

    /// The results on one line, for the mail log.
    pub fn log_line(&self) -> String {
        let mut line = self.resinfos().join(", ");
        if self.dkim_unverified > 0 {
            let _ = write!(line, ", dkim_unverified={}", self.dkim_unverified);
        }
        line
    }

    /// Each method's result with its properties (RFC 8601 2.2 resinfo).
    fn resinfos(&self) -> Vec<String> {
        let mut out = Vec::new();
        let m = self.methods;
        let spf = if m.spf {
            vec![&self.spf_mail_from, &self.spf_helo]
        } else {
            Vec::new()
        };
        for spf in spf {
            let ptype = match spf.identity {
                SpfIdentity::MailFrom => "smtp.mailfrom",
                SpfIdentity::Helo => "smtp.helo",
            };
            out.push(format!(
                "spf={} {ptype}={}",
                spf.result,
                value(&spf.subject)
            ));
        }
        if m.dkim && self.dkim.is_empty() {
            out.push("dkim=none".to_string());
        }
        for d in &self.dkim {
            let mut r = format!("dkim={}", d.result);
            if let Some(reason) = &d.reason {
                let _ = write!(r, " ({})", comment(reason));
            }
            if !d.domain.is_empty() {
                let _ = write!(r, " header.d={}", value(&d.domain));
                let _ = write!(r, " header.s={}", value(&d.selector));
                let _ = write!(r, " header.b={}", value(&d.b_prefix));
            }
            out.push(r);
        }
        if m.dmarc {
            let mut r = format!("dmarc={}", self.dmarc.result);
            if let Some(p) = self.dmarc.policy {
                let _ = write!(r, " (p={})", p.as_str());
            }
            if !self.dmarc.header_from.is_empty() {
                let _ = write!(r, " header.from={}", value(&self.dmarc.header_from));
            }
            out.push(r);
        }
        if m.arc {
            out.push(format!("arc={}", self.arc.result));
        }
        if out.is_empty() {
            // RFC 8601 2.2: no result at all is written as "none".
            out.push("none".to_string());
        }
        out
    }
}

/// A property value as RFC 8601 allows it: a bare token (with `@` for
/// addresses), else a quoted string; what came from the message cannot
/// break the header out of its line.
fn value(s: &str) -> String {
    let bare = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@+!#$%&'*^`{|}~".contains(&b));
    if bare {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Text for inside a comment: no control characters, parentheses or
/// backslashes.
fn comment(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> AuthResults {
        AuthResults {
            methods: Methods::ALL,
            spf_mail_from: SpfCheck {
                identity: SpfIdentity::MailFrom,
                result: Verdict::Pass,
                subject: "alice@example.test".into(),
                domain: "example.test".into(),
            },
            spf_helo: SpfCheck {
                identity: SpfIdentity::Helo,
                result: Verdict::None,
                subject: "mail.example.test".into(),
                domain: "mail.example.test".into(),
            },
            dkim: vec![
                DkimCheck {
                    result: Verdict::Pass,
                    domain: "example.test".into(),
                    selector: "s1".into(),
                    b_prefix: "abcd/EF+".into(),
                    reason: None,
                },
                DkimCheck {
                    result: Verdict::Fail,
                    domain: "other.test".into(),
                    selector: "x\r\ny".into(),
                    b_prefix: "12345678".into(),
                    reason: Some("body hash (mismatch)".into()),
                },
            ],
            dkim_unverified: 0,
            dmarc: DmarcCheck {
                result: Verdict::Pass,
                header_from: "example.test".into(),
                policy: Some(DmarcPolicy::Reject),
                spf_aligned: true,
                dkim_aligned: true,
            },
            arc: ArcCheck {
                result: Verdict::None,
                sets: 0,
            },
        }
    }

    #[test]
    fn writes_one_folded_header() {
        assert_eq!(
            results().header("mx.example.test"),
            "Authentication-Results: mx.example.test;\r\n\
             \tspf=pass smtp.mailfrom=alice@example.test;\r\n\
             \tspf=none smtp.helo=mail.example.test;\r\n\
             \tdkim=pass header.d=example.test header.s=s1 header.b=\"abcd/EF+\";\r\n\
             \tdkim=fail (body hash mismatch) header.d=other.test header.s=\"xy\" header.b=12345678;\r\n\
             \tdmarc=pass (p=reject) header.from=example.test;\r\n\
             \tarc=none\r\n"
        );
    }

    #[test]
    fn writes_one_log_line() {
        let mut r = results();
        r.dkim.clear();
        r.dkim_unverified = 3;
        r.dmarc.policy = None;
        r.dmarc.header_from.clear();
        assert_eq!(
            r.log_line(),
            "spf=pass smtp.mailfrom=alice@example.test, spf=none smtp.helo=mail.example.test, \
             dkim=none, dmarc=pass, arc=none, dkim_unverified=3"
        );
    }
}
