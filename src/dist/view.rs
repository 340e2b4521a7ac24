//! The `/dist` view: turns a distribution root (a UnixFS directory of projects, each a
//! directory of versions) into the answers a filesystem gives — lookups, attributes,
//! listings, reads and symlink targets — over any [`BlockStore`]. No FUSE types here: `fs`
//! translates these results for the kernel, and tests drive the view directly.
//!
//! Synthetic content: each project directory gains a `latest` symlink (unless the DAG has its
//! own entry of that name) naming the newest stable version (`dist::versions`), and one
//! symlink per channel its `channels` file names (`beta` → `v1.2.0-rc1`). Default
//! permissions: 0555 directories; 0444 files, 0555 for binaries (`dist::meta`); UnixFS modes
//! are honoured but setuid, setgid and sticky bits never are.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::stream::{FuturesUnordered, StreamExt};

use super::coldstart::{ColdStart, ColdStartConfig};
use super::inode::{Inode, Inodes, Kind, Level, ROOT_INO};
use super::meta;
use super::open::{HoldMaker, OpenFiles};
use super::readahead::Readahead;
use super::trace::Tracer;
use super::union::Union;
use super::xattr::XattrState;
use crate::store::hold::{Holding, InUse};
use crate::store::whole::WholeFiles;
use crate::store::BlockStore;
use crate::walk::{self, NodeCache, WalkError};

mod listing;
mod project;
mod union;

/// The most bytes of a `versions` file we read.
const MAX_VERSIONS_FILE: u64 = 1024 * 1024;

/// Why a view operation failed. `fs` maps these to errnos.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The kernel asked about an inode we never handed out.
    #[error("no inode {0}")]
    NoSuchInode(u64),
    /// No entry of that name.
    #[error("{name}: no such file or directory")]
    NotFound { name: String },
    /// A directory operation on something else.
    #[error("inode {ino} is not a directory")]
    NotADirectory { ino: u64 },
    /// A read of something that is not a file.
    #[error("inode {ino} is not a regular file")]
    NotAFile { ino: u64 },
    /// A readlink of something that is not a symlink.
    #[error("inode {ino} is not a symlink")]
    NotASymlink { ino: u64 },
    /// The operation did not finish within the read deadline.
    #[error("gave up after {after:?} waiting for blocks")]
    Timeout { after: Duration },
    /// A project of its own name (configured or a hub entry) could not be resolved.
    #[error("project {name}: {reason}")]
    Project { name: String, reason: String },
    /// Reading the DAG failed (missing or corrupt block, bad node, store error). Boxed: a
    /// walk error carries CIDs and is large, and errors are the cold path.
    #[error(transparent)]
    Walk(Box<WalkError>),
}

impl From<WalkError> for ViewError {
    fn from(e: WalkError) -> ViewError {
        ViewError::Walk(Box::new(e))
    }
}

impl ViewError {
    /// True for "no such entry" (the kernel may cache the negative answer).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ViewError::NotFound { .. })
    }
}

/// One entry of a listing.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's name.
    pub name: String,
    /// The entry's inode.
    pub inode: Arc<Inode>,
}

/// A cached directory listing and the directory CID it was made from.
type Listing = (Cid, Arc<Vec<Entry>>);

/// A kernel cache entry to drop after a root swap (`fs` turns these into FUSE notifications).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// The attributes and cached listing of an inode.
    Inode(u64),
    /// The name `name` in the directory `parent`.
    Entry {
        /// The directory's inode.
        parent: u64,
        /// The entry name.
        name: String,
    },
}

/// The view over one root.
pub struct DistView {
    pub(super) store: Arc<dyn BlockStore>,
    inodes: Inodes,
    listings: Mutex<HashMap<u64, Listing>>,
    readahead: Readahead,
    /// Decoded internal nodes of the files being read (shared by readers and readahead).
    nodes: Arc<NodeCache>,
    deadline: Duration,
    cold: Arc<ColdStart>,
    open: OpenFiles,
    pub(super) xattrs: Arc<XattrState>,
    /// Projects under names of their own (`dist::union`).
    union: Arc<Union>,
    /// The cache's whole files, for passthrough (`dist::whole`); none without a cache.
    whole: Option<Arc<WholeFiles>>,
}

