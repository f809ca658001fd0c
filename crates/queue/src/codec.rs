//! The one place that knows stored records are bincode (so the encoding can
//! be swapped): a version byte, then bincode 2 `standard()` with an
//! allocation limit. Decoding garbage returns an error, never panics.

use serde::Serialize;
use serde::de::DeserializeOwned;

const VERSION: u8 = 1;
/// Upper bound for any decoded record (an envelope with thousands of
/// recipients is well below this).
const LIMIT: usize = 16 << 20;

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let cfg = bincode::config::standard().with_limit::<LIMIT>();
    let mut out = vec![VERSION];
    let body = bincode::serde::encode_to_vec(value, cfg).map_err(|e| e.to_string())?;
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let cfg = bincode::config::standard().with_limit::<LIMIT>();
    match bytes.split_first() {
        Some((&VERSION, rest)) => {
            let (v, used) =
                bincode::serde::decode_from_slice(rest, cfg).map_err(|e| e.to_string())?;
            if used != rest.len() {
                return Err(format!("{} trailing bytes", rest.len() - used));
            }
            Ok(v)
        }
        Some((v, _)) => Err(format!("unknown record version {v}")),
        None => Err("empty record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Envelope, MessageMeta};

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_u64;
        for len in 0..300 {
            let mut buf = Vec::with_capacity(len);
            for _ in 0..len {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                buf.push((seed >> 33) as u8);
            }
            if let Some(b) = buf.first_mut() {
                *b = VERSION;
            }
            let _ = decode::<Envelope>(&buf);
            let _ = decode::<MessageMeta>(&buf);
        }
        // A huge length prefix must hit the limit, not allocate.
        let evil = [
            VERSION, 0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F,
        ];
        assert!(decode::<Envelope>(&evil).is_err());
    }
}
