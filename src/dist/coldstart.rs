//! Cold-start help for files run straight from the mount (AppImages). When a file is first
//! opened: the publisher's prefetch list (a `<file>.prefetch` sidecar beside it,
//! `dist::prefetch`) is fetched in one batch, all ranges at once; and the rest of an
//! `*.AppImage` is fetched into the cache in the background at low priority (bounded
//! concurrency over all files, each chunk waiting while foreground reads are in flight,
//! stopped on unmount). Also owns the names of file inodes (for sidecars and trace paths)
//! and the read trace of `distfs mount --trace`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cid::Cid;
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::inode::{Inode, ROOT_INO};
use super::prefetch::{PrefetchList, TracedRead, MAX_SIDECAR_BYTES, SIDECAR_SUFFIX};
use super::trace::Tracer;
use crate::store::BlockStore;
use crate::walk::{self, NodeCache, WalkError};

/// Bytes fetched per background step.
pub const BACKGROUND_CHUNK: u64 = 1024 * 1024;
/// Bytes per piece of a prefetch range (pieces of all ranges are fetched at once).
const PREFETCH_PIECE: u64 = 1024 * 1024;
/// Prefetch pieces in flight at once.
const PREFETCH_CONCURRENCY: usize = 32;
/// The longest a background step waits for foreground reads to finish before going ahead
/// (so that a reader that never pauses cannot starve it for ever).
const MAX_YIELD: Duration = Duration::from_secs(1);
/// The deepest path a trace line is built for.
const MAX_PATH_DEPTH: usize = 64;

/// What cold-start help to give.
#[derive(Clone, Debug)]
pub struct ColdStartConfig {
    /// Fetch the ranges a `<file>.prefetch` sidecar lists when the file is first opened.
    pub prefetch_lists: bool,
    /// Fetch the rest of an `*.AppImage` into the cache after it is first opened.
    pub background: bool,
    /// Background steps in flight at once, over all files.
    pub background_concurrency: usize,
}

impl Default for ColdStartConfig {
    fn default() -> ColdStartConfig {
        ColdStartConfig {
            prefetch_lists: true,
            background: true,
            background_concurrency: 2,
        }
    }
}

/// Whether a file of this name gets the rest of it fetched in the background.
pub fn wants_background(name: &str) -> bool {
    name.ends_with(".AppImage")
}

/// Counters since the mount started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ColdStartStats {
    /// Bytes covered by prefetch lists fetched.
    pub prefetched_bytes: u64,
    /// Files whose background fetch completed.
    pub background_done: u64,
}

/// Cold-start state of one mount.
pub struct ColdStart {
    store: Arc<dyn BlockStore>,
    /// The view's decoded internal nodes, shared with its readers.
    nodes: Arc<NodeCache>,
    config: ColdStartConfig,
    rt: Option<tokio::runtime::Handle>,
    /// File inode → (parent inode, name), first seen wins. Map operations only under the
    /// lock (no `.await`), as for every mutex here.
    names: Mutex<HashMap<u64, (u64, String)>>,
    /// Files (by content) whose help has started.
    started: Mutex<HashSet<Cid>>,
    foreground: AtomicUsize,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
    tracer: Option<Tracer>,
    prefetched_bytes: AtomicU64,
    background_done: AtomicU64,
}

