//! Eviction guards for open files: an [`InUse`] keeps the blocks added to it out of the
//! quota's eviction until it is dropped, and a [`Holding`] store adds every block read
//! through it to one. The quota (`super::quota`) does the bookkeeping; this module only
//! says which blocks are in use.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use cid::Cid;

use super::index::Key;
use super::quota::Quota;
use super::{BlockStore, StoreError};
use crate::block::{multihash_key, Block};

/// Blocks an open file reads, kept from eviction while this guard lives. Take one per open
/// file ([`crate::store::cache::CacheStore::hold`]) and [`InUse::add`] each block read
/// through it (or read through a [`Holding`] store, which does that); dropping the guard
/// releases them all.
#[derive(Debug)]
pub struct InUse {
    quota: Arc<Quota>,
    keys: Mutex<HashSet<Key>>,
}

impl InUse {
    pub(crate) fn new(quota: Arc<Quota>) -> InUse {
        InUse {
            quota,
            keys: Mutex::new(HashSet::new()),
        }
    }

    fn keys(&self) -> MutexGuard<'_, HashSet<Key>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `cid` from eviction until the guard is dropped.
    pub fn add(&self, cid: &Cid) {
        let key = multihash_key(cid);
        if self.keys().insert(key.clone()) {
            self.quota.index().hold(key);
        }
    }

    /// The blocks held.
    pub fn len(&self) -> usize {
        self.keys().len()
    }

    /// Whether no block is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for InUse {
    /// Releases the blocks, and evicts if they were what kept the cache over its limit
    /// (drop it inside the runtime: the eviction then runs on a blocking thread).
    fn drop(&mut self) {
        let keys = std::mem::take(&mut *self.keys());
        let over = {
            let mut ix = self.quota.index();
            for k in &keys {
                ix.release(k);
            }
            Some(ix.bytes()) > self.quota.limit()
        };
        if over && !keys.is_empty() {
            self.quota.start_eviction();
        }
    }
}

/// A [`BlockStore`] that reads through `store` and adds every block it returns to an
/// [`InUse`] guard: give the reads of one open file this store, and its blocks stay cached
/// for as long as the file is open.
/// Without a guard (`None`) it is `store` itself, so a reader need not have two paths.
pub struct Holding<S> {
    store: S,
    held: Option<Arc<InUse>>,
}

impl<S> Holding<S> {
    /// Reads through `store`, holding what it returns in `held` (if any).
    pub fn new(store: S, held: Option<Arc<InUse>>) -> Holding<S> {
        Holding { store, held }
    }
}

#[async_trait::async_trait]
impl<S: BlockStore> BlockStore for Holding<S> {
    /// Holds the block before reading it: an eviction running meanwhile either took it
    /// before (the read then fetches and writes it again, and the write is held) or skips it.
    /// Holding after the read could keep a key whose file an eviction had just deleted.
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if let Some(held) = &self.held {
            held.add(cid);
        }
        self.store.get(cid).await
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.store.put(block).await
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.store.has(cid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::disk::DiskStore;
    use crate::store::quota::tests::{block, on_disk, put};

    #[tokio::test]
    async fn a_holding_store_keeps_what_it_read_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskStore::open_unsynced(dir.path()).unwrap();
        // No limit: only the explicit evictions below run (none in the background).
        let q = Arc::new(Quota::open(disk.clone(), None).unwrap());
        let (a, b, c) = (block(1, 300), block(2, 300), block(3, 300));
        let held = Arc::new(InUse::new(Arc::clone(&q)));
        let reader = Holding::new(disk, Some(Arc::clone(&held)));
        put(&q, &a);
        assert_eq!(reader.get(a.cid()).await.unwrap(), Some(a.clone()));
        // Asked for before it was there: held all the same, so the write that follows a
        // fetch is kept too.
        assert_eq!(reader.get(b.cid()).await.unwrap(), None);
        assert_eq!(held.len(), 2);
        put(&q, &b);
        put(&q, &c); // read by no open file
        q.evict_to(600); // c goes, though a is less recent

        assert!(on_disk(&q, &a) && on_disk(&q, &b) && !on_disk(&q, &c));
        drop(reader);
        drop(held);
        q.evict_to(0);
        assert!(!on_disk(&q, &a) && !on_disk(&q, &b));
    }
}
