//! Queue IDs: 12 uppercase hex digits, sortable by arrival.

use serde::{Deserialize, Serialize};

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// 2020-01-01T00:00:00Z; IDs count 10 µs ticks from here, so 48 bits (12
/// hex digits) last until 2109 and every ID has the same width, which keeps
/// string order equal to numeric order (= arrival order).
const EPOCH_UNIX: u64 = 1_577_836_800;
const TICKS_PER_SEC: u64 = 100_000;
const MAX_ID: u64 = (1 << 48) - 1;

/// A queue ID as it appears in the mail log (`postern/qmgr[..]: 0AC3F29B1E47: ...`).
/// On the wire it is its number; a number out of range does not decode.
/// The default is the zero ID, which no [`IdGen`] hands out.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct QueueId(u64);

impl QueueId {
    /// The raw value (also the big-endian storage key).
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Builds an ID from its raw value; `None` if it is out of range.
    pub fn from_u64(v: u64) -> Option<QueueId> {
        (v <= MAX_ID).then_some(QueueId(v))
    }

    /// The big-endian storage key.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// The ID at the start of a storage key.
    pub fn from_slice(b: &[u8]) -> Option<QueueId> {
        let arr: [u8; 8] = b.get(..8)?.try_into().ok()?;
        QueueId::from_u64(u64::from_be_bytes(arr))
    }
}

impl From<QueueId> for u64 {
    fn from(id: QueueId) -> u64 {
        id.0
    }
}

impl TryFrom<u64> for QueueId {
    type Error = ParseQueueIdError;
    fn try_from(v: u64) -> Result<QueueId, ParseQueueIdError> {
        QueueId::from_u64(v).ok_or_else(|| ParseQueueIdError(format!("{v:#x}")))
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:012X}", self.0)
    }
}

/// Compares with the textual form, as a person retyping a logged ID would.
impl PartialEq<&str> for QueueId {
    fn eq(&self, other: &&str) -> bool {
        other.parse::<QueueId>().is_ok_and(|o| o == *self)
    }
}

impl PartialEq<String> for QueueId {
    fn eq(&self, other: &String) -> bool {
        self == &other.as_str()
    }
}

/// Why a string is not a queue ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a queue ID: {0:?} (expected 1-12 hex digits)")]
pub struct ParseQueueIdError(pub String);

impl FromStr for QueueId {
    type Err = ParseQueueIdError;
    /// Case-insensitive, since people retype IDs from logs.
    fn from_str(s: &str) -> Result<QueueId, ParseQueueIdError> {
        let err = || ParseQueueIdError(s.to_string());
        if s.is_empty() || s.len() > 12 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let v = u64::from_str_radix(s, 16).map_err(|_| err())?;
        QueueId::from_u64(v).ok_or_else(err)
    }
}

/// Hands out strictly increasing IDs: the current tick, or last+1 when
/// several arrive within one tick (a logical clock, so no counter bits are
/// needed and a burst merely borrows ticks from the near future).
#[derive(Debug, Default)]
pub struct IdGen {
    last: AtomicU64,
}

impl IdGen {
    pub fn new() -> IdGen {
        IdGen::default()
    }

    /// Never hand out an ID at or below `id` (the highest found on disk), so
    /// a restart with a clock that went backwards cannot collide.
    pub fn raise_floor(&self, id: QueueId) {
        self.last.fetch_max(id.0, Ordering::SeqCst);
    }

    pub fn next(&self) -> QueueId {
        let now = now_ticks();
        let mut cur = self.last.load(Ordering::SeqCst);
        loop {
            let cand = now.max(cur + 1).min(MAX_ID);
            match self
                .last
                .compare_exchange_weak(cur, cand, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return QueueId(cand),
                Err(actual) => cur = actual,
            }
        }
    }
}

fn now_ticks() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs().saturating_sub(EPOCH_UNIX);
    secs * TICKS_PER_SEC + u64::from(d.subsec_micros() / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_increasing_twelve_hex_and_round_trip() {
        let g = IdGen::new();
        let mut prev = g.next();
        for _ in 0..10_000 {
            let id = g.next();
            assert!(id > prev);
            let s = id.to_string();
            assert_eq!(s.len(), 12);
            let before = prev.to_string();
            assert!(s > before, "string order follows arrival");
            assert!(
                s.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            );
            assert_eq!(s.parse::<QueueId>().unwrap(), id);
            assert_eq!(s.to_lowercase().parse::<QueueId>().unwrap(), id);
            prev = id;
        }
        assert!("".parse::<QueueId>().is_err());
        assert!("XYZ".parse::<QueueId>().is_err());
        assert!("1234567890ABC".parse::<QueueId>().is_err());
    }

    #[test]
    fn floor_is_respected() {
        let g = IdGen::new();
        let high = QueueId::from_u64(MAX_ID - 10).unwrap();
        g.raise_floor(high);
        assert!(g.next() > high);
    }
}
