//! Ranged file reads: which blocks a byte range of a file needs, fetched one tree level at a
//! time (at most [`FETCH_CONCURRENCY`] at once), and the bytes put together.
//!
//! Two things keep the per-read cost near the cost of the bytes themselves:
//! - a [`NodeCache`] of decoded internal nodes, so that a sequential reader does not decode
//!   the same 174-link node for every kernel READ (decoding one costs about 11 times hashing
//!   it, see benches/README.md);
//! - leaf bytes are `Bytes` slices of the verified blocks: a read that falls inside one leaf
//!   returns a slice of it with no copy, and only reads spanning leaves are assembled.
//!
//! [`prefetch_range`] walks the same blocks without assembling anything, for readahead.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cid::Cid;
use futures::stream::{self, StreamExt};
use lru::LruCache;

use super::{load, WalkError, FETCH_CONCURRENCY, MAX_DEPTH, MAX_READ_LEN};
use crate::store::BlockStore;
use crate::unixfs::{plan_read, FileNode, Node, UnixfsError};

/// Decoded internal file nodes (nodes with children), most recently used kept.
///
/// Leaves are not kept here: their bytes are the block itself, which the block store's own
/// memory tier already holds. The `Mutex` guards only a map lookup or insert, never an
/// `.await`.
pub struct NodeCache {
    nodes: Mutex<LruCache<Cid, Arc<FileNode>>>,
}

impl NodeCache {
    /// How many internal nodes a default cache keeps. A 174-link node takes about 17 KB
    /// decoded and covers 43.5 MiB of a file with 256 KiB chunks, so 1,024 nodes (~17 MB)
    /// cover the internal nodes of tens of GiB of files being read.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A cache holding at most `capacity` nodes (at least one).
    pub fn new(capacity: usize) -> NodeCache {
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        NodeCache {
            nodes: Mutex::new(LruCache::new(capacity)),
        }
    }

