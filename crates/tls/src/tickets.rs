//! Session tickets that every smtpd process can open: [`TicketKeys`] holds
//! the keys tlsmgr hands out and is rustls' [`ProducesTickets`].
//!
//! A ticket is `name ‖ nonce ‖ ChaCha20-Poly1305(state) ‖ tag`: the
//! 16-byte name says which key sealed it (the name is also the AEAD's
//! associated data, so a ticket cannot be moved to another key), the 12-byte
//! nonce is random per ticket. The newest key seals; every key whose
//! `expires_unix` has not passed opens. tlsmgr makes a new key every
//! `smtpd_tls_session_cache_timeout` and keeps the previous one, so a ticket
//! stays usable for at least that long, with any process and across smtpd
//! restarts. Keys live only in memory (tlsmgr's and smtpd's): a tlsmgr
//! restart costs each client one full handshake.

use std::sync::RwLock;

use postern_ipc::tlsmgr::{TICKET_KEY_LEN, TICKET_KEY_NAME_LEN, TicketKey};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;

use crate::TlsError;

const TAG_LEN: usize = 16;
/// RFC 8446 section 4.6.1: a ticket_lifetime above 7 days is invalid.
const MAX_TICKET_LIFETIME: u32 = 7 * 86_400;

/// The shared ticket key ring; clone the `Arc` into every `ServerConfig`.
pub struct TicketKeys {
    /// Newest first.
    keys: RwLock<Vec<OpenKey>>,
    /// Advertised ticket lifetime in seconds (the key rotation interval).
    lifetime: u32,
    rng: SystemRandom,
}

struct OpenKey {
    name: [u8; TICKET_KEY_NAME_LEN],
    aead: LessSafeKey,
    created_unix: i64,
    expires_unix: i64,
}

impl std::fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .keys
            .read()
            .map(|k| k.iter().map(|k| hex(&k.name)).collect())
            .unwrap_or_default();
        f.debug_struct("TicketKeys")
            .field("names", &names)
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

impl TicketKeys {
    /// An empty ring: no tickets are issued until [`install`](Self::install).
    /// `lifetime_secs` (smtpd_tls_session_cache_timeout) is what clients are
    /// told a ticket lives, at most the 7 days RFC 8446 allows.
    pub fn new(lifetime_secs: u32) -> TicketKeys {
        TicketKeys {
            keys: RwLock::new(Vec::new()),
            lifetime: lifetime_secs.clamp(1, MAX_TICKET_LIFETIME),
            rng: SystemRandom::new(),
        }
    }

