//! The DAG walking the CAR responses need, kept minimal and local to `serve` until the shared
//! `walk` module offers path resolution and scoped traversal (then this file goes away):
//! resolve `/a/b` through UnixFS directories and HAMT shards, and walk below the terminus in
//! DFS pre-order for `dag-scope=all`, `entity`, or `entity-bytes`.
//!
//! Limits: at most [`MAX_DEPTH`] levels below the terminus and [`MAX_SHARD_VISITS`] shard
//! nodes per HAMT lookup. HAMT lookup here scans the shard's links (name prefix = bucket)
//! instead of hashing the name, descending into every sub-shard until the entry is found:
//! correct output, but it may read more shard blocks than the hash path (only the shards on
//! the found entry's path are written to the CAR). Links inside DAG-CBOR blocks are not
//! followed (a DAG-CBOR block is a leaf here), and pathing into DAG-CBOR is a 404.

use std::future::Future;

use cid::Cid;
use prost::Message;

use super::error::ServeError;
use super::request::EntityBytes;
use crate::block::{codec, Block};
use crate::store::BlockStore;
use crate::unixfs::pb::{Data, DataType, PbNode};

/// Deepest DAG walked below the terminus.
pub const MAX_DEPTH: usize = 256;
/// Most shard blocks read to look one name up in a HAMT.
pub const MAX_SHARD_VISITS: usize = 4096;

/// Receives blocks in DFS pre-order.
pub(crate) trait Sink {
    /// Takes a block; returns whether to descend into its children.
    fn block(&mut self, block: &Block) -> impl Future<Output = bool> + Send;
    /// True once nobody is listening any more (stop walking).
    fn closed(&self) -> bool;
}

/// A resolved content path: the blocks from the root to the terminus, in order.
#[derive(Debug)]
pub struct Resolved {
    /// Root first, terminus last; HAMT shards crossed on the way included.
    pub path: Vec<Block>,
    /// The CID of the root and of each segment (what `X-Ipfs-Roots` lists).
    pub roots: Vec<Cid>,
}

/// What to walk below the terminus.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope {
    /// Every block reachable.
    All,
    /// A whole file, or a directory's own blocks (HAMT shards), nothing else.
    Entity,
    /// Only the file blocks holding the range (the whole entity for non-files).
    Bytes(EntityBytes),
}

async fn fetch(store: &dyn BlockStore, cid: &Cid) -> Result<Block, ServeError> {
    store
        .get(cid)
        .await?
        .ok_or(ServeError::BlockNotFound { cid: *cid })
}

/// A dag-pb node with its UnixFS data, when it has any.
struct Node {
    pb: PbNode,
    unixfs: Option<Data>,
}

fn decode(block: &Block) -> Result<Option<Node>, ServeError> {
    if block.cid().codec() != codec::DAG_PB {
        return Ok(None);
    }
    let pb = PbNode::decode(block.data().as_ref()).map_err(|e| ServeError::Internal {
        what: format!("block {} is not valid dag-pb: {e}", block.cid()),
    })?;
    let unixfs = pb.data.as_deref().and_then(|d| Data::decode(d).ok());
    Ok(Some(Node { pb, unixfs }))
}

