//! The multi-source fetcher: ranks sources by health, fails over, retries within a budget,
//! bounds in-flight requests, merges concurrent requests for one CID, and enforces a
//! deadline per `get`.
//!
//! One `get` runs this loop until a verified block arrives, the retry budget
//! ([`FetcherConfig::max_attempts`]) is spent, or the deadline passes:
//! 1. candidates are the sources not dropped, not backing off (`Retry-After`), and not
//!    already ruled out for this CID (a "not found" or a non-retryable answer);
//! 2. untried sources come before sources already tried for this CID, then the best health
//!    score wins (latency EWMA × recent errors, see `health`), ties go to the order given;
//! 3. a source retried for the same CID waits an exponential delay first; when every
//!    candidate is backing off, the loop sleeps until the first backoff ends;
//! 4. each attempt holds a semaphore permit and is cut at
//!    [`FetcherConfig::attempt_timeout`] (a stalled source is failed over);
//! 5. hedging: an attempt slower than [`FetcherConfig::hedge_after`] (or 3× its source's
//!    latency EWMA) is raced against the next untried source; the first block wins.
//!
//! A source that sends a wrong block is dropped for the rest of the session (logged at warn).
//! The result is `NotFound` only when every usable source said so.
//!
//! Sources can be added while the fetcher runs ([`Fetcher::add_gateway`], for providers found
//! through delegated routing); they are appended, so a source's index never changes. One fetch
//! in a few also sends its request, on the side, to a demoted source that has not been asked
//! for a while (`health::probe_pick`), so that a source that recovers earns its rank back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cid::Cid;
use tracing::Instrument;

use super::health::{probe_pick, Health, SourceStats};
use super::window::Window;
use super::{precheck, BlockSource, FetchError, GatewayClient, SingleFlight};
use crate::block::Block;

/// Limits and timings of a [`Fetcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetcherConfig {
    /// Overall limit for one `get` (failover and retries included); then `Timeout`.
    pub deadline: Duration,
    /// Limit for one request to one source; then the next source is tried.
    pub attempt_timeout: Duration,
    /// Requests one `get` may send in total (its retry budget).
    pub max_attempts: usize,
    /// Most requests in flight at once across all `get`s. The window itself adapts to the
    /// sources' round trip (see `window`: 41 at 20 ms) and reaches this cap from about 64 ms;
    /// with one block per request the cap bounds throughput at `max_in_flight × block size /
    /// latency`: 128 × 256 KiB / 100 ms ≈ 335 MB/s.
    pub max_in_flight: usize,
    /// Longest `Retry-After` honoured; longer requests are cut to this.
    pub max_retry_after: Duration,
    /// Backoff after a 429 that gave no usable `Retry-After`.
    pub default_backoff: Duration,
    /// First delay before asking the same source again for the same CID (doubles, capped
    /// at 2 s).
    pub retry_delay: Duration,
    /// Hedging: when an attempt has not answered after this long (or three times the
    /// source's latency EWMA, if longer), the next untried source is asked too and the
    /// first block wins. `None` disables hedging.
    pub hedge_after: Option<Duration>,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            deadline: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(10),
            max_attempts: 6,
            max_in_flight: 128,
            max_retry_after: Duration::from_secs(5),
            default_backoff: Duration::from_secs(1),
            retry_delay: Duration::from_millis(100),
            hedge_after: Some(Duration::from_millis(500)),
        }
    }
}

const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);

/// Fetches verified blocks from several sources. Cheap to clone (clones share health,
/// permits and in-flight requests).
#[derive(Clone)]
pub struct Fetcher {
    inner: Arc<Inner>,
}

struct Inner {
    /// Appended to only (indices stay valid); readers take a snapshot. The lock is held
    /// only to clone or replace the `Arc` (no `.await` while held).
    sources: RwLock<Arc<Vec<Arc<Source>>>>,
    config: FetcherConfig,
    window: Window,
    flights: SingleFlight<Cid, Result<(Block, Arc<str>), FetchError>>,
    /// The HTTP client gateways added later share (`None` until one is needed).
    http: Mutex<Option<reqwest::Client>>,
    /// Fetches started, for the one-in-N side probe.
    fetches: AtomicU64,
}

