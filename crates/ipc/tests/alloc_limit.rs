//! Hostile length fields must not make us allocate what they claim.
//!
//! A counting global allocator records the largest single allocation; it is
//! its own test binary with a single test so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering};

use postern_ipc::control::{ControlReply, ControlRequest};
use postern_ipc::{IpcError, MAX_FRAME, decode, read_frame, read_frame_sync};

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to System unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn largest_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.store(0, Ordering::SeqCst);
    let r = f();
    (r, LARGEST.load(Ordering::SeqCst))
}

#[test]
fn hostile_lengths_do_not_allocate() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    // Oversized length prefix: refused from the 4 header bytes alone.
    let header = u32::MAX.to_be_bytes();
    let (r, big) = largest_during(|| read_frame_sync::<_, ControlReply>(&mut Cursor::new(header)));
    assert!(matches!(r, Err(IpcError::FrameTooLarge { .. })));
    assert!(big < 4096, "allocated {big} bytes");
    let (r, big) =
        largest_during(|| rt.block_on(read_frame::<_, ControlReply>(&mut Cursor::new(header))));
    assert!(matches!(r, Err(IpcError::FrameTooLarge { .. })));
    assert!(big < 4096, "allocated {big} bytes");

    // A legal length prefix with almost nothing behind it: the body buffer
    // grows with the bytes that arrive, not with the promise.
    let mut promise = (MAX_FRAME as u32).to_be_bytes().to_vec();
    promise.extend_from_slice(&[0; 8]);
    let (r, big) =
        largest_during(|| read_frame_sync::<_, ControlReply>(&mut Cursor::new(&promise)));
    assert!(matches!(r, Err(IpcError::Truncated)));
    assert!(big < 64 * 1024, "allocated {big} bytes");

    // String claiming 2^40 bytes: the decode limit stops it up front.
    let mut s = vec![1, 0xFD];
    s.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let (r, big) = largest_during(|| decode::<ControlRequest>(&s));
    assert!(matches!(r, Err(IpcError::Decode(_))));
    assert!(big < 4096, "allocated {big} bytes");

    // Vec claiming u64::MAX elements: serde caps preallocation at 1 MiB.
    let mut v = vec![0, 1, 0, 0, 0, 0xFD];
    v.extend_from_slice(&u64::MAX.to_le_bytes());
    let (r, big) = largest_during(|| decode::<ControlReply>(&v));
    assert!(matches!(r, Err(IpcError::Decode(_))));
    assert!(big <= MAX_FRAME, "allocated {big} bytes");
}
