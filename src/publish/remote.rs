//! The current tree, read from the target: a [`BlockStore`] over a [`Fetcher`] that keeps
//! what it fetched in memory. The layout code asks only for the blocks on its path (root,
//! project directory, `versions`, `channels`), so only those are fetched.

use async_trait::async_trait;
use cid::Cid;

use crate::block::Block;
use crate::fetch::Fetcher;
use crate::store::{BlockStore, MemStore, StoreError};

/// Fetched blocks, kept for the run.
pub struct Remote {
    fetcher: Fetcher,
    mem: MemStore,
}

impl Remote {
    /// Reads through `fetcher`.
    pub fn new(fetcher: Fetcher) -> Remote {
        Remote {
            fetcher,
            mem: MemStore::new(),
        }
    }

    /// How many blocks were fetched.
    pub fn fetched(&self) -> usize {
        self.mem.len()
    }
}

#[async_trait]
impl BlockStore for Remote {
    /// From memory, else fetched (verified by `fetch`); `Ok(None)` when every source said
    /// the block does not exist.
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if let Some(b) = self.mem.get_sync(cid) {
            return Ok(Some(b));
        }
        match self.fetcher.get(cid).await {
            Ok(b) => {
                self.mem.insert(b.clone());
                Ok(Some(b))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(StoreError::Io {
                path: format!("/ipfs/{cid}").into(),
                source: std::io::Error::other(e),
            }),
        }
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.mem.insert(block);
        Ok(())
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        Ok(self.mem.get_sync(cid).is_some())
    }
}
