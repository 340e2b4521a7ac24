//! What the running daemon shares with its control socket and metrics endpoint: the cache,
//! the view, the followed name, and how to ask for a refresh. Snapshots are built from
//! lock-free counters (and the fetcher's short per-source locks) on each request.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::follow::{NameCell, RefreshAsk};
use super::status::{CacheStatus, GatewayStatus, NameStatus, RootStatus, Status};
use crate::dist::DistView;
use crate::name::RootSpec;
use crate::store::cache::CacheStore;

/// A source counts as demoted when its decayed error count is at least this.
const DEMOTED_ERRORS: f64 = 1.0;

/// The daemon's shared state.
pub(crate) struct Shared {
    pub(crate) spec: RootSpec,
    pub(crate) mountpoint: PathBuf,
    pub(crate) cache_dir: PathBuf,
    pub(crate) started: Instant,
    pub(crate) offline: bool,
    pub(crate) store: CacheStore,
    pub(crate) view: Arc<DistView>,
    /// The followed name (none for an `/ipfs/` root).
    pub(crate) name: Option<Arc<NameCell>>,
    /// Asks the refresh task (none for an `/ipfs/` root).
    pub(crate) refresh: Option<mpsc::Sender<RefreshAsk>>,
    /// The probed local gateway's URL, when it answered and is in use.
    pub(crate) local_gateway: Option<String>,
    /// The bound metrics address, once listening.
    pub(crate) metrics_listen: OnceLock<std::net::SocketAddr>,
    /// The uid allowed besides root on the control socket (the mounting user).
    pub(crate) owner_uid: u32,
    /// What a hot restart hands over, once the mount is up.
    pub(crate) handover: OnceLock<Arc<super::restart::Handover>>,
    /// Whole copies of files (none with passthrough off).
    pub(crate) whole: Option<Arc<crate::store::whole::WholeFiles>>,
    /// How open files are read.
    pub(crate) io_modes: Arc<crate::fs::iomode::IoModes>,
}

fn unix_secs(t: SystemTime) -> Option<u64> {
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

impl Shared {
    /// The state now.
    pub(crate) fn status(&self) -> Status {
        let usage = self.store.usage();
        let stats = self.store.stats();
        let (evicted_blocks, evicted_bytes) = self.store.quota().evicted();
        let fetcher = self.store.fetcher();
        let looked = stats.hits + stats.misses;
        let names = self
            .name
            .iter()
            .map(|cell| {
                let s = cell.get();
                NameStatus {
                    name: self.spec.to_string(),
                    cid: s.cid.to_string(),
                    sequence: s.sequence,
                    ttl_secs: s.ttl.as_secs(),
                    source: s.source,
                    last_refresh_unix: s.last_refresh.and_then(unix_secs),
                    last_refresh_error: s.last_error,
                    refresh_failures: cell.failures.load(std::sync::atomic::Ordering::Relaxed),
                }
            })
            .collect();
        let gateways = fetcher
            .stats()
            .into_iter()
            .map(|g| GatewayStatus {
                local: self.local_gateway.as_deref() == Some(g.name.as_str()),
                demoted: g.recent_errors >= DEMOTED_ERRORS || g.backoff_ms.is_some(),
                url: g.name,
                origin: g.origin,
                requests: g.requests,
                blocks: g.blocks,
                not_found: g.not_found,
                errors: g.errors,
                bytes: g.bytes,
                latency_ewma_ms: g.latency_ewma_ms,
                recent_errors: g.recent_errors,
                dropped: g.dropped,
                backoff_ms: g.backoff_ms,
            })
            .collect();
        Status {
            root: RootStatus {
                spec: self.spec.to_string(),
                cid: self.view.root_cid().to_string(),
            },
            mountpoint: self.mountpoint.display().to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            offline: self.offline,
            metrics_listen: self.metrics_listen.get().map(|a| a.to_string()),
            names,
            cache: CacheStatus {
                dir: self.cache_dir.display().to_string(),
                bytes: usage.bytes,
                blocks: usage.blocks,
                limit: usage.limit,
                pinned_bytes: usage.pinned_bytes,
                hits: stats.hits,
                misses: stats.misses,
                hit_ratio: (looked > 0).then(|| stats.hits as f64 / looked as f64),
                fetches: stats.fetches,
                fetched_bytes: stats.fetched_bytes,
                corrupt_dropped: stats.corrupt_dropped,
                evicted_blocks,
                evicted_bytes,
                in_flight: fetcher.in_flight() as u64,
                max_in_flight: fetcher.window() as u64,
                whole: {
                    let w = self.whole.as_ref().map(|w| w.stats()).unwrap_or_default();
                    super::status::WholeStatus {
                        passthrough: self.io_modes.passthrough_enabled(),
                        written: w.written,
                        proved: w.proved,
                        dropped: w.dropped,
                        passthrough_opens: self.io_modes.passthrough_opens(),
                        busy: self.whole.as_ref().is_some_and(|w| w.is_busy()),
                        files: usage.whole_files,
                        bytes: usage.whole_bytes,
                    }
                },
            },
            gateways,
            projects: self.view.union().reports(),
            clashes: self.view.union().clashes(),
            hub_rejected: self.view.union().hub_problems().0,
            hub_error: self.view.union().hub_problems().1,
        }
    }
}