impl DistView {
    /// A view of the distribution whose root directory is `root`. Every operation that needs
    /// blocks gives up after `deadline`.
    pub fn new(store: Arc<dyn BlockStore>, root: Cid, deadline: Duration) -> DistView {
        let nodes: Arc<NodeCache> = Arc::default();
        let cold = Arc::new(ColdStart::new(
            store.clone(),
            nodes.clone(),
            ColdStartConfig::default(),
            None,
        ));
        DistView {
            store,
            inodes: Inodes::new(root),
            listings: Mutex::default(),
            readahead: Readahead::default(),
            nodes,
            deadline,
            cold,
            open: OpenFiles::default(),
            xattrs: Arc::default(),
            union: Arc::default(),
            whole: None,
        }
    }

    /// This view with readahead windows as wide as `hint` says the fetcher's window is
    /// (`dist::readahead`); without it they are 8 MiB.
    pub fn with_readahead_hint(mut self, hint: super::readahead::WindowHint) -> DistView {
        self.readahead = Readahead::with_hint(hint);
        self
    }

    /// This view with open files' blocks kept from eviction: each open gets a guard from
    /// `make` (`CacheStore::hold`), every block read through the handle joins it, and the
    /// handle's release drops it.
    pub fn with_holds(mut self, make: HoldMaker) -> DistView {
        self.open = OpenFiles::holding(make);
        self
    }

    /// This view with the given cold-start help (`dist::coldstart`) and read trace.
    pub fn with_cold_start(mut self, config: ColdStartConfig, tracer: Option<Tracer>) -> DistView {
        self.cold = Arc::new(ColdStart::new(
            self.store.clone(),
            self.nodes.clone(),
            config,
            tracer,
        ));
        self
    }

    /// The file `ino` was opened: returns the handle for its reads and release, and starts
    /// its cold-start help (prefetch list, background fetch) the first time its content is
    /// opened. Never waits.
    pub fn opened(&self, ino: u64) -> u64 {
        let fh = self.open.open();
        if let (Some(guard), Ok(node)) = (self.open.guard(fh), self.inode(ino)) {
            // The file's root node may already be decoded in memory (a lookup or an earlier
            // open loaded it), so reads would not ask the store for it: hold it here.
            guard.add(&node.cid);
        }
        self.start_cold(ino);
        fh
    }

    /// This view with whole copies of files in `whole`, which kernel passthrough reads.
    pub fn with_whole_files(mut self, whole: Arc<WholeFiles>) -> DistView {
        self.whole = Some(whole);
        self
    }

    /// The proved whole copy of `node`, open for reading, if it is an immutable file that
    /// has one (`store::whole`). Never waits on the network: an `open` of a local file.
    pub fn whole_file(&self, node: &Inode) -> Option<std::fs::File> {
        if node.kind != Kind::File || !node.is_immutable() {
            return None;
        }
        self.whole.as_ref()?.open(&node.cid, node.size)
    }

    /// The last handle that read `ino` through the daemon closed: if the cache holds all of
    /// it, copy it whole in the background (`dist::whole`). Call on the runtime.
    pub fn offer_whole(&self, ino: u64) {
        let (Some(whole), Ok(node)) = (self.whole.as_ref(), self.inode(ino)) else {
            return;
        };
        if node.kind == Kind::File && node.is_immutable() {
            whole.closed(&node.cid);
            super::whole::offer(self.store.clone(), whole, node.cid, node.size);
        }
    }

    /// This view with the inode table of a hot restart's snapshot (replacing its own).
    pub fn with_inodes(mut self, inodes: Inodes) -> DistView {
        self.inodes = inodes;
        self
    }

    /// Journals the inode table into `path` from now on (`Inodes::attach_journal`).
    pub fn attach_journal(&self, path: &std::path::Path) -> std::io::Result<()> {
        self.inodes.attach_journal(path)
    }

    /// The inode table, for a hot restart.
    pub fn inode_snapshot(&self) -> super::inode::InodeSnapshot {
        self.inodes.snapshot()
    }

    /// The open handles (next number, open ones), for a hot restart.
    pub fn handle_snapshot(&self) -> (u64, Vec<u64>) {
        self.open.snapshot()
    }

    /// Takes over the open handles of a hot restart's snapshot.
    pub fn restore_handles(&self, next: u64, open: &[u64]) {
        self.open.restore(next, open);
    }

    /// Handle `fh` was released (its blocks may be evicted again).
    pub fn released(&self, fh: u64) {
        self.open.release(fh);
    }

    /// Open handles keeping blocks from eviction now.
    pub fn open_handles(&self) -> usize {
        self.open.holding_count()
    }

