//! The cache quota: keeps the bytes of a cache directory under a limit by deleting least
//! recently used blocks, never pinned ones or ones an open file holds
//! ([`super::hold::InUse`]).
//!
//! [`Quota::open`] scans the blocks directory into an [`Index`] (cleaning crash leftovers)
//! and loads the pin set. The cache then reports every hit, write and lost block here. When a
//! write takes the total past the limit, one eviction runs on a blocking thread and deletes
//! blocks down to the low-water mark ([`LOW_WATER_PERCENT`] of the limit), so evictions are
//! batched rather than one per write. A full disk (ENOSPC) lowers the limit to what the cache
//! holds at that moment, evicts, and warns once. The index mutex guards only map operations
//! (no `.await` and no file I/O while held).

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cid::Cid;

use super::disk::DiskStore;
use super::index::{scan, temp_file_pid, Index, Key, ScanReport};
use super::{pins, StoreError};
use crate::block::multihash_key;

/// Automatic eviction deletes down to this share of the limit.
pub const LOW_WATER_PERCENT: u64 = 90;

/// A SIZE argument that is not a number with an optional K/M/G/T suffix.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a size: give a number with an optional K, M, G or T suffix (powers of 1024), e.g. 24M")]
pub struct SizeError {
    text: String,
}

/// Parses a size: a whole number of bytes with an optional `K`/`M`/`G`/`T` suffix (powers of
/// 1024, case-insensitive, an optional trailing `B` or `iB` accepted): `24M` = 25165824.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let err = || SizeError {
        text: text.to_owned(),
    };
    let t = text.trim();
    let upper = t.to_ascii_uppercase();
    let t = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K')) => (&t[..i], 10),
        Some((i, 'M')) => (&t[..i], 20),
        Some((i, 'G')) => (&t[..i], 30),
        Some((i, 'T')) => (&t[..i], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    n.checked_mul(1u64 << shift).ok_or_else(err)
}

/// What the cache holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Bytes of block files and whole files: what the quota counts.
    pub bytes: u64,
    /// Block files.
    pub blocks: u64,
    /// Whole files (`store::whole`), whose bytes `bytes` counts too.
    pub whole_files: u64,
    /// Bytes of whole files.
    pub whole_bytes: u64,
    /// Bytes of pinned blocks held.
    pub pinned_bytes: u64,
    /// The byte limit in force (lowered after a full disk), if any.
    pub limit: Option<u64>,
}

/// What a garbage collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Temp files of unfinished writes removed.
    pub temp_removed: u64,
    /// Blocks evicted.
    pub evicted_blocks: u64,
    /// Their bytes.
    pub evicted_bytes: u64,
    /// Bytes held afterwards.
    pub bytes_after: u64,
    /// Blocks held afterwards.
    pub blocks_after: u64,
    /// Pinned bytes held afterwards (these are never evicted, even over the quota).
    pub pinned_bytes: u64,
}

/// The quota over one cache directory. Share it as `Arc<Quota>`.
#[derive(Debug)]
pub struct Quota {
    disk: DiskStore,
    /// The limit in bytes; `u64::MAX` for none.
    limit: AtomicU64,
    index: Mutex<Index>,
    /// An eviction is running (at most one at a time).
    evicting: AtomicBool,
    /// The disk-full warning was given.
    full_warned: AtomicBool,
    evicted_blocks: AtomicU64,
    evicted_bytes: AtomicU64,
    scanned: ScanReport,
}

impl Quota {
    /// Scans `disk`'s blocks and loads its pins. Blocking (directory reads): call before the
    /// runtime starts or on a blocking thread, and only while holding the cache lock (the
    /// scan deletes temp files of other processes).
    pub fn open(disk: DiskStore, limit: Option<u64>) -> Result<Quota, StoreError> {
        let blocks = disk.blocks_dir().to_path_buf();
        let start = std::time::Instant::now();
        let (mut index, scanned) =
            scan(&blocks, disk.whole_dir(), std::process::id()).map_err(|source| {
                StoreError::Io {
                    path: blocks.clone(),
                    source,
                }
            })?;
        for record in pins::load_all(disk.dir()) {
            for key in record.keys {
                index.pin(key);
            }
        }
        tracing::info!(
            blocks = scanned.blocks,
            whole_files = scanned.whole_files,
            bytes = scanned.bytes,
            temp_removed = scanned.temp_removed,
            bad_removed = scanned.bad_removed,
            ms = start.elapsed().as_millis() as u64,
            "cache scanned"
        );
        Ok(Quota {
            disk,
            limit: AtomicU64::new(limit.unwrap_or(u64::MAX)),
            index: Mutex::new(index),
            evicting: AtomicBool::new(false),
            full_warned: AtomicBool::new(false),
            evicted_blocks: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            scanned,
        })
    }

