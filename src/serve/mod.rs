//! The trustless HTTP gateway behind `distfs serve` (SPECS.md §6): verifiable responses only —
//! raw blocks, CAR streams and signed IPNS records — over a list of block sources.
//!
//! Routes: `GET|HEAD /ipfs/{cid}[/path]` (raw or CAR, chosen by `?format=` or `Accept`),
//! `GET|HEAD /ipns/{name}` (record), `GET|HEAD|PUT /routing/v1/ipns/{name}` (record),
//! `GET /routing/v1/providers/{cid}` and `PUT /routing/v1/providers` (HTTP providers announced
//! here, see [`providers`]),
//! `GET /debug/stats` (request counters as JSON, for tests and operators; with the site
//! cache's hits, misses and upstream fetches when it has upstreams), `GET /metrics`
//! (Prometheus metrics, unless turned off), and
//! `POST /api/v1/car` (authenticated block upload, off unless a token is configured), and
//! `/pins[/{requestid}]` (the IPFS Pinning Service API, [`pins`], off unless a token is
//! configured).
//!
//! Parts: [`request`] parses (pure), [`raw`] and [`car`] answer `/ipfs/`, [`ipns`] holds and
//! answers records, [`upload`] takes CAR uploads, [`sources`] builds the block sources,
//! [`upstream`] is the site cache (`--upstream`: misses fetched, verified and kept), [`stats`] counts and logs,
//! [`metrics`] keeps the Prometheus metrics,
//! [`error`] is the one status table. Every request runs under a concurrency limit whose
//! permit is held until its body has been sent.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::disk::DiskStore;
use crate::store::BlockStore;

pub mod car;
pub mod error;
pub mod ipns;
pub mod link;
pub mod metrics;
pub mod pins;
pub mod providers;
pub mod raw;
pub mod request;
pub mod sources;
pub mod stats;
pub mod upload;
pub mod upstream;

pub use error::ServeError;
pub use ipns::IpnsRecords;
pub use sources::{SourceError, Sources};
pub use stats::{RouteKind, StatsSnapshot};
pub use upload::{UploadConfig, UploadStats, Uploads};
pub use upstream::{Upstream, UpstreamConfig, UpstreamStats};

use request::{negotiate, parse_content_path, Query, Wanted};
use stats::tagged;

/// Limits and switches of a gateway.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Requests handled at once (bodies included); more wait up to `queue_timeout`.
    pub max_concurrent: usize,
    /// How long a request waits for a slot before it is answered 429.
    pub queue_timeout: Duration,
    /// Print one line per finished request to stderr.
    pub log_requests: bool,
    /// Added delay before each response starts (for benchmarks that model a distant
    /// gateway; zero in production).
    pub latency: Duration,
    /// Every response body shares one link of this many bits per second (for benchmarks
    /// that model a user's connection, see [`link`]); `None` in production.
    pub rate_bits_per_sec: Option<u64>,
    /// Serve `GET /metrics` (the counters are kept either way).
    pub metrics: bool,
}

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            max_concurrent: 256,
            queue_timeout: Duration::from_secs(10),
            log_requests: false,
            latency: Duration::ZERO,
            rate_bits_per_sec: None,
            metrics: true,
        }
    }
}

/// Where a gateway gets its blocks and records (what `distfs serve` is given).
#[derive(Clone, Debug, Default)]
pub struct GatewaySources {
    /// On-disk block stores, asked first, in order.
    pub stores: Vec<PathBuf>,
    /// CAR files loaded into memory (every block verified), asked after the stores.
    pub cars: Vec<PathBuf>,
    /// A directory of `*.ipns-record` files, served and also where accepted PUTs are
    /// written; without it, `<first store>/ipns` (created if missing) plays that role.
    pub ipns_dir: Option<PathBuf>,
    /// A file holding the bearer token that enables `POST /api/v1/car` uploads into the
    /// first store; `None` = uploads refused.
    pub upload_token_file: Option<PathBuf>,
    /// Largest upload body in bytes (`None` = [`upload::DEFAULT_MAX_UPLOAD`]).
    pub upload_max_bytes: Option<usize>,
    /// Upstream gateways that fill misses into a caching store (the site cache); its
    /// directory replaces the first of `stores`, which is then asked last.
    pub upstream: Option<UpstreamConfig>,
}

