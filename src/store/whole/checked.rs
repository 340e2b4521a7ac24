//! Reads of a whole copy through the daemon before the copy is proved: each chunk a read
//! touches is checked against the copy's chunk sums (`seal::ChunkSums`) the first time this
//! process reads it, and a copy whose chunks have all been checked is proved.
//!
//! This is what a new daemon does with a warm cache dir: its first open of a file reads
//! the copy (one file, read sequentially, XXH3 at memory speed) rather than the file's
//! blocks (one file, one seal and one DAG step per 256 KiB). A chunk that does not match
//! its sum gets the copy deleted, and the read falls back to the blocks; no byte of an
//! unchecked chunk is ever answered.
//!
//! A chunk is read whole into a buffer the reads that follow are answered from without a
//! copy (and without a blocking thread), and the next chunks are read ahead on another
//! thread while the kernel consumes this one. Each open copy keeps at most [`WINDOW`]
//! chunks, and all of them together at most [`BUDGET`] bytes; a chunk that does not fit (or
//! is over [`MAX_KEPT_CHUNK`]) is streamed through the hash in small steps, and the answer
//! is read on its own. `O_DIRECT` would spare the page cache, which the FUSE inode's own
//! page cache duplicates, but one 4 MiB read at a time from the disk ran at half the speed
//! of buffered reads with the kernel's readahead (0.6 against 1.2 GB/s on the test VM).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};

use super::super::index::Key;
use super::super::seal::ChunkSums;

/// Open copies kept for checked reads: enough for a build's parallel readers.
pub(super) const KEEP: usize = 16;
/// Chunks each open copy keeps in memory: the one being read and the ones read ahead.
pub(super) const WINDOW: usize = 1 + AHEAD as usize;
/// Chunks read ahead of the one being read.
const AHEAD: u64 = 2;
/// Bytes all open copies keep in memory together (the daemon's RSS target is 100 MiB).
pub(super) const BUDGET: u64 = 16 << 20;
/// The largest chunk kept: chunks of files over 1 GiB are streamed.
const MAX_KEPT_CHUNK: u64 = 4 << 20;
/// Bytes read per step while streaming a chunk too large to keep.
const STEP: usize = 256 * 1024;
const NONE: u64 = u64::MAX;

/// An open copy and which of its chunks this process has checked.
#[derive(Debug)]
pub(super) struct Checking {
    pub(super) key: Key,
    file: File,
    size: u64,
    sums: ChunkSums,
    checked: Vec<AtomicBool>,
    left: AtomicUsize,
    /// Chunks read and checked, kept for the reads that follow, by chunk number.
    window: Mutex<Vec<(u64, Bytes)>>,
    /// One chunk read at a time per copy: parallel reads of one chunk read it once.
    load: Mutex<()>,
    /// The chunk a read-ahead was asked for and has not finished, or [`NONE`].
    ahead: AtomicU64,
    /// Bytes kept in the windows of all open copies.
    kept: Arc<AtomicU64>,
    /// Found wrong (and so deleted): parallel reads that find it too do nothing more.
    condemned: AtomicBool,
}

/// What a checked read found.
#[derive(Debug)]
pub(super) enum Read {
    /// The bytes, every chunk they touch checked. `proved` when this read checked the
    /// last unchecked chunk; `ahead`: the chunk to read ahead now, on another thread
    /// ([`Checking::read_ahead`]).
    Bytes {
        bytes: Bytes,
        proved: bool,
        ahead: Option<u64>,
    },
    /// A chunk did not match its sum: the copy is wrong.
    Wrong { chunk: u64 },
    /// The copy could not be read.
    Failed(std::io::Error),
}

/// Why a chunk could not be had.
enum Miss {
    Wrong,
    Io(std::io::Error),
}

impl From<std::io::Error> for Miss {
    fn from(e: std::io::Error) -> Miss {
        Miss::Io(e)
    }
}

