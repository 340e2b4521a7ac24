//! `CountingStore`: a [`BlockStore`] wrapper that records every `get`, so tests can prove
//! that a walk fetched exactly the blocks it should (laziness, hash-path-only lookups).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cid::Cid;

use crate::block::Block;
use crate::store::{BlockStore, StoreError};

/// Wraps a store and logs each `get` (CID, in call order). The mutex is held only to
/// push or read the log, never across an `.await`.
pub struct CountingStore<S> {
    inner: S,
    log: Mutex<Vec<Cid>>,
}

impl<S> CountingStore<S> {
    /// Wraps `inner` with an empty log.
    pub fn new(inner: S) -> CountingStore<S> {
        CountingStore {
            inner,
            log: Mutex::new(Vec::new()),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Every `get` so far, in call order (concurrent gets in completion-start order).
    pub fn log(&self) -> Vec<Cid> {
        self.lock().clone()
    }

    /// How many times `cid` was asked for.
    pub fn gets(&self, cid: &Cid) -> usize {
        self.lock().iter().filter(|c| *c == cid).count()
    }

    /// Gets per CID.
    pub fn counts(&self) -> HashMap<Cid, usize> {
        let mut out = HashMap::new();
        for c in self.lock().iter() {
            *out.entry(*c).or_insert(0) += 1;
        }
        out
    }

    /// Total number of `get` calls.
    pub fn total(&self) -> usize {
        self.lock().len()
    }

    /// Forgets the log.
    pub fn reset(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Cid>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl<S: BlockStore> BlockStore for CountingStore<S> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        self.lock().push(*cid);
        self.inner.get(cid).await
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.inner.put(block).await
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.inner.has(cid).await
    }
}