/// The gateway's shared state.
pub struct Gateway {
    store: Arc<dyn BlockStore>,
    records: IpnsRecords,
    stats: stats::Stats,
    metrics: Arc<metrics::Metrics>,
    permits: Arc<Semaphore>,
    config: GatewayConfig,
    uploads: Option<Uploads>,
    pins: Option<Arc<pins::PinService>>,
    upstream: Option<Upstream>,
    providers: providers::Providers,
    accept_providers: bool,
    car_roots: Vec<cid::Cid>,
    link: Option<Arc<link::Link>>,
}

impl Gateway {
    /// A gateway over any block store, with no IPNS records.
    pub fn new(store: Arc<dyn BlockStore>, config: GatewayConfig) -> Gateway {
        Gateway {
            store,
            records: IpnsRecords::new(),
            stats: stats::Stats::default(),
            metrics: Arc::default(),
            permits: Arc::new(Semaphore::new(config.max_concurrent)),
            link: config
                .rate_bits_per_sec
                .map(|r| Arc::new(link::Link::new(r))),
            config,
            uploads: None,
            pins: None,
            upstream: None,
            providers: providers::Providers::new(),
            accept_providers: false,
            car_roots: Vec::new(),
        }
    }

    /// Answers the pinning API with `service`.
    pub fn with_pins(mut self, service: Arc<pins::PinService>) -> Gateway {
        self.pins = Some(service);
        self
    }

    /// The pin service, when it is on.
    pub fn pins(&self) -> Option<&Arc<pins::PinService>> {
        self.pins.as_ref()
    }

    /// The site cache, when the gateway has upstreams.
    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref()
    }

    /// The header roots of the CAR files loaded at start (what `--announce` names).
    pub fn car_roots(&self) -> &[cid::Cid] {
        &self.car_roots
    }

    /// Accepts provider announcements (`PUT /routing/v1/providers`).
    pub fn with_provider_announcements(mut self) -> Gateway {
        self.accept_providers = true;
        self
    }

    /// Whether provider announcements are taken.
    pub fn accepts_announcements(&self) -> bool {
        self.accept_providers
    }

    /// The HTTP providers announced here.
    pub fn providers(&self) -> &providers::Providers {
        &self.providers
    }

    /// Accepts block uploads as `config` says.
    pub fn with_uploads(mut self, config: UploadConfig) -> Gateway {
        self.uploads = Some(Uploads::new(config));
        self
    }

    /// The upload endpoint's state, when uploads are on.
    pub fn uploads(&self) -> Option<&Uploads> {
        self.uploads.as_ref()
    }

    /// Opens the stores, loads the CARs and records named in `sources`.
    pub async fn open(
        sources: &GatewaySources,
        config: GatewayConfig,
    ) -> Result<Gateway, SourceError> {
        let mut list = Sources::new();
        let mut writable = None;
        let upstream = match &sources.upstream {
            Some(up) => Some(Upstream::open(up).await?),
            None => None,
        };
        if let Some(up) = &upstream {
            writable = Some(up.cache().disk().clone());
        }
        for dir in &sources.stores {
            if upstream.is_some() && Some(dir) == sources.upstream.as_ref().map(|u| &u.dir) {
                continue;
            }
            let store = DiskStore::open(dir)?;
            writable.get_or_insert_with(|| store.clone());
            list.push(Arc::new(store));
        }
        let mut car_roots = Vec::new();
        for path in &sources.cars {
            let (mem, roots) = sources::load_car(path).await?;
            car_roots.extend(roots);
            tracing::info!(path = %path.display(), blocks = mem.len(), "loaded CAR");
            list.push(Arc::new(mem));
        }
        // The site cache goes last: what local stores and CARs hold is never fetched.
        if let Some(up) = &upstream {
            list.push(Arc::new(up.cache().clone()));
        }
        let mut gw = Gateway::new(Arc::new(list), config);
        gw.upstream = upstream;
        gw.car_roots = car_roots;
        if let Some(path) = &sources.upload_token_file {
            let store = writable.ok_or(SourceError::UploadNeedsStore)?;
            let token = read_token(path).await?;
            gw = gw.with_uploads(UploadConfig {
                store,
                token,
                max_bytes: sources
                    .upload_max_bytes
                    .unwrap_or(upload::DEFAULT_MAX_UPLOAD),
            });
        }
        let record_dir = sources
            .ipns_dir
            .clone()
            .or_else(|| sources.stores.first().map(|s| s.join("ipns")));
        if let Some(dir) = record_dir {
            gw.records = IpnsRecords::with_dir(&dir)?;
            let n = gw.records.load_dir(&dir).await?;
            tracing::info!(dir = %dir.display(), records = n, "loaded IPNS records");
        }
        Ok(gw)
    }

    /// The block source every request reads from.
    pub fn store(&self) -> &Arc<dyn BlockStore> {
        &self.store
    }

    /// The IPNS records served (insert more with [`IpnsRecords::insert`]).
    pub fn records(&self) -> &IpnsRecords {
        &self.records
    }

    /// The request counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        let mut snap = self.stats.snapshot();
        if let Some(up) = &self.uploads {
            snap.uploads = up.stats();
        }
        snap.upstream = self.upstream.as_ref().map(Upstream::stats);
        snap
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Arc<metrics::Metrics> {
        &self.metrics
    }

    /// The configured added latency.
    pub(crate) fn latency(&self) -> Duration {
        self.config.latency
    }

    /// The modelled link every response body goes through, if a rate is set.
    pub(crate) fn link(&self) -> Option<&Arc<link::Link>> {
        self.link.as_ref()
    }

    async fn acquire(&self) -> Result<OwnedSemaphorePermit, ServeError> {
        let busy = || ServeError::Busy {
            limit: self.config.max_concurrent,
        };
        match tokio::time::timeout(
            self.config.queue_timeout,
            self.permits.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(busy()),
        }
    }
}

