//! SMTP AUTH (RFC 4954) against Postern's own user table, so no Cyrus or
//! Dovecot is needed: PLAIN and LOGIN, and CRAM-MD5 where the table holds
//! recoverable secrets.
//!
//! `smtpd_sasl_users` names a table of `username hash` lines. A hash is
//! argon2 (`$argon2id$...`), SHA-512 or SHA-256 crypt (`$6$...`, `$5$...`,
//! what `openssl passwd -6` and `mkpasswd -m sha-512` print), or
//! `{plain}secret`. Only `{plain}` entries can answer CRAM-MD5 (the
//! mechanism needs the secret itself), so CRAM-MD5 is offered only when
//! the table has at least one of them.
//!
//! Failed attempts are slowed down per client address, across the
//! sessions of this process: the n-th failure in a row waits
//! `FAILURE_DELAY * 2^(n-1)` (at most `MAX_FAILURE_DELAY`) before its 535.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use postern_config::{Maps, Params};
use postern_smtp::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::queue::Queue;
use crate::session::{IoError, Line, Session, Step, reply};

/// The first failure's delay; each further one in a row doubles it.
const FAILURE_DELAY: Duration = Duration::from_millis(500);
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(10);
/// A client that stopped failing this long ago starts afresh.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);
/// Bound on the addresses remembered.
const MAX_REMEMBERED: usize = 10_000;

/// A mechanism Postern implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    CramMd5,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::CramMd5 => "CRAM-MD5",
        }
    }

    fn parse(name: &str) -> Option<Mechanism> {
        [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }
}

/// Who logged in, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub method: &'static str,
    pub username: String,
}

/// The SASL side of one configuration (`smtpd_sasl_auth_enable = yes`).
#[derive(Debug)]
pub struct Sasl {
    /// `smtpd_sasl_users`, or why it cannot be opened (every AUTH then
    /// gets a temporary failure).
    users: Result<Maps, String>,
    /// Some entry is `{plain}`: CRAM-MD5 can be offered.
    recoverable: bool,
    /// `noplaintext` in smtpd_sasl_security_options (before TLS) and in
    /// smtpd_sasl_tls_security_options (under TLS).
    noplaintext: bool,
    noplaintext_tls: bool,
    /// `smtpd_sasl_local_domain`: the realm of names without one.
    realm: String,
}

/// The outcome of checking one password or response.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Failed,
    /// The table could not be read: try again later.
    Unavailable(String),
}

impl Sasl {
    /// `None` when AUTH is off.
    pub fn from_params(params: &Params) -> Option<Sasl> {
        if !params.bool("smtpd_sasl_auth_enable") {
            return None;
        }
        let has = |name: &str, opt: &str| {
            params
                .list(name)
                .iter()
                .any(|o| o.eq_ignore_ascii_case(opt))
        };
        let users = if params.list("smtpd_sasl_users").is_empty() {
            Err("smtpd_sasl_users is not set".to_string())
        } else {
            params
                .maps("smtpd_sasl_users")
                .map_err(|e| format!("smtpd_sasl_users: {e}"))
        };
        if let Err(e) = &users {
            tracing::error!("SASL authentication: {e}");
        }
        let recoverable = users.as_ref().is_ok_and(has_plain_secrets);
        Some(Sasl {
            users,
            recoverable,
            noplaintext: has("smtpd_sasl_security_options", "noplaintext"),
            noplaintext_tls: has("smtpd_sasl_tls_security_options", "noplaintext"),
            realm: params.get("smtpd_sasl_local_domain"),
        })
    }

    /// The mechanisms offered, in EHLO order.
    pub fn mechanisms(&self, tls: bool) -> Vec<Mechanism> {
        let noplaintext = if tls {
            self.noplaintext_tls
        } else {
            self.noplaintext
        };
        let mut m = Vec::new();
        if !noplaintext {
            m.extend([Mechanism::Plain, Mechanism::Login]);
        }
        if self.recoverable {
            m.push(Mechanism::CramMd5);
        }
        m
    }

