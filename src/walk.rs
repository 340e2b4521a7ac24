//! Async walks of UnixFS DAGs over any [`BlockStore`]: load, stat, ranged reads, directory
//! listing and lookup (plain and HAMT), path resolution, and the ordered block walk behind
//! the gateway's CAR responses ([`car`]).
//!
//! Owns the I/O side of reading: `unixfs` decides *which* blocks are needed, this module
//! fetches exactly those (a level of children concurrently, at most [`FETCH_CONCURRENCY`]
//! at a time) and nothing else, so a range read over a partially available DAG succeeds
//! whenever the blocks for that range are present. A block the store does not hold is
//! [`WalkError::MissingBlock`]; a later layer turns that into a fetch.

// Errors carry the CIDs they are about; a `Cid` is ~100 bytes inline, which trips
// clippy's 128-byte `Err` threshold. Errors are the cold path and callers match on them,
// so they are not boxed.
#![allow(clippy::result_large_err)]

use cid::Cid;
use futures::stream::{self, StreamExt};

use crate::block::{Block, BlockError};
use crate::store::{BlockStore, StoreError};
use crate::unixfs::{validate_name, DirEntry, HamtLookup, Meta, Mtime, Node, Step, UnixfsError};

pub mod car;
mod counting;
mod read;
#[cfg(test)]
mod tests;

pub use car::{collect_car_blocks, CarOptions, CarWalker, DagScope};
pub use counting::CountingStore;
pub use read::{prefetch_range, prefetch_range_wide, read_range, read_range_cached, NodeCache};

/// The deepest DAG we follow (file trees, HAMT levels, path segments each count).
pub const MAX_DEPTH: usize = 64;
/// The most entries [`list_dir`] returns.
pub const MAX_LIST_ENTRIES: usize = 1_000_000;
/// Blocks fetched at once by one walk.
pub const FETCH_CONCURRENCY: usize = 16;
/// The most bytes one [`read_range`] call returns (it buffers them): larger reads must
/// be split by the caller.
pub const MAX_READ_LEN: u64 = 64 * 1024 * 1024;

/// Why a walk failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// The store does not hold this block: fetch it and retry.
    #[error("block {cid} is not available (fetch it, then retry)")]
    MissingBlock { cid: Cid },
    /// A path segment names no entry.
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    /// A path goes through something that is not a directory.
    #[error("{path}: {cid} is not a directory")]
    NotADirectory { cid: Cid, path: String },
    /// A read was asked of something that is not a file.
    #[error("{cid} is not a file")]
    NotAFile { cid: Cid },
    /// The store itself failed.
    #[error("block store failed reading {cid}: {source}")]
    Store {
        cid: Cid,
        #[source]
        source: StoreError,
    },
    /// A block is not valid UnixFS (corrupt or hostile DAG).
    #[error(transparent)]
    Unixfs(#[from] UnixfsError),
    /// An identity CID could not be decoded.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The DAG is deeper than [`MAX_DEPTH`].
    #[error("{cid}: DAG deeper than {max} levels; refusing to follow")]
    TooDeep { cid: Cid, max: usize },
    /// A [`read_range`] longer than [`MAX_READ_LEN`] after clamping to the file size.
    #[error("{cid}: a read of {len} bytes exceeds the {max}-byte limit; read in pieces")]
    ReadTooLarge { cid: Cid, len: u64, max: u64 },
    /// A directory has more than [`MAX_LIST_ENTRIES`] entries.
    #[error("directory {cid}: more than {max} entries; refusing to list")]
    TooManyEntries { cid: Cid, max: usize },
}

impl WalkError {
    /// The name does not exist (negative-cache it; HTTP 404, ENOENT). Invalid names are
    /// included: they can never exist.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            WalkError::NotFound { .. } | WalkError::Unixfs(UnixfsError::BadName { .. })
        )
    }

    /// The CID of the block that must be fetched before retrying, if that is the problem.
    pub fn missing_block(&self) -> Option<&Cid> {
        match self {
            WalkError::MissingBlock { cid } => Some(cid),
            _ => None,
        }
    }

    /// The DAG itself is broken or hostile (retrying cannot help).
    pub fn is_corrupt(&self) -> bool {
        match self {
            WalkError::Unixfs(e) => !matches!(e, UnixfsError::BadName { .. }),
            WalkError::Block(_) | WalkError::TooDeep { .. } => true,
            _ => false,
        }
    }
}