fn kind(node: &Node) -> Option<DataType> {
    node.unixfs
        .as_ref()
        .and_then(|d| DataType::try_from(d.r#type).ok())
}

fn link_cid(block: &Block, hash: Option<&Vec<u8>>) -> Result<Cid, ServeError> {
    hash.and_then(|h| Cid::try_from(h.as_slice()).ok())
        .ok_or_else(|| ServeError::Internal {
            what: format!("block {} has a link without a valid CID", block.cid()),
        })
}

/// Resolves `segments` below `root`. A missing root or segment is a 404.
pub async fn resolve(
    store: &dyn BlockStore,
    root: Cid,
    segments: &[String],
) -> Result<Resolved, ServeError> {
    let mut current = fetch(store, &root).await?;
    let mut path = Vec::with_capacity(segments.len() + 1);
    let mut roots = vec![root];
    let not_found = |i: usize| ServeError::PathNotFound {
        root: root.to_string(),
        path: segments.get(..=i).unwrap_or_default().join("/"),
        segment: segments.get(i).cloned().unwrap_or_default(),
    };
    for (i, seg) in segments.iter().enumerate() {
        let node = decode(&current)?.ok_or_else(|| not_found(i))?;
        let (next, shards) = match kind(&node) {
            Some(DataType::Directory) => {
                let link = node
                    .pb
                    .links
                    .iter()
                    .find(|l| l.name.as_deref() == Some(seg.as_str()))
                    .ok_or_else(|| not_found(i))?;
                (link_cid(&current, link.hash.as_ref())?, Vec::new())
            }
            Some(DataType::HamtShard) => hamt_find(store, &current, node, seg)
                .await?
                .ok_or_else(|| not_found(i))?,
            _ => return Err(not_found(i)),
        };
        path.push(current);
        path.extend(shards);
        current = fetch(store, &next).await?;
        roots.push(next);
    }
    path.push(current);
    Ok(Resolved { path, roots })
}

/// Finds `name` in the HAMT rooted at `root` (already decoded as `node`). Returns the entry's
/// CID and the sub-shard blocks crossed to reach it (not including `root`).
async fn hamt_find(
    store: &dyn BlockStore,
    root: &Block,
    node: Node,
    name: &str,
) -> Result<Option<(Cid, Vec<Block>)>, ServeError> {
    // DFS over shards with an explicit stack; each entry carries the chain that led to it.
    let mut stack: Vec<(Node, Block, Vec<Block>)> = vec![(node, root.clone(), Vec::new())];
    let mut visits = 0usize;
    while let Some((node, block, chain)) = stack.pop() {
        let mut subs = Vec::new();
        for link in &node.pb.links {
            let lname = link.name.as_deref().unwrap_or("");
            match lname.get(2..) {
                Some(entry) if !entry.is_empty() => {
                    if entry == name {
                        return Ok(Some((link_cid(&block, link.hash.as_ref())?, chain)));
                    }
                }
                _ => subs.push(link_cid(&block, link.hash.as_ref())?),
            }
        }
        for cid in subs.into_iter().rev() {
            visits += 1;
            if visits > MAX_SHARD_VISITS {
                return Err(ServeError::Internal {
                    what: format!(
                        "HAMT under {} has more than {MAX_SHARD_VISITS} shards",
                        root.cid()
                    ),
                });
            }
            let sub = fetch(store, &cid).await?;
            let Some(sub_node) = decode(&sub)? else {
                continue;
            };
            let mut sub_chain = chain.clone();
            sub_chain.push(sub.clone());
            stack.push((sub_node, sub, sub_chain));
        }
    }
    Ok(None)
}

/// One pending visit: a block to fetch, its depth, and for byte ranges the part of the
/// node's bytes wanted (`[start, end)` relative to the node).
struct Visit {
    cid: Cid,
    depth: usize,
    range: Option<(u64, u64)>,
}

/// Walks below `terminal` (already written) in DFS pre-order, handing each block to `sink`.
pub(crate) async fn walk<S: Sink + Send>(
    store: &dyn BlockStore,
    terminal: &Block,
    scope: Scope,
    sink: &mut S,
) -> Result<(), ServeError> {
    let node = decode(terminal)?;
    let is_file = node.as_ref().map(kind) == Some(Some(DataType::File))
        || node.as_ref().map(kind) == Some(Some(DataType::Raw));
    let is_hamt = node.as_ref().map(kind) == Some(Some(DataType::HamtShard));
    let range = match scope {
        Scope::Bytes(eb) if is_file => {
            let size = node
                .as_ref()
                .and_then(|n| n.unixfs.as_ref())
                .map_or(0, file_size);
            match eb.resolve(size) {
                Some(r) => Some(r),
                None => return Ok(()),
            }
        }
        _ => None,
    };
    // Entity of a plain directory, symlink or non-UnixFS block: the terminal alone.
    let everything = matches!(scope, Scope::All) || is_file;
    if !everything && !is_hamt {
        return Ok(());
    }
    let only_shards = !everything && is_hamt;
    let mut stack = Vec::new();
    push_children(terminal, node.as_ref(), 0, range, only_shards, &mut stack)?;
    while let Some(v) = stack.pop() {
        if sink.closed() {
            return Ok(());
        }
        if v.depth > MAX_DEPTH {
            return Err(ServeError::Internal {
                what: format!(
                    "DAG deeper than {MAX_DEPTH} levels below {}",
                    terminal.cid()
                ),
            });
        }
        let block = fetch(store, &v.cid).await?;
        if !sink.block(&block).await {
            continue;
        }
        let node = decode(&block)?;
        push_children(
            &block,
            node.as_ref(),
            v.depth,
            v.range,
            only_shards,
            &mut stack,
        )?;
    }
    Ok(())
}

/// A file node's byte length: `filesize`, else its own data plus the children's sizes.
fn file_size(d: &Data) -> u64 {
    d.filesize.unwrap_or_else(|| {
        d.data.as_ref().map_or(0, |x| x.len() as u64) + d.blocksizes.iter().sum::<u64>()
    })
}

/// Pushes the children to visit (in reverse, so the first link is popped first).
fn push_children(
    block: &Block,
    node: Option<&Node>,
    depth: usize,
    range: Option<(u64, u64)>,
    only_shards: bool,
    stack: &mut Vec<Visit>,
) -> Result<(), ServeError> {
    let Some(node) = node else {
        return Ok(());
    };
    let mut children = Vec::with_capacity(node.pb.links.len());
    match range {
        None => {
            for link in &node.pb.links {
                if only_shards && link.name.as_deref().is_some_and(|n| n.len() != 2) {
                    continue;
                }
                children.push(Visit {
                    cid: link_cid(block, link.hash.as_ref())?,
                    depth: depth + 1,
                    range: None,
                });
            }
        }
        Some((start, end)) => {
            let d = node.unixfs.as_ref();
            let own = d
                .and_then(|d| d.data.as_ref())
                .map_or(0, |x| x.len() as u64);
            let sizes = d.map(|d| d.blocksizes.as_slice()).unwrap_or_default();
            let mut offset = own;
            for (link, size) in node.pb.links.iter().zip(sizes) {
                let (lo, hi) = (offset, offset.saturating_add(*size));
                offset = hi;
                if lo < end && start < hi {
                    children.push(Visit {
                        cid: link_cid(block, link.hash.as_ref())?,
                        depth: depth + 1,
                        range: Some((start.max(lo) - lo, end.min(hi) - lo)),
                    });
                }
            }
        }
    }
    stack.extend(children.into_iter().rev());
    Ok(())
}