struct Source {
    src: Arc<dyn BlockSource>,
    /// `src.name()`, shared with every block this source delivers (see
    /// [`Fetcher::get_with_source`]).
    name: Arc<str>,
    /// Guarded by a `std::sync::Mutex`: each critical section reads or updates counters
    /// and never holds the lock across an `.await`.
    health: Mutex<Health>,
    /// `config` or `routing` (see [`SourceStats::origin`]).
    origin: Arc<str>,
}

impl Source {
    fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Fetcher {
    /// A fetcher over `sources`, in order of preference while nothing is known about them.
    pub fn new(sources: Vec<Arc<dyn BlockSource>>, config: FetcherConfig) -> Fetcher {
        let sources = sources
            .into_iter()
            .map(|src| Arc::new(Source::new(src, ORIGIN_CONFIG)))
            .collect();
        Fetcher {
            inner: Arc::new(Inner {
                sources: RwLock::new(Arc::new(sources)),
                window: Window::new(config.max_in_flight),
                config,
                flights: SingleFlight::new(),
                http: Mutex::new(None),
                fetches: AtomicU64::new(0),
            }),
        }
    }

    /// Adds a trustless gateway at `url` as one more source (after the others), health-scored
    /// like them; `origin` says where it was found (shown in status). `Ok(false)` when a
    /// source of that name is already there.
    pub fn add_gateway(&self, url: &str, origin: &str) -> Result<bool, FetchError> {
        let name = url.trim_end_matches('/');
        if self.inner.sources().iter().any(|s| &*s.name == name) {
            return Ok(false);
        }
        let http = {
            let mut slot = self.inner.http.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(c) => c.clone(),
                None => slot.insert(GatewayClient::http_client()?).clone(),
            }
        };
        let client = GatewayClient::with_client(url, http, self.inner.config.attempt_timeout)?;
        Ok(self.add_source(Arc::new(client), origin))
    }

    /// Appends `src` (unless a source of the same name is there); whether it was added.
    pub fn add_source(&self, src: Arc<dyn BlockSource>, origin: &str) -> bool {
        let mut guard = self
            .inner
            .sources
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if guard.iter().any(|s| &*s.name == src.name()) {
            return false;
        }
        let mut next = Vec::clone(&guard);
        next.push(Arc::new(Source::new(src, origin)));
        *guard = Arc::new(next);
        true
    }

