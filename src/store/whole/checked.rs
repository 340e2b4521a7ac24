//! Reads of a whole copy through the daemon before the copy is proved: each chunk a read
//! touches is checked against the copy's chunk sums (`seal::ChunkSums`) the first time this
//! process reads it, and a copy whose chunks have all been checked is proved.
//!
//! This is what a new daemon does with a warm cache dir: its first open of a file reads
//! the copy (one file, read sequentially, XXH3 at memory speed) rather than the file's
//! blocks (one file, one seal and one DAG step per 256 KiB). A chunk that does not match
//! its sum gets the copy deleted, and the read falls back to the blocks; no byte of an
//! unchecked chunk is ever answered.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::super::index::Key;
use super::super::seal::ChunkSums;

/// Open copies kept for checked reads: enough for a build's parallel readers.
pub(super) const KEEP: usize = 16;
/// Bytes read per step while checking a chunk (the buffer each check holds).
const STEP: usize = 256 * 1024;

/// An open copy and which of its chunks this process has checked.
#[derive(Debug)]
pub(super) struct Checking {
    pub(super) key: Key,
    file: File,
    size: u64,
    sums: ChunkSums,
    checked: Vec<AtomicBool>,
    left: AtomicUsize,
    /// One check at a time per copy: parallel reads of one chunk check it once.
    check: Mutex<()>,
}

/// What a checked read found.
#[derive(Debug)]
pub(super) enum Read {
    /// The bytes, every chunk they touch checked. `proved` when this read checked the
    /// last unchecked chunk.
    Bytes { bytes: Vec<u8>, proved: bool },
    /// A chunk did not match its sum: the copy is wrong.
    Wrong { chunk: u64 },
    /// The copy could not be read.
    Failed(std::io::Error),
}

impl Checking {
    pub(super) fn new(key: Key, file: File, size: u64, sums: ChunkSums) -> Arc<Checking> {
        let count = sums.count();
        Arc::new(Checking {
            key,
            file,
            size,
            sums,
            checked: (0..count).map(|_| AtomicBool::new(false)).collect(),
            left: AtomicUsize::new(count),
            check: Mutex::new(()),
        })
    }

    /// `len` bytes at `offset` (clipped to the file's end). With `trusted`, the copy is
    /// proved as a whole and no chunk is checked.
    pub(super) fn read(&self, offset: u64, len: u64, trusted: bool) -> Read {
        let end = offset.saturating_add(len).min(self.size);
        let mut proved = false;
        if !trusted && offset < end {
            for chunk in self.sums.chunk_of(offset)..=self.sums.chunk_of(end - 1) {
                match self.check_chunk(chunk) {
                    Ok(Some(last)) => proved |= last,
                    Ok(None) => return Read::Wrong { chunk },
                    Err(e) => return Read::Failed(e),
                }
            }
        }
        let mut bytes = vec![0u8; usize::try_from(end.saturating_sub(offset)).unwrap_or(0)];
        match self.file.read_exact_at(&mut bytes, offset) {
            Ok(()) => Read::Bytes { bytes, proved },
            Err(e) => Read::Failed(e),
        }
    }

    /// Checks chunk `chunk` unless it was checked: `Some(true)` if it was the last one
    /// unchecked, `Some(false)` if it matched before or now, `None` if it does not match.
    fn check_chunk(&self, chunk: u64) -> std::io::Result<Option<bool>> {
        let Some(flag) = usize::try_from(chunk)
            .ok()
            .and_then(|i| self.checked.get(i))
        else {
            // No sums: the copy was opened as proved as a whole, and that proof is gone.
            return Err(std::io::Error::other(format!("no sum for chunk {chunk}")));
        };
        if flag.load(Ordering::Acquire) {
            return Ok(Some(false));
        }
        let _one = self.check.lock().unwrap_or_else(|e| e.into_inner());
        if flag.load(Ordering::Acquire) {
            return Ok(Some(false));
        }
        let size = self.sums.chunk_size();
        let start = chunk * size;
        let end = (start + size).min(self.size);
        // The next chunk is likely read next: have the kernel read it while this one is
        // checked and answered.
        if end < self.size {
            advise_willneed(&self.file, end, size.min(self.size - end));
        }
        let mut hasher = self.sums.hasher(chunk);
        let mut buf = vec![0u8; STEP.min(usize::try_from(end - start).unwrap_or(STEP))];
        let mut at = start;
        while at < end {
            let n = usize::try_from(end - at).map_or(buf.len(), |left| left.min(buf.len()));
            self.file.read_exact_at(&mut buf[..n], at)?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        if !self.sums.matches(chunk, &hasher) {
            return Ok(None);
        }
        flag.store(true, Ordering::Release);
        Ok(Some(self.left.fetch_sub(1, Ordering::AcqRel) == 1))
    }
}

/// Asks the kernel to start reading `len` bytes at `offset` of `file` into its page cache.
fn advise_willneed(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: a hint on a live descriptor; it touches no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED);
    }
}

/// The copies open for checked reads, most recently used last; at most [`KEEP`].
#[derive(Debug, Default)]
pub(super) struct Open(Mutex<Vec<Arc<Checking>>>);

impl Open {
    fn list(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Checking>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open copy of `key`, marked as just used.
    pub(super) fn get(&self, key: &[u8]) -> Option<Arc<Checking>> {
        let mut list = self.list();
        let at = list.iter().position(|c| c.key == key)?;
        let found = list.remove(at);
        list.push(Arc::clone(&found));
        Some(found)
    }

    /// Keeps `checking` open, closing the least recently used copy beyond [`KEEP`].
    pub(super) fn insert(&self, checking: Arc<Checking>) {
        let mut list = self.list();
        list.retain(|c| c.key != checking.key);
        if list.len() >= KEEP {
            list.remove(0);
        }
        list.push(checking);
    }

    /// Closes the copy of `key` (deleted, evicted or proved wrong).
    pub(super) fn remove(&self, key: &[u8]) {
        self.list().retain(|c| c.key != key);
    }
}
