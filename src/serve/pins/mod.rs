//! The IPFS Pinning Service API in `distfs serve`, and keeping what it pins whole in the
//! store. Off unless a bearer token is configured (`--pin-token` / `--pin-token-file`).
//!
//! The API (spec: ipfs/pinning-services-api-spec `ipfs-pinning-service.yaml`; the wire
//! objects and the spec facts we rely on are in [`crate::fetch::pinning`]):
//! - `POST /pins` (a `Pin`) → 202 `PinStatus`, state `queued`;
//! - `GET /pins` → 200 `{count, results}`, newest first, filters in [`query`] (default: only
//!   `pinned` requests, 10 of them);
//! - `GET /pins/{requestid}` → 200 `PinStatus`; `POST /pins/{requestid}` (a `Pin`) replaces
//!   it → 202 with a new `requestid`; `DELETE /pins/{requestid}` → 202, no body;
//! - every request needs `Authorization: Bearer <token>` (compared in constant time), else
//!   401; errors are `{"error": {"reason", "details"}}` ([`api`]).
//!
//! Keeping DAGs whole (`worker`): each request is walked in the background — every block
//! fetched, verified and written to the store, a DAG level at a time — by
//! [`crate::store::cache::CacheStore::pin`], from the request's `origins` (multiaddrs naming
//! HTTP gateways, [`crate::fetch::multiaddr`]) and the service's upstream gateways, through
//! the same fetcher (failover, verification, deadlines) the mount uses. States move queued →
//! pinning → pinned, or failed with `info.reason` after a bounded number of attempts. At most
//! [`PinConfig::workers`] requests are walked at once.
//!
//! Protection: the walk records a store pin (`DIR/pins/<cid>.pin`, every block listed) in
//! the store's [`Quota`], so quota eviction never removes a pinned block and a restart
//! reloads the pin set from disk. A root pinned by several requests is released only when
//! the last of them is deleted; a replaced request keeps its blocks pinned until the new
//! one is finished. Requests persist as files ([`records`]); at start, requests that were
//! queued or pinning are walked again, and store pins the service made that no request
//! needs any more are released.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cid::Cid;

use crate::fetch::pinning::{Pin, PinResults, PinState, PinStatus};
use crate::fetch::{Fetcher, FetcherConfig};
use crate::store::cache::CacheStore;
use crate::store::disk::DiskStore;
use crate::store::lock::{CacheLock, LockError};
use crate::store::quota::Quota;
use crate::store::StoreError;

pub mod api;
pub mod query;
pub mod records;
mod worker;

use query::ListQuery;
use records::Entry;

/// Settings of the pin service.
#[derive(Clone, Debug)]
pub struct PinConfig {
    /// The bearer token every request must carry.
    pub token: String,
    /// Gateways asked for every pin after its origins (serve's upstreams).
    pub upstreams: Vec<String>,
    /// Requests walked at once.
    pub workers: usize,
    /// Walks of one request before it is marked failed.
    pub attempts: u32,
    /// Wait before the second walk (doubled each time).
    pub retry_delay: Duration,
    /// Fetching limits for each walk (per-block deadline, retries, in-flight requests).
    pub fetch: FetcherConfig,
    /// Requests that may be queued or pinning at once; more are answered 429.
    pub max_pending: usize,
    /// Requests kept in all; more are answered 429.
    pub max_requests: usize,
}

impl PinConfig {
    /// Defaults around `token`.
    pub fn new(token: String) -> PinConfig {
        PinConfig {
            token,
            upstreams: Vec::new(),
            workers: 2,
            attempts: 3,
            retry_delay: Duration::from_secs(1),
            fetch: FetcherConfig::default(),
            max_pending: 1000,
            max_requests: 100_000,
        }
    }
}

