//! Readahead decisions: per inode, where the last READ ended and how far ahead blocks have
//! been fetched, and so whether a READ continues a sequential reader and which window to
//! fetch next ([`super::view::READAHEAD_WINDOW`] bytes). Pure bookkeeping: the view does the
//! fetching. The mutex guards only map operations.

use std::collections::HashMap;
use std::sync::Mutex;

use super::view::READAHEAD_WINDOW;

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
}

impl Readahead {
    /// Records a READ of `len` bytes at `offset` of inode `ino` (`size` bytes long); the
    /// start of the window to fetch now, if the reader is sequential and the window ahead
    /// is less than half fetched.
    pub fn next_window(&self, ino: u64, size: u64, offset: u64, len: u64) -> Option<u64> {
        let end = offset.saturating_add(len).min(size);
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        let s = seq.entry(ino).or_default();
        // A first READ at 0 is not yet a sequential reader: exec and file(1) read the head
        // and jump elsewhere. The READ that continues it is.
        let sequential = offset == s.next && offset > 0;
        s.next = end;
        if !sequential || end >= size || s.fetched_until >= end + READAHEAD_WINDOW / 2 {
            return None;
        }
        let start = s.fetched_until.max(end);
        s.fetched_until = (start + READAHEAD_WINDOW).min(size);
        Some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequential_reader_gets_one_window_at_a_time_and_a_jump_gets_none() {
        const MIB: u64 = 1024 * 1024;
        let r = Readahead::default();
        let size = 64 * MIB;
        assert_eq!(r.next_window(1, size, 0, MIB), None, "a first READ at 0");
        assert_eq!(r.next_window(1, size, MIB, MIB), Some(2 * MIB));
        // The window ahead is still more than half unread: nothing new.
        assert_eq!(r.next_window(1, size, 2 * MIB, MIB), None);
        assert_eq!(r.next_window(1, size, 40 * MIB, MIB), None, "a jump");
        assert_eq!(r.next_window(1, size, 63 * MIB, MIB), None, "the end");
    }
}
