//! Block storage: the [`BlockStore`] trait every layer reads and writes blocks through, an
//! in-memory store for tests and tools, the on-disk store (`disk`), the caching store
//! (`cache`) and its quota (`quota`, `index`), pins (`pins`), one-process lock (`lock`) and
//! the note of which source served a read (`origin`), and whole-file copies for FUSE
//! passthrough (`whole`).
//!
//! Every block that enters a store is a [`Block`], so it has been verified or produced by
//! hashing; stores never accept raw bytes. The on-disk store proves what it reads back by
//! the seal it wrote with the verified bytes, or else by hashing them again.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cid::Cid;

use crate::block::{multihash_key, Block, BlockError};

pub mod cache;
pub mod disk;
pub mod hold;
pub mod index;
pub mod lock;
mod memtier;
pub mod origin;
pub mod pins;
pub mod quota;
mod seal;
pub mod whole;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation on the store failed.
    #[error("block store {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored block failed verification on read-back (it has been removed).
    #[error("stored block failed verification and was dropped: {0}")]
    Corrupt(#[from] BlockError),
}

/// Where blocks live. `get` answers `Ok(None)` for a block the store does not hold; later
/// layers (the cache) extend this into get-or-fetch.
#[async_trait]
pub trait BlockStore: Send + Sync {
    /// The block named by `cid`, if held. Identity CIDs are answered inline.
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError>;
    /// Stores a block (idempotent).
    async fn put(&self, block: Block) -> Result<(), StoreError>;
    /// Whether the block is held.
    async fn has(&self, cid: &Cid) -> Result<bool, StoreError>;
    /// The block if it is held here, never fetching it (a store that fetches on `get`
    /// overrides this; the default asks `has` first).
    async fn get_held(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if self.has(cid).await? {
            self.get(cid).await
        } else {
            Ok(None)
        }
    }
    /// A hint that `cid`s are about to be asked for one by one: a store that keeps blocks
    /// on disk brings those it holds into memory in one go, so the gets that follow do
    /// not each pay a trip to a blocking thread. Fetches nothing; errors are left to the
    /// gets. The default does nothing.
    async fn preload(&self, _cids: &[Cid]) {}
}

/// A store in memory, keyed by multihash. The mutex guards only map operations (no `.await`
/// while held).
#[derive(Default)]
pub struct MemStore {
    blocks: Mutex<HashMap<Vec<u8>, Block>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Stores a block synchronously (for sinks in pure code and tests).
    pub fn insert(&self, block: Block) {
        let key = multihash_key(block.cid());
        self.lock().entry(key).or_insert(block);
    }

    /// The number of blocks held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks a block up synchronously.
    pub fn get_sync(&self, cid: &Cid) -> Option<Block> {
        if let Ok(Some(b)) = Block::from_identity(cid) {
            return Some(b);
        }
        // The map is keyed by multihash; answer under the CID asked for.
        self.lock().get(&multihash_key(cid))?.relabel(cid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Block>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A shared store is a store (so wrappers such as [`hold::Holding`] can take an
/// `Arc<dyn BlockStore>`).
#[async_trait]
impl<T: BlockStore + ?Sized> BlockStore for std::sync::Arc<T> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        (**self).get(cid).await
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        (**self).put(block).await
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        (**self).has(cid).await
    }

    async fn get_held(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        (**self).get_held(cid).await
    }

    async fn preload(&self, cids: &[Cid]) {
        (**self).preload(cids).await
    }
}

#[async_trait]
impl BlockStore for MemStore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        Ok(self.get_sync(cid))
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.insert(block);
        Ok(())
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.get_sync(cid).is_some())
    }
}

/// The importer writes straight into a memory store (tests, `distfs add` without `--store`).
impl crate::import::BlockSink for MemStore {
    fn put(&mut self, block: Block) -> Result<(), crate::import::ImportError> {
        self.insert(block);
        Ok(())
    }
}
