//! ARC sealing (RFC 8617) of mail this host forwards to another domain
//! (an alias, a .forward or a virtual alias that leads outside), so that
//! the next hop can trust the SPF, DKIM and DMARC results taken here when
//! the forwarding has broken SPF.
//!
//! `arc_sealing_key` names a `dkim_key_table` key (RSA: RFC 8617 knows
//! only rsa-sha256); empty, nothing is sealed. A message is sealed only
//! when it carries the `Authentication-Results:` header this host wrote
//! on arrival (smtpd removes any that claim our authserv-id from
//! outside, so the one present is ours). Its text becomes the
//! `ARC-Authentication-Results:` of the new set, and its `arc=` result
//! the seal's `cv=`: `none` for the first set, `pass` or `fail` after.
//! A chain that already failed (a seal with `cv=fail`), or whose state
//! was not checked here, or that holds 50 sets, is not extended.
//!
//! The signatures are mail-auth's RSA signing over the relaxed header
//! and body canonicalization of RFC 6376 section 3.4, assembled here:
//! mail-auth's own sealer wants the verification outputs themselves,
//! which the forwarding daemon (local-delivery) does not have.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use mail_auth::common::crypto::{DkimKey as SecretKey, SigningKey};
use mail_auth::dkim::Canonicalization;
use postern_config::Params;

use crate::keys::KeyAlgorithm;
use crate::sign::{DkimError, read_key_table};
use crate::verify::fields::{Field, authserv_id_of, header_fields};

/// The most sets a chain may hold (RFC 8617 section 4.2.1).
const MAX_SETS: usize = 50;

/// Seals forwarded mail with the `arc_sealing_key`.
pub struct ArcSealer {
    domain: String,
    selector: String,
    key: SecretKey,
    /// `dkim_signed_headers`: what ARC-Message-Signature covers.
    headers: Vec<String>,
}

impl std::fmt::Debug for ArcSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArcSealer")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .finish_non_exhaustive()
    }
}

