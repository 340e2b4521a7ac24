//! When a file is copied whole into the cache's whole-file tier (`store::whole`, what FUSE
//! passthrough reads), and what it is copied from.
//!
//! A file is offered when the last handle that read it through the daemon closes (see
//! `fs::iomode`): a whole copy already on disk is proved then, the first time in a daemon's
//! life, unless those reads, answered from the copy chunk by chunk, proved it already. It is copied only if the cache holds every block of it: a copy never
//! fetches, so a file read in part (an AppImage that touched a tenth of itself) costs one
//! walk over its internal nodes, which are held, and stays as it is. The bytes are read
//! from the held blocks with the same range reads FUSE reads use, so each block is proved
//! by its seal or hash on the way.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;

use crate::block::{codec, mh, Block};
use crate::store::whole::{Job, WholeFiles};
use crate::store::{BlockStore, StoreError};
use crate::unixfs::Node;
use crate::walk::{self, WalkError};

/// A store that answers only what `inner` holds: a copy never fetches.
struct Held(Arc<dyn BlockStore>);

#[async_trait]
impl BlockStore for Held {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        self.0.get_held(cid).await
    }
    async fn put(&self, _block: Block) -> Result<(), StoreError> {
        Ok(())
    }
    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.0.has(cid).await
    }
}

/// Whether `store` holds every block of the file `root` of `size` bytes. Reads only
/// internal nodes (and dag-pb leaves, whose kind shows only once decoded); raw leaves are
/// asked for by `has`. Bounded: a file of `size` bytes has at most one block per byte.
async fn all_held(store: &dyn BlockStore, root: &Cid, size: u64) -> Result<bool, WalkError> {
    let mut budget = size.saturating_add(1);
    let mut stack = vec![*root];
    while let Some(cid) = stack.pop() {
        budget = match budget.checked_sub(1) {
            Some(b) => b,
            None => return Ok(false),
        };
        if cid.hash().code() == mh::IDENTITY {
            continue;
        }
        if cid.codec() == codec::RAW {
            match store.has(&cid).await {
                Ok(true) => continue,
                Ok(false) => return Ok(false),
                Err(source) => return Err(WalkError::Store { cid, source }),
            }
        }
        match walk::load(store, &cid).await {
            Ok(Node::File(node)) => stack.extend(node.children.iter().rev().map(|c| c.cid)),
            Ok(_) => return Ok(false),
            Err(WalkError::MissingBlock { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Offers the file `cid` (`size` bytes) to `whole`: a task proves its whole copy on disk if
/// this process has not, or writes one if `whole` wants one and `store` holds all of the
/// file. Returns at once; call on the runtime.
pub(super) fn offer(store: Arc<dyn BlockStore>, whole: &Arc<WholeFiles>, cid: Cid, size: u64) {
    let ticket = match whole.begin(&cid, size) {
        None => return,
        Some(Job::Write(ticket)) => ticket,
        Some(Job::Prove(proof)) => {
            let span = tracing::debug_span!("whole_proof", cid = %cid, size);
            tokio::task::spawn_blocking(move || span.in_scope(|| proof.run()));
            return;
        }
    };
    let span = tracing::debug_span!("whole_copy", cid = %cid, size);
    let task = async move {
        let held = Held(store);
        match all_held(&held, &cid, size).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::trace!("not every block is held: no whole copy");
                return;
            }
            Err(e) => {
                tracing::debug!("no whole copy: {e}");
                return;
            }
        }
        let rt = tokio::runtime::Handle::current();
        let span = tracing::Span::current();
        let written = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            ticket.write(|offset, len| -> Result<Bytes, String> {
                rt.block_on(walk::read_range(&held, &cid, offset, len))
                    .map_err(|e| e.to_string())
            })
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            // A block evicted meanwhile, or a full disk: the next close offers it again.
            Ok(Err(e)) => tracing::debug!("no whole copy: {e}"),
            Err(e) => tracing::warn!("the whole-copy task failed: {e}"),
        }
    };
    tokio::spawn(tracing::Instrument::instrument(task, span));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use crate::unixfs::testutil::{balanced, Blocks, Leaf};

    #[tokio::test]
    async fn a_file_is_all_held_only_when_every_leaf_is() {
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        for leaf in [Leaf::Raw, Leaf::PbFile] {
            // 10 leaves of 64 KiB, 4 links per node: three levels.
            let mut blocks = Blocks::default();
            let root = balanced(&mut blocks, &data, 64 * 1024, 4, leaf);
            let full = MemStore::new();
            let partial = MemStore::new();
            let mut dropped = 0;
            for (cid, block) in &blocks.0 {
                full.insert(block.clone());
                // Drop one leaf: a block with no children of its own.
                let is_leaf =
                    matches!(Node::from_block(block), Ok(Node::File(f)) if f.children.is_empty());
                if is_leaf && dropped == 0 && *cid != root {
                    dropped += 1;
                    continue;
                }
                partial.insert(block.clone());
            }
            assert_eq!(dropped, 1);
            let size = data.len() as u64;
            assert!(all_held(&full, &root, size).await.unwrap(), "{leaf:?}");
            assert!(!all_held(&partial, &root, size).await.unwrap(), "{leaf:?}");
            assert!(!all_held(&MemStore::new(), &root, size).await.unwrap());
            // A DAG with more blocks than its size allows is refused, not walked forever.
            assert!(!all_held(&full, &root, 3).await.unwrap(), "{leaf:?}");
        }
    }
}