    /// A quota with no limit and an empty index, for a store not scanned (tests, tools).
    pub fn unscanned(disk: DiskStore) -> Quota {
        Quota {
            disk,
            limit: AtomicU64::new(u64::MAX),
            index: Mutex::new(Index::default()),
            evicting: AtomicBool::new(false),
            full_warned: AtomicBool::new(false),
            evicted_blocks: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            scanned: ScanReport::default(),
        }
    }

    /// What the start-up scan found and cleaned.
    pub fn scan_report(&self) -> ScanReport {
        self.scanned
    }

    /// The disk store this quota deletes from.
    pub fn disk(&self) -> &DiskStore {
        &self.disk
    }

    pub(super) fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The limit in force, if any.
    pub fn limit(&self) -> Option<u64> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|l| *l != u64::MAX)
    }

    /// Where automatic eviction stops.
    fn low_water(&self) -> u64 {
        self.limit().map_or(u64::MAX, |l| {
            l / 100 * LOW_WATER_PERCENT + l % 100 * LOW_WATER_PERCENT / 100
        })
    }

    /// What the cache holds now.
    pub fn usage(&self) -> Usage {
        let ix = self.index();
        Usage {
            bytes: ix.bytes(),
            blocks: ix.blocks() as u64,
            whole_files: ix.whole_files() as u64,
            whole_bytes: ix.whole_bytes(),
            pinned_bytes: ix.pinned_bytes(),
            limit: self.limit(),
        }
    }

    /// Blocks and bytes evicted since open.
    pub fn evicted(&self) -> (u64, u64) {
        (
            self.evicted_blocks.load(Ordering::Relaxed),
            self.evicted_bytes.load(Ordering::Relaxed),
        )
    }

    /// A cached block was used.
    pub fn touch(&self, cid: &Cid) {
        self.index().touch(&multihash_key(cid));
    }

    /// A block's file was deleted (found corrupt). Blocking (one `stat`).
    ///
    /// The entry is removed first and the file looked at after: a write of the same block
    /// that lands meanwhile is either seen here (and indexed again) or indexes itself after
    /// the removal. Looking first and removing after could lose a file that landed between
    /// the two, and the quota would never count it again.
    pub fn forget(&self, cid: &Cid) {
        let key = multihash_key(cid);
        self.index().remove(&key);
        if let Ok(meta) = self.disk.path_of(cid).metadata() {
            self.index().insert(key, meta.len());
        }
    }

    /// Forgets an index key whose file is gone (a whole file found wrong and deleted).
    pub(super) fn forget_key(&self, key: &[u8]) {
        self.index().remove(key);
    }

    /// Marks an index key as just used.
    pub(super) fn touch_key(&self, key: &[u8]) {
        self.index().touch(key);
    }

    /// Whether `size` more bytes fit under the low-water mark without evicting anything:
    /// what optional copies (whole files) may use, so that they never push blocks out.
    pub fn has_room_for(&self, size: u64) -> bool {
        self.index().bytes().saturating_add(size) <= self.low_water()
    }

    /// Whether the index lists the block.
    pub fn contains(&self, cid: &Cid) -> bool {
        self.index().contains(&multihash_key(cid))
    }

    /// A block of `size` bytes was written; starts an eviction (on a blocking thread of
    /// the current tokio runtime) if that took the total past the limit.
    pub fn written(self: &Arc<Self>, cid: &Cid, size: u64) {
        self.written_key(multihash_key(cid), size);
    }

    /// [`Quota::written`] for any index key (a whole file's, see `store::whole`).
    pub(super) fn written_key(self: &Arc<Self>, key: Key, size: u64) {
        let over = {
            let mut ix = self.index();
            ix.insert(key, size);
            ix.bytes() > self.limit.load(Ordering::Relaxed)
        };
        if over {
            self.start_eviction();
        }
    }

    /// A write failed because the disk is full: the limit drops to what the cache holds
    /// now, blocks are evicted to make room, and a warning is logged the first time.
    pub fn disk_full(self: &Arc<Self>) {
        if self.evicting.load(Ordering::Relaxed) {
            return; // an eviction is already making room
        }
        let held = self.index().bytes();
        let before = self.limit.fetch_min(held, Ordering::Relaxed);
        if !self.full_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                cache = %self.disk.dir().display(),
                held_bytes = held,
                "the cache disk is full: keeping the cache under {held} bytes from now on{} \
                 and evicting; reads go on from the network",
                if before == u64::MAX { String::new() } else { format!(" (quota was {before})") }
            );
        }
        self.start_eviction();
    }

    /// Starts an eviction if the cache is over its limit. The daemon calls this now and then,
    /// so that the cache converges even when the last write or release that crossed the
    /// limit found an eviction finishing and was not seen by it.
    pub fn evict_if_over(self: &Arc<Self>) {
        if self.index().bytes() > self.limit.load(Ordering::Relaxed) {
            self.start_eviction();
        }
    }

    pub(super) fn start_eviction(self: &Arc<Self>) {
        /// Eviction rounds one start runs at most (see below).
        const MAX_EVICTION_ROUNDS: usize = 16;
        if self.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
        let quota = Arc::clone(self);
        // Rounds after the first catch writes that crossed the limit while an eviction was
        // finishing (they found the flag set and left the work to it). Bounded, because
        // pinned and in-use blocks can keep the cache over its limit with nothing to evict.
        let run = move || {
            for _ in 0..MAX_EVICTION_ROUNDS {
                let target = quota.low_water();
                quota.evict_to(target);
                quota.evicting.store(false, Ordering::Release);
                let over = quota.index().bytes() > quota.limit.load(Ordering::Relaxed);
                if !over || quota.evicting.swap(true, Ordering::AcqRel) {
                    return;
                }
            }
            quota.evicting.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(run);
            }
            Err(_) => run(),
        }
    }

    /// Deletes least recently used unpinned, unused blocks until at most `target` bytes are
    /// held (or nothing evictable is left). Blocking.
    pub fn evict_to(&self, target: u64) -> (u64, u64) {
        let (mut blocks, mut bytes) = (0, 0);
        // Each round takes what the index says is over; writes landing meanwhile are caught
        // by the next round. Bounded: every round removes at least one entry or stops.
        loop {
            let victims = self.index().take_victims(target);
            if victims.is_empty() {
                break;
            }
            for (key, size) in victims {
                if self.delete(&key) {
                    blocks += 1;
                    bytes += size;
                }
            }
        }
        self.evicted_blocks.fetch_add(blocks, Ordering::Relaxed);
        self.evicted_bytes.fetch_add(bytes, Ordering::Relaxed);
        if blocks > 0 {
            tracing::debug!(blocks, bytes, target, "evicted");
        }
        (blocks, bytes)
    }

    fn delete(&self, key: &[u8]) -> bool {
        let Some(path) = self.disk.path_of_key(key) else {
            return false;
        };
        match std::fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => {
                tracing::warn!(path = %path.display(), "could not evict a cached block: {e}");
                false
            }
        }
    }

    /// Garbage collection now: removes temp files of writers other than this process, and
    /// evicts down to the limit. Blocking.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let temp_removed = remove_foreign_temp_files(self.disk.blocks_dir())?
            + remove_foreign_temp_files(self.disk.whole_dir())?;
        let target = self.limit.load(Ordering::Relaxed);
        let (evicted_blocks, evicted_bytes) = self.evict_to(target);
        let u = self.usage();
        Ok(GcReport {
            temp_removed,
            evicted_blocks,
            evicted_bytes,
            bytes_after: u.bytes,
            blocks_after: u.blocks,
            pinned_bytes: u.pinned_bytes,
        })
    }

    /// Adds one pin reference to each key.
    pub(crate) fn pin_keys<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) {
        let mut ix = self.index();
        for k in keys {
            ix.pin(k.clone());
        }
    }

    /// Drops one pin reference from each key.
    pub(crate) fn unpin_keys<'a>(&self, keys: impl IntoIterator<Item = &'a Key>) {
        let mut ix = self.index();
        for k in keys {
            ix.unpin(k);
        }
    }

    /// Whether a pin holds the block.
    pub fn is_pinned(&self, cid: &Cid) -> bool {
        self.index().is_pinned(&multihash_key(cid))
    }
}

