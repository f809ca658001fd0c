//! Message chunks as one run of bytes: `#[serde(with = "crate::bytes")]`.
//!
//! serde treats a `Vec<u8>` as a sequence, which bincode encodes and
//! decodes one element at a time; as bytes it copies the run at once. The
//! wire form is the same either way (a length, then the bytes).

use serde::de::{Error, SeqAccess, Visitor};
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(bytes)
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    d.deserialize_byte_buf(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    /// Formats that have no bytes type send a sequence.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(crate::BODY_CHUNK));
        while let Some(b) = seq.next_element()? {
            out.push(b);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct AsSeq {
        data: Vec<u8>,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct AsBytes {
        #[serde(with = "crate::bytes")]
        data: Vec<u8>,
    }

    #[test]
    fn same_wire_form_as_a_sequence() {
        let data: Vec<u8> = (0..=255).cycle().take(70_000).collect();
        let seq = crate::encode(&AsSeq { data: data.clone() }).unwrap();
        let bytes = crate::encode(&AsBytes { data: data.clone() }).unwrap();
        assert_eq!(seq, bytes);
        let back: AsBytes = crate::decode(&seq).unwrap();
        assert_eq!(back.data, data);
    }
}