/// Opens `path` for checked reads, which are sequential in the common case (a program
/// reading the file through): the kernel reads ahead further.
pub(super) fn open(path: &Path) -> std::io::Result<File> {
    let file = File::open(path)?;
    // SAFETY: a hint on a live descriptor; it touches no memory of ours.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
    Ok(file)
}

impl Checking {
    pub(super) fn new(
        key: Key,
        file: File,
        size: u64,
        sums: ChunkSums,
        kept: Arc<AtomicU64>,
    ) -> Arc<Checking> {
        let count = sums.count();
        Arc::new(Checking {
            key,
            file,
            size,
            sums,
            checked: (0..count).map(|_| AtomicBool::new(false)).collect(),
            left: AtomicUsize::new(count),
            window: Mutex::default(),
            load: Mutex::new(()),
            ahead: AtomicU64::new(NONE),
            kept,
            condemned: AtomicBool::new(false),
        })
    }

    /// Marks the copy wrong; true for the first caller only, who deletes it.
    pub(super) fn condemn(&self) -> bool {
        !self.condemned.swap(true, Ordering::AcqRel)
    }

    fn window(&self) -> MutexGuard<'_, Vec<(u64, Bytes)>> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chunk `chunk`'s byte range in the file.
    fn span(&self, chunk: u64) -> (u64, u64) {
        let start = chunk.saturating_mul(self.sums.chunk_size()).min(self.size);
        (
            start,
            start.saturating_add(self.sums.chunk_size()).min(self.size),
        )
    }

    /// Whether a chunk of `len` bytes may be kept now.
    fn has_room(&self, len: u64) -> bool {
        len <= MAX_KEPT_CHUNK && self.kept.load(Ordering::Acquire) + len <= BUDGET
    }

    /// Chunk `chunk`'s buffer, if the window keeps it.
    fn kept(&self, chunk: u64) -> Option<Bytes> {
        let window = self.window();
        window
            .iter()
            .find(|(c, _)| *c == chunk)
            .map(|(_, b)| b.clone())
    }

    /// Bytes `s..e` of chunk `chunk`, checked: from the window, or by reading the chunk
    /// into it, or, with no room, by streaming the chunk through the hash; with whether
    /// this checked the last unchecked chunk of the copy.
    fn piece(&self, chunk: u64, trusted: bool, s: u64, e: u64) -> Result<(Bytes, bool), Miss> {
        let (start, stop) = self.span(chunk);
        // In range below: `s..e` lies within the chunk, whose buffer is `stop - start`
        // bytes long.
        let cut = |b: Bytes| b.slice((s - start) as usize..(e - start) as usize);
        if let Some(bytes) = self.kept(chunk) {
            return Ok((cut(bytes), false));
        }
        if self.has_room(stop - start) {
            let (bytes, last) = self.chunk(chunk, trusted)?;
            return Ok((cut(bytes), last));
        }
        self.streamed(chunk, trusted, s, e)
    }

