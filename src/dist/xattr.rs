//! Magic extended attributes, in the style of CernVM-FS's: what the view can say about a
//! node beyond its bytes. Which names exist for which node, their values, and the state
//! behind them (the root's facts, which source served each file, a short memo of how much
//! of a file is held locally). `fs` only relays these to the kernel.
//!
//! - every node: `user.ipfs.cid`;
//! - regular files: `user.distfs.cached` (bytes of the file's content held in the local
//!   store, found by walking its DAG through the store without fetching anything) and, once
//!   the file has been read in this session, `user.distfs.source` (the source that most
//!   recently delivered one of its blocks, to a read or to readahead, or `cache` when every
//!   read of it in this session was answered from the local store);
//! - the mount root: `user.distfs.root` (the root spec as mounted), and when the root came
//!   through an IPNS record, `user.distfs.sequence` (that record's sequence) and
//!   `user.distfs.publisher` (the IPNS name that signed it). The daemon sets these with
//!   [`DistView::set_root_info`] after the first resolution and after each root swap.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cid::Cid;
use futures::stream::{self, StreamExt};

use super::inode::{Kind, ROOT_INO};
use super::view::{DistView, ViewError};
use crate::block::codec;
use crate::store::{origin, BlockStore};
use crate::unixfs::Node;
use crate::walk::{WalkError, FETCH_CONCURRENCY, MAX_DEPTH};

/// The CID of a node.
pub const CID: &str = "user.ipfs.cid";
/// Bytes of a file's content held locally.
pub const CACHED: &str = "user.distfs.cached";
/// The source that most recently served a file's blocks, or [`FROM_CACHE`].
pub const SOURCE: &str = "user.distfs.source";
/// The root spec of the mount (`/ipns/…` or `/ipfs/…`).
pub const ROOT: &str = "user.distfs.root";
/// The IPNS sequence of the current root.
pub const SEQUENCE: &str = "user.distfs.sequence";
/// The IPNS name that published the current root.
pub const PUBLISHER: &str = "user.distfs.publisher";
/// The value of [`SOURCE`] when every read of the file was answered locally.
pub const FROM_CACHE: &str = "cache";

/// How long a computed [`CACHED`] answer is reused (a size probe and the read that follows
/// see the same value); any read of the file drops it sooner.
const CACHED_MEMO: Duration = Duration::from_secs(2);

/// What the daemon knows about the current root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootInfo {
    /// The root spec as mounted (`/ipns/k51…`, `/ipns/example.org`, `/ipfs/bafy…`).
    pub spec: String,
    /// The sequence of the IPNS record the current root came from, if any.
    pub sequence: Option<u64>,
    /// The IPNS name that signed that record, if any.
    pub publisher: Option<String>,
}

/// The view's xattr state. Each mutex guards one map operation (no `.await` while held).
#[derive(Default)]
pub(super) struct XattrState {
    root: Mutex<Option<RootInfo>>,
    /// Per inode: the last source that delivered one of its blocks (or [`FROM_CACHE`]).
    origins: Mutex<HashMap<u64, Arc<str>>>,
    /// Per inode: when [`CACHED`] was computed and its value.
    cached: Mutex<HashMap<u64, (Instant, u64)>>,
}

impl XattrState {
    /// Runs a read of `ino` and records where its blocks came from: the source that
    /// delivered the last block it fetched, or [`FROM_CACHE`] when it fetched nothing and
    /// no source is recorded yet (a block fetched by readahead was still served by it).
    pub(super) async fn read<T>(&self, ino: u64, read: impl Future<Output = T>) -> T {
        let (out, source) = origin::track(read).await;
        lock(&self.cached).remove(&ino);
        let mut origins = lock(&self.origins);
        match source {
            Some(s) => {
                origins.insert(ino, s);
            }
            None => {
                origins.entry(ino).or_insert_with(|| Arc::from(FROM_CACHE));
            }
        }
        out
    }

    /// Runs background work (readahead) for `ino`; records its source if it fetched.
    pub(super) async fn prefetch<T>(&self, ino: u64, work: impl Future<Output = T>) -> T {
        let (out, source) = origin::track(work).await;
        lock(&self.cached).remove(&ino);
        if let Some(s) = source {
            lock(&self.origins).insert(ino, s);
        }
        out
    }
}

impl DistView {
    /// Sets the facts behind the root's xattrs (call after each resolution that changed
    /// the root).
    pub fn set_root_info(&self, info: RootInfo) {
        *lock(&self.xattrs.root) = Some(info);
    }

    /// The facts behind the root's xattrs, if set.
    pub fn root_info(&self) -> Option<RootInfo> {
        lock(&self.xattrs.root).clone()
    }

