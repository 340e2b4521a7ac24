//! Readahead decisions: per inode, where the last READ ended and how far ahead blocks have
//! been fetched, and so whether a READ continues a sequential reader and which blocks to
//! fetch next; and how far ahead to fetch. Pure bookkeeping: the view does the fetching. The
//! mutex guards only map operations.
//!
//! A sequential reader is kept one *window* ahead: as many blocks as the fetcher keeps in
//! flight for 256 KiB blocks (its window follows the round trip to the gateways), between
//! [`MIN_WINDOW_BLOCKS`] and [`MAX_WINDOW_BLOCKS`]. Each READ that leaves less than 3/4 of a
//! window fetched ahead tops it up again, so the fetcher's window stays nearly full and a
//! reader gets about `window / round trip`. (At 7/8 the top-ups were twice as many, smaller
//! walks, for no gain at 20 ms and 0.1-0.2 s more daemon CPU per GiB at 0 ms.)
//!
//! Measured at 20 ms on a 1 GiB file (`benches/README.md`): starting a whole new window only
//! once the one ahead was half read left the fetcher idle for part of every round trip
//! (4.0 s for the file); topping up, 3.3 s. Keeping two windows ahead (3.15 s) raised the
//! daemon's peak with 16 readers by about 10 MiB, so it is one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The block size a window is counted in (the default chunk).
pub const WINDOW_BLOCK: u64 = 256 * 1024;
/// The narrowest window, in blocks (8 MiB).
pub const MIN_WINDOW_BLOCKS: usize = 32;
/// The widest window, in blocks (32 MiB: the fetcher's largest window).
pub const MAX_WINDOW_BLOCKS: usize = 128;

/// Blocks of 256 KiB the fetcher keeps in flight now (`Fetcher::nominal_window`).
pub type WindowHint = Arc<dyn Fn() -> usize + Send + Sync>;

/// Sequential-read tracking of one inode.
#[derive(Default, Clone, Copy)]
struct Seq {
    next: u64,
    fetched_until: u64,
}

/// Sequential-read tracking for every inode read.
#[derive(Default)]
pub struct Readahead {
    seq: Mutex<HashMap<u64, Seq>>,
    hint: Option<WindowHint>,
}

/// One window to fetch: where it starts, its length, and how many blocks to ask for at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Its first byte.
    pub start: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Blocks to ask for at once (the whole window in one round trip).
    pub blocks: usize,
}

impl Readahead {
    /// Windows as wide as `hint` says the fetcher's window is (without one: the narrowest).
    pub fn with_hint(hint: WindowHint) -> Readahead {
        Readahead {
            seq: Mutex::default(),
            hint: Some(hint),
        }
    }

    /// The width of a window now, in blocks.
    fn blocks(&self) -> usize {
        self.hint
            .as_ref()
            .map_or(MIN_WINDOW_BLOCKS, |h| h())
            .clamp(MIN_WINDOW_BLOCKS, MAX_WINDOW_BLOCKS)
    }

