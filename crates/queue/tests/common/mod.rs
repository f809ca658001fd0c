//! Shared by the queue's unit tests (src/tests.rs includes this file) and
//! its integration tests.

/// `len` bytes of a xorshift sequence from `seed`: bodies that differ
/// everywhere, so a misplaced or torn extent shows.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