impl ArcSealer {
    /// The sealer `arc_sealing_key` names; None when it is empty.
    pub fn from_params(params: &Params) -> Result<Option<ArcSealer>, DkimError> {
        let name = params.get("arc_sealing_key").trim().to_lowercase();
        if name.is_empty() {
            return Ok(None);
        }
        let entry = read_key_table(params)?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| DkimError::UnknownSealingKey { name: name.clone() })?;
        if entry.algorithm() != KeyAlgorithm::Rsa {
            return Err(DkimError::SealingKeyNotRsa { name });
        }
        let mut headers: Vec<String> = Vec::new();
        for h in std::iter::once("From".to_string()).chain(params.list("dkim_signed_headers")) {
            // Each name once: every instance of it is signed.
            if !headers.iter().any(|x| x.eq_ignore_ascii_case(&h)) {
                headers.push(h);
            }
        }
        Ok(Some(ArcSealer {
            domain: entry.domain,
            selector: entry.selector,
            key: entry.key.into_secret(),
            headers,
        }))
    }

    /// The sealing domain, `d=`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The selector, `s=`.
    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The three fields of the new ARC set (`ARC-Seal`,
    /// `ARC-Message-Signature`, `ARC-Authentication-Results`, folded and
    /// CRLF-terminated) to put on top of `message`, or None when the
    /// message is not to be sealed (see the module documentation).
    pub fn seal(&self, message: &[u8], authserv_id: &str) -> Result<Option<String>, DkimError> {
        let (fields, header_end) = header_fields(message);
        let body = body_of(message, header_end);
        let value = |f: &Field| &message[f.name.end..f.bytes.end];
        let named = |name: &str| -> Vec<&Field> {
            fields
                .iter()
                .filter(|f| message[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
                .collect()
        };
        let Some(ours) = named("Authentication-Results").into_iter().find(|f| {
            authserv_id_of(value(f))
                .is_some_and(|id| id.eq_ignore_ascii_case(authserv_id.as_bytes()))
        }) else {
            return Ok(None);
        };
        // The results after the colon, as written (folded).
        let results = String::from_utf8_lossy(value(ours));
        let results = results.trim_start_matches(':').trim();

        let sets = ArcSets::of(message, &fields);
        if sets.seals.len() >= MAX_SETS || sets.seals.iter().any(|s| s.cv_fail) {
            return Ok(None);
        }
        // After the highest instance there is, whatever the chain's shape.
        let i = sets.fields.iter().map(|(i, _, _)| *i).max().unwrap_or(0) + 1;
        let cv = if i == 1 {
            "none"
        } else {
            match result_of(results, "arc") {
                Some("pass") => "pass",
                Some("fail") => "fail",
                // Not checked here: we cannot vouch for the chain.
                _ => return Ok(None),
            }
        };
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());

        let aar = format!("ARC-Authentication-Results: i={i}; {results}\r\n");

        // ARC-Message-Signature: the message's headers (bottom-up per
        // name, as DKIM picks them) and body hash.
        let mut h = Vec::new();
        let mut signed = Vec::new();
        for name in &self.headers {
            for f in named(name).iter().rev() {
                h.push(name.to_ascii_lowercase());
                relaxed_field(&message[f.bytes.clone()], &mut signed);
            }
        }
        let mut body_hash = Vec::new();
        let canonical = Canonicalization::Relaxed.canonical_body(body, u64::MAX);
        body_hash.extend_from_slice(self.key.hash(canonical).as_ref());
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let ams_unsigned = format!(
            "ARC-Message-Signature: i={i}; a=rsa-sha256; c=relaxed/relaxed; d={}; s={}; t={t};\r\n\th={};\r\n\tbh={};\r\n\tb=",
            self.domain,
            self.selector,
            h.join(":"),
            b64(&body_hash)
        );
        relaxed_field_unterminated(ams_unsigned.as_bytes(), &mut signed);
        let ams = format!("{ams_unsigned}{}\r\n", fold_b(&b64(&self.sign(&signed)?)));

        // ARC-Seal: every set so far, in order, then ours.
        // A failed chain's seal covers its own set only (RFC 8617 5.1.2).
        let mut sealed = Vec::new();
        let earlier = if cv == "fail" { 1..1 } else { 1..i };
        for n in earlier {
            for f in sets.fields_of(n) {
                relaxed_field(&message[f.bytes.clone()], &mut sealed);
            }
        }
        relaxed_field(aar.as_bytes(), &mut sealed);
        relaxed_field(ams.as_bytes(), &mut sealed);
        let as_unsigned = format!(
            "ARC-Seal: i={i}; a=rsa-sha256; t={t}; cv={cv};\r\n\td={}; s={};\r\n\tb=",
            self.domain, self.selector
        );
        relaxed_field_unterminated(as_unsigned.as_bytes(), &mut sealed);
        let seal = format!("{as_unsigned}{}\r\n", fold_b(&b64(&self.sign(&sealed)?)));
        Ok(Some(format!("{seal}{ams}{aar}")))
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DkimError> {
        self.key.sign(data).map_err(|e| DkimError::Sign {
            name: "arc_sealing_key".to_string(),
            reason: e.to_string(),
        })
    }
}

/// The body: after the empty line that ends the header section.
fn body_of(message: &[u8], header_end: usize) -> &[u8] {
    let rest = &message[header_end.min(message.len())..];
    // A header section ended by a line that is no field: that line is
    // the body's first, as verifiers read it.
    rest.strip_prefix(b"\r\n")
        .or_else(|| rest.strip_prefix(b"\n"))
        .unwrap_or(rest)
}

/// The result of `method` in an Authentication-Results value
/// (`arc=pass`): the last resinfo of that method, found by splitting at
/// the `;` outside quoted strings and comments, so that a value taken
/// from the client (a quoted HELO name holding `; arc=pass`) cannot pose
/// as a result.
fn result_of<'a>(results: &'a str, method: &str) -> Option<&'a str> {
    resinfos(results)
        .into_iter()
        .skip(1)
        .rev()
        .find_map(|resinfo| {
            let (m, rest) = resinfo.trim().split_once('=')?;
            m.trim().eq_ignore_ascii_case(method).then(|| {
                rest.trim_start()
                    .split(|c: char| c.is_whitespace() || c == '(')
                    .next()
                    .unwrap_or("")
            })
        })
}

