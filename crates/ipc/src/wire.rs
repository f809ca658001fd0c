//! The body encoding: the only place that knows about bincode.
//!
//! bincode carries an "unmaintained" advisory (RUSTSEC-2025-0141), so it is
//! confined here; swapping it means rewriting these few functions and the
//! golden-bytes test, nothing else.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{IpcError, MAX_FRAME};

/// bincode 2 `standard()` (little-endian, varint integers). The decode limit
/// bounds how much a hostile length field can make the decoder allocate: a
/// body is never larger than a frame, so nothing legitimate needs more.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Appends the encoding of `msg` to `out`, returning the number of bytes added.
pub(crate) fn encode_into<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<usize, IpcError> {
    bincode::serde::encode_into_std_write(msg, out, config())
        .map_err(|e| IpcError::Encode(e.to_string()))
}

/// Decodes exactly one message that must fill `body` completely.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, IpcError> {
    let (msg, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| IpcError::Decode(e.to_string()))?;
    // Leftover bytes mean the peer's idea of the type differs from ours;
    // accepting a prefix would hide version skew.
    if used != body.len() {
        return Err(IpcError::Decode(format!(
            "{} trailing bytes after message",
            body.len() - used
        )));
    }
    Ok(msg)
}