/// The gateway's routes, with the request-tracking middleware around all of them.
pub fn router(state: Arc<Gateway>) -> Router {
    let routes = Router::new();
    let routes = if state.config.metrics {
        routes.route("/metrics", get(metrics_handler))
    } else {
        routes
    };
    routes
        .route("/ipfs/{*rest}", get(ipfs_handler))
        .route("/ipns/{*rest}", get(ipns::gateway_handler))
        .route(
            "/routing/v1/ipns/{name}",
            get(ipns::routing_handler).put(ipns::routing_put_handler),
        )
        .route(
            "/routing/v1/providers",
            axum::routing::put(providers::put_handler),
        )
        .route("/routing/v1/providers/{cid}", get(providers::get_handler))
        .route("/debug/stats", get(stats_handler))
        .route("/api/v1/car", post(upload::upload_handler))
        .route("/pins", get(pins::api::list).post(pins::api::add))
        .route(
            "/pins/{requestid}",
            get(pins::api::get)
                .post(pins::api::replace)
                .delete(pins::api::delete),
        )
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            stats::track,
        ))
        .with_state(state)
}

/// Serves `gateway` on `listener` until `shutdown` completes; in-flight requests finish
/// (graceful shutdown).
pub async fn run(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(gateway))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ipfs_handler(
    State(gw): State<Arc<Gateway>>,
    axum::extract::Query(query): axum::extract::Query<Query>,
    req: Request,
) -> Response {
    let rest = req
        .uri()
        .path()
        .strip_prefix("/ipfs/")
        .unwrap_or_default()
        .to_string();
    let headers = req.headers();
    let head = req.method() == Method::HEAD;
    let path = match parse_content_path(&rest) {
        Ok(p) => p,
        Err(e) => return tagged(RouteKind::Other, None, Err(e)),
    };
    let cid = Some(path.cid);
    // `has` never fetches (the site cache answers from its store), so only-if-cached is
    // "is the root here".
    let only_if_cached = header_str(headers, header::CACHE_CONTROL)
        .is_some_and(|v| v.to_ascii_lowercase().contains("only-if-cached"));
    if only_if_cached {
        match gw.store().has(&path.cid).await {
            Ok(true) => {}
            Ok(false) => {
                return tagged(
                    RouteKind::Other,
                    cid,
                    Err(ServeError::NotCached { cid: path.cid }),
                )
            }
            Err(e) => return tagged(RouteKind::Other, cid, Err(e.into())),
        }
    }
    let accept = header_str(headers, header::ACCEPT);
    match negotiate(query.format.as_deref(), accept) {
        Ok(Wanted::Raw) => tagged(
            RouteKind::Raw,
            cid,
            raw::serve_raw(&gw, &path, headers, head).await,
        ),
        Ok(Wanted::Car(acc)) => {
            let result = match request::car_params(&query, &acc) {
                Ok(params) => car::serve_car(&gw, &path, params, headers, head).await,
                Err(e) => Err(e),
            };
            tagged(RouteKind::Car, cid, result)
        }
        Ok(Wanted::IpnsRecord) => tagged(
            RouteKind::Other,
            cid,
            Err(ServeError::NotAcceptable {
                what: "an IPNS record of an /ipfs/ path".into(),
            }),
        ),
        Err(e) => tagged(RouteKind::Other, cid, Err(e)),
    }
}