    /// Replaces the ring with `keys` (any order; the newest by
    /// `created_unix` seals). Refuses keys of the wrong size.
    pub fn install(&self, keys: &[TicketKey]) -> Result<(), TlsError> {
        let mut ring = keys
            .iter()
            .map(|k| {
                let name: [u8; TICKET_KEY_NAME_LEN] =
                    k.name.as_slice().try_into().map_err(|_| {
                        TlsError::TicketKey(format!(
                            "name of {} bytes, want {TICKET_KEY_NAME_LEN}",
                            k.name.len()
                        ))
                    })?;
                if k.key.len() != TICKET_KEY_LEN {
                    return Err(TlsError::TicketKey(format!(
                        "key {} of {} bytes, want {TICKET_KEY_LEN}",
                        hex(&name),
                        k.key.len()
                    )));
                }
                let unbound = UnboundKey::new(&CHACHA20_POLY1305, &k.key)
                    .map_err(|_| TlsError::TicketKey(format!("key {} rejected", hex(&name))))?;
                Ok(OpenKey {
                    name,
                    aead: LessSafeKey::new(unbound),
                    created_unix: k.created_unix,
                    expires_unix: k.expires_unix,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        ring.sort_by_key(|k| std::cmp::Reverse(k.created_unix));
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = ring;
        Ok(())
    }

    /// The name of the key that seals new tickets, if any.
    pub fn current_name(&self) -> Option<[u8; TICKET_KEY_NAME_LEN]> {
        self.read().first().map(|k| k.name)
    }

    /// How many keys the ring holds.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<OpenKey>> {
        // A panic elsewhere while holding the lock cannot leave the Vec
        // half-written (install swaps it whole), so the data is still good.
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// A new random key valid from `created_unix` until `expires_unix`, from the
/// operating system's generator (tlsmgr's job; tests use it too).
pub fn generate_key(created_unix: i64, expires_unix: i64) -> Result<TicketKey, TlsError> {
    let rng = SystemRandom::new();
    let mut name = vec![0u8; TICKET_KEY_NAME_LEN];
    let mut key = vec![0u8; TICKET_KEY_LEN];
    rng.fill(&mut name)
        .and_then(|()| rng.fill(&mut key))
        .map_err(|_| TlsError::TicketKey("the system random generator failed".into()))?;
    Ok(TicketKey {
        name,
        key,
        created_unix,
        expires_unix,
    })
}

impl ProducesTickets for TicketKeys {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    /// None (no ticket sent) while no key is installed or the newest key has
    /// expired, e.g. while tlsmgr is unreachable for a long time.
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let keys = self.read();
        let key = keys.first()?;
        if key.expires_unix < crate::now_unix() {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(TICKET_KEY_NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&key.name);
        out.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        key.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&key.name),
                &mut sealed,
            )
            .ok()?;
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// Attacker-controlled input: every length is checked before slicing,
    /// and the AEAD decides authenticity.
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < TICKET_KEY_NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = cipher.split_at(TICKET_KEY_NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = self.read();
        let now = crate::now_unix();
        let key = keys
            .iter()
            .find(|k| k.name.as_slice() == name && k.expires_unix >= now)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = sealed.to_vec();
        let plain = key
            .aead
            .open_in_place(nonce, Aad::from(&key.name), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[TicketKey]) -> TicketKeys {
        let t = TicketKeys::new(3600);
        t.install(keys).unwrap();
        t
    }

    #[test]
    fn seal_and_open_across_rings() {
        let now = crate::now_unix();
        let old = generate_key(now - 10, now + 3600).unwrap();
        let new = generate_key(now, now + 7200).unwrap();
        let a = ring(&[old.clone(), new.clone()]);
        let b = ring(&[new.clone(), old.clone()]);
        assert_eq!(a.current_name().unwrap().as_slice(), new.name.as_slice());
        let t = a.encrypt(b"state").unwrap();
        assert_eq!(&t[..16], new.name.as_slice());
        assert_eq!(b.decrypt(&t).unwrap(), b"state");
        // A ticket under the previous key still opens.
        let only_old = ring(std::slice::from_ref(&old));
        let t_old = only_old.encrypt(b"older").unwrap();
        assert_eq!(b.decrypt(&t_old).unwrap(), b"older");
        // Unknown key, tampering, truncation: refused, no panic.
        let stranger = ring(&[generate_key(now, now + 60).unwrap()]);
        assert!(stranger.decrypt(&t).is_none());
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(b.decrypt(&bad).is_none());
        for n in 0..t.len() {
            assert!(b.decrypt(&t[..n]).is_none());
        }
    }

    #[test]
    fn expired_and_missing_keys() {
        let now = crate::now_unix();
        let empty = TicketKeys::new(60);
        assert!(empty.is_empty() && empty.encrypt(b"x").is_none());
        let k = generate_key(now - 100, now + 100).unwrap();
        let t = ring(std::slice::from_ref(&k)).encrypt(b"x").unwrap();
        let mut expired = k.clone();
        expired.expires_unix = now - 1;
        let r = ring(&[expired]);
        assert!(r.decrypt(&t).is_none());
        assert!(r.encrypt(b"x").is_none());
        let mut short = k;
        short.key.pop();
        assert!(TicketKeys::new(1).install(&[short]).is_err());
    }
}
