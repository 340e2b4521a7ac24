//! Readahead's memory: loading a window of blocks holds the blocks being loaded, never a
//! buffer as long as the window. Every sequential reader starts an 8–32 MiB window about
//! once per round trip; when the walk put "nothing" together into a zeroed buffer of the
//! window's length, 16 parallel cold readers pushed the mount daemon past its 100 MiB peak
//! RSS target (benches/README.md, "Memory with 16 parallel readers").
//!
//! A per-thread counting allocator measures the peak of live heap bytes allocated on the
//! test's thread (a current-thread runtime, so the walk runs there).

#[path = "support/heap.rs"]
mod heap;

use distfs::import::{import_file, ImportOptions, Metadata};
use distfs::store::MemStore;
use distfs::walk::{prefetch_range_wide, read_range, NodeCache};
use heap::peak_of;

const MIB: u64 = 1024 * 1024;

#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

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
