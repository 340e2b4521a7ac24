//! The caching store's memory tier: recently used verified blocks, least recently used out
//! first once their cost passes the budget, each block charged its bytes plus its
//! bookkeeping. Pure bookkeeping under the cache's mutex: no I/O, no `.await`.

use cid::Cid;

use crate::block::{multihash_key, Block};

/// What one memory-tier entry costs beside its bytes (the key, the block's CID and handle,
/// the LRU links, the map slot), charged against the budget too: a tree of small files
/// fills the tier with blocks of a few dozen bytes, and counted by their bytes alone 16 MiB
/// of them took 26 MiB of heap.
const MEM_ENTRY_OVERHEAD: usize = 256;

/// A block's charge against the memory tier's budget.
fn mem_cost(block: &Block) -> usize {
    block.data().len() + MEM_ENTRY_OVERHEAD
}

/// Recently used verified blocks in memory, least recently used evicted first once their
/// bytes pass the budget. Serves the common pattern where readahead (or a lookup) brings a
/// block in and a READ asks for it moments later, and internal DAG nodes every READ passes
/// through: without it each would be re-read from disk and re-hashed. The mutex guards only
/// map operations (no `.await` while held).
pub(super) struct MemTier {
    blocks: lru::LruCache<Vec<u8>, Block>,
    bytes: usize,
    budget: usize,
}

impl MemTier {
    pub(super) fn new(budget: usize) -> MemTier {
        MemTier {
            blocks: lru::LruCache::unbounded(),
            bytes: 0,
            budget,
        }
    }

    pub(super) fn get(&mut self, cid: &Cid) -> Option<Block> {
        self.blocks.get(&multihash_key(cid))?.relabel(cid)
    }

    pub(super) fn contains(&self, cid: &Cid) -> bool {
        self.blocks.contains(&multihash_key(cid))
    }

    pub(super) fn insert(&mut self, block: &Block) {
        let cost = mem_cost(block);
        if cost > self.budget {
            return;
        }
        if let Some(old) = self.blocks.put(multihash_key(block.cid()), block.clone()) {
            self.bytes -= mem_cost(&old);
        }
        self.bytes += cost;
        while self.bytes > self.budget {
            match self.blocks.pop_lru() {
                Some((_, evicted)) => self.bytes -= mem_cost(&evicted),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn block(n: u8, len: usize) -> Block {
        Block::encode(
            cid::Version::V1,
            crate::block::codec::RAW,
            Bytes::from(vec![n; len]),
        )
    }

    #[test]
    fn evicts_least_recently_used_by_bytes() {
        let entry = 100 + MEM_ENTRY_OVERHEAD;
        let mut t = MemTier::new(3 * entry);
        let (a, b, c) = (block(1, 100), block(2, 100), block(3, 100));
        t.insert(&a);
        t.insert(&b);
        t.insert(&c);
        assert!(t.get(a.cid()).is_some()); // a is now the most recent
        t.insert(&block(4, 100)); // over budget: b (least recent) goes
        assert!(t.get(b.cid()).is_none());
        assert!(t.get(a.cid()).is_some() && t.get(c.cid()).is_some());
        assert_eq!(t.bytes, 3 * entry);
        t.insert(&block(5, 3 * entry)); // larger than the whole budget: not kept
        assert_eq!(t.bytes, 3 * entry);
    }

    #[test]
    fn small_blocks_are_charged_their_bookkeeping() {
        // 1,000 blocks of 10 bytes are 10,000 bytes of data but cost far more to keep.
        let mut t = MemTier::new(64 * 1024);
        for n in 0..1000u32 {
            t.insert(&Block::encode(
                cid::Version::V1,
                crate::block::codec::RAW,
                Bytes::from(n.to_le_bytes().repeat(3)),
            ));
        }
        assert!(t.bytes <= 64 * 1024);
        assert!(
            t.blocks.len() <= 64 * 1024 / MEM_ENTRY_OVERHEAD,
            "{}",
            t.blocks.len()
        );
    }

    #[test]
    fn answers_under_the_cid_asked_for() {
        let mut t = MemTier::new(1000);
        let b = block(7, 10);
        t.insert(&b);
        // Same multihash, other codec label: the same bytes, relabelled.
        let other = Cid::new_v1(crate::block::codec::DAG_PB, *b.cid().hash());
        assert_eq!(t.get(&other).map(|x| *x.cid()), Some(other));
    }
}