/// What kind of object a CID names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A UnixFS file (raw block or dag-pb File DAG).
    File,
    /// A plain or HAMT-sharded directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// Not UnixFS (e.g. dag-cbor): show as an opaque object.
    Other,
}

/// Attributes of one object, from its root block alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The object's root CID.
    pub cid: Cid,
    /// Its kind.
    pub kind: Kind,
    /// File bytes, symlink target length, or the block length for `Other`; 0 for
    /// directories.
    pub size: u64,
    /// Stored mode bits (masked with 0o7777), if any.
    pub mode: Option<u32>,
    /// Stored mtime, if present and valid.
    pub mtime: Option<Mtime>,
}

/// The block named by `cid`: identity CIDs are decoded inline, others come from `store`.
pub async fn get_block<S: BlockStore + ?Sized>(store: &S, cid: &Cid) -> Result<Block, WalkError> {
    if let Some(block) = Block::from_identity(cid)? {
        return Ok(block);
    }
    match store.get(cid).await {
        Ok(Some(block)) => Ok(block),
        Ok(None) => Err(WalkError::MissingBlock { cid: *cid }),
        Err(source) => Err(WalkError::Store { cid: *cid, source }),
    }
}

/// Fetches and decodes one block.
pub async fn load<S: BlockStore + ?Sized>(store: &S, cid: &Cid) -> Result<Node, WalkError> {
    let block = get_block(store, cid).await?;
    Ok(Node::from_block(&block)?)
}

