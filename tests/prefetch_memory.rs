//! Readahead's memory: loading a window of blocks holds the blocks being loaded, never a
//! buffer as long as the window. Every sequential reader starts an 8–32 MiB window about
//! once per round trip; when the walk put "nothing" together into a zeroed buffer of the
//! window's length, 16 parallel cold readers pushed the mount daemon past its 100 MiB peak
//! RSS target (benches/README.md, "Memory with 16 parallel readers").
//!
//! A per-thread counting allocator measures the peak of live heap bytes allocated on the
//! test's thread (a current-thread runtime, so the walk runs there).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use distfs::import::{import_file, ImportOptions, Metadata};
use distfs::store::MemStore;
use distfs::walk::{prefetch_range_wide, read_range, NodeCache};

const MIB: u64 = 1024 * 1024;

struct Counting;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LIVE.try_with(|l| {
                let now = l.get() + delta;
                l.set(now);
                let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
            });
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        // SAFETY: same layout, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        account(layout.size() as isize);
        // SAFETY: same layout, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        account(-(layout.size() as isize));
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        account(new_size as isize - layout.size() as isize);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak live heap bytes on this thread while `f` runs.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, isize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    TRACK.with(|t| t.set(true));
    let out = f();
    TRACK.with(|t| t.set(false));
    (out, PEAK.with(Cell::get))
}

#[test]
fn a_readahead_window_holds_no_buffer_of_its_length() {
    // 24 MiB in 256 KiB leaves (the default import), so a 16 MiB window is 64 blocks.
    let data: Vec<u8> = (0..24 * MIB).map(|i| (i * 31 + i / 4093) as u8).collect();
    let mut store = MemStore::new();
    let root = import_file(
        &data[..],
        &ImportOptions::default(),
        &Metadata::default(),
        &mut store,
    )
    .expect("import")
    .cid;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let nodes = NodeCache::default();
    let window = 16 * MIB;

    // The store hands out its blocks without copying them, so what the walk itself holds is
    // decoded nodes and bookkeeping: far below the window.
    let (done, peak) = peak_of(|| {
        rt.block_on(prefetch_range_wide(
            &store,
            &nodes,
            &root,
            4 * MIB,
            window,
            64,
        ))
        .map_err(|e| e.to_string())
    });
    done.expect("prefetch");
    assert!(
        peak < (window / 8) as isize,
        "loading a {window}-byte window peaked at {peak} live bytes"
    );

    // A read of the same length does put the bytes together (one buffer of its length).
    let (read, peak) = peak_of(|| {
        rt.block_on(read_range(&store, &root, 4 * MIB, window))
            .map_err(|e| e.to_string())
    });
    let read = read.expect("read");
    assert_eq!(
        &read[..],
        &data[4 * MIB as usize..(4 * MIB + window) as usize]
    );
    assert!(peak >= window as isize, "{peak}");
}