    /// The name a client logs in with, in the user table's form (see
    /// [`postern_config::sasl_login_name`]).
    pub fn login_name(&self, user: &str) -> String {
        postern_config::qualify_login(&self.realm, user)
    }

    fn entry(&self, user: &str) -> Result<Option<String>, String> {
        let users = self.users.as_ref().map_err(Clone::clone)?;
        users
            .lookup(&self.login_name(user))
            .map_err(|e| e.to_string())
    }

    /// Checks a password against the user's entry (slow on purpose for
    /// argon2 and crypt: run it off the async threads).
    pub fn verify_password(&self, user: &str, password: &str) -> Verdict {
        match self.entry(user) {
            Err(e) => Verdict::Unavailable(e),
            Ok(None) => Verdict::Failed,
            Ok(Some(hash)) => match check_hash(hash.trim(), password) {
                true => Verdict::Ok,
                false => Verdict::Failed,
            },
        }
    }

    /// Checks a CRAM-MD5 response (`digest` in lowercase hex) to
    /// `challenge`.
    pub fn verify_cram(&self, user: &str, challenge: &str, digest: &str) -> Verdict {
        match self.entry(user) {
            Err(e) => Verdict::Unavailable(e),
            Ok(Some(entry)) => match entry.trim().strip_prefix("{plain}") {
                Some(secret) => {
                    let expected = hex(&hmac_md5(secret.as_bytes(), challenge.as_bytes()));
                    match constant_time_eq(expected.as_bytes(), digest.as_bytes()) {
                        true => Verdict::Ok,
                        false => Verdict::Failed,
                    }
                }
                None => Verdict::Failed,
            },
            Ok(None) => Verdict::Failed,
        }
    }
}

/// True when some table file has a `{plain}` entry.
fn has_plain_secrets(maps: &Maps) -> bool {
    maps.tables().iter().filter_map(|t| t.path()).any(|path| {
        std::fs::read_to_string(path).is_ok_and(|text| {
            text.lines().any(|l| {
                let l = l.trim_start();
                !l.starts_with('#')
                    && l.split_whitespace()
                        .nth(1)
                        .is_some_and(|v| v.starts_with("{plain}"))
            })
        })
    })
}

/// Verifies `password` against one stored hash.
pub fn check_hash(hash: &str, password: &str) -> bool {
    use argon2::PasswordVerifier as _;
    if hash.starts_with("$argon2") {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
    } else if hash.starts_with("$6$") || hash.starts_with("$5$") {
        use sha_crypt::PasswordVerifier as _;
        sha_crypt::ShaCrypt::default()
            .verify_password(password.as_bytes(), hash)
            .is_ok()
    } else if let Some(secret) = hash.strip_prefix("{plain}") {
        constant_time_eq(secret.as_bytes(), password.as_bytes())
    } else {
        false
    }
}

fn hmac_md5(key: &[u8], data: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit as _, Mac as _};
    let mut mac =
        hmac::Hmac::<md5::Md5>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Consecutive failures per client address, shared by this process's
/// sessions.
#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

fn failures() -> &'static Mutex<HashMap<IpAddr, Failures>> {
    static FAILURES: OnceLock<Mutex<HashMap<IpAddr, Failures>>> = OnceLock::new();
    FAILURES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Records a failure from `addr`; how long its reply must wait.
pub fn failure_delay(addr: IpAddr) -> Duration {
    let mut map = failures().lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    if map.len() >= MAX_REMEMBERED {
        map.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
    }
    let f = map.entry(addr).or_insert(Failures {
        count: 0,
        last: now,
    });
    if now.duration_since(f.last) >= FAILURE_MEMORY {
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    f.last = now;
    let factor = 1u32 << (f.count - 1).min(16);
    (FAILURE_DELAY * factor).min(MAX_FAILURE_DELAY)
}

/// Forgets `addr`'s failures after a success.
pub fn forget_failures(addr: IpAddr) {
    failures()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&addr);
}

