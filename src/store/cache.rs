//! The caching store: get-or-fetch over the on-disk store and a [`Fetcher`].
//!
//! A hit is read back from disk and proven by [`DiskStore`] (by its seal, or its hash; a
//! block that fails is deleted there and fetched again here). A miss is fetched once no
//! matter how many readers want it at the same time (single-flight over "check disk, fetch,
//! write"), written to disk (write-then-rename on a blocking thread) and returned. The
//! cache persists across restarts because it is the disk store. In offline mode a miss is an error and nothing is fetched.
//!
//! Every hit, write and dropped block is reported to the [`Quota`], which keeps the disk
//! under its limit; a write that fails because the disk is full is reported there too (it
//! evicts and warns once) and the fetched block is still returned.
//!
//! Two ways in:
//! - [`CacheStore::get`] (what the filesystem layer calls) returns the block or a
//!   [`CacheError`] that says why (not found anywhere, timed out, offline, disk failure);
//! - the [`BlockStore`] impl answers `Ok(None)` only when every source said the block does
//!   not exist; every other failure becomes a [`StoreError::Io`] wrapping the `CacheError`
//!   (kind `TimedOut` for a deadline), because `StoreError` has no fetch variant.

// Errors carry the CID (88 bytes) plus URL and reason, as the house rules ask; they travel
// only on network paths where moving ~150 bytes is noise next to the request itself.
#![allow(
    clippy::result_large_err,
    reason = "structured error fields on network paths"
)]

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use cid::Cid;

use super::disk::DiskStore;
use super::hold::InUse;
use super::memtier::MemTier;
use super::quota::{GcReport, Quota, Usage};
use super::{BlockStore, StoreError};
use crate::block::{multihash_key, Block};
use crate::fetch::{FetchError, Fetcher, SingleFlight};

/// Why the cache could not produce a block.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// Offline mode and the block is not cached.
    #[error("block {cid} is not in the cache and the cache is offline (go online, or fetch it while online)")]
    Offline { cid: Cid },
    /// Fetching failed (see [`FetchError`]'s policy methods).
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The disk store failed.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl CacheError {
    /// Every source said the block does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CacheError::Fetch(e) if e.is_not_found())
    }

    /// Trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, CacheError::Fetch(e) if e.is_retryable())
    }
}

impl From<StoreError> for CacheError {
    fn from(e: StoreError) -> Self {
        CacheError::Store(Arc::new(e))
    }
}

/// Counters of a [`CacheStore`] since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    /// `get`s answered from disk.
    pub hits: u64,
    /// `get`s not answered from disk on first look (joiners of a running fetch included).
    pub misses: u64,
    /// Blocks fetched from sources (one per single-flight fetch).
    pub fetches: u64,
    /// Verified bytes fetched from sources.
    pub fetched_bytes: u64,
    /// Blocks found corrupt on disk (deleted and fetched again).
    pub corrupt_dropped: u64,
}

/// A block cache on disk that fetches what it does not hold. Cheap to clone.
#[derive(Clone)]
pub struct CacheStore {
    inner: Arc<Inner>,
}

/// Bytes of verified blocks kept in memory in front of the disk (least recently used first
/// out), so that readahead and internal DAG nodes are not re-read from disk per READ. A leaf
/// that a READ has taken is in the kernel's page cache from then on, so the tier needs to
/// cover little more than the readahead ahead of the readers: 16 MiB holds two 8 MiB
/// windows, and a block it drops before a READ comes is read back from the disk (or from
/// the pending writes), never fetched again. (64 MiB measured no faster, and was the largest
/// part of the daemon's memory.)
pub const MEMORY_TIER_BYTES: usize = 16 * 1024 * 1024;

/// The most bytes one [`CacheStore::preload`] brings into the memory tier: a quarter of it, so
/// what a burst preloads is still there when its gets come.
const PRELOAD_BYTES: usize = MEMORY_TIER_BYTES / 4;

/// A filled miss: the block and, when it was fetched, the name of the source that sent it.
type Filled = (Block, Option<Arc<str>>);

/// Disk writes of fetched blocks that may be pending at once (each holds its block in memory).
pub const MAX_PENDING_WRITES: usize = 64;