    /// The xattr names that exist for `ino`, in a stable order.
    pub fn xattr_names(&self, ino: u64) -> Result<Vec<&'static str>, ViewError> {
        let node = self.inode(ino)?;
        let mut names = vec![CID];
        if node.kind == Kind::File {
            names.push(CACHED);
            if lock(&self.xattrs.origins).contains_key(&ino) {
                names.push(SOURCE);
            }
        }
        if ino == ROOT_INO {
            if let Some(info) = self.root_info() {
                names.push(ROOT);
                if info.sequence.is_some() {
                    names.push(SEQUENCE);
                }
                if info.publisher.is_some() {
                    names.push(PUBLISHER);
                }
            }
        }
        Ok(names)
    }

    /// The value of the xattr `name` of `ino`; `None` when it does not exist for that node.
    pub async fn xattr(&self, ino: u64, name: &str) -> Result<Option<Vec<u8>>, ViewError> {
        let node = self.inode(ino)?;
        let file = node.kind == Kind::File;
        let root = || {
            if ino == ROOT_INO {
                self.root_info()
            } else {
                None
            }
        };
        let text = match name {
            CID => Some(node.cid.to_string()),
            CACHED if file => Some(self.cached_bytes(ino).await?.to_string()),
            SOURCE if file => lock(&self.xattrs.origins).get(&ino).map(|s| s.to_string()),
            ROOT => root().map(|r| r.spec),
            SEQUENCE => root().and_then(|r| r.sequence).map(|s| s.to_string()),
            PUBLISHER => root().and_then(|r| r.publisher),
            _ => None,
        };
        Ok(text.map(String::into_bytes))
    }

    /// Bytes of the file `ino`'s content held in the local store (never fetches; bounded
    /// by the read deadline; reused for 2 s unless the file is read meanwhile).
    #[tracing::instrument(skip_all, fields(ino))]
    pub async fn cached_bytes(&self, ino: u64) -> Result<u64, ViewError> {
        let node = self.inode(ino)?;
        if node.kind != Kind::File {
            return Err(ViewError::NotAFile { ino });
        }
        if let Some((at, bytes)) = lock(&self.xattrs.cached).get(&ino) {
            if at.elapsed() < CACHED_MEMO {
                return Ok(*bytes);
            }
        }
        let store = self.store.as_ref();
        let bytes = self
            .bounded(async { Ok(held_bytes(store, &node.cid, node.size).await?) })
            .await?;
        lock(&self.xattrs.cached).insert(ino, (Instant::now(), bytes));
        Ok(bytes)
    }
}

/// Bytes of the file `cid` (of `size` bytes) whose blocks `store` holds: one DAG level at a
/// time, raw leaves by `has` alone, dag-pb nodes read only when held (a missing node's
/// subtree counts as not held, since its children cannot be known without fetching it).
pub async fn held_bytes<S: BlockStore + ?Sized>(
    store: &S,
    cid: &Cid,
    size: u64,
) -> Result<u64, WalkError> {
    let mut total = 0u64;
    let mut level = vec![(*cid, size)];
    for _ in 0..=MAX_DEPTH {
        if level.is_empty() {
            return Ok(total);
        }
        let mut next = Vec::new();
        let mut checks = stream::iter(level)
            .map(|(cid, size)| async move { held_node(store, cid, size).await })
            .buffer_unordered(FETCH_CONCURRENCY);
        while let Some(found) = checks.next().await {
            let (bytes, children) = found?;
            total = total.saturating_add(bytes);
            next.extend(children);
        }
        level = next;
    }
    Err(WalkError::TooDeep {
        cid: *cid,
        max: MAX_DEPTH,
    })
}

/// One node of [`held_bytes`]: its inline bytes held, and its children to look at.
async fn held_node<S: BlockStore + ?Sized>(
    store: &S,
    cid: Cid,
    size: u64,
) -> Result<(u64, Vec<(Cid, u64)>), WalkError> {
    let store_err = |source| WalkError::Store { cid, source };
    if cid.codec() == codec::RAW || cid.hash().code() == crate::block::mh::IDENTITY {
        let held = store.has(&cid).await.map_err(store_err)?;
        return Ok((if held { size } else { 0 }, Vec::new()));
    }
    let Some(block) = store.get_held(&cid).await.map_err(store_err)? else {
        return Ok((0, Vec::new()));
    };
    match Node::from_block(&block)? {
        Node::File(f) => Ok((
            f.data.len() as u64,
            f.children.iter().map(|c| (c.cid, c.blocksize)).collect(),
        )),
        _ => Ok((0, Vec::new())),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{import_file, ImportOptions, Metadata};
    use crate::store::MemStore;

    /// A two-leaf file (dag-pb leaves, then raw leaves) with none, one or both leaves held.
    #[tokio::test]
    async fn held_bytes_counts_only_held_leaves() {
        const SIZE: u64 = 300 * 1024;
        let data = vec![7u8; SIZE as usize];
        for raw_leaves in [false, true] {
            let opts = ImportOptions {
                raw_leaves,
                ..ImportOptions::default()
            };
            let mut all = MemStore::new();
            let root = import_file(&data[..], &opts, &Metadata::default(), &mut all)
                .unwrap()
                .cid;
            assert_eq!(held_bytes(&all, &root, SIZE).await.unwrap(), SIZE);
            assert_eq!(held_bytes(&MemStore::new(), &root, SIZE).await.unwrap(), 0);
            let partial = MemStore::new();
            let root_block = all.get_sync(&root).unwrap();
            partial.insert(root_block.clone());
            assert_eq!(held_bytes(&partial, &root, SIZE).await.unwrap(), 0);
            let Node::File(f) = Node::from_block(&root_block).unwrap() else {
                panic!("not a file")
            };
            assert_eq!(f.children.len(), 2, "raw_leaves={raw_leaves}");
            partial.insert(all.get_sync(&f.children[1].cid).unwrap());
            let got = held_bytes(&partial, &root, SIZE).await.unwrap();
            assert_eq!(got, f.children[1].blocksize, "raw_leaves={raw_leaves}");
            assert!(got > 0 && got < SIZE);
        }
    }
}