    /// How many nodes are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no node is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, cid: &Cid) -> Option<Arc<FileNode>> {
        self.lock().get(cid).cloned()
    }

    fn insert(&self, node: Arc<FileNode>) {
        self.lock().put(node.cid, node);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Cid, Arc<FileNode>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for NodeCache {
    fn default() -> NodeCache {
        NodeCache::new(NodeCache::DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for NodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCache")
            .field("len", &self.len())
            .finish()
    }
}

/// Reads `len` bytes at `offset` of the file `cid`, clamped at the end of the file
/// (at most [`MAX_READ_LEN`] bytes after clamping, else [`WalkError::ReadTooLarge`]).
/// Fetches only the blocks on the path of that range, one tree level at a time.
/// Memory: the blocks of the range plus, when it spans leaves, one buffer of its length.
#[tracing::instrument(skip_all, fields(cid = %cid, offset, len))]
pub async fn read_range<S: BlockStore + ?Sized>(
    store: &S,
    cid: &Cid,
    offset: u64,
    len: u64,
) -> Result<Bytes, WalkError> {
    read_impl(store, None, cid, offset, len, READ).await
}

/// [`read_range`], taking decoded internal nodes from `nodes` and adding the ones it decodes.
#[tracing::instrument(skip_all, fields(cid = %cid, offset, len))]
pub async fn read_range_cached<S: BlockStore + ?Sized>(
    store: &S,
    nodes: &NodeCache,
    cid: &Cid,
    offset: u64,
    len: u64,
) -> Result<Bytes, WalkError> {
    read_impl(store, Some(nodes), cid, offset, len, READ).await
}

/// Loads every block that [`read_range`] of the same range would, and nothing else, without
/// putting bytes together: what readahead wants (the store keeps what it loaded). Memory:
/// the blocks being loaded, never a buffer of the range's length.
#[tracing::instrument(skip_all, fields(cid = %cid, offset, len))]
pub async fn prefetch_range<S: BlockStore + ?Sized>(
    store: &S,
    nodes: &NodeCache,
    cid: &Cid,
    offset: u64,
    len: u64,
) -> Result<(), WalkError> {
    prefetch_range_wide(store, nodes, cid, offset, len, FETCH_CONCURRENCY).await
}

/// [`prefetch_range`] with up to `concurrency` blocks asked for at once (at least one):
/// readahead sized to the fetcher's window gets its whole window in one round trip.
#[tracing::instrument(skip_all, fields(cid = %cid, offset, len, concurrency))]
pub async fn prefetch_range_wide<S: BlockStore + ?Sized>(
    store: &S,
    nodes: &NodeCache,
    cid: &Cid,
    offset: u64,
    len: u64,
    concurrency: usize,
) -> Result<(), WalkError> {
    let how = How {
        assemble: false,
        concurrency: concurrency.max(1),
    };
    read_impl(store, Some(nodes), cid, offset, len, how)
        .await
        .map(drop)
}

/// What a walk over a range does: put the bytes together or only load the blocks, and how
/// many blocks it asks for at once.
#[derive(Clone, Copy)]
struct How {
    assemble: bool,
    concurrency: usize,
}

/// A read: bytes put together, [`FETCH_CONCURRENCY`] blocks at once.
const READ: How = How {
    assemble: true,
    concurrency: FETCH_CONCURRENCY,
};

/// One pending child read: which block, which part of it, and where the bytes go.
struct Pending {
    parent: Cid,
    cid: Cid,
    expected_size: u64,
    offset: u64,
    len: u64,
    dest: u64,
}

/// A slice of file bytes and its place in the output.
struct Piece {
    dest: u64,
    bytes: Bytes,
}

async fn read_impl<S: BlockStore + ?Sized>(
    store: &S,
    nodes: Option<&NodeCache>,
    cid: &Cid,
    offset: u64,
    len: u64,
    how: How,
) -> Result<Bytes, WalkError> {
    let assemble = how.assemble;
    let root = load_file(store, nodes, cid)
        .await?
        .ok_or(WalkError::NotAFile { cid: *cid })?;
    let plan = plan_read(&root, offset, len);
    if plan.len > MAX_READ_LEN {
        return Err(WalkError::ReadTooLarge {
            cid: *cid,
            len: plan.len,
            max: MAX_READ_LEN,
        });
    }
    let total = usize::try_from(plan.len).map_err(|_| UnixfsError::SizeOverflow { cid: *cid })?;
    let mut pieces = Vec::new();
    let mut level = Vec::new();
    take_plan(
        &root,
        offset.min(root.size),
        plan.len,
        0,
        assemble.then_some(&mut pieces),
        &mut level,
    );
    let mut depth = 0;
    while !level.is_empty() {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(WalkError::TooDeep {
                cid: *cid,
                max: MAX_DEPTH,
            });
        }
        let mut next = Vec::new();
        let mut loaded = stream::iter(level)
            .map(|p| async move { load_file(store, nodes, &p.cid).await.map(|n| (p, n)) })
            .buffer_unordered(how.concurrency);
        while let Some(item) = loaded.next().await {
            let (p, node) = item?;
            let child = checked_child(&p, node)?;
            let out = assemble.then_some(&mut pieces);
            take_plan(&child, p.offset, p.len, p.dest, out, &mut next);
        }
        level = next;
    }
    if !assemble {
        // A walk that only loads (readahead) has no pieces; putting nothing together would
        // still allocate and zero a buffer as long as the whole window (8–32 MiB).
        return Ok(Bytes::new());
    }
    Ok(assemble_pieces(pieces, total))
}

/// The pieces as one buffer: a single piece covering everything is returned as is (no copy);
/// otherwise they are appended in file order (they tile the range: no zero-fill needed).
fn assemble_pieces(mut pieces: Vec<Piece>, total: usize) -> Bytes {
    if pieces.len() == 1 && pieces[0].dest == 0 && pieces[0].bytes.len() == total {
        return pieces.pop().map(|p| p.bytes).unwrap_or_default();
    }
    pieces.sort_unstable_by_key(|p| p.dest);
    let mut out = BytesMut::with_capacity(total);
    for p in pieces {
        // The plan makes the pieces tile 0..total; a gap would be a planning bug, filled
        // with zeros rather than shifting every later byte.
        let at = usize::try_from(p.dest).unwrap_or(usize::MAX).min(total);
        if at > out.len() {
            out.resize(at, 0);
        }
        let room = total.saturating_sub(out.len());
        let skip = out.len().saturating_sub(at);
        if let Some(src) = p.bytes.get(skip.min(p.bytes.len())..) {
            out.extend_from_slice(&src[..src.len().min(room)]);
        }
    }
    out.resize(total, 0);
    out.freeze()
}

/// Loads a file node, from `nodes` when it holds it; internal nodes loaded are added to it.
/// `None` when the block is not a file.
async fn load_file<S: BlockStore + ?Sized>(
    store: &S,
    nodes: Option<&NodeCache>,
    cid: &Cid,
) -> Result<Option<Arc<FileNode>>, WalkError> {
    if let Some(node) = nodes.and_then(|n| n.get(cid)) {
        return Ok(Some(node));
    }
    let Node::File(file) = load(store, cid).await? else {
        return Ok(None);
    };
    let file = Arc::new(file);
    if let Some(n) = nodes.filter(|_| !file.children.is_empty()) {
        n.insert(Arc::clone(&file));
    }
    Ok(Some(file))
}

/// A loaded child must be a file of exactly the size its parent promised.
fn checked_child(p: &Pending, node: Option<Arc<FileNode>>) -> Result<Arc<FileNode>, UnixfsError> {
    match node {
        Some(f) if f.size == p.expected_size => Ok(f),
        Some(f) => Err(UnixfsError::ChildSizeMismatch {
            parent: p.parent,
            child: p.cid,
            expected: p.expected_size,
            actual: f.size,
        }),
        None => Err(UnixfsError::ChildNotFile {
            parent: p.parent,
            child: p.cid,
        }),
    }
}

/// Takes the inline part of `node`'s share of a read (as a slice of the block, into `pieces`
/// when bytes are wanted) and queues the children it needs.
fn take_plan(
    node: &FileNode,
    offset: u64,
    len: u64,
    dest: u64,
    pieces: Option<&mut Vec<Piece>>,
    next: &mut Vec<Pending>,
) {
    let plan = plan_read(node, offset, len);
    if let Some(pieces) = pieces {
        let inline = &plan.inline;
        if !inline.is_empty() && inline.end <= node.data.len() {
            pieces.push(Piece {
                dest,
                bytes: node.data.slice(inline.clone()),
            });
        }
    }
    for c in plan.children {
        let blocksize = node.children.get(c.index).map_or(0, |ch| ch.blocksize);
        next.push(Pending {
            parent: node.cid,
            cid: c.cid,
            expected_size: blocksize,
            offset: c.offset,
            len: c.len,
            dest: dest + c.dest,
        });
    }
}