struct Inner {
    mem: std::sync::Mutex<MemTier>,
    /// Fetched blocks whose background disk write has not finished (at most
    /// [`MAX_PENDING_WRITES`]), by multihash: a block the memory tier drops before its file
    /// lands is found here instead of being fetched a second time.
    pending: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Block>>,
    /// One permit per pending background disk write.
    writes: Arc<tokio::sync::Semaphore>,
    disk: DiskStore,
    quota: Arc<Quota>,
    fetcher: Fetcher,
    offline: AtomicBool,
    flights: SingleFlight<Cid, Result<Filled, CacheError>>,
    hits: AtomicU64,
    misses: AtomicU64,
    fetches: AtomicU64,
    fetched_bytes: AtomicU64,
    corrupt_dropped: AtomicU64,
}

impl CacheStore {
    /// A cache over `disk` that fills misses from `fetcher`, with no quota and without
    /// scanning what `disk` already holds (tests, tools; a daemon uses
    /// [`CacheStore::with_quota`]).
    pub fn new(disk: DiskStore, fetcher: Fetcher) -> CacheStore {
        let quota = Arc::new(Quota::unscanned(disk.clone()));
        CacheStore::with_quota(quota, fetcher)
    }

    /// A cache over the quota's disk store, kept under its limit, that fills misses from
    /// `fetcher`.
    pub fn with_quota(quota: Arc<Quota>, fetcher: Fetcher) -> CacheStore {
        let disk = quota.disk().clone();
        CacheStore {
            inner: Arc::new(Inner {
                mem: std::sync::Mutex::new(MemTier::new(MEMORY_TIER_BYTES)),
                pending: std::sync::Mutex::new(std::collections::HashMap::new()),
                writes: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_WRITES)),
                disk,
                quota,
                fetcher,
                offline: AtomicBool::new(false),
                flights: SingleFlight::new(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                fetches: AtomicU64::new(0),
                fetched_bytes: AtomicU64::new(0),
                corrupt_dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Builder form of [`CacheStore::set_offline`].
    pub fn with_offline(self, offline: bool) -> CacheStore {
        self.set_offline(offline);
        self
    }

    /// In offline mode only cached blocks are served; a miss is [`CacheError::Offline`].
    pub fn set_offline(&self, offline: bool) {
        self.inner.offline.store(offline, Ordering::Relaxed);
    }

    /// Whether the cache is offline.
    pub fn is_offline(&self) -> bool {
        self.inner.offline.load(Ordering::Relaxed)
    }

    /// Waits until every background disk write started so far has finished, or `limit`
    /// has passed; returns whether they all finished.
    pub async fn flush(&self, limit: std::time::Duration) -> bool {
        let all = u32::try_from(MAX_PENDING_WRITES).unwrap_or(u32::MAX);
        matches!(
            tokio::time::timeout(limit, self.inner.writes.acquire_many(all)).await,
            Ok(Ok(_))
        )
    }

    /// The disk store underneath.
    pub fn disk(&self) -> &DiskStore {
        &self.inner.disk
    }

    /// The quota index over the disk store.
    pub fn quota(&self) -> &Arc<Quota> {
        &self.inner.quota
    }

    /// What the cache holds now.
    pub fn usage(&self) -> Usage {
        self.inner.quota.usage()
    }

    /// Garbage collection: removes temp files of dead writers and evicts down to the quota.
    pub async fn gc(&self) -> Result<GcReport, StoreError> {
        let quota = Arc::clone(&self.inner.quota);
        blocking_gc(quota).await
    }

    /// A guard that keeps the blocks [`InUse::add`]ed to it from eviction until dropped
    /// (take one per open file).
    pub fn hold(&self) -> InUse {
        InUse::new(Arc::clone(&self.inner.quota))
    }

    /// Writes `block` to disk now (not in the background) and indexes it.
    pub(crate) async fn store_now(&self, block: &Block) -> Result<(), CacheError> {
        self.inner.store_block(block.clone()).await
    }

    /// The fetcher that fills misses (its `stats()` has per-source figures).
    pub fn fetcher(&self) -> &Fetcher {
        &self.inner.fetcher
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: n(&self.inner.hits),
            misses: n(&self.inner.misses),
            fetches: n(&self.inner.fetches),
            fetched_bytes: n(&self.inner.fetched_bytes),
            corrupt_dropped: n(&self.inner.corrupt_dropped),
        }
    }

    /// The verified block named by `cid`: from disk, or fetched, stored and returned.
    /// Concurrent misses of one CID cause one fetch.
    #[tracing::instrument(name = "cache_get", skip_all, fields(cid = %cid))]
    pub async fn get(&self, cid: &Cid) -> Result<Block, CacheError> {
        if let Some(b) = self.inner.mem_get(cid) {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            self.inner.quota.touch(cid);
            return Ok(b);
        }
        if let Some(b) = self.inner.read_disk(cid).await? {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            self.inner.quota.touch(cid);
            self.inner.mem_insert(&b);
            return Ok(b);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        if self.is_offline() {
            return Err(CacheError::Offline { cid: *cid });
        }
        let (inner, cid) = (Arc::clone(&self.inner), *cid);
        let (block, source) = self
            .inner
            .flights
            .run(cid, move || async move { inner.fill(cid).await })
            .await
            .unwrap_or_else(|lost| {
                Err(CacheError::Fetch(FetchError::TaskFailed {
                    cid,
                    reason: lost.reason,
                }))
            })?;
        if let Some(source) = &source {
            super::origin::note(source);
        }
        Ok(block)
    }
}

impl Inner {
    fn mem(&self) -> std::sync::MutexGuard<'_, MemTier> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, Block>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block from the memory tier, or from the writes still pending.
    fn mem_get(&self, cid: &Cid) -> Option<Block> {
        if let Some(b) = self.mem().get(cid) {
            return Some(b);
        }
        self.pending().get(&multihash_key(cid))?.relabel(cid)
    }

    fn mem_insert(&self, block: &Block) {
        self.mem().insert(block);
    }

    /// [`CacheStore::preload`]'s disk reads, on a blocking thread.
    fn preload_sync(&self, cids: &[Cid]) {
        let mut bytes = 0;
        for cid in cids {
            if bytes >= PRELOAD_BYTES {
                break;
            }
            match self.disk.get_sync(cid) {
                Ok(Some(b)) => {
                    bytes += b.data().len();
                    self.mem_insert(&b);
                }
                Ok(None) => {}
                Err(StoreError::Corrupt(e)) => {
                    self.quota.forget(cid);
                    self.note_corrupt(cid, &e);
                }
                // Left to the get that follows, which reports it.
                Err(_) => {}
            }
        }
    }

    /// Counts and reports a cached block that failed its check (the disk store has deleted
    /// it; the caller has told the quota).
    fn note_corrupt(&self, cid: &Cid, e: &dyn std::fmt::Display) {
        self.corrupt_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(cid = %cid, "cached block was corrupt and is fetched again: {e}");
    }

    /// Reads a block from disk; a corrupt one (already deleted by the disk store) is a miss.
    ///
    /// A plain miss leaves the index alone: the file may be landing right now from another
    /// reader's write-behind, and forgetting it after its `written` would leave a file the
    /// quota never counts (the cache would then stay over its limit for good). An index entry
    /// whose file is gone only makes eviction start a little early, and eviction drops it.
    async fn read_disk(&self, cid: &Cid) -> Result<Option<Block>, CacheError> {
        match self.disk.get(cid).await {
            Ok(Some(b)) => Ok(Some(b)),
            Ok(None) => Ok(None),
            Err(StoreError::Corrupt(e)) => {
                let quota = Arc::clone(&self.quota);
                let cid_owned = *cid;
                let _ = tokio::task::spawn_blocking(move || quota.forget(&cid_owned)).await;
                self.note_corrupt(cid, &e);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The single-flight body: look again (an earlier flight may have just fetched it),
    /// fetch, store. A failed disk write is logged and the verified block still returned
    /// with the name of the source that sent it.
    async fn fill(self: &Arc<Self>, cid: Cid) -> Result<Filled, CacheError> {
        // A flight that ended just before this one started put its block in memory first.
        if let Some(b) = self.mem_get(&cid) {
            return Ok((b, None));
        }
        if self.offline.load(Ordering::Relaxed) {
            return Err(CacheError::Offline { cid });
        }
        let (block, source) = self.fetcher.get_with_source(&cid).await?;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        self.fetched_bytes
            .fetch_add(block.data().len() as u64, Ordering::Relaxed);
        self.mem_insert(&block);
        self.write_behind(block.clone()).await;
        Ok((block, Some(source)))
    }

    /// Writes `block` to disk in the background; waits only when [`MAX_PENDING_WRITES`]
    /// writes are already pending. A failed write is logged (the block stays fetchable).
    async fn write_behind(self: &Arc<Self>, block: Block) {
        let Ok(permit) = Arc::clone(&self.writes).acquire_owned().await else {
            return; // the semaphore is never closed
        };
        let key = multihash_key(block.cid());
        self.pending().insert(key.clone(), block.clone());
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let cid = *block.cid();
            if let Err(e) = store_block(&inner.disk, &inner.quota, block).await {
                tracing::warn!(cid = %cid, "fetched block could not be cached on disk: {e}");
            }
            inner.pending().remove(&key);
            drop(permit);
        });
    }

    /// Writes a block to disk now and indexes it.
    async fn store_block(&self, block: Block) -> Result<(), CacheError> {
        store_block(&self.disk, &self.quota, block)
            .await
            .map_err(CacheError::from)
    }
}

/// Writes `block` and indexes it. A full disk is reported to the quota (which evicts and
/// warns once) and is not an error: the block was verified and is still served.
async fn store_block(disk: &DiskStore, quota: &Arc<Quota>, block: Block) -> Result<(), StoreError> {
    let (cid, len) = (*block.cid(), block.data().len() as u64);
    match disk.put(block).await {
        Ok(()) => {
            quota.written(&cid, len);
            Ok(())
        }
        Err(StoreError::Io { source, .. }) if is_disk_full(&source) => {
            quota.disk_full();
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
        || e.raw_os_error() == Some(libc::EDQUOT)
        || e.kind() == io::ErrorKind::StorageFull
}

async fn blocking_gc(quota: Arc<Quota>) -> Result<GcReport, StoreError> {
    tokio::task::spawn_blocking(move || quota.gc())
        .await
        .unwrap_or_else(|join| {
            Err(StoreError::Io {
                path: std::path::PathBuf::new(),
                source: io::Error::other(format!("gc task failed: {join}")),
            })
        })
}

#[async_trait]
impl BlockStore for CacheStore {
    /// Get-or-fetch; `Ok(None)` only when every source said the block does not exist.
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        match CacheStore::get(self, cid).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(CacheError::Store(e)) => {
                Err(Arc::try_unwrap(e).unwrap_or_else(|shared| StoreError::Io {
                    path: self.inner.disk.path_of(cid),
                    source: io::Error::other(shared.to_string()),
                }))
            }
            Err(e) => {
                let kind = match &e {
                    CacheError::Fetch(FetchError::Timeout { .. }) => io::ErrorKind::TimedOut,
                    _ => io::ErrorKind::Other,
                };
                Err(StoreError::Io {
                    path: self.inner.disk.path_of(cid),
                    source: io::Error::new(kind, e),
                })
            }
        }
    }

    /// Stores a block on disk (and indexes it).
    async fn put(&self, block: Block) -> Result<(), StoreError> {
        store_block(&self.inner.disk, &self.inner.quota, block).await
    }

    /// Whether the block is cached, in memory or on disk (never fetches).
    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        if self.inner.mem().contains(cid) || self.inner.pending().contains_key(&multihash_key(cid))
        {
            return Ok(true);
        }
        self.inner.disk.has(cid).await
    }

    /// Reads the held blocks among `cids` that are not in memory from disk, in one blocking
    /// call and up to 4 MiB (a quarter of the tier), into the memory tier.
    async fn preload(&self, cids: &[Cid]) {
        let want: Vec<Cid> = {
            let mem = self.inner.mem();
            cids.iter().filter(|c| !mem.contains(c)).copied().collect()
        };
        if want.is_empty() {
            return;
        }
        let inner = Arc::clone(&self.inner);
        let _ = tokio::task::spawn_blocking(move || inner.preload_sync(&want)).await;
    }

    /// The block from memory or disk (never fetches).
    async fn get_held(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if let Some(b) = self.inner.mem_get(cid) {
            return Ok(Some(b));
        }
        match self.inner.read_disk(cid).await {
            Ok(found) => Ok(found),
            Err(CacheError::Store(e)) => {
                Err(Arc::try_unwrap(e).unwrap_or_else(|shared| StoreError::Io {
                    path: self.inner.disk.path_of(cid),
                    source: io::Error::other(shared.to_string()),
                }))
            }
            Err(e) => Err(StoreError::Io {
                path: self.inner.disk.path_of(cid),
                source: io::Error::other(e),
            }),
        }
    }
}
