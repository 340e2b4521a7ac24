//! The site cache: `distfs serve --upstream URL...` answers misses from upstream trustless
//! gateways through the mount's own machinery, so a site's build servers share one download
//! of each block.
//!
//! The store is the mount's [`CacheStore`] over the first `--store` directory: the same
//! quota and LRU eviction (`--store-size`), pins, memory tier and single-flight (concurrent
//! misses of one block go upstream once). Misses go to a [`Fetcher`] over the upstreams
//! (health scoring, failover, hedging, per-get deadline), which verifies every block before
//! the cache stores or returns it: a lying upstream yields an error, never wrong bytes.
//! Upstream failures reach the client as 502 (failed) or 504 (deadline), see `error`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::fetch::{Fetcher, FetcherConfig, SourceStats};
use crate::store::cache::{CacheStats, CacheStore};
use crate::store::disk::DiskStore;
use crate::store::lock::CacheLock;
use crate::store::quota::Quota;

use super::sources::SourceError;

/// How often the quota is checked as a safety net for eviction triggers lost to races.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// What `--upstream` configures.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Upstream trustless gateways (base URLs), in order of preference.
    pub urls: Vec<String>,
    /// The cache directory (the first `--store`).
    pub dir: PathBuf,
    /// The store's size limit in bytes (`None` = unlimited).
    pub size: Option<u64>,
    /// Deadlines and limits of upstream fetches.
    pub fetcher: FetcherConfig,
}

/// An open site cache: the caching store and the lock that keeps other processes (a mount,
/// another serve) out of its directory.
pub struct Upstream {
    cache: CacheStore,
    _lock: CacheLock,
}

/// A snapshot of the site cache for `/debug/stats`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct UpstreamStats {
    /// Hits, misses and upstream fetches of the store.
    #[serde(flatten)]
    pub cache: CacheStats,
    /// Bytes held in the store now.
    pub bytes: u64,
    /// Blocks held in the store now.
    pub blocks: u64,
    /// The store's limit, if any.
    pub limit: Option<u64>,
    /// Each upstream's health and counters.
    pub sources: Vec<SourceStats>,
}

impl Upstream {
    /// Locks and scans the directory (on a blocking thread), builds the fetcher and starts
    /// the quota sweep. Must run inside a tokio runtime.
    pub async fn open(config: &UpstreamConfig) -> Result<Upstream, SourceError> {
        let fetcher = Fetcher::from_gateways(&config.urls, config.fetcher.clone())
            .map_err(|e| SourceError::Upstream(e.to_string()))?;
        let (dir, size) = (config.dir.clone(), config.size);
        let (lock, quota) = tokio::task::spawn_blocking(move || open_dir(&dir, size))
            .await
            .map_err(|e| SourceError::Task(e.to_string()))??;
        let quota = Arc::new(quota);
        let sweep = Arc::downgrade(&quota);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_EVERY);
            loop {
                tick.tick().await;
                match sweep.upgrade() {
                    Some(q) => q.evict_if_over(),
                    None => return,
                }
            }
        });
        tracing::info!(upstreams = ?config.urls, dir = %config.dir.display(), limit = ?size, "site cache open");
        Ok(Upstream {
            cache: CacheStore::with_quota(quota, fetcher),
            _lock: lock,
        })
    }

    /// The caching store (what requests read through).
    pub fn cache(&self) -> &CacheStore {
        &self.cache
    }

    /// The counters now.
    pub fn stats(&self) -> UpstreamStats {
        let usage = self.cache.usage();
        UpstreamStats {
            cache: self.cache.stats(),
            bytes: usage.bytes,
            blocks: usage.blocks,
            limit: usage.limit,
            sources: self.cache.fetcher().stats(),
        }
    }
}

fn open_dir(dir: &Path, size: Option<u64>) -> Result<(CacheLock, Quota), SourceError> {
    let lock = CacheLock::acquire(dir, "serving as a site cache")
        .map_err(|e| SourceError::Upstream(e.to_string()))?;
    let disk = DiskStore::open_unsynced(dir)?;
    let quota = Quota::open(disk, size)?;
    Ok((lock, quota))
}
