//! SMTP AUTH (RFC 4954) towards servers that want it, as Postfix's
//! smtp_sasl_glue.c with `smtp_sasl_auth_enable = yes`: a relayhost or
//! smarthost that requires a login before it relays.
//!
//! Credentials come from `smtp_sasl_password_maps` (`key user:password`).
//! The keys tried, first match wins: for a `[host]:port` next hop
//! `[host]:port` then `[host]`; then the name of the host connected to
//! (MX or relay host); then the next-hop domain (`domain:port`, then
//! `domain`). No entry: the session goes on without AUTH, like two
//! strangers. An entry: authentication is taken to be required, and its
//! failure defers the mail (`SASL authentication failed; server X said:
//! 535 ...`, a 5xx turned 4xx as with Postfix's default
//! `smtp_sasl_auth_soft_bounce = yes`).
//!
//! Mechanisms: PLAIN, else LOGIN, among those the server offers and
//! `smtp_sasl_mechanism_filter` allows. Both send the password as it is,
//! so `noplaintext` in the security options (Postfix's default
//! `smtp_sasl_security_options = noplaintext, noanonymous`) forbids them on
//! a connection without TLS. Over TLS `smtp_sasl_tls_security_options`
//! applies; its default (`noanonymous`) allows them, since TLS protects the
//! password (Postfix's default applies `noplaintext` there too and refuses).

use postern_config::Params;
use postern_config::table::Maps;
use postern_envelope::EnhancedStatus;
use postern_smtp::Capabilities;

use crate::nexthop::Nexthop;
use crate::outcome::{Outcome, one_line, reply_dsn};
use crate::session::{Session, Stage};
use crate::settings::Settings;

/// What `smtp_sasl_*` asks for.
#[derive(Debug, Clone)]
pub struct SaslSettings {
    pub enabled: bool,
    /// The password tables, or why they could not be opened.
    pub maps: Result<Maps, String>,
    /// The smtp_sasl_password_maps they were opened from, if any.
    maps_spec: Option<String>,
    /// `smtp_sasl_mechanism_filter` (uppercased); empty: any.
    pub filter: Vec<String>,
    /// PLAIN and LOGIN allowed without TLS (`smtp_sasl_security_options`
    /// without `noplaintext`).
    pub plaintext_ok: bool,
    /// PLAIN and LOGIN allowed over TLS.
    pub plaintext_ok_tls: bool,
}

impl SaslSettings {
    /// From the parameters; the tables of `previous` are kept when
    /// smtp_sasl_password_maps is the same (they re-read their files when
    /// these change).
    pub fn from_params(p: &Params, previous: Option<&SaslSettings>) -> SaslSettings {
        let spec = p.get("smtp_sasl_password_maps");
        let enabled = p.bool("smtp_sasl_auth_enable");
        let no_plaintext = |name: &str| {
            p.list(name)
                .iter()
                .any(|o| o.eq_ignore_ascii_case("noplaintext"))
        };
        SaslSettings {
            enabled,
            maps: match previous {
                Some(previous) if enabled && previous.maps_spec.as_ref() == Some(&spec) => {
                    previous.maps.clone()
                }
                _ if enabled => p.maps("smtp_sasl_password_maps").map_err(|e| {
                    tracing::error!("smtp_sasl_password_maps: {e}");
                    e.to_string()
                }),
                _ => Ok(Maps::default()),
            },
            maps_spec: enabled.then_some(spec),
            filter: p
                .list("smtp_sasl_mechanism_filter")
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect(),
            plaintext_ok: !no_plaintext("smtp_sasl_security_options"),
            plaintext_ok_tls: !no_plaintext("smtp_sasl_tls_security_options"),
        }
    }
}

/// A user name and password for one server.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print a password, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({})", self.user)
    }
}

/// The keys to look up, best first (see the module doc).
pub fn lookup_keys(hop: &Nexthop, host: &str) -> Vec<String> {
    let mut keys = Vec::new();
    if !hop.mx {
        keys.push(format!("[{}]:{}", hop.name, hop.port));
        keys.push(format!("[{}]", hop.name));
    }
    keys.push(host.trim_end_matches('.').to_ascii_lowercase());
    if hop.mx {
        keys.push(format!("{}:{}", hop.name, hop.port));
        keys.push(hop.name.clone());
    }
    keys.dedup();
    keys
}

