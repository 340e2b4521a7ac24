//! The ordered block walk behind a trustless-gateway CAR response (SPECS.md §6.1):
//! first the blocks that prove the path (root … every HAMT shard on the way … the parent
//! of the terminus), then the terminus and what the scope asks for, in DFS pre-order,
//! each block once unless `dups`.
//!
//! [`CarWalker`] is pull-based so a server can stream: `resolve()` (optional, to answer
//! 404 before any byte is sent), then `next_block()` until `None`. A missing block or a
//! broken node mid-walk comes out as an error *after* every block before it, so the
//! server can end the stream there.
//!
//! Limits: only dag-pb links are followed. A non-UnixFS block (dag-cbor …) is sent as a
//! single block in every scope, and a path cannot continue through it (`NotADirectory`).

use std::collections::{HashSet, VecDeque};

use cid::Cid;
use prost::Message;

use super::{get_block, lookup_in, WalkError, MAX_DEPTH};
use crate::block::{codec, mh, Block};
use crate::store::BlockStore;
use crate::unixfs::node::link_cid;
use crate::unixfs::pb::PbNodeBytes;
use crate::unixfs::{plan_read, validate_name, ByteRange, FileNode, Node, UnixfsError};

/// How much of the DAG under the terminus to send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DagScope {
    /// Only the terminus block.
    Block,
    /// Enough to read the whole file (or `entity_bytes` of it), to enumerate the
    /// directory (all HAMT shards, no entries' content), or the block itself otherwise.
    Entity,
    /// The whole DAG under the terminus.
    #[default]
    All,
}

/// Parameters of one CAR walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CarOptions {
    /// Scope after the path.
    pub scope: DagScope,
    /// Byte range of a file terminus; implies [`DagScope::Entity`]. A range that selects
    /// nothing behaves like [`DagScope::Block`].
    pub entity_bytes: Option<ByteRange>,
    /// Repeat a block each time the walk meets it (`dups=y`).
    pub dups: bool,
}

enum Task {
    Terminus(Cid),
    All {
        cid: Cid,
        depth: usize,
    },
    Shards {
        cid: Cid,
        depth: usize,
    },
    Range {
        parent: Cid,
        cid: Cid,
        expected: u64,
        offset: u64,
        len: u64,
        depth: usize,
    },
}

enum PathState {
    Unresolved,
    Resolved(Cid),
    Failed,
}

/// A pull-based CAR block walk; see the module docs.
pub struct CarWalker<'a, S: BlockStore + ?Sized> {
    store: &'a S,
    root: Cid,
    path: Vec<String>,
    opts: CarOptions,
    state: PathState,
    ready: VecDeque<Block>,
    stack: Vec<Task>,
    seen: HashSet<Cid>,
    pending: Option<WalkError>,
    done: bool,
}