/// Why an exchange ended without a verdict on credentials.
enum Abort {
    /// The client sent `*`.
    Cancelled,
    /// Not base64, or not the mechanism's format.
    Malformed,
    Io(IoError),
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send, Q: Queue> Session<S, Q> {
    /// AUTH: the checks Postfix makes first, then the exchange.
    pub(crate) async fn auth(
        &mut self,
        mechanism: &str,
        initial: Option<String>,
    ) -> Result<Step, IoError> {
        let Some(sasl) = self.settings.sasl.clone() else {
            return Ok(self.refuse("503 5.5.1 Error: authentication not enabled"));
        };
        if self.helo_missing() {
            return Ok(self.refuse("503 5.5.1 Error: send HELO/EHLO first"));
        }
        if self.settings.tls_auth_only && self.tls.is_none() {
            // RFC 4954 section 4.
            return Ok(self
                .refuse("538 5.7.11 Encryption required for requested authentication mechanism"));
        }
        if self.sasl.is_some() {
            return Ok(self.refuse("503 5.5.1 Error: already authenticated"));
        }
        if self.tx.is_some() {
            return Ok(self.refuse("503 5.5.1 Error: MAIL transaction in progress"));
        }
        let offered = sasl.mechanisms(self.tls.is_some());
        let Some(mech) = Mechanism::parse(mechanism).filter(|m| offered.contains(m)) else {
            return Ok(self.refuse("504 5.5.4 Unrecognized authentication type"));
        };
        let exchange = match mech {
            Mechanism::Plain => self.exchange_plain(&sasl, initial).await,
            Mechanism::Login => self.exchange_login(&sasl, initial).await,
            Mechanism::CramMd5 => self.exchange_cram(&sasl, initial).await,
        };
        let (user, verdict) = match exchange {
            Ok(done) => done,
            Err(Abort::Io(e)) => return Err(e),
            Err(Abort::Cancelled) => {
                return Ok(self.refuse("501 5.7.0 Authentication aborted"));
            }
            Err(Abort::Malformed) => (String::new(), Verdict::Failed),
        };
        match verdict {
            Verdict::Ok => {
                forget_failures(self.client.addr);
                self.sasl = Some(Login {
                    method: mech.name(),
                    username: sasl.login_name(&user),
                });
                self.io.reply(&reply("235 2.7.0 Authentication successful"));
                Ok(Step::Ok)
            }
            Verdict::Unavailable(e) => {
                tracing::warn!(
                    "{}: SASL {} authentication: {e}",
                    self.client.namaddr(),
                    mech.name()
                );
                Ok(self.refuse("454 4.7.0 Temporary authentication failure"))
            }
            Verdict::Failed => {
                let delay = failure_delay(self.client.addr);
                let who = match user.is_empty() {
                    true => String::new(),
                    false => format!(", sasl_username={user}"),
                };
                tracing::warn!(
                    "{}: SASL {} authentication failed: authentication failure{who}",
                    self.client.namaddr(),
                    mech.name()
                );
                // Password guessing gets slower with each miss.
                tokio::time::sleep(delay).await;
                Ok(self.refuse("535 5.7.8 Error: authentication failed: authentication failure"))
            }
        }
    }

    /// Sends a `334` challenge and decodes the client's answer.
    async fn challenge(&mut self, text: &[u8]) -> Result<Vec<u8>, Abort> {
        self.io.reply(&Reply::new(334, None, &BASE64.encode(text)));
        let limit = self.settings.line_length_limit;
        match self.io.read_line(limit).await.map_err(Abort::Io)? {
            Line::TooLong => Err(Abort::Malformed),
            Line::Text { line, .. } => decode(&line),
        }
    }

    async fn exchange_plain(
        &mut self,
        sasl: &Arc<Sasl>,
        initial: Option<String>,
    ) -> Result<(String, Verdict), Abort> {
        let response = match initial {
            Some(i) => decode(i.as_bytes())?,
            None => self.challenge(b"").await?,
        };
        // authzid NUL authcid NUL password
        let mut parts = response.split(|&b| b == 0);
        let (Some(authz), Some(authc), Some(pass), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Abort::Malformed);
        };
        let (Ok(authz), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(authc),
            std::str::from_utf8(pass),
        ) else {
            return Err(Abort::Malformed);
        };
        // Acting for someone else is not supported.
        if !authz.is_empty() && authz != user {
            return Ok((user.to_string(), Verdict::Failed));
        }
        Ok((user.to_string(), self.verify(sasl, user, pass).await))
    }

