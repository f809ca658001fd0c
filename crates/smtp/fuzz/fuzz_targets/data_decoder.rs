//! The DATA decoder never panics and its result does not depend on how
//! the input is chunked; what the encoder sends always decodes cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_smtp::{BareNewlinePolicy, DataDecoder, DataProgress, dot_stuff};

fn run(policy: BareNewlinePolicy, input: &[u8], sizes: &[u8]) -> (Vec<u8>, DataProgress, usize) {
    let mut d = DataDecoder::new(policy, 16);
    let mut out = Vec::new();
    let mut pos = 0;
    let mut last = DataProgress::default();
    let mut k = 0;
    while pos < input.len() {
        let size = if sizes.is_empty() {
            input.len()
        } else {
            usize::from(sizes[k % sizes.len()]).max(1)
        };
        k += 1;
        let end = (pos + size).min(input.len());
        last = d.feed(&input[pos..end], &mut out);
        assert!(last.consumed <= end - pos);
        pos += last.consumed;
        if last.done {
            break;
        }
        assert_eq!(pos, end, "a decoder that is not done consumes everything");
    }
    last.consumed = pos;
    (out, last, pos)
}

fuzz_target!(|data: &[u8]| {
    // First byte: policy; next four: chunk sizes; the rest: the stream.
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let policy = match sel % 3 {
        0 => BareNewlinePolicy::Normalize,
        1 => BareNewlinePolicy::Reject,
        _ => BareNewlinePolicy::No,
    };
    let (sizes, input) = rest.split_at(rest.len().min(4));
    let whole = run(policy, input, &[]);
    assert_eq!(whole, run(policy, input, &[1]));
    assert_eq!(whole, run(policy, input, sizes));

    let wire = dot_stuff(input);
    let (_, p, used) = run(BareNewlinePolicy::Reject, &wire, sizes);
    assert!(p.done && used == wire.len());
    assert!(!p.bare_newline_seen && !p.bare_cr_seen);
});