/// Kind, size, mode and mtime of `cid`, from its root block only.
#[tracing::instrument(skip_all, fields(cid = %cid))]
pub async fn stat<S: BlockStore + ?Sized>(store: &S, cid: &Cid) -> Result<Stat, WalkError> {
    let block = get_block(store, cid).await?;
    let node = match Node::from_block(&block) {
        Ok(node) => node,
        Err(UnixfsError::NotUnixfs { .. }) => {
            return Ok(Stat {
                cid: *cid,
                kind: Kind::Other,
                size: block.data().len() as u64,
                mode: None,
                mtime: None,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let meta: Meta = node.meta();
    let (kind, size) = match &node {
        Node::File(f) => (Kind::File, f.size),
        Node::Directory(_) | Node::HamtShard(_) => (Kind::Directory, 0),
        Node::Symlink(s) => (Kind::Symlink, s.target.len() as u64),
    };
    Ok(Stat {
        cid: *cid,
        kind,
        size,
        mode: meta.perm(),
        mtime: meta.mtime,
    })
}

/// Every entry of the directory `cid` (plain or HAMT, all shards), sorted by name bytes.
#[tracing::instrument(skip_all, fields(cid = %cid))]
pub async fn list_dir<S: BlockStore + ?Sized>(
    store: &S,
    cid: &Cid,
) -> Result<Vec<DirEntry>, WalkError> {
    let mut entries = match load(store, cid).await? {
        Node::Directory(d) => d.entries,
        Node::HamtShard(root) => {
            let (mut entries, mut level) = root.listing();
            // A valid HAMT never links one sub-shard twice; a hostile one could, to make
            // the walk exponential. Each shard is read once and counts against the limit.
            let mut seen = std::collections::HashSet::from([*cid]);
            level.retain(|c| seen.insert(*c));
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
                    .map(|c| async move { load(store, &c).await })
                    .buffered(FETCH_CONCURRENCY);
                while let Some(node) = loaded.next().await {
                    let shard = match node? {
                        Node::HamtShard(s) => s,
                        other => {
                            return Err(WalkError::NotADirectory {
                                cid: *other.cid(),
                                path: format!("HAMT sub-shard of {cid}"),
                            })
                        }
                    };
                    let (more, shards) = shard.listing();
                    entries.extend(more);
                    next.extend(shards.into_iter().filter(|c| seen.insert(*c)));
                    if entries.len() > MAX_LIST_ENTRIES || seen.len() > MAX_LIST_ENTRIES {
                        return Err(WalkError::TooManyEntries {
                            cid: *cid,
                            max: MAX_LIST_ENTRIES,
                        });
                    }
                }
                level = next;
            }
            entries
        }
        other => {
            return Err(WalkError::NotADirectory {
                cid: *other.cid(),
                path: cid.to_string(),
            })
        }
    };
    if entries.len() > MAX_LIST_ENTRIES {
        return Err(WalkError::TooManyEntries {
            cid: *cid,
            max: MAX_LIST_ENTRIES,
        });
    }
    // Stable sort keeps discovery order among equal names; the first one wins.
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    entries.dedup_by(|later, first| later.name == first.name);
    Ok(entries)
}

/// The entry `name` of the directory `dir`: a scan of a plain directory, or only the
/// shards on the name's hash path for a HAMT. `Ok(None)` when absent; an error for a
/// name that can never exist (see [`validate_name`]) or when `dir` is not a directory.
#[tracing::instrument(skip_all, fields(cid = %dir, name = %name.escape_debug()))]
pub async fn lookup<S: BlockStore + ?Sized>(
    store: &S,
    dir: &Cid,
    name: &str,
) -> Result<Option<DirEntry>, WalkError> {
    validate_name(name)?;
    let node = load(store, dir).await?;
    lookup_in(store, node, name, |_| {}).await
}

/// Looks `name` up in an already loaded directory node, handing every HAMT sub-shard
/// block fetched on the way to `on_block` (the CAR walk emits them).
pub(crate) async fn lookup_in<S: BlockStore + ?Sized>(
    store: &S,
    node: Node,
    name: &str,
    mut on_block: impl FnMut(Block),
) -> Result<Option<DirEntry>, WalkError> {
    match node {
        Node::Directory(d) => Ok(d.entries.into_iter().find(|e| e.name == name)),
        Node::HamtShard(root) => {
            let mut lookup = HamtLookup::new(name)?;
            let mut shard = root;
            for _ in 0..MAX_DEPTH {
                match lookup.step(&shard)? {
                    Step::Found(entry) => return Ok(Some(entry)),
                    Step::Missing => return Ok(None),
                    Step::NeedBlock(cid) => {
                        let block = get_block(store, &cid).await?;
                        let node = Node::from_block(&block)?;
                        on_block(block);
                        shard = match node {
                            Node::HamtShard(s) => s,
                            other => {
                                return Err(WalkError::NotADirectory {
                                    cid: *other.cid(),
                                    path: format!("HAMT sub-shard for {name:?}"),
                                })
                            }
                        };
                    }
                }
            }
            Err(WalkError::TooDeep {
                cid: shard.cid,
                max: MAX_DEPTH,
            })
        }
        other => Err(WalkError::NotADirectory {
            cid: *other.cid(),
            path: name.to_owned(),
        }),
    }
}

/// Follows `segments` from `root` and returns the CID they name. Empty segments are
/// skipped (`a//b` = `a/b`); a missing name is [`WalkError::NotFound`] with the path up to
/// and including the failing segment.
#[tracing::instrument(skip_all, fields(cid = %root))]
pub async fn resolve_path<S: BlockStore + ?Sized>(
    store: &S,
    root: &Cid,
    segments: &[&str],
) -> Result<Cid, WalkError> {
    let mut current = *root;
    let mut walked: Vec<&str> = Vec::new();
    for seg in segments.iter().copied().filter(|s| !s.is_empty()) {
        walked.push(seg);
        if walked.len() > MAX_DEPTH {
            return Err(WalkError::TooDeep {
                cid: *root,
                max: MAX_DEPTH,
            });
        }
        validate_name(seg)?;
        let node = match load(store, &current).await {
            Err(WalkError::Unixfs(UnixfsError::NotUnixfs { .. })) => {
                return Err(WalkError::NotADirectory {
                    cid: current,
                    path: walked[..walked.len() - 1].join("/"),
                })
            }
            other => other?,
        };
        let entry = match lookup_in(store, node, seg, |_| {}).await {
            Err(WalkError::NotADirectory { cid, .. }) => {
                return Err(WalkError::NotADirectory {
                    cid,
                    path: walked[..walked.len() - 1].join("/"),
                })
            }
            other => other?,
        };
        current = match entry {
            Some(e) => e.cid,
            None => {
                return Err(WalkError::NotFound {
                    path: walked.join("/"),
                })
            }
        };
    }
    Ok(current)
}
