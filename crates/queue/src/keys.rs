//! Key layout of the single sled tree. Every change to a message is one
//! atomic [`crate::writes::Writes`]. The 1-byte prefixes sort the kinds
//! apart; IDs and numbers are big-endian so sled's order is numeric order.
//!
//! | key                                  | value                        |
//! |--------------------------------------|------------------------------|
//! | `I` id                               | old incoming marker (removed)|
//! | `B` id chunk_no(u32)                 | body chunk (<= CHUNK bytes)  |
//! | `X` id extent_no(u32)                | body extent in a segment     |
//! | `E` id part(u16)                     | encoded Envelope, in parts   |
//! | `S` id                               | encoded MessageMeta          |
//! | `D` due_time(i64, sign-flipped) id   | empty: the due index         |
//! | `W` seq(u64)                         | write intent (see `writes`)  |

use crate::QueueId;
use crate::types::QueueState;

pub(crate) const INCOMING: u8 = b'I';
pub(crate) const BODY: u8 = b'B';
/// A body piece stored in a segment file (see `segments`).
pub(crate) const EXTENT: u8 = b'X';
pub(crate) const ENVELOPE: u8 = b'E';
pub(crate) const STATE: u8 = b'S';
pub(crate) const DUE: u8 = b'D';
pub(crate) const WRITES: u8 = b'W';

pub(crate) fn id_key(prefix: u8, id: QueueId) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(prefix);
    k.extend_from_slice(&id.to_bytes());
    k
}

/// A `B` (inline chunk) or `X` (extent) key.
pub(crate) fn body_key(prefix: u8, id: QueueId, chunk: u32) -> Vec<u8> {
    let mut k = id_key(prefix, id);
    k.extend_from_slice(&chunk.to_be_bytes());
    k
}

/// The chunk number of a `B` or `X` key.
pub(crate) fn chunk_of_key(k: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(k.get(9..13)?.try_into().ok()?))
}

pub(crate) fn envelope_key(id: QueueId, part: u16) -> Vec<u8> {
    let mut k = id_key(ENVELOPE, id);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// Flipping the sign bit makes big-endian byte order match i64 order.
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// The due-index key for a state; hold and corrupt messages are not due.
/// Active messages sort first (time = i64::MIN), in arrival order.
pub(crate) fn due_key(id: QueueId, state: &QueueState) -> Option<Vec<u8>> {
    let t = match state {
        QueueState::Active => i64::MIN,
        QueueState::Deferred { next_try_unix, .. } => *next_try_unix,
        QueueState::Hold | QueueState::Corrupt => return None,
    };
    let mut k = Vec::with_capacity(17);
    k.push(DUE);
    k.extend_from_slice(&time_bytes(t));
    k.extend_from_slice(&id.to_bytes());
    Some(k)
}

/// Exclusive upper bound of the due index for everything due at `now`.
pub(crate) fn due_upper(now: i64) -> Vec<u8> {
    match now.checked_add(1) {
        Some(n) => {
            let mut k = vec![DUE];
            k.extend_from_slice(&time_bytes(n));
            k
        }
        None => vec![DUE + 1],
    }
}

/// The ID inside a `D` key.
pub(crate) fn id_of_due_key(k: &[u8]) -> Option<QueueId> {
    if k.len() != 17 || k[0] != DUE {
        return None;
    }
    QueueId::from_slice(&k[9..])
}

/// The ID inside an `I`/`B`/`E`/`S` key.
pub(crate) fn id_of_key(k: &[u8]) -> Option<QueueId> {
    QueueId::from_slice(k.get(1..)?)
}

/// First key after every key of `id` under `prefix`, for skip-scans.
pub(crate) fn after_id(prefix: u8, id: QueueId) -> Vec<u8> {
    match id.as_u64().checked_add(1) {
        Some(n) => {
            let mut k = vec![prefix];
            k.extend_from_slice(&n.to_be_bytes());
            k
        }
        None => vec![prefix + 1],
    }
}
