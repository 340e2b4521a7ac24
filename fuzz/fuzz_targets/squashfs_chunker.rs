//! Fuzz target: arbitrary bytes as a file for the squashfs-aware chunker. Planning must not
//! panic or hang, the plan must cover the input in order, and streaming it must hand out
//! non-empty chunks no larger than the maximum that join to the input.
#![no_main]

use distfs::import::chunker::Chunker;
use distfs::import::squashfs::{plan, SegmentKind, SquashfsChunker, SQUASHFS_MAX_CHUNK};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for group in [0, 1 << 20] {
        let p = plan(&mut &data[..], group).expect("slices do not fail to read");
        let mut at = 0u64;
        for s in &p.segments {
            assert_eq!(s.start, at, "segments in order, no gaps");
            assert!(s.len > 0);
            if s.kind == SegmentKind::Exact {
                assert!(s.len <= SQUASHFS_MAX_CHUNK as u64);
            }
            at += s.len;
        }
        assert_eq!(at, data.len() as u64, "segments cover the input");
        let mut chunker = SquashfsChunker::new(data, p.segments);
        let mut joined = Vec::with_capacity(data.len());
        while let Some(c) = chunker.next_chunk().expect("slices do not fail to read") {
            assert!(!c.is_empty() && c.len() <= SQUASHFS_MAX_CHUNK);
            joined.extend_from_slice(&c);
        }
        assert!(joined == data, "chunks join to the input");
    }
});