/// Marks a foreground read in flight while it lives.
pub struct Foreground<'a>(&'a AtomicUsize);

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ColdStart {
    /// Cold-start help over `store` (decoded internal nodes shared through `nodes`); tasks
    /// run on the current tokio runtime (if any when this is called, else whichever is
    /// current at `start`). `tracer` records every read.
    pub fn new(
        store: Arc<dyn BlockStore>,
        nodes: Arc<NodeCache>,
        config: ColdStartConfig,
        tracer: Option<Tracer>,
    ) -> ColdStart {
        let slots = Arc::new(Semaphore::new(config.background_concurrency.max(1)));
        ColdStart {
            store,
            nodes,
            config,
            rt: tokio::runtime::Handle::try_current().ok(),
            names: Mutex::default(),
            started: Mutex::default(),
            foreground: AtomicUsize::new(0),
            slots,
            cancel: CancellationToken::new(),
            tracer,
            prefetched_bytes: AtomicU64::new(0),
            background_done: AtomicU64::new(0),
        }
    }

    /// Remembers that inode `ino` is `name` in directory `parent` (first name wins).
    pub fn saw(&self, ino: u64, parent: u64, name: &str) {
        lock(&self.names)
            .entry(ino)
            .or_insert_with(|| (parent, name.to_string()));
    }

    /// The parent and name `ino` was first seen under.
    pub fn name_of(&self, ino: u64) -> Option<(u64, String)> {
        lock(&self.names).get(&ino).cloned()
    }

    /// `ino`'s path inside the mount (`project/version/file`).
    pub fn path_of(&self, ino: u64) -> Option<String> {
        let names = lock(&self.names);
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO {
            let (parent, name) = names.get(&at)?;
            parts.push(name.as_str());
            at = *parent;
            if parts.len() > MAX_PATH_DEPTH {
                return None;
            }
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// Marks a foreground read in flight until the guard drops.
    pub fn foreground(&self) -> Foreground<'_> {
        self.foreground.fetch_add(1, Ordering::SeqCst);
        Foreground(&self.foreground)
    }

    /// Records a READ in the trace, if tracing.
    pub fn trace(&self, file: &Inode, offset: u64, len: u64) {
        let Some(tracer) = &self.tracer else { return };
        if let Some(path) = self.path_of(file.ino) {
            tracer.record(TracedRead {
                path,
                size: file.size,
                offset,
                len,
            });
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> ColdStartStats {
        ColdStartStats {
            prefetched_bytes: self.prefetched_bytes.load(Ordering::Relaxed),
            background_done: self.background_done.load(Ordering::Relaxed),
        }
    }

    /// The file `file`, named `name` in the directory `dir`, was opened: the first time for
    /// its content, start its prefetch list and background fetch. `no_sidecar`: the caller
    /// knows `dir` has no `<name>.prefetch` (from a listing it holds), so the directory is not
    /// searched for one; an open of each file of a 5,000-entry directory decoded that
    /// directory again, 1.5 ms each. Never waits.
    pub fn start(self: &Arc<Self>, file: &Inode, dir: Cid, name: &str, no_sidecar: bool) {
        let lists = self.config.prefetch_lists && !no_sidecar;
        let wanted = lists || (self.config.background && wants_background(name));
        if !wanted || self.cancel.is_cancelled() || !lock(&self.started).insert(file.cid) {
            return;
        }
        let Some(rt) = self
            .rt
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        else {
            return;
        };
        let this = self.clone();
        let (cid, size, name) = (file.cid, file.size, name.to_string());
        rt.spawn(async move {
            // Biased: an unmount wins over work that happens to be ready.
            tokio::select! {
                biased;
                _ = this.cancel.cancelled() => tracing::debug!(%cid, "cold-start help stopped by unmount"),
                r = this.warm_impl(cid, size, dir, &name, lists) => match r {
                    Ok(()) => tracing::debug!(%cid, name, "cold-start help done"),
                    Err(e) => tracing::warn!(%cid, name, "cold-start help failed: {e}"),
                },
            }
        });
    }

    /// Stops every background task and writes out the trace. Blocking (joins the trace
    /// writer): call it when the mount has ended, outside the runtime.
    pub fn shutdown(&self) {
        self.cancel.cancel();
        if let Some(t) = &self.tracer {
            t.finish();
        }
    }

    #[tracing::instrument(skip_all, fields(cid = %cid, name))]
    async fn warm_impl(
        &self,
        cid: Cid,
        size: u64,
        dir: Cid,
        name: &str,
        lists: bool,
    ) -> Result<(), WalkError> {
        if lists && !name.ends_with(SIDECAR_SUFFIX) {
            self.prefetch_listed(cid, size, dir, name).await?;
        }
        if self.config.background && wants_background(name) {
            self.background(cid, size).await?;
            self.background_done.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%cid, name, size, "fetched into the cache in the background");
        }
        Ok(())
    }

    /// Fetches what `<name>.prefetch` in `dir` lists, all ranges at once.
    async fn prefetch_listed(
        &self,
        cid: Cid,
        size: u64,
        dir: Cid,
        name: &str,
    ) -> Result<(), WalkError> {
        let store = self.store.as_ref();
        let sidecar = format!("{name}{SIDECAR_SUFFIX}");
        let Some(entry) = walk::lookup(store, &dir, &sidecar).await? else {
            return Ok(());
        };
        let stat = walk::stat(store, &entry.cid).await?;
        if stat.kind != walk::Kind::File || stat.size > MAX_SIDECAR_BYTES {
            tracing::warn!(
                sidecar,
                "ignoring a prefetch list that is not a file of at most {MAX_SIDECAR_BYTES} bytes"
            );
            return Ok(());
        }
        let text = walk::read_range(store, &entry.cid, 0, stat.size).await?;
        let list = match PrefetchList::parse(&text, size) {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(sidecar, "ignoring prefetch list: {e}");
                return Ok(());
            }
        };
        let pieces: Vec<(u64, u64)> = list
            .ranges
            .iter()
            .flat_map(|&(offset, len)| {
                (offset..offset + len)
                    .step_by(PREFETCH_PIECE as usize)
                    .map(move |o| (o, PREFETCH_PIECE.min(offset + len - o)))
            })
            .collect();
        let started = Instant::now();
        let nodes = self.nodes.as_ref();
        stream::iter(pieces)
            .map(|(o, l)| walk::prefetch_range(store, nodes, &cid, o, l))
            .buffer_unordered(PREFETCH_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        self.prefetched_bytes
            .fetch_add(list.total_bytes(), Ordering::Relaxed);
        tracing::info!(
            sidecar,
            ranges = list.ranges.len(),
            bytes = list.total_bytes(),
            ms = started.elapsed().as_millis() as u64,
            "prefetched the publisher's list"
        );
        Ok(())
    }

    /// Fetches the whole file into the cache, a chunk at a time, behind foreground reads.
    async fn background(&self, cid: Cid, size: u64) -> Result<(), WalkError> {
        let store = self.store.as_ref();
        let steps = (0..size).step_by(BACKGROUND_CHUNK as usize);
        stream::iter(steps)
            .map(|offset| async move {
                // A closed semaphore cannot happen (it is never closed); go ahead if it did.
                let _slot = self.slots.acquire().await.ok();
                self.yield_to_foreground().await;
                walk::prefetch_range(store, &self.nodes, &cid, offset, BACKGROUND_CHUNK).await
            })
            .buffer_unordered(self.config.background_concurrency.max(1))
            .try_collect::<()>()
            .await
    }

    /// Waits (at most [`MAX_YIELD`]) while foreground reads are in flight.
    async fn yield_to_foreground(&self) {
        let start = Instant::now();
        while self.foreground.load(Ordering::SeqCst) > 0 && start.elapsed() < MAX_YIELD {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::inode::{Kind, Level};
    use crate::store::MemStore;
    use crate::unixfs::testutil::{balanced, Blocks, Leaf};
    use crate::walk::CountingStore;

    /// A 13-leaf file (3 chunks + 5 bytes in 256 KiB leaves) in a counting store, and the
    /// cold-start help over it (background only).
    fn fixture() -> (Arc<CountingStore<MemStore>>, Arc<ColdStart>, Inode, usize) {
        let data: Vec<u8> = (0..3 * BACKGROUND_CHUNK + 5).map(|i| i as u8).collect();
        let mut blocks = Blocks::default();
        let root = balanced(&mut blocks, &data, 256 * 1024, 4, Leaf::Raw);
        let count = blocks.0.len();
        let mem = MemStore::new();
        for b in blocks.0.into_values() {
            mem.insert(b);
        }
        let store = Arc::new(CountingStore::new(mem));
        let config = ColdStartConfig {
            prefetch_lists: false,
            ..ColdStartConfig::default()
        };
        let nodes = Arc::new(NodeCache::default());
        let cold = Arc::new(ColdStart::new(store.clone(), nodes, config, None));
        let file = Inode {
            ino: 7,
            parent: ROOT_INO,
            cid: root,
            kind: Kind::File,
            level: Level::Content,
            size: data.len() as u64,
            perm: 0o555,
            mtime: None,
            version_info: Default::default(),
        };
        (store, cold, file, count)
    }

    async fn wait_done(cold: &ColdStart) {
        for _ in 0..10_000 {
            if cold.stats().background_done == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the background fetch did not finish");
    }

    #[tokio::test(start_paused = true)]
    async fn background_fetch_waits_for_foreground_reads_then_fetches_every_block() {
        let (store, cold, file, count) = fixture();
        let reading = cold.foreground();
        cold.start(&file, file.cid, "app.AppImage", false);
        tokio::time::sleep(MAX_YIELD / 2).await;
        assert_eq!(
            store.total(),
            0,
            "fetched while a foreground read was in flight"
        );
        drop(reading);
        wait_done(&cold).await;
        assert_eq!(store.counts().len(), count, "not every block was fetched");
        // Opening the same content again starts nothing new.
        let gets = store.total();
        cold.start(&file, file.cid, "app.AppImage", false);
        tokio::time::sleep(MAX_YIELD).await;
        assert_eq!(store.total(), gets);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_never_pauses_delays_the_background_but_does_not_starve_it() {
        let (store, cold, file, count) = fixture();
        let _reading = cold.foreground();
        cold.start(&file, file.cid, "app.AppImage", false);
        wait_done(&cold).await;
        assert_eq!(store.counts().len(), count);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_background_and_other_names_get_none() {
        let (store, cold, file, _) = fixture();
        cold.start(&file, file.cid, "not-an-appimage.bin", false);
        let reading = cold.foreground();
        cold.start(&file, file.cid, "app.AppImage", false);
        cold.shutdown();
        drop(reading);
        tokio::time::sleep(MAX_YIELD * 3).await;
        assert_eq!(store.total(), 0, "fetched after shutdown");
        assert_eq!(cold.stats().background_done, 0);
    }
}