    /// A fetcher over trustless gateways (the CLI's repeated `--gateway URL`), sharing one
    /// HTTP client (one connection pool); each request is limited to `attempt_timeout`.
    pub fn from_gateways<S: AsRef<str>>(
        urls: &[S],
        config: FetcherConfig,
    ) -> Result<Fetcher, FetchError> {
        let http = GatewayClient::http_client()?;
        let shared = http.clone();
        let sources = urls
            .iter()
            .map(|u| {
                GatewayClient::with_client(u.as_ref(), http.clone(), config.attempt_timeout)
                    .map(|g| Arc::new(g) as Arc<dyn BlockSource>)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fetcher = Fetcher::new(sources, config);
        *fetcher.inner.http.lock().unwrap_or_else(|e| e.into_inner()) = Some(shared);
        Ok(fetcher)
    }

    /// The configuration.
    pub fn config(&self) -> &FetcherConfig {
        &self.inner.config
    }

    /// A snapshot of every source's health and counters, in configuration order.
    pub fn stats(&self) -> Vec<SourceStats> {
        let now = Instant::now();
        self.inner
            .sources()
            .iter()
            .map(|s| s.health().snapshot(s.src.name(), &s.origin, now))
            .collect()
    }

    /// Block requests in flight now, for status and metrics.
    pub fn in_flight(&self) -> usize {
        self.inner.window.in_flight()
    }

    /// The fetch window now: requests allowed in flight at once, sized by the sources' round
    /// trip (at most [`FetcherConfig::max_in_flight`]).
    pub fn window(&self) -> usize {
        self.inner.window.limit()
    }

    /// The fetch window for 256 KiB blocks at the sources' round trip, whatever block sizes
    /// are moving now (small ones widen [`Fetcher::window`]): what readahead sizes itself by.
    pub fn nominal_window(&self) -> usize {
        self.inner.window.nominal()
    }

    /// How many sources are still in use (not dropped for sending a bad block).
    pub fn live_sources(&self) -> usize {
        self.inner
            .sources()
            .iter()
            .filter(|s| !s.health().dropped)
            .count()
    }

    /// The verified block named by `cid`. Concurrent calls for one CID share one fetch
    /// (and its deadline, counted from the first caller). Identity CIDs are decoded
    /// inline; CIDs whose hash cannot be verified are refused without a request.
    pub async fn get(&self, cid: &Cid) -> Result<Block, FetchError> {
        self.get_with_source(cid).await.map(|(block, _)| block)
    }

    /// [`Fetcher::get`], also naming the source that delivered the block (its
    /// [`BlockSource::name`]; `identity` for an identity CID). Joiners of a fetch already in
    /// flight get the same answer.
    #[tracing::instrument(name = "fetch", skip_all, fields(cid = %cid))]
    pub async fn get_with_source(&self, cid: &Cid) -> Result<(Block, Arc<str>), FetchError> {
        if let Some(b) = precheck(cid)? {
            return Ok((b, Arc::from("identity")));
        }
        let (inner, cid) = (Arc::clone(&self.inner), *cid);
        let span = tracing::Span::current();
        let result = self
            .inner
            .flights
            .run(cid, move || {
                async move {
                    Inner::maybe_probe(&inner, cid);
                    let after = inner.config.deadline;
                    match tokio::time::timeout(after, inner.fetch(cid)).await {
                        Ok(r) => r,
                        Err(_) => {
                            tracing::debug!(?after, "deadline passed");
                            Err(FetchError::Timeout { cid, after })
                        }
                    }
                }
                .instrument(span)
            })
            .await;
        result.unwrap_or_else(|lost| {
            Err(FetchError::TaskFailed {
                cid,
                reason: lost.reason,
            })
        })
    }
}

/// [`SourceStats::origin`] of the sources a fetcher was built with.
pub const ORIGIN_CONFIG: &str = "config";
/// [`SourceStats::origin`] of providers found through delegated routing.
pub const ORIGIN_ROUTING: &str = "routing";

impl Source {
    fn new(src: Arc<dyn BlockSource>, origin: &str) -> Source {
        Source {
            name: Arc::from(src.name().trim_end_matches('/')),
            src,
            health: Mutex::new(Health::new(Instant::now())),
            origin: Arc::from(origin),
        }
    }
}

impl Inner {
    /// The sources now (a snapshot; later additions are not in it).
    fn sources(&self) -> Arc<Vec<Arc<Source>>> {
        Arc::clone(&self.sources.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// One fetch in [`super::health::PROBE_EVERY`]: if a demoted source has been idle for a
    /// while, sends it this request on a detached task whose answer only updates its health
    /// (bounded by the per-attempt timeout; the reader does not wait for it).
    fn maybe_probe(inner: &Arc<Inner>, cid: Cid) {
        let nth = inner.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let sources = inner.sources();
        let now = Instant::now();
        let views: Vec<_> = sources.iter().map(|s| s.health().probe_view(now)).collect();
        let Some(i) = probe_pick(&views, nth) else {
            return;
        };
        if let Some(s) = sources.get(i) {
            s.health().probes += 1;
            tracing::debug!(url = %s.name, "probing a demoted source");
        }
        let inner = Arc::clone(inner);
        tokio::spawn(async move {
            let outcome = inner.attempt(i, cid).await;
            inner.settle(cid, outcome, &mut GetState::default());
        });
    }

    /// Picks the next source for `cid`: `Ok(index)`, or `Err(Some(t))` when every candidate
    /// is backing off until `t`, or `Err(None)` when no candidate is left.
    fn pick(
        &self,
        excluded: &HashSet<usize>,
        tried: &HashSet<usize>,
    ) -> Result<usize, Option<Instant>> {
        let now = Instant::now();
        let mut best: Option<(bool, f64, usize)> = None;
        let mut earliest: Option<Instant> = None;
        for (i, s) in self.sources().iter().enumerate() {
            if excluded.contains(&i) {
                continue;
            }
            let h = s.health();
            if h.dropped {
                continue;
            }
            if let Some(until) = h.backoff_until(now) {
                earliest = Some(earliest.map_or(until, |e| e.min(until)));
                continue;
            }
            let key = (tried.contains(&i), h.score(now), i);
            let better = match &best {
                None => true,
                Some(b) => (key.0, key.1) < (b.0, b.1),
            };
            if better {
                best = Some(key);
            }
        }
        best.map(|(_, _, i)| i).ok_or(earliest)
    }

    /// One request to source `i`: holds a permit, counts the request, cuts it at the
    /// per-attempt timeout.
    async fn attempt(&self, i: usize, cid: Cid) -> Outcome {
        let sources = self.sources();
        let Some(source) = sources.get(i) else {
            return Outcome {
                source: i,
                result: Err(FetchError::NoSources { cid }),
                took: Duration::ZERO,
            };
        };
        let Some(_permit) = self.window.acquire().await else {
            // The semaphore is never closed; answer something sensible anyway.
            return Outcome {
                source: i,
                result: Err(FetchError::NoSources { cid }),
                took: Duration::ZERO,
            };
        };
        source.health().on_request(Instant::now());
        let start = Instant::now();
        let result = tokio::time::timeout(self.config.attempt_timeout, source.src.get(&cid))
            .await
            .unwrap_or_else(|_| {
                Err(FetchError::AttemptTimeout {
                    cid,
                    url: source.src.name().to_string(),
                    after: self.config.attempt_timeout,
                })
            });
        let took = start.elapsed();
        if let Ok(block) = &result {
            self.window
                .on_answer(i, took, block.data().len(), Instant::now());
        }
        Outcome {
            source: i,
            result,
            took,
        }
    }

    /// How long to wait for source `i` before hedging with another: `hedge_after`, or
    /// three times the source's latency EWMA (a rough p90) if that is longer.
    fn hedge_delay(&self, i: usize) -> Option<Duration> {
        let min = self.config.hedge_after?;
        let ewma = self.sources().get(i)?.health().latency_ewma_ms();
        let typical = ewma.map_or(Duration::ZERO, |ms| {
            Duration::from_secs_f64(ms * 3.0 / 1000.0)
        });
        Some(min.max(typical))
    }

    /// Runs an attempt at `i`; if it is slower than its hedge delay and another untried
    /// source is available, races a second attempt there. The first block wins (the other
    /// request is cancelled); failures are all returned for booking.
    async fn attempt_hedged(&self, i: usize, cid: Cid, st: &mut GetState) -> Vec<Outcome> {
        let first = self.attempt(i, cid);
        let Some(delay) = self.hedge_delay(i) else {
            return vec![first.await];
        };
        tokio::pin!(first);
        tokio::select! {
            a = &mut first => return vec![a],
            _ = tokio::time::sleep(delay) => {}
        }
        let j = match self.pick(&st.excluded, &st.tried) {
            Ok(j) if !st.tried.contains(&j) => j,
            _ => return vec![first.await],
        };
        st.tried.insert(j);
        tracing::debug!(slow = i, hedge = j, ?delay, "hedging with a second source");
        let second = self.attempt(j, cid);
        tokio::pin!(second);
        tokio::select! {
            a = &mut first => {
                if a.result.is_ok() { vec![a] } else { vec![a, second.await] }
            }
            b = &mut second => {
                if b.result.is_ok() { vec![b] } else { vec![b, first.await] }
            }
        }
    }

    /// Books an attempt's outcome into the source's health and the per-get state; the
    /// block and its source's name if it succeeded.
    fn settle(&self, cid: Cid, outcome: Outcome, st: &mut GetState) -> Option<(Block, Arc<str>)> {
        let Outcome {
            source: i,
            result,
            took,
        } = outcome;
        let sources = self.sources();
        let source = sources.get(i)?;
        let name = source.src.name().to_string();
        let e = match result {
            Ok(block) => {
                source.health().on_block(took, block.data().len());
                return Some((block, Arc::clone(&source.name)));
            }
            Err(e) => e,
        };
        if e.is_not_found() {
            source.health().on_not_found(took);
            st.excluded.insert(i);
            st.not_found.insert(i);
        } else if e.is_corrupt() {
            {
                let mut h = source.health();
                h.on_error(Instant::now(), None);
                h.dropped = true;
            }
            tracing::warn!(cid = %cid, url = %name, "source sent a block that does not match its CID; dropping it for this session");
        } else {
            let backoff = match (e.retry_after(), &e) {
                (Some(d), _) => Some(d.min(self.config.max_retry_after)),
                (None, FetchError::Status { status: 429, .. }) => Some(self.config.default_backoff),
                _ => None,
            };
            source.health().on_error(Instant::now(), backoff);
            if !e.is_retryable() {
                st.excluded.insert(i);
            }
            tracing::debug!(url = %name, error = %e, "attempt failed");
        }
        st.attempts.push((name, e.to_string()));
        None
    }

    async fn fetch(&self, cid: Cid) -> Result<(Block, Arc<str>), FetchError> {
        let mut st = GetState::default();
        let mut retries = 0u32;
        while st.attempts.len() < self.config.max_attempts {
            let i = match self.pick(&st.excluded, &st.tried) {
                Ok(i) => i,
                Err(Some(until)) => {
                    tokio::time::sleep_until(until.into()).await;
                    continue;
                }
                Err(None) => break,
            };
            if !st.tried.insert(i) {
                let delay = self.config.retry_delay.saturating_mul(1 << retries.min(8));
                tokio::time::sleep(delay.min(MAX_RETRY_DELAY)).await;
                retries += 1;
            }
            for outcome in self.attempt_hedged(i, cid, &mut st).await {
                if let Some(found) = self.settle(cid, outcome, &mut st) {
                    return Ok(found);
                }
            }
        }
        let sources = self.sources();
        let mut live = (0..sources.len())
            .filter(|i| sources.get(*i).is_some_and(|s| !s.health().dropped))
            .peekable();
        if live.peek().is_some() && live.all(|i| st.not_found.contains(&i)) {
            return Err(FetchError::NotFound { cid });
        }
        if st.attempts.is_empty() {
            return Err(FetchError::NoSources { cid });
        }
        Err(FetchError::AllSourcesFailed {
            cid,
            attempts: st.attempts,
        })
    }
}

/// What one attempt produced.
struct Outcome {
    source: usize,
    result: Result<Block, FetchError>,
    took: Duration,
}

/// The state of one `get` across its attempts.
#[derive(Default)]
struct GetState {
    /// (source name, reason) of each failed attempt.
    attempts: Vec<(String, String)>,
    /// Sources not to ask again for this CID (not found, or a non-retryable answer).
    excluded: HashSet<usize>,
    /// Sources that said "not found".
    not_found: HashSet<usize>,
    /// Sources already asked for this CID.
    tried: HashSet<usize>,
}

#[async_trait]
impl BlockSource for Fetcher {
    fn name(&self) -> &str {
        "fetcher"
    }

    async fn get(&self, cid: &Cid) -> Result<Block, FetchError> {
        Fetcher::get(self, cid).await
    }
}
