//! The session-ticket keys: a current key that seals new tickets and the
//! previous one, kept so tickets sealed just before a rotation still open
//! for a whole lifetime.
//!
//! Rotation is done when a request finds the deadline passed, not by a
//! timer: the answer is then always fresh, and an idle tlsmgr does no work.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postern_ipc::tlsmgr::TicketKey;
use postern_tls::tickets::generate_key;

/// Bounds on `smtpd_tls_session_cache_timeout` as a key lifetime: Postfix
/// caps it at 100 days; below a second rotation would outrun the clients.
const MIN_LIFETIME: Duration = Duration::from_secs(1);
const MAX_LIFETIME: Duration = Duration::from_secs(100 * 86_400);

#[derive(Debug)]
pub struct KeyRing {
    current: TicketKey,
    previous: Option<TicketKey>,
    next_rotation: SystemTime,
}

impl KeyRing {
    /// A ring with one fresh key, created `now`.
    pub fn new(now: SystemTime, lifetime: Duration) -> anyhow::Result<KeyRing> {
        let lifetime = clamp(lifetime);
        Ok(KeyRing {
            current: make_key(now, lifetime)?,
            previous: None,
            next_rotation: now + lifetime,
        })
    }

    /// The keys in force at `now`, newest first, and the next rotation;
    /// rotates first if its time has come. `lifetime` is read each time so
    /// a reload changes the next rotation.
    pub fn keys(
        &mut self,
        now: SystemTime,
        lifetime: Duration,
    ) -> anyhow::Result<(Vec<TicketKey>, i64)> {
        let lifetime = clamp(lifetime);
        if now >= self.next_rotation {
            let new = make_key(now, lifetime)?;
            tracing::debug!("new session ticket key {}", hex(&new.name));
            self.previous = Some(std::mem::replace(&mut self.current, new));
            self.next_rotation = now + lifetime;
        }
        let now_unix = unix(now);
        let mut keys = vec![self.current.clone()];
        keys.extend(
            self.previous
                .iter()
                .filter(|k| k.expires_unix >= now_unix)
                .cloned(),
        );
        // Round up, so a client asking at this second finds the new key.
        let next = unix(self.next_rotation)
            + i64::from(
                self.next_rotation
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos())
                    > 0,
            );
        Ok((keys, next))
    }
}

/// A key that seals for one lifetime and opens for two: a ticket sealed
/// just before the next rotation is still good a full lifetime later.
fn make_key(now: SystemTime, lifetime: Duration) -> anyhow::Result<TicketKey> {
    let created = unix(now);
    let expires = created + 2 * lifetime.as_secs() as i64 + 1;
    Ok(generate_key(created, expires)?)
}

fn clamp(lifetime: Duration) -> Duration {
    lifetime.clamp(MIN_LIFETIME, MAX_LIFETIME)
}

pub fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_and_keeps_the_previous_key() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let life = Duration::from_secs(3600);
        let mut ring = KeyRing::new(t0, life).unwrap();
        let (k1, next) = ring.keys(t0, life).unwrap();
        assert_eq!(k1.len(), 1);
        assert_eq!(next, 1_700_003_600);
        let (same, _) = ring.keys(t0 + Duration::from_secs(3599), life).unwrap();
        assert_eq!(same, k1);
        let (k2, next) = ring.keys(t0 + Duration::from_secs(3600), life).unwrap();
        assert_eq!(k2.len(), 2);
        assert_ne!(k2[0].name, k1[0].name);
        assert_eq!(k2[1], k1[0]);
        assert_eq!(next, 1_700_007_200);
        // Long idle: the old previous key has expired and is not offered.
        let (k3, _) = ring.keys(t0 + Duration::from_secs(100_000), life).unwrap();
        assert_eq!(k3.len(), 1);
        assert_ne!(k3[0].name, k2[0].name);
    }
}