/// The credentials for `host` reached through `hop`, when AUTH is on and
/// the tables have an entry; a table that cannot be read defers.
pub fn credentials(
    s: &Settings,
    hop: &Nexthop,
    host: &str,
) -> Result<Option<Credentials>, Outcome> {
    if !s.sasl.enabled {
        return Ok(None);
    }
    let trouble = |e: String| {
        Outcome::deferred(
            EnhancedStatus::of(4, 3, 0),
            format!("SASL password lookup failed: smtp_sasl_password_maps: {e}"),
        )
    };
    let maps = s.sasl.maps.as_ref().map_err(|e| trouble(e.clone()))?;
    for key in lookup_keys(hop, host) {
        if let Some(v) = maps.lookup(&key).map_err(|e| trouble(e.to_string()))? {
            let v = v.trim();
            let (user, password) = v.split_once(':').unwrap_or((v, ""));
            return Ok(Some(Credentials {
                user: user.to_string(),
                password: password.to_string(),
            }));
        }
    }
    Ok(None)
}

/// The mechanism to use: PLAIN, else LOGIN, if offered, allowed by the
/// filter, and allowed on this kind of connection.
pub fn choose(s: &Settings, caps: &Capabilities, tls: bool) -> Option<&'static str> {
    let plaintext_ok = if tls {
        s.sasl.plaintext_ok_tls
    } else {
        s.sasl.plaintext_ok
    };
    if !plaintext_ok {
        return None;
    }
    ["PLAIN", "LOGIN"].into_iter().find(|m| {
        caps.has_auth(m) && (s.sasl.filter.is_empty() || s.sasl.filter.iter().any(|f| f == m))
    })
}

/// Logs in on `sess`. Every failure defers: a wrong password today may be
/// fixed tomorrow, and the next MX host may know the user.
pub async fn authenticate(
    sess: &mut Session,
    s: &Settings,
    caps: &Capabilities,
    creds: &Credentials,
) -> Result<(), Outcome> {
    let namaddr = sess.target.namaddr();
    let Some(mech) = choose(s, caps, sess.is_tls()) else {
        return Err(Outcome::deferred(
            EnhancedStatus::of(4, 7, 0),
            format!(
                "SASL authentication failed: server {namaddr} offered no compatible \
                 authentication mechanisms for this type of connection security"
            ),
        ));
    };
    let t = s.helo_timeout;
    // What to send for each 334 challenge, in order.
    let (first, mut responses) = match mech {
        "PLAIN" => {
            let token = format!("\0{}\0{}", creds.user, creds.password);
            (format!("AUTH PLAIN {}", base64(token.as_bytes())), vec![])
        }
        _ => (
            "AUTH LOGIN".to_string(),
            vec![
                base64(creds.user.as_bytes()),
                base64(creds.password.as_bytes()),
            ],
        ),
    };
    responses.reverse();
    let mut reply = sess.command(&first, t, Stage::Auth).await?;
    while reply.is_intermediate() {
        let Some(answer) = responses.pop() else {
            // More challenges than the mechanism has answers: cancel.
            let _ = sess.command("*", t, Stage::Auth).await?;
            return Err(Outcome::deferred(
                EnhancedStatus::of(4, 7, 0),
                format!(
                    "SASL authentication failed; cannot authenticate to server {namaddr}: \
                     unexpected challenge"
                ),
            ));
        };
        reply = sess.command(&answer, t, Stage::Auth).await?;
    }
    if reply.is_positive() {
        tracing::debug!("{namaddr}: SASL {mech} authentication as {}", creds.user);
        return Ok(());
    }
    // smtp_sasl_auth_soft_bounce: a 5xx is deferred as a 4xx, with the
    // server's detail code kept (`535 5.7.8` becomes 4.7.8).
    let dsn = match reply.enhanced() {
        Some(_) => reply_dsn(&reply).temporary(),
        None => EnhancedStatus::of(4, 7, 0),
    };
    Err(Outcome {
        reply: Some(one_line(&reply)),
        ..Outcome::deferred(
            dsn,
            format!(
                "SASL authentication failed; server {namaddr} said: {}",
                one_line(&reply)
            ),
        )
    })
}

/// RFC 4648 base64 with padding, as AUTH wants it.
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nexthop;

    #[test]
    fn base64_rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), coded);
        }
        assert_eq!(base64(b"\0user\0pw"), "AHVzZXIAcHc=");
    }

    #[test]
    fn keys_in_postfix_order() {
        let hop = nexthop::parse("[Smtp.ISP.test]:587", "").unwrap();
        assert_eq!(
            lookup_keys(&hop, "smtp.isp.test"),
            ["[smtp.isp.test]:587", "[smtp.isp.test]", "smtp.isp.test"]
        );
        let hop = nexthop::parse("example.com", "").unwrap();
        assert_eq!(
            lookup_keys(&hop, "mx1.example.com."),
            ["mx1.example.com", "example.com:25", "example.com"]
        );
    }
}