    /// `len` bytes at `offset` (clipped to the file's end). With `trusted`, the copy is
    /// proved as a whole and no chunk is checked.
    pub(super) fn read(&self, offset: u64, len: u64, trusted: bool) -> Read {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return Read::Bytes {
                bytes: Bytes::new(),
                proved: false,
                ahead: None,
            };
        }
        let (first, last) = (self.sums.chunk_of(offset), self.sums.chunk_of(end - 1));
        let mut proved = false;
        let mut parts = Vec::new();
        for chunk in first..=last {
            let (start, stop) = self.span(chunk);
            match self.piece(chunk, trusted, offset.max(start), end.min(stop)) {
                Ok((bytes, last)) => {
                    proved |= last;
                    parts.push(bytes);
                }
                Err(Miss::Wrong) => return Read::Wrong { chunk },
                Err(Miss::Io(e)) => return Read::Failed(e),
            }
        }
        let bytes = if parts.len() == 1 {
            parts.pop().unwrap_or_default()
        } else {
            let mut all = BytesMut::with_capacity((end - offset) as usize);
            parts.iter().for_each(|p| all.extend_from_slice(p));
            all.freeze()
        };
        Read::Bytes {
            bytes,
            proved,
            ahead: self.ahead_of(last),
        }
    }

    /// `len` bytes at `offset` if the window keeps the one chunk they lie in: no I/O, so
    /// the caller need not leave its thread. With the chunk to read ahead, if any.
    pub(super) fn read_kept(&self, offset: u64, len: u64) -> Option<(Bytes, Option<u64>)> {
        let end = offset.saturating_add(len).min(self.size);
        let chunk = self.sums.chunk_of(offset);
        if offset >= end || self.sums.chunk_of(end - 1) != chunk {
            return None;
        }
        let bytes = self.kept(chunk)?;
        let start = self.span(chunk).0;
        // In range: `offset..end` lies within the chunk, whose buffer is all of it.
        let bytes = bytes.slice((offset - start) as usize..(end - start) as usize);
        Some((bytes, self.ahead_of(chunk)))
    }

    /// The chunk to read ahead of a read that ended in chunk `last`, if one is due and
    /// none is being read ahead (the caller then owes it a [`Checking::read_ahead`]).
    fn ahead_of(&self, last: u64) -> Option<u64> {
        let next = (last + 1..=last + AHEAD)
            .find(|c| self.kept(*c).is_none())
            .unwrap_or(NONE);
        let (start, stop) = self.span(next);
        (start < stop
            && self.has_room(stop - start)
            && self
                .ahead
                .compare_exchange(NONE, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok())
        .then_some(next)
    }

    /// Reads chunk `chunk` into the window ahead of the reads that will want it (what a
    /// [`Read::Bytes`] asked for). `Some(proved)` if it was read and matched, `None` if it
    /// did not match.
    pub(super) fn read_ahead(&self, chunk: u64, trusted: bool) -> std::io::Result<Option<bool>> {
        let got = self.chunk(chunk, trusted);
        self.ahead.store(NONE, Ordering::Release);
        match got {
            Ok((_, last)) => Ok(Some(last)),
            Err(Miss::Wrong) => Ok(None),
            Err(Miss::Io(e)) => Err(e),
        }
    }

    /// Chunk `chunk`'s bytes, checked, from the window or read now; with whether this
    /// was the last chunk of the copy to be checked.
    fn chunk(&self, chunk: u64, trusted: bool) -> Result<(Bytes, bool), Miss> {
        if let Some(bytes) = self.kept(chunk) {
            return Ok((bytes, false));
        }
        let _one = self.load.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bytes) = self.kept(chunk) {
            return Ok((bytes, false));
        }
        let (start, stop) = self.span(chunk);
        let bytes = self.read_span(start, stop)?;
        let last = if trusted || self.is_checked(chunk)? {
            false
        } else {
            let mut hasher = self.sums.hasher(chunk);
            hasher.update(&bytes);
            self.mark_checked(chunk, &hasher)?
        };
        let len = bytes.len() as u64;
        let mut window = self.window();
        // Keep the chunks nearest this one; one that does not fit the budget is not kept.
        while window.len() >= WINDOW {
            let far = window
                .iter()
                .enumerate()
                .max_by_key(|(_, (c, _))| c.abs_diff(chunk))
                .map(|(i, _)| i)
                .unwrap_or(0);
            let (_, gone) = window.swap_remove(far);
            self.kept.fetch_sub(gone.len() as u64, Ordering::AcqRel);
        }
        if self.kept.fetch_add(len, Ordering::AcqRel) + len <= BUDGET {
            window.push((chunk, bytes.clone()));
        } else {
            self.kept.fetch_sub(len, Ordering::AcqRel);
        }
        Ok((bytes, last))
    }

    /// Whether chunk `chunk` was checked already.
    fn is_checked(&self, chunk: u64) -> Result<bool, Miss> {
        usize::try_from(chunk)
            .ok()
            .and_then(|i| self.checked.get(i))
            .map(|flag| flag.load(Ordering::Acquire))
            // No sums: the copy was opened as proved as a whole, and that proof is gone.
            .ok_or_else(|| Miss::Io(std::io::Error::other(format!("no sum for chunk {chunk}"))))
    }

    /// Marks chunk `chunk` checked if the bytes `hasher` saw match its sum: whether it was
    /// the last one unchecked.
    fn mark_checked(&self, chunk: u64, hasher: &xxhash_rust::xxh3::Xxh3) -> Result<bool, Miss> {
        if !self.sums.matches(chunk, hasher) {
            return Err(Miss::Wrong);
        }
        let flag = usize::try_from(chunk)
            .ok()
            .and_then(|i| self.checked.get(i))
            .ok_or(Miss::Wrong)?;
        Ok(!flag.swap(true, Ordering::AcqRel) && self.left.fetch_sub(1, Ordering::AcqRel) == 1)
    }

    /// Bytes `s..e` of chunk `chunk`, which is not kept: the chunk is streamed through the
    /// hash unless checked before, and the bytes are read on their own for the answer.
    fn streamed(&self, chunk: u64, trusted: bool, s: u64, e: u64) -> Result<(Bytes, bool), Miss> {
        let mut last = false;
        if !trusted && !self.is_checked(chunk)? {
            let _one = self.load.lock().unwrap_or_else(|e| e.into_inner());
            if !self.is_checked(chunk)? {
                let (start, stop) = self.span(chunk);
                let mut hasher = self.sums.hasher(chunk);
                let mut at = start;
                while at < stop {
                    let n = (stop - at).min(STEP as u64);
                    hasher.update(&self.read_span(at, at + n)?);
                    at += n;
                }
                last = self.mark_checked(chunk, &hasher)?;
            }
        }
        Ok((self.read_span(s, e)?, last))
    }

    /// Bytes `start..stop` of the copy, read into a new buffer.
    fn read_span(&self, start: u64, stop: u64) -> std::io::Result<Bytes> {
        let want = usize::try_from(stop - start).map_err(std::io::Error::other)?;
        let mut buf = Vec::<u8>::with_capacity(want);
        let mut got = 0;
        while got < want {
            let at = libc::off_t::try_from(start + got as u64).map_err(std::io::Error::other)?;
            // SAFETY: `got + (want - got) <= capacity`, so the kernel writes within the
            // allocation (not zeroed first: a quarter of a warm read's time went to that).
            let n = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    buf.as_mut_ptr().add(got).cast(),
                    want - got,
                    at,
                )
            };
            match n {
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("the copy ends before byte {stop}"),
                    ))
                }
                n if n < 0 => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                n => got += n as usize,
            }
        }
        // SAFETY: the kernel wrote all `want` bytes.
        unsafe { buf.set_len(want) };
        Ok(Bytes::from(buf))
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        let kept: u64 = self.window().iter().map(|(_, b)| b.len() as u64).sum();
        self.kept.fetch_sub(kept, Ordering::AcqRel);
    }
}

/// The copies open for checked reads, most recently used last; at most [`KEEP`].
#[derive(Debug, Default)]
pub(super) struct Open {
    list: Mutex<Vec<Arc<Checking>>>,
    /// Bytes the copies' windows keep, together.
    pub(super) kept: Arc<AtomicU64>,
}

impl Open {
    fn list(&self) -> MutexGuard<'_, Vec<Arc<Checking>>> {
        self.list.lock().unwrap_or_else(|e| e.into_inner())
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

    /// Closes the copy of `key` (no reader left, deleted, evicted or proved wrong).
    pub(super) fn remove(&self, key: &[u8]) {
        self.list().retain(|c| c.key != key);
    }
}