/// Why the pin service could not start.
#[derive(Debug, thiserror::Error)]
pub enum PinServiceError {
    /// The store directory is held by another process.
    #[error("pin service: {0}")]
    Lock(#[from] LockError),
    /// The store could not be opened or scanned.
    #[error("pin service: {0}")]
    Store(#[from] StoreError),
    /// A start-up task died.
    #[error("pin service: start-up task failed: {0}")]
    Task(String),
}

/// Why a request was refused (mapped to statuses in [`api`]).
#[derive(Debug, thiserror::Error)]
pub enum PinRequestError {
    /// No request with this id.
    #[error("no pin request {requestid}")]
    NotFound { requestid: String },
    /// The pin object is unusable.
    #[error("{0}")]
    BadPin(String),
    /// Too many requests pending or kept.
    #[error("{what} ({limit}); try again later or delete old requests")]
    TooMany { what: &'static str, limit: usize },
    /// The request could not be written to disk.
    #[error("saving the pin request: {0}")]
    Io(#[from] std::io::Error),
}

/// The pin service's state. Share it as `Arc<PinService>`.
pub struct PinService {
    config: PinConfig,
    dir: PathBuf,
    quota: Arc<Quota>,
    /// A cache with no sources, used only to release store pins.
    base: CacheStore,
    /// Every request by id. A `std::sync::Mutex`: short map operations, never held across
    /// an `.await`.
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Serializes every change of a request with its file write, so a late status write
    /// can never bring back a deleted request.
    writes: tokio::sync::Mutex<()>,
    workers: tokio::sync::Semaphore,
    /// One walk per root at a time (entries removed when unused; short sections only).
    roots: Mutex<HashMap<Cid, Arc<tokio::sync::Mutex<()>>>>,
    last_created: Mutex<i64>,
    _lock: Option<CacheLock>,
}

impl PinService {
    /// Opens the service over the store directory `dir`: takes the directory's lock, scans
    /// it into a quota with no limit (loading the store pins), loads the requests, and
    /// starts walking the unfinished ones. For a store whose quota someone else owns (a
    /// caching serve), use [`PinService::with_quota`].
    pub async fn open(dir: &Path, config: PinConfig) -> Result<Arc<PinService>, PinServiceError> {
        let d = dir.to_path_buf();
        let (lock, quota) = tokio::task::spawn_blocking(move || {
            let lock = CacheLock::acquire(&d, "serving pins (distfs serve)")?;
            let quota = Quota::open(DiskStore::open(&d)?, None)?;
            Ok::<_, PinServiceError>((lock, quota))
        })
        .await
        .map_err(|e| PinServiceError::Task(e.to_string()))??;
        PinService::start(Arc::new(quota), config, Some(lock)).await
    }

    /// The service over a store whose [`Quota`] (and lock) the caller owns, so that the
    /// pins hold in that quota's evictions.
    pub async fn with_quota(
        quota: Arc<Quota>,
        config: PinConfig,
    ) -> Result<Arc<PinService>, PinServiceError> {
        PinService::start(quota, config, None).await
    }

    async fn start(
        quota: Arc<Quota>,
        config: PinConfig,
        lock: Option<CacheLock>,
    ) -> Result<Arc<PinService>, PinServiceError> {
        let dir = quota.disk().dir().to_path_buf();
        let d = dir.clone();
        let loaded = tokio::task::spawn_blocking(move || records::load_all(&d))
            .await
            .map_err(|e| PinServiceError::Task(e.to_string()))?;
        let fetcher = Fetcher::new(Vec::new(), config.fetch.clone());
        let base = CacheStore::with_quota(Arc::clone(&quota), fetcher);
        let last = loaded.iter().map(|e| e.created_ns).max().unwrap_or(0);
        let svc = Arc::new(PinService {
            workers: tokio::sync::Semaphore::new(config.workers.max(1)),
            config,
            dir,
            quota,
            base,
            entries: Mutex::new(
                loaded
                    .into_iter()
                    .map(|e| (e.status.requestid.clone(), e))
                    .collect(),
            ),
            writes: tokio::sync::Mutex::new(()),
            roots: Mutex::new(HashMap::new()),
            last_created: Mutex::new(last),
            _lock: lock,
        });
        svc.release_orphans().await;
        let unfinished: Vec<String> = svc
            .lock()
            .values()
            .filter(|e| !e.status.status.is_final())
            .map(|e| e.status.requestid.clone())
            .collect();
        tracing::info!(
            requests = svc.lock().len(),
            resumed = unfinished.len(),
            "pin service started"
        );
        for id in unfinished {
            svc.spawn_walk(id);
        }
        Ok(svc)
    }

    /// The bearer token requests must carry.
    pub fn token(&self) -> &str {
        &self.config.token
    }

    /// The quota the pins are kept in.
    pub fn quota(&self) -> &Arc<Quota> {
        &self.quota
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One request's current state.
    pub fn get(&self, requestid: &str) -> Option<PinStatus> {
        self.lock().get(requestid).map(|e| e.status.clone())
    }

    /// The requests matching `q`, newest first.
    pub fn list(&self, q: &ListQuery) -> PinResults {
        let map = self.lock();
        let mut hits: Vec<&Entry> = map
            .values()
            .filter(|e| {
                let cid = Cid::try_from(e.status.pin.cid.as_str()).ok();
                q.matches(&e.status, cid.as_ref(), i128::from(e.created_ns))
            })
            .collect();
        hits.sort_by_key(|e| std::cmp::Reverse(e.created_ns));
        PinResults {
            count: hits.len() as u64,
            results: hits
                .into_iter()
                .take(q.limit)
                .map(|e| e.status.clone())
                .collect(),
        }
    }

    /// Adds a request for `pin`; its state (queued).
    pub async fn add(self: &Arc<Self>, pin: Pin) -> Result<PinStatus, PinRequestError> {
        self.create(pin, None).await
    }

    /// Replaces request `requestid` with a new one for `pin`: the old request is gone at
    /// once, its blocks stay pinned until the new request is pinned or failed.
    pub async fn replace(
        self: &Arc<Self>,
        requestid: &str,
        pin: Pin,
    ) -> Result<PinStatus, PinRequestError> {
        query::check_pin(&pin).map_err(PinRequestError::BadPin)?;
        let old = self
            .get(requestid)
            .ok_or_else(|| PinRequestError::NotFound {
                requestid: requestid.to_string(),
            })?;
        let status = self.create(pin, Some(old.pin.cid)).await?;
        self.remove(requestid).await?;
        Ok(status)
    }

    /// Removes request `requestid`; its root's blocks become evictable unless another
    /// request still needs them.
    pub async fn delete(self: &Arc<Self>, requestid: &str) -> Result<(), PinRequestError> {
        let removed = self.remove(requestid).await?;
        // In the background: a walk of this root still running holds the root's lock, and
        // the answer must not wait for it (the walk releases the root itself when done).
        let svc = Arc::clone(self);
        tokio::spawn(async move { svc.release_if_unused(&removed.status.pin.cid).await });
        Ok(())
    }

    async fn create(
        self: &Arc<Self>,
        pin: Pin,
        replaces: Option<String>,
    ) -> Result<PinStatus, PinRequestError> {
        query::check_pin(&pin).map_err(PinRequestError::BadPin)?;
        let _w = self.writes.lock().await;
        let entry = {
            let map = self.lock();
            if map.len() >= self.config.max_requests {
                return Err(PinRequestError::TooMany {
                    what: "too many pin requests kept",
                    limit: self.config.max_requests,
                });
            }
            let pending = map.values().filter(|e| !e.status.status.is_final()).count();
            if pending >= self.config.max_pending {
                return Err(PinRequestError::TooMany {
                    what: "too many pin requests waiting",
                    limit: self.config.max_pending,
                });
            }
            drop(map);
            let created_ns = self.next_created();
            Entry {
                status: PinStatus {
                    requestid: new_id()?,
                    status: PinState::Queued,
                    created: query::format_time(i128::from(created_ns)),
                    pin,
                    delegates: Vec::new(),
                    info: BTreeMap::new(),
                },
                created_ns,
                replaces,
            }
        };
        self.write(&entry).await?;
        let id = entry.status.requestid.clone();
        let status = entry.status.clone();
        self.lock().insert(id.clone(), entry);
        self.spawn_walk(id);
        Ok(status)
    }

    async fn remove(&self, requestid: &str) -> Result<Entry, PinRequestError> {
        let _w = self.writes.lock().await;
        let not_found = || PinRequestError::NotFound {
            requestid: requestid.to_string(),
        };
        if !self.lock().contains_key(requestid) {
            return Err(not_found());
        }
        let (dir, id) = (self.dir.clone(), requestid.to_string());
        tokio::task::spawn_blocking(move || records::remove(&dir, &id))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??;
        self.lock().remove(requestid).ok_or_else(not_found)
    }

    /// Applies `f` to a request and saves it; `None` when the request is gone.
    async fn update(&self, requestid: &str, f: impl FnOnce(&mut Entry)) -> Option<Entry> {
        let _w = self.writes.lock().await;
        let entry = {
            let mut map = self.lock();
            let e = map.get_mut(requestid)?;
            f(e);
            e.clone()
        };
        if let Err(e) = self.write(&entry).await {
            tracing::warn!(requestid, "could not save the pin request: {e}");
        }
        Some(entry)
    }

    /// Changes a request in memory only (progress notes).
    fn note(&self, requestid: &str, f: impl FnOnce(&mut Entry)) {
        if let Some(e) = self.lock().get_mut(requestid) {
            f(e);
        }
    }

    async fn write(&self, entry: &Entry) -> std::io::Result<()> {
        let (dir, entry) = (self.dir.clone(), entry.clone());
        tokio::task::spawn_blocking(move || records::write(&dir, &entry))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }

    /// A creation time strictly after every earlier one (the spec pages by `created`).
    fn next_created(&self) -> i64 {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let mut last = self.last_created.lock().unwrap_or_else(|e| e.into_inner());
        *last = now.max(last.saturating_add(1));
        *last
    }

    /// Whether a live request (not failed, or waiting to release a replaced root) needs
    /// `cid`'s blocks.
    fn needed(&self, cid: &str) -> bool {
        self.lock().values().any(|e| {
            (e.status.pin.cid == cid && e.status.status != PinState::Failed)
                || e.replaces.as_deref() == Some(cid)
        })
    }

    /// Releases the store pin of `cid` when no request needs it any more.
    async fn release_if_unused(&self, cid: &str) {
        if self.needed(cid) {
            return;
        }
        let Ok(root) = Cid::try_from(cid) else {
            return;
        };
        let lock = self.root_lock(root);
        let _g = lock.lock().await;
        // A walk of the same root may have been queued meanwhile.
        if self.needed(cid) {
            return;
        }
        match self.base.unpin(&root.to_string()).await {
            Ok(removed) if !removed.is_empty() => tracing::info!(cid, "pin released"),
            Ok(_) => {}
            Err(e) => tracing::warn!(cid, "could not release the pin: {e}"),
        }
    }

    /// Releases store pins the service made that no request needs (a crash between a
    /// request's removal and its release, or a walk finished after its request went).
    async fn release_orphans(&self) {
        let d = self.dir.clone();
        let pins = tokio::task::spawn_blocking(move || crate::store::pins::load_all(&d))
            .await
            .unwrap_or_default();
        for p in pins {
            if p.label.starts_with(records::LABEL_PREFIX) {
                self.release_if_unused(&p.root.to_string()).await;
            }
        }
    }

    fn root_lock(&self, root: Cid) -> Arc<tokio::sync::Mutex<()>> {
        let mut roots = self.roots.lock().unwrap_or_else(|e| e.into_inner());
        roots.retain(|_, m| Arc::strong_count(m) > 1);
        Arc::clone(roots.entry(root).or_default())
    }

    fn spawn_walk(self: &Arc<Self>, requestid: String) {
        let svc = Arc::clone(self);
        tokio::spawn(async move { worker::walk(svc, requestid).await });
    }
}

/// A new request id: 16 random bytes as 32 hex digits.
fn new_id() -> Result<String, std::io::Error> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex::encode(b))
}