    fn start_cold(&self, ino: u64) {
        let Ok(node) = self.inode(ino) else { return };
        if node.kind != Kind::File {
            return;
        }
        let Some((parent, name)) = self.cold.name_of(ino) else {
            return;
        };
        if let Ok(dir) = self.inode(parent) {
            let sidecar = format!("{name}{}", super::prefetch::SIDECAR_SUFFIX);
            let no_sidecar = matches!(self.listed(&dir, &sidecar), Some(None));
            self.cold.start(&node, dir.cid, &name, no_sidecar);
        }
    }

    /// Cold-start help counters.
    pub fn cold_start(&self) -> &ColdStart {
        &self.cold
    }

    /// Stops background work and writes out the read trace; call when the mount has ended
    /// (blocking, outside the runtime).
    pub fn shutdown(&self) {
        self.cold.shutdown();
    }

    /// The root directory's CID.
    pub fn root_cid(&self) -> Cid {
        self.inodes
            .get(ROOT_INO)
            .map_or_else(Cid::default, |i| i.cid)
    }

    /// Swaps the root to `new_root` atomically, after checking that its listing and every
    /// project's listing can be read (else the old root stays and the error is returned).
    /// Returns the kernel entries that may now be stale: the root, every project directory
    /// that was or is there, and each project's `latest` and channel links.
    #[tracing::instrument(skip_all, fields(root = %new_root))]
    pub async fn swap_root(&self, new_root: Cid) -> Result<Vec<Invalidation>, ViewError> {
        // Read the new tree's top two levels first: a root we cannot list is never shown.
        let check = async {
            for e in walk::list_dir(self.store.as_ref(), &new_root).await? {
                if walk::stat(self.store.as_ref(), &e.cid).await?.kind == walk::Kind::Directory {
                    walk::list_dir(self.store.as_ref(), &e.cid).await?;
                }
            }
            Ok(())
        };
        self.bounded(check).await?;
        let old_names: Vec<String> = lock(&self.listings)
            .get(&ROOT_INO)
            .map(|(_, entries)| entries.iter().map(|e| e.name.clone()).collect())
            .unwrap_or_default();
        let old_root = self.inodes.set_root(new_root);
        let mut out = vec![Invalidation::Inode(ROOT_INO)];
        for name in old_names {
            out.push(Invalidation::Entry {
                parent: ROOT_INO,
                name,
            });
        }
        // Re-list the root and each project so inodes take the new CIDs and `latest` its
        // new target before the kernel asks again.
        let root = self.dir(ROOT_INO)?;
        let entries = self.bounded(self.listing(&root)).await?;
        for e in entries.iter() {
            out.push(Invalidation::Entry {
                parent: ROOT_INO,
                name: e.name.clone(),
            });
            // A project of its own name is re-listed by its own follower, not here.
            if e.inode.kind == Kind::Dir && self.union.at_inode(e.inode.ino).is_none() {
                out.push(Invalidation::Inode(e.inode.ino));
                // `latest` and channel links, as they were and as they are now.
                let before = lock(&self.listings)
                    .get(&e.inode.ino)
                    .map(|(_, l)| l.clone());
                let after = self.bounded(self.listing(&e.inode)).await?;
                for link in before.iter().chain(Some(&after)).flat_map(|l| l.iter()) {
                    if matches!(link.inode.kind, Kind::Latest(_)) {
                        out.push(Invalidation::Entry {
                            parent: e.inode.ino,
                            name: link.name.clone(),
                        });
                        out.push(Invalidation::Inode(link.inode.ino));
                    }
                }
            }
        }
        out.dedup();
        tracing::info!(old = %old_root, new = %new_root, "root swapped");
        Ok(out)
    }

    /// The inode numbered `ino`.
    pub fn inode(&self, ino: u64) -> Result<Arc<Inode>, ViewError> {
        self.inodes.get(ino).ok_or(ViewError::NoSuchInode(ino))
    }

    /// Looks `name` up in the directory `parent`.
    #[tracing::instrument(skip_all, fields(parent, name))]
    pub async fn lookup(&self, parent: u64, name: &str) -> Result<Arc<Inode>, ViewError> {
        self.bounded(self.lookup_impl(parent, name)).await
    }