/// An Authentication-Results value split at the `;` that separate its
/// parts (RFC 8601 2.2), not those inside quoted strings or comments.
fn resinfos(value: &str) -> Vec<&str> {
    let (mut parts, mut start) = (Vec::new(), 0);
    let (mut quoted, mut depth, mut escaped) = (false, 0usize, false);
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            ';' if !quoted && depth == 0 => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

/// The ARC sets a message carries: the state of each seal, and every
/// ARC field with its instance and its place in a set.
struct ArcSets<'f> {
    seals: Vec<Seal>,
    /// (i=, rank, field); rank is the order the seal covers a set in:
    /// results, message signature, seal (RFC 8617 5.1.1).
    fields: Vec<(usize, u8, &'f Field)>,
}

struct Seal {
    cv_fail: bool,
}

impl<'f> ArcSets<'f> {
    fn of(message: &[u8], fields: &'f [Field]) -> ArcSets<'f> {
        let mut seals = Vec::new();
        let mut arc_fields = Vec::new();
        for f in fields {
            let name = &message[f.name.clone()];
            let rank = [
                "ARC-Authentication-Results",
                "ARC-Message-Signature",
                "ARC-Seal",
            ]
            .iter()
            .position(|n| name.eq_ignore_ascii_case(n.as_bytes()));
            let Some(rank) = rank else {
                continue;
            };
            let value = String::from_utf8_lossy(&message[f.name.end..f.bytes.end]);
            let i = tag(&value, "i")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            arc_fields.push((i, rank as u8, f));
            if rank == 2 {
                seals.push(Seal {
                    cv_fail: tag(&value, "cv").is_some_and(|v| v.eq_ignore_ascii_case("fail")),
                });
            }
        }
        arc_fields.sort_by_key(|(i, rank, _)| (*i, *rank));
        ArcSets {
            seals,
            fields: arc_fields,
        }
    }

    /// Set `n`'s fields in the order the seal covers them.
    fn fields_of(&self, n: usize) -> impl Iterator<Item = &'f Field> + '_ {
        self.fields
            .iter()
            .filter(move |(i, _, _)| *i == n)
            .map(|(_, _, f)| *f)
    }
}

/// A tag's value in a `tag=value; ...` list, trimmed.
fn tag<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.trim_start_matches(':').split(';').find_map(|t| {
        let (k, v) = t.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A field in relaxed canonical form (RFC 6376 3.4.2), with CRLF.
fn relaxed_field(field: &[u8], out: &mut Vec<u8>) {
    relaxed_field_unterminated(field, out);
    out.extend_from_slice(b"\r\n");
}

/// The same, without the line end (the signature's own field).
fn relaxed_field_unterminated(field: &[u8], out: &mut Vec<u8>) {
    let colon = field.iter().position(|&b| b == b':').unwrap_or(field.len());
    let name = &field[..colon];
    let name_end = name
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    out.extend(name[..name_end].iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let value = field.get(colon + 1..).unwrap_or(b"");
    let mut pending_space = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = started,
            _ => {
                if pending_space {
                    out.push(b' ');
                    pending_space = false;
                }
                out.push(b);
                started = true;
            }
        }
    }
}

/// A base64 signature folded into lines of 72 characters.
fn fold_b(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 36);
    for (n, chunk) in b64.as_bytes().chunks(72).enumerate() {
        if n > 0 {
            out.push_str("\r\n\t ");
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
    }
    out
}

/// The start-up check of `arc_sealing_key` in `[main]` and every service.
pub fn check_config(config: &postern_config::Config) -> Result<(), postern_config::ConfigError> {
    config.check_each_service(|params| {
        ArcSealer::from_params(params)
            .map(drop)
            .map_err(|e| ("arc_sealing_key".to_string(), e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonicalizes_relaxed() {
        let mut out = Vec::new();
        relaxed_field(b"Subject :  Hello \r\n\t  World  \r\n", &mut out);
        assert_eq!(out, b"subject:Hello World\r\n");
    }

    #[test]
    fn a_quoted_value_cannot_pose_as_a_result() {
        let r = "mx.test;\r\n\tspf=none smtp.helo=\"x; arc=pass y\";\r\n\t\
                 dkim=none (a; arc=pass comment);\r\n\tarc=fail";
        assert_eq!(result_of(r, "arc"), Some("fail"));
        assert_eq!(resinfos(r).len(), 4);
        assert_eq!(body_of(b"A: 1\r\nnot a field\r\n", 6), b"not a field\r\n");
    }

    #[test]
    fn reads_results_and_tags() {
        let r = "mx.test;\r\n\tspf=pass smtp.mailfrom=a@b;\r\n\tarc=fail (chain)";
        assert_eq!(result_of(r, "arc"), Some("fail"));
        assert_eq!(result_of(r, "spf"), Some("pass"));
        assert_eq!(result_of(r, "dkim"), None);
        assert_eq!(tag(": i=2; a=rsa-sha256; cv=Pass", "cv"), Some("Pass"));
        assert_eq!(tag(": i=2; cv=pass", "i"), Some("2"));
    }
}