async fn stats_handler(State(gw): State<Arc<Gateway>>) -> Response {
    axum::Json(gw.stats()).into_response()
}

async fn metrics_handler(State(gw): State<Arc<Gateway>>) -> Response {
    let upstream = gw.upstream.as_ref().map(Upstream::stats);
    let mut resp = gw.metrics.encode_with(upstream.as_ref()).into_response();
    set(
        resp.headers_mut(),
        header::CONTENT_TYPE,
        metrics::CONTENT_TYPE,
    );
    resp
}

async fn fallback(req: Request) -> Response {
    ServeError::BadRequest {
        what: format!(
            "no such route {} (this gateway serves /ipfs/, /ipns/, /routing/v1/ipns/ and /routing/v1/providers/)",
            req.uri().path().chars().take(200).collect::<String>()
        ),
    }
    .into_response()
}

/// The upload token: the file's first line, trimmed; empty or unreadable is an error.
async fn read_token(path: &std::path::Path) -> Result<String, SourceError> {
    let bad = |reason: String| SourceError::UploadToken {
        path: path.to_path_buf(),
        reason,
    };
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| bad(e.to_string()))?;
    if meta.len() > 4096 {
        return Err(bad("over 4096 bytes; a token file holds one line".into()));
    }
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(bad(
            "the first line must be the token: non-empty, no spaces".into(),
        ));
    }
    Ok(token)
}

/// A header's value as text, if present and visible ASCII.
pub(crate) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Inserts a header whose value we built (never fails on valid input; skipped otherwise).
pub(crate) fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Whether `If-None-Match` lists `etag` (or `*`).
pub(crate) fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    header_str(headers, header::IF_NONE_MATCH).is_some_and(|inm| {
        inm.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    /// An in-process gateway on port 0; returns its state and base URL.
    async fn start(config: GatewayConfig) -> (Arc<Gateway>, String) {
        let gw = Arc::new(Gateway::new(Arc::new(MemStore::new()), config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(run(listener, gw.clone(), std::future::pending()));
        (gw, base)
    }

    #[tokio::test]
    async fn requests_over_the_limit_get_429_then_succeed() {
        let (gw, base) = start(GatewayConfig {
            max_concurrent: 1,
            queue_timeout: Duration::from_millis(50),
            log_requests: false,
            latency: Duration::ZERO,
            rate_bits_per_sec: None,
            metrics: true,
        })
        .await;
        let url = format!("{base}/ipfs/bafkqaaa?format=raw");
        let held = gw.acquire().await.unwrap();
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "1");
        drop(held);
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
        let stats = gw.stats();
        assert_eq!(stats.total, 2);
        assert_eq!(stats.by_kind.get(&RouteKind::Other), Some(&1));
        assert_eq!(stats.by_kind.get(&RouteKind::Raw), Some(&1));
        assert_eq!(stats.by_cid.get("bafkqaaa"), Some(&1));
    }

    #[tokio::test]
    async fn inserted_records_are_served() {
        let (gw, base) = start(GatewayConfig::default()).await;
        let name = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
        let url = format!("{base}/ipns/{name}?format=ipns-record");
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
        gw.records()
            .insert(name, bytes::Bytes::from_static(b"record"))
            .unwrap();
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(&resp.bytes().await.unwrap()[..], b"record");
    }
}