    /// Records a READ of `len` bytes at `offset` of inode `ino` (`size` bytes long); the
    /// blocks to fetch now, if the reader is sequential and less than 3/4 of a window ahead
    /// of it is fetched: from where fetching got to, up to one window past this READ.
    pub fn next_window(&self, ino: u64, size: u64, offset: u64, len: u64) -> Option<Window> {
        let blocks = self.blocks();
        let width = blocks as u64 * WINDOW_BLOCK;
        let end = offset.saturating_add(len).min(size);
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        let s = seq.entry(ino).or_default();
        // A first READ at 0 is not yet a sequential reader: exec and file(1) read the head
        // and jump elsewhere. The READ that continues it is.
        let sequential = offset == s.next && offset > 0;
        s.next = end;
        let until = end.saturating_add(width).min(size);
        let enough = end.saturating_add(width - width / 4);
        if !sequential || end >= size || s.fetched_until >= until.min(enough) {
            return None;
        }
        let start = s.fetched_until.max(end);
        s.fetched_until = until;
        Some(Window {
            start,
            len: s.fetched_until - start,
            blocks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn a_sequential_reader_gets_a_window_and_a_jump_gets_none() {
        let r = Readahead::default();
        let size = 64 * MIB;
        assert_eq!(r.next_window(1, size, 0, MIB), None, "a first READ at 0");
        let w = r.next_window(1, size, MIB, MIB).expect("sequential");
        assert_eq!((w.start, w.len, w.blocks), (2 * MIB, 8 * MIB, 32));
        // 7 MiB of the window ahead are unread: nothing new.
        assert_eq!(r.next_window(1, size, 2 * MIB, MIB), None);
        assert_eq!(r.next_window(1, size, 40 * MIB, MIB), None, "a jump");
        assert_eq!(r.next_window(1, size, 63 * MIB, MIB), None, "the end");
    }

    #[test]
    fn a_sequential_reader_is_topped_up_to_a_window_ahead() {
        let r = Readahead::default();
        let size = 64 * MIB;
        r.next_window(1, size, 0, MIB);
        let w = r.next_window(1, size, MIB, MIB).expect("sequential");
        assert_eq!((w.start, w.len), (2 * MIB, 8 * MIB), "fetched to 10 MiB");
        // 7 and 6 MiB ahead of the reader: enough.
        assert_eq!(r.next_window(1, size, 2 * MIB, MIB), None);
        assert_eq!(r.next_window(1, size, 3 * MIB, MIB), None);
        // 5 MiB ahead: the next 3 MiB, so that 8 MiB are fetched ahead again.
        let w = r.next_window(1, size, 4 * MIB, MIB).expect("top-up");
        assert_eq!((w.start, w.len, w.blocks), (10 * MIB, 3 * MIB, 32));
        assert_eq!(r.next_window(1, size, 5 * MIB, MIB), None);
        assert_eq!(r.next_window(1, size, 6 * MIB, MIB), None);
        let w = r.next_window(1, size, 7 * MIB, MIB).expect("top-up");
        assert_eq!((w.start, w.len), (13 * MIB, 3 * MIB));
        // Near the end the window stops at the file's end.
        r.next_window(2, size, 0, MIB);
        let w = r.next_window(2, size, 60 * MIB, MIB);
        assert_eq!(w, None, "a jump is not sequential");
        let w = r.next_window(2, size, 61 * MIB, MIB).expect("sequential");
        assert_eq!((w.start, w.len), (62 * MIB, 2 * MIB));
        assert_eq!(r.next_window(2, size, 62 * MIB, MIB), None, "all fetched");
    }

    #[test]
    fn the_window_is_as_wide_as_the_fetchers_within_bounds() {
        let wide = Arc::new(std::sync::atomic::AtomicUsize::new(128));
        let hint = Arc::clone(&wide);
        let r = Readahead::with_hint(Arc::new(move || {
            hint.load(std::sync::atomic::Ordering::Relaxed)
        }));
        let size = 1024 * MIB;
        r.next_window(1, size, 0, MIB);
        let w = r.next_window(1, size, MIB, MIB).expect("sequential");
        assert_eq!((w.len, w.blocks), (32 * MIB, 128));
        wide.store(8, std::sync::atomic::Ordering::Relaxed);
        r.next_window(2, size, 0, MIB);
        let w = r.next_window(2, size, MIB, MIB).expect("sequential");
        assert_eq!(
            (w.len, w.blocks),
            (8 * MIB, MIN_WINDOW_BLOCKS),
            "never below 8 MiB"
        );
        wide.store(10_000, std::sync::atomic::Ordering::Relaxed);
        r.next_window(3, size, 0, MIB);
        let w = r.next_window(3, size, MIB, MIB).expect("sequential");
        assert_eq!(w.blocks, MAX_WINDOW_BLOCKS, "never above 32 MiB");
    }
}