/// Removes `.tmp-*` files under `<top>/<shard>/` (blocks or whole files) not written by this
/// process.
fn remove_foreign_temp_files(blocks: &std::path::Path) -> Result<u64, StoreError> {
    let io_err = |path: PathBuf| move |source| StoreError::Io { path, source };
    let me = std::process::id();
    let mut removed = 0;
    let shards = match std::fs::read_dir(blocks) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        other => other.map_err(io_err(blocks.to_path_buf()))?,
    };
    for shard in shards {
        let shard = shard.map_err(io_err(blocks.to_path_buf()))?;
        if !shard.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(pid) = temp_file_pid(&name.to_string_lossy()) {
                if pid != Some(me) && std::fs::remove_file(entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::block::{codec, Block};
    use crate::store::hold::InUse;

    /// A raw block of `len` bytes of `n` (also used by `store::hold`'s tests).
    pub(crate) fn block(n: u8, len: usize) -> Block {
        Block::encode(
            cid::Version::V1,
            codec::RAW,
            bytes::Bytes::from(vec![n; len]),
        )
    }

    /// Writes like the cache does (outside a runtime, eviction runs inline).
    pub(crate) fn put(q: &Arc<Quota>, b: &Block) {
        q.disk().put_sync(b).unwrap();
        q.written(b.cid(), b.data().len() as u64);
    }

    pub(crate) fn on_disk(q: &Quota, b: &Block) -> bool {
        q.disk().path_of(b.cid()).exists()
    }

    #[test]
    fn eviction_keeps_pinned_and_held_blocks_and_stops_at_low_water() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskStore::open_unsynced(dir.path()).unwrap();
        let q = Arc::new(Quota::open(disk, Some(1000)).unwrap());
        let blocks: Vec<Block> = (0..3).map(|n| block(n, 300)).collect();
        for b in &blocks {
            put(&q, b);
        }
        let held = InUse::new(Arc::clone(&q));
        held.add(blocks[0].cid()); // least recent, but an open file reads it
        q.pin_keys(&[multihash_key(blocks[1].cid())]);
        put(&q, &block(9, 300)); // 1200 > 1000: evict to 900
        let u = q.usage();
        assert!(u.bytes <= 900, "{u:?}");
        assert!(on_disk(&q, &blocks[0]) && on_disk(&q, &blocks[1]));
        assert!(
            !on_disk(&q, &blocks[2]),
            "the least recent evictable block stays"
        );
        assert_eq!(q.evicted(), (1, 300));
        drop(held);
        put(&q, &block(10, 300));
        put(&q, &block(11, 300)); // over again: now blocks[0] may go, blocks[1] never
        assert!(!on_disk(&q, &blocks[0]) && on_disk(&q, &blocks[1]));
        // A restart rebuilds the same totals from disk.
        let again = Quota::open(q.disk().clone(), Some(1000)).unwrap();
        assert_eq!(again.usage().bytes, q.usage().bytes);
    }

    #[test]
    fn forgetting_a_block_whose_file_landed_again_keeps_it_counted() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskStore::open_unsynced(dir.path()).unwrap();
        let q = Arc::new(Quota::open(disk, None).unwrap());
        let (a, b) = (block(1, 300), block(2, 200));
        put(&q, &a);
        put(&q, &b);
        // A reader found `a` corrupt while another reader's write of it landed: the file
        // is there, so the quota must go on counting it.
        q.forget(a.cid());
        assert!(q.contains(a.cid()));
        assert_eq!(q.usage().bytes, 500);
        // Really gone: forgotten.
        std::fs::remove_file(q.disk().path_of(b.cid())).unwrap();
        q.forget(b.cid());
        assert!(!q.contains(b.cid()));
        assert_eq!(q.usage().bytes, 300);
    }

    #[test]
    fn a_full_disk_lowers_the_limit_and_evicts() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskStore::open_unsynced(dir.path()).unwrap();
        let q = Arc::new(Quota::open(disk, None).unwrap());
        for n in 0..10 {
            put(&q, &block(n, 100));
        }
        assert_eq!(q.limit(), None);
        q.disk_full();
        assert_eq!(q.limit(), Some(1000));
        assert_eq!(q.usage().bytes, 900);
    }

    #[test]
    fn sizes() {
        for (text, n) in [
            ("0", 0),
            ("512", 512),
            ("24M", 24 << 20),
            ("24m", 24 << 20),
            ("1K", 1024),
            ("3G", 3 << 30),
            ("2T", 2 << 40),
            ("10MiB", 10 << 20),
            ("10MB", 10 << 20),
        ] {
            assert_eq!(parse_size(text).unwrap(), n, "{text}");
        }
        for bad in ["", "M", "1.5G", "-1", "12X", "99999999999T", "1 G"] {
            let e = parse_size(bad).unwrap_err().to_string();
            assert!(e.contains("not a size"), "{bad}: {e}");
        }
    }
}