    async fn lookup_impl(&self, parent: u64, name: &str) -> Result<Arc<Inode>, ViewError> {
        let dir = self.dir(parent)?;
        let not_found = || ViewError::NotFound {
            name: name.to_string(),
        };
        if crate::unixfs::validate_name(name).is_err() {
            return Err(not_found());
        }
        if dir.level == Level::Root {
            if let Some(inode) = self.union_lookup(&dir, name, true).await? {
                return Ok(inode);
            }
        }
        let dir = self.mounted_dir(dir).await?;
        if dir.level != Level::Root {
            if let Some(listed) = self.listed(&dir, name) {
                return listed.ok_or_else(not_found);
            }
        }
        match walk::lookup(self.store.as_ref(), &dir.cid, name).await? {
            Some(entry) => self
                .make_inode(&dir, &entry.name, entry.cid)
                .await?
                .ok_or_else(not_found),
            // `latest` and channels are synthetic: they live in the listing only.
            None if dir.level == Level::Project => {
                let listing = self.listing(&dir).await?;
                listing
                    .iter()
                    .find(|e| e.name == name && matches!(e.inode.kind, Kind::Latest(_)))
                    .map(|e| e.inode.clone())
                    .ok_or_else(not_found)
            }
            None if dir.level == Level::Root => self
                .union_lookup(&dir, name, false)
                .await?
                .ok_or_else(not_found),
            None => Err(not_found()),
        }
    }

    /// [`DistView::lookup`] answered at once from `parent`'s cached listing, or `None` when
    /// it needs the DAG (or the union's resolution of a configured project) and so must be
    /// awaited. Lets `fs` answer most of an `ls -l`'s LOOKUPs on its dispatch thread.
    pub fn lookup_listed(&self, parent: u64, name: &str) -> Option<Result<Arc<Inode>, ViewError>> {
        let dir = self.dir(parent).ok()?;
        if dir.level == Level::Root || self.union.at_inode(dir.ino).is_some() {
            return None;
        }
        let listed = self.listed(&dir, name)?;
        Some(listed.ok_or_else(|| ViewError::NotFound {
            name: name.to_string(),
        }))
    }

    /// `name` in `dir`'s listing when `dir` has been listed (`Some(None)`: not in it), or
    /// `None` when it has not. `ls -l` and `find` look up every name they have just read,
    /// and a lookup through the DAG decodes the directory's blocks again (for a HAMT-sharded
    /// directory, a shard node of up to 256 links per level, per name).
    fn listed(&self, dir: &Inode, name: &str) -> Option<Option<Arc<Inode>>> {
        let listings = lock(&self.listings);
        let (cid, entries) = listings.get(&dir.ino)?;
        if *cid != dir.cid {
            return None;
        }
        // Sorted by name bytes; of equal names the first is the one the listing shows.
        let i = entries.partition_point(|e| e.name.as_bytes() < name.as_bytes());
        Some(
            entries
                .get(i)
                .filter(|e| e.name == name)
                .map(|e| e.inode.clone()),
        )
    }

    /// Every entry of the directory `ino`, in name order, synthetic entries included.
    #[tracing::instrument(skip_all, fields(ino))]
    pub async fn readdir(&self, ino: u64) -> Result<Arc<Vec<Entry>>, ViewError> {
        let dir = self.dir(ino)?;
        self.bounded(async {
            let dir: Arc<Inode> = self.mounted_dir(dir).await?;
            self.listing(&dir).await
        })
        .await
    }

    /// Up to `size` bytes of the file `ino` at `offset`. Sequential readers get the next
    /// readahead window (`dist::readahead`) fetched in the background.
    #[tracing::instrument(skip_all, fields(ino, offset, size))]
    pub async fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Bytes, ViewError> {
        self.read_handle(ino, 0, offset, size).await
    }