    async fn exchange_login(
        &mut self,
        sasl: &Arc<Sasl>,
        initial: Option<String>,
    ) -> Result<(String, Verdict), Abort> {
        let user = match initial {
            Some(i) => decode(i.as_bytes())?,
            None => self.challenge(b"Username:").await?,
        };
        let pass = self.challenge(b"Password:").await?;
        let (Ok(user), Ok(pass)) = (String::from_utf8(user), String::from_utf8(pass)) else {
            return Err(Abort::Malformed);
        };
        let verdict = self.verify(sasl, &user, &pass).await;
        Ok((user, verdict))
    }

    async fn exchange_cram(
        &mut self,
        sasl: &Arc<Sasl>,
        initial: Option<String>,
    ) -> Result<(String, Verdict), Abort> {
        if initial.is_some() {
            // The server speaks first in CRAM-MD5.
            return Err(Abort::Malformed);
        }
        let mut nonce = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| Abort::Malformed)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let challenge = format!(
            "<{}.{now}@{}>",
            u64::from_be_bytes(nonce),
            self.settings.hostname
        );
        let response = self.challenge(challenge.as_bytes()).await?;
        let response = String::from_utf8(response).map_err(|_| Abort::Malformed)?;
        let (user, digest) = response.rsplit_once(' ').ok_or(Abort::Malformed)?;
        Ok((
            user.to_string(),
            sasl.verify_cram(user, &challenge, &digest.to_ascii_lowercase()),
        ))
    }

    async fn verify(&self, sasl: &Arc<Sasl>, user: &str, pass: &str) -> Verdict {
        let (sasl, user, pass) = (sasl.clone(), user.to_string(), pass.to_string());
        tokio::task::spawn_blocking(move || sasl.verify_password(&user, &pass))
            .await
            .unwrap_or_else(|e| Verdict::Unavailable(e.to_string()))
    }
}

/// A client's base64 line; `*` cancels, `=` is the empty response.
fn decode(line: &[u8]) -> Result<Vec<u8>, Abort> {
    let line = line.trim_ascii();
    match line {
        b"*" => Err(Abort::Cancelled),
        b"=" => Ok(Vec::new()),
        _ => BASE64.decode(line).map_err(|_| Abort::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        // `openssl passwd -6 -salt saltsalt secret`
        let sha512 = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
        assert!(check_hash(sha512, "secret"));
        assert!(!check_hash(sha512, "Secret"));
        use argon2::PasswordHasher as _;
        let argon = argon2::Argon2::default()
            .hash_password(b"pw")
            .unwrap()
            .to_string();
        assert!(argon.starts_with("$argon2id$"));
        assert!(check_hash(&argon, "pw"));
        assert!(!check_hash(&argon, "px"));
        assert!(check_hash("{plain}x y", "x y"));
        assert!(!check_hash("garbage", "garbage"));
    }

    #[test]
    fn cram_md5_matches_rfc_2195() {
        let digest = hex(&hmac_md5(
            b"tanstaaftanstaaf",
            b"<1896.697170952@postoffice.reston.mci.net>",
        ));
        assert_eq!(digest, "b913a602c7eda7a495b4e6e7334d3890");
    }

    #[test]
    fn failures_slow_down_and_are_forgotten() {
        let addr: IpAddr = "192.0.2.77".parse().unwrap();
        let first = failure_delay(addr);
        let second = failure_delay(addr);
        assert_eq!(first, FAILURE_DELAY);
        assert_eq!(second, FAILURE_DELAY * 2);
        forget_failures(addr);
        assert_eq!(failure_delay(addr), FAILURE_DELAY);
    }
}