impl<'a, S: BlockStore + ?Sized> CarWalker<'a, S> {
    /// A walk of `root/path...` (empty segments are skipped).
    pub fn new(store: &'a S, root: Cid, path: &[&str], opts: CarOptions) -> Self {
        CarWalker {
            store,
            root,
            path: path
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| (*s).to_owned())
                .collect(),
            opts,
            state: PathState::Unresolved,
            ready: VecDeque::new(),
            stack: Vec::new(),
            seen: HashSet::new(),
            pending: None,
            done: false,
        }
    }

    /// Resolves the path (fetching and queueing its blocks) and returns the terminus CID.
    /// On failure the error is returned here once; `next_block` then still yields the
    /// path blocks fetched so far (a partial CAR) and ends with `Ok(None)`.
    #[tracing::instrument(skip_all, fields(cid = %self.root))]
    pub async fn resolve(&mut self) -> Result<Cid, WalkError> {
        match self.state {
            PathState::Resolved(cid) => return Ok(cid),
            PathState::Failed => {
                return Err(WalkError::NotFound {
                    path: self.path.join("/"),
                })
            }
            PathState::Unresolved => {}
        }
        match self.resolve_impl().await {
            Ok(cid) => {
                self.state = PathState::Resolved(cid);
                self.stack.push(Task::Terminus(cid));
                Ok(cid)
            }
            Err(e) => {
                self.state = PathState::Failed;
                Err(e)
            }
        }
    }

    async fn resolve_impl(&mut self) -> Result<Cid, WalkError> {
        let store = self.store;
        let mut current = self.root;
        let path = self.path.clone();
        for (i, seg) in path.iter().enumerate() {
            let walked = || path[..=i].join("/");
            if i >= MAX_DEPTH {
                return Err(WalkError::TooDeep {
                    cid: self.root,
                    max: MAX_DEPTH,
                });
            }
            validate_name(seg)?;
            let block = get_block(store, &current).await?;
            let node = Node::from_block(&block);
            self.emit(block);
            let node = match node {
                Err(UnixfsError::NotUnixfs { .. }) => {
                    return Err(WalkError::NotADirectory {
                        cid: current,
                        path: path[..i].join("/"),
                    })
                }
                other => other?,
            };
            let mut shards = Vec::new();
            let found = lookup_in(store, node, seg, |b| shards.push(b)).await;
            for b in shards {
                self.emit(b);
            }
            current = match found {
                Ok(Some(entry)) => entry.cid,
                Ok(None) => return Err(WalkError::NotFound { path: walked() }),
                Err(WalkError::NotADirectory { cid, .. }) => {
                    return Err(WalkError::NotADirectory {
                        cid,
                        path: path[..i].join("/"),
                    })
                }
                Err(e) => return Err(e),
            };
        }
        Ok(current)
    }

    /// The next block in order, `Ok(None)` at the end, or the error that ends the walk
    /// (after all blocks before it). Call again after an error: it returns `Ok(None)`.
    pub async fn next_block(&mut self) -> Result<Option<Block>, WalkError> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(Some(b));
            }
            if self.done {
                return Ok(None);
            }
            if let PathState::Unresolved = self.state {
                if let Err(e) = self.resolve().await {
                    self.pending = Some(e);
                }
                continue;
            }
            if let Some(e) = self.pending.take() {
                self.done = true;
                return Err(e);
            }
            let Some(task) = self.stack.pop() else {
                self.done = true;
                return Ok(None);
            };
            if let Err(e) = self.run(task).await {
                self.pending = Some(e);
            }
        }
    }

    /// Queues a block unless it is an identity block (never sent) or already sent.
    fn emit(&mut self, block: Block) {
        if block.cid().hash().code() == mh::IDENTITY {
            return;
        }
        if !self.opts.dups && !self.seen.insert(*block.cid()) {
            return;
        }
        self.ready.push_back(block);
    }

    /// With `dups=n`, a subtree already sent is not walked again.
    fn already_sent(&self, cid: &Cid) -> bool {
        !self.opts.dups && self.seen.contains(cid)
    }

    async fn run(&mut self, task: Task) -> Result<(), WalkError> {
        match task {
            Task::Terminus(cid) => self.terminus(cid).await,
            Task::All { cid, depth } => {
                if self.already_sent(&cid) {
                    return Ok(());
                }
                check_depth(&cid, depth)?;
                let block = get_block(self.store, &cid).await?;
                let links = if cid.codec() == codec::DAG_PB {
                    pb_links(&cid, block.data())?
                } else {
                    // Raw blocks have no links; other codecs (dag-cbor) are not followed.
                    Vec::new()
                };
                self.emit(block);
                for child in links.into_iter().rev() {
                    self.stack.push(Task::All {
                        cid: child,
                        depth: depth + 1,
                    });
                }
                Ok(())
            }
            Task::Shards { cid, depth } => {
                if self.already_sent(&cid) {
                    return Ok(());
                }
                check_depth(&cid, depth)?;
                let block = get_block(self.store, &cid).await?;
                let node = Node::from_block(&block)?;
                self.emit(block);
                match node {
                    Node::HamtShard(s) => self.push_shards(&s.listing().1, depth),
                    other => Err(WalkError::NotADirectory {
                        cid: *other.cid(),
                        path: "HAMT sub-shard".into(),
                    }),
                }
            }
            Task::Range {
                parent,
                cid,
                expected,
                offset,
                len,
                depth,
            } => {
                if self.already_sent(&cid) {
                    return Ok(());
                }
                check_depth(&cid, depth)?;
                let block = get_block(self.store, &cid).await?;
                let node = Node::from_block(&block)?;
                self.emit(block);
                let file = match node {
                    Node::File(f) if f.size == expected => f,
                    Node::File(f) => {
                        return Err(UnixfsError::ChildSizeMismatch {
                            parent,
                            child: cid,
                            expected,
                            actual: f.size,
                        }
                        .into())
                    }
                    _ => return Err(UnixfsError::ChildNotFile { parent, child: cid }.into()),
                };
                self.push_range(&file, offset, len, depth);
                Ok(())
            }
        }
    }

    async fn terminus(&mut self, cid: Cid) -> Result<(), WalkError> {
        let scope = if self.opts.entity_bytes.is_some() {
            DagScope::Entity
        } else {
            self.opts.scope
        };
        match scope {
            DagScope::All => {
                self.stack.push(Task::All { cid, depth: 0 });
                Ok(())
            }
            DagScope::Block => {
                let block = get_block(self.store, &cid).await?;
                self.emit(block);
                Ok(())
            }
            DagScope::Entity => {
                let block = get_block(self.store, &cid).await?;
                let node = Node::from_block(&block);
                self.emit(block);
                match node {
                    Ok(Node::File(f)) => {
                        let range = match self.opts.entity_bytes {
                            Some(r) => r.resolve(f.size),
                            None => Some((0, f.size)),
                        };
                        if let Some((offset, len)) = range {
                            self.push_range(&f, offset, len, 0);
                        }
                        Ok(())
                    }
                    Ok(Node::HamtShard(s)) => self.push_shards(&s.listing().1, 0),
                    Ok(Node::Directory(_)) | Ok(Node::Symlink(_)) => Ok(()),
                    Err(UnixfsError::NotUnixfs { .. }) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    fn push_shards(&mut self, shards: &[Cid], depth: usize) -> Result<(), WalkError> {
        for s in shards.iter().rev() {
            self.stack.push(Task::Shards {
                cid: *s,
                depth: depth + 1,
            });
        }
        Ok(())
    }

    fn push_range(&mut self, file: &FileNode, offset: u64, len: u64, depth: usize) {
        let plan = plan_read(file, offset, len);
        for c in plan.children.into_iter().rev() {
            let expected = file.children.get(c.index).map_or(0, |ch| ch.blocksize);
            self.stack.push(Task::Range {
                parent: file.cid,
                cid: c.cid,
                expected,
                offset: c.offset,
                len: c.len,
                depth: depth + 1,
            });
        }
    }
}

fn check_depth(cid: &Cid, depth: usize) -> Result<(), WalkError> {
    if depth > MAX_DEPTH {
        return Err(WalkError::TooDeep {
            cid: *cid,
            max: MAX_DEPTH,
        });
    }
    Ok(())
}

/// All link targets of a dag-pb block, whatever its UnixFS meaning (hostile names
/// included: `All` sends the DAG, not a filesystem view of it).
fn pb_links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, WalkError> {
    let pb = PbNodeBytes::decode(data).map_err(|e| UnixfsError::Protobuf {
        cid: *cid,
        what: "dag-pb PBNode",
        reason: e.to_string(),
    })?;
    if pb.links.len() > crate::unixfs::MAX_LINKS {
        return Err(UnixfsError::TooManyLinks {
            cid: *cid,
            count: pb.links.len(),
            max: crate::unixfs::MAX_LINKS,
        }
        .into());
    }
    Ok(pb
        .links
        .iter()
        .enumerate()
        .map(|(i, l)| link_cid(cid, i, l))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Runs a whole [`CarWalker`] and returns the blocks in order plus how it ended (for
/// servers that do not stream, and for tests).
pub async fn collect_car_blocks<S: BlockStore + ?Sized>(
    store: &S,
    root: Cid,
    path: &[&str],
    opts: CarOptions,
) -> (Vec<Block>, Result<(), WalkError>) {
    let mut walker = CarWalker::new(store, root, path, opts);
    let mut out = Vec::new();
    loop {
        match walker.next_block().await {
            Ok(Some(b)) => out.push(b),
            Ok(None) => return (out, Ok(())),
            Err(e) => return (out, Err(e)),
        }
    }
}