    /// [`DistView::read`] through the open handle `fh` (from [`DistView::opened`]): the
    /// blocks read are kept from eviction until the handle is released.
    pub async fn read_handle(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<Bytes, ViewError> {
        let node = self.inode(ino)?;
        if node.kind != Kind::File {
            return Err(ViewError::NotAFile { ino });
        }
        let _foreground = self.cold.foreground();
        self.cold.trace(&node, offset, u64::from(size));
        // Local reads, but bounded like every read: a hung disk gives EIO, not a hang.
        let copy = self.bounded(async { Ok(self.read_copy(&node, offset, size).await) });
        if let Some(bytes) = copy.await? {
            return self.xattrs.read(ino, async { Ok(bytes) }).await;
        }
        let held = self.open.guard(fh);
        self.readahead(&node, offset, u64::from(size), held.clone());
        let store = Holding::new(Arc::clone(&self.store), held);
        let read = walk::read_range_cached(&store, &self.nodes, &node.cid, offset, size.into());
        let read = self.bounded(async { Ok(read.await?) });
        self.xattrs.read(ino, read).await
    }

    /// `size` bytes at `offset` of `node` from its whole copy in the cache, chunk by chunk
    /// checked (`WholeFiles::read_checked`), if it has one: a new daemon's first reads of a
    /// file it copied in an earlier run. `None`: read the blocks.
    async fn read_copy(&self, node: &Inode, offset: u64, size: u32) -> Option<Bytes> {
        let whole = self.whole.as_ref()?;
        if !node.is_immutable() || !whole.has_copy(&node.cid, node.size) {
            return None;
        }
        let (whole, cid, file_size) = (Arc::clone(whole), node.cid, node.size);
        let (bytes, ahead) = match whole.read_kept(&cid, file_size, offset, size.into()) {
            Some(kept) => kept,
            None => {
                let read = move || whole.read_checked(&cid, file_size, offset, size.into());
                tokio::task::spawn_blocking(read).await.ok().flatten()?
            }
        };
        if let Some(ahead) = ahead {
            tokio::task::spawn_blocking(move || ahead.run());
        }
        Some(bytes)
    }

    /// The target of the symlink `ino`.
    pub async fn readlink(&self, ino: u64) -> Result<Bytes, ViewError> {
        let node = self.inode(ino)?;
        match &node.kind {
            Kind::Latest(target) => Ok(Bytes::from(target.clone())),
            Kind::Symlink => {
                let load = walk::load(self.store.as_ref(), &node.cid);
                match self.bounded(async { Ok(load.await?) }).await? {
                    crate::unixfs::Node::Symlink(s) => Ok(s.target),
                    _ => Err(ViewError::NotASymlink { ino }),
                }
            }
            _ => Err(ViewError::NotASymlink { ino }),
        }
    }

    /// How many inodes have been handed out.
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    pub(super) async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ViewError>>,
    ) -> Result<T, ViewError> {
        tokio::time::timeout(self.deadline, fut)
            .await
            .unwrap_or(Err(ViewError::Timeout {
                after: self.deadline,
            }))
    }

    fn dir(&self, ino: u64) -> Result<Arc<Inode>, ViewError> {
        let node = self.inode(ino)?;
        match node.kind {
            Kind::Dir => Ok(node),
            _ => Err(ViewError::NotADirectory { ino }),
        }
    }

    /// Fetches the window after a sequential READ in the background, and scouts the DAG a
    /// window further on; through the reading handle's guard when it has one, so what
    /// readahead brings in is held like what it read.
    fn readahead(&self, node: &Inode, offset: u64, size: u64, held: Option<Arc<InUse>>) {
        let Some(window) = self
            .readahead
            .next_window(node.ino, node.size, offset, size)
        else {
            return;
        };
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = Holding::new(self.store.clone(), held);
        let nodes = Arc::clone(&self.nodes);
        let (cid, ino, xattrs) = (node.cid, node.ino, Arc::clone(&self.xattrs));
        let size = node.size;
        handle.spawn(async move {
            let (start, len, blocks) = (window.start, window.len, window.blocks);
            // One byte a window past this one (the internal nodes above it and one leaf),
            // so that a later top-up does not first wait a round trip for the node above its
            // leaves: with Kubo's 174 links a node covers 43.5 MiB of 256 KiB leaves, and at
            // 20 ms that wait emptied the fetch window once per node (a tenth of the time of
            // a cold read of 1 GiB).
            let width = blocks as u64 * super::readahead::WINDOW_BLOCK;
            let ahead = start.saturating_add(len).saturating_add(width);
            let scout = async {
                if ahead < size {
                    if let Err(e) =
                        walk::prefetch_range_wide(&store, &nodes, &cid, ahead, 1, 1).await
                    {
                        // Harmless: the top-up that gets there fetches it again.
                        tracing::debug!(%cid, ahead, "readahead scout failed: {e}");
                    }
                }
            };
            let fetch = walk::prefetch_range_wide(&store, &nodes, &cid, start, len, blocks);
            let (res, ()) = tokio::join!(xattrs.prefetch(ino, fetch), scout);
            if let Err(e) = res {
                tracing::debug!(%cid, start, "readahead failed: {e}");
            }
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
