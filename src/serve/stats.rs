//! Request accounting: counters per route kind and per root CID served ([`Stats`]), and the
//! middleware ([`track`]) that wraps every request in a `tracing` span (method, path, status,
//! bytes), holds a concurrency permit until the body is fully sent, feeds the Prometheus
//! metrics (`metrics`), and optionally prints one line per request to stderr (`--log-requests`).

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cid::Cid;
use tokio::sync::OwnedSemaphorePermit;
use tracing::Instrument;

use super::error::ServeError;
use super::Gateway;

/// Most distinct CIDs counted; later ones are only counted in `other_cids`.
pub const MAX_COUNTED_CIDS: usize = 100_000;

/// What kind of request a response answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RouteKind {
    /// `/ipfs/{cid}` as a raw block.
    Raw,
    /// `/ipfs/{cid}[/path]` as a CAR.
    Car,
    /// `/ipns/{name}` as a record.
    IpnsRecord,
    /// `/routing/v1/ipns/{name}`.
    RoutingIpns,
    /// `POST /api/v1/car` (block upload).
    Upload,
    /// Anything else (bad requests before a kind was known, unknown routes, stats).
    Other,
}

/// Tag a handler puts on its response so the middleware can count it.
#[derive(Clone, Copy, Debug)]
pub struct Served {
    /// The route kind.
    pub kind: RouteKind,
    /// The root CID, when the request named one.
    pub cid: Option<Cid>,
}

/// Turns a handler result into a response tagged with its kind and CID.
pub fn tagged(kind: RouteKind, cid: Option<Cid>, result: Result<Response, ServeError>) -> Response {
    let mut resp = result.unwrap_or_else(IntoResponse::into_response);
    resp.extensions_mut().insert(Served { kind, cid });
    resp
}

/// A point-in-time copy of the counters.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    /// Every request seen.
    pub total: u64,
    /// Requests per route kind (all statuses).
    pub by_kind: BTreeMap<RouteKind, u64>,
    /// Successful (2xx/3xx) responses per root CID, keyed by the CID's string form.
    pub by_cid: BTreeMap<String, u64>,
    /// Successful responses whose CID was not counted because the table was full.
    pub other_cids: u64,
    /// Block uploads (all zero when uploads are off).
    pub uploads: super::upload::UploadStats,
    /// The site cache's hits, misses and upstream fetches (`None` without `--upstream`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<super::upstream::UpstreamStats>,
}

/// Live counters. The mutex guards only a map update (no `.await` while held).
#[derive(Default)]
pub struct Stats {
    total: AtomicU64,
    kinds: Mutex<HashMap<RouteKind, u64>>,
    cids: Mutex<HashMap<Cid, u64>>,
    other_cids: AtomicU64,
}

impl Stats {
    fn record(&self, served: Served, ok: bool) {
        self.total.fetch_add(1, Ordering::Relaxed);
        *lock(&self.kinds).entry(served.kind).or_default() += 1;
        if let (true, Some(cid)) = (ok, served.cid) {
            let mut cids = lock(&self.cids);
            if cids.len() < MAX_COUNTED_CIDS || cids.contains_key(&cid) {
                *cids.entry(cid).or_default() += 1;
            } else {
                self.other_cids.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Copies the counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            total: self.total.load(Ordering::Relaxed),
            by_kind: lock(&self.kinds).iter().map(|(k, v)| (*k, *v)).collect(),
            by_cid: lock(&self.cids)
                .iter()
                .map(|(c, v)| (c.to_string(), *v))
                .collect(),
            other_cids: self.other_cids.load(Ordering::Relaxed),
            uploads: Default::default(),
            upstream: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The per-request middleware: concurrency limit, span, counters, optional log line.
pub async fn track(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!(
        "request",
        method = %method,
        path = %path,
        status = tracing::field::Empty,
        bytes = tracing::field::Empty,
    );
    let permit = match gw.acquire().await {
        Ok(p) => Some(p),
        Err(e) => {
            let mut resp = e.into_response();
            resp.extensions_mut().insert(Served {
                kind: RouteKind::Other,
                cid: None,
            });
            return finish(gw, span, (method, arrived), path, resp, None);
        }
    };
    let latency = gw.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let resp = next.run(req).instrument(span.clone()).await;
    finish(gw, span, (method, arrived), path, resp, permit)
}

fn finish(
    gw: Arc<Gateway>,
    span: tracing::Span,
    (method, arrived): (axum::http::Method, Instant),
    path: String,
    resp: Response,
    permit: Option<OwnedSemaphorePermit>,
) -> Response {
    let status = resp.status();
    span.record("status", status.as_u16());
    let served = resp
        .extensions()
        .get::<Served>()
        .copied()
        .unwrap_or(Served {
            kind: RouteKind::Other,
            cid: None,
        });
    gw.stats
        .record(served, status.is_success() || status.is_redirection());
    gw.metrics
        .response(served.kind, &method, status, arrived.elapsed());
    let done = Done {
        span,
        kind: served.kind,
        metrics: Arc::clone(&gw.metrics),
        log: gw
            .config
            .log_requests
            .then(|| format!("{method} {path} {}", status.as_u16())),
        started: Instant::now(),
        _permit: permit,
    };
    let link = gw.link().cloned();
    resp.map(|inner| {
        Body::new(Tracked {
            inner: match link {
                Some(link) => link.pace(inner),
                None => inner,
            },
            bytes: 0,
            failed: false,
            done,
        })
    })
}

struct Done {
    span: tracing::Span,
    kind: RouteKind,
    metrics: Arc<super::metrics::Metrics>,
    log: Option<String>,
    started: Instant,
    _permit: Option<OwnedSemaphorePermit>,
}

/// A response body that counts what it sends and reports when it is dropped (sent, failed
/// or abandoned by the client). Keeps the inner body's size hint so `Content-Length` stays.
struct Tracked {
    inner: Body,
    bytes: u64,
    failed: bool,
    done: Done,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.failed = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let d = &self.done;
        d.span.record("bytes", self.bytes);
        d.metrics.bytes_sent(d.kind, self.bytes);
        let _enter = d.span.enter();
        tracing::info!(
            bytes = self.bytes,
            failed = self.failed,
            ms = d.started.elapsed().as_millis() as u64,
            "response done"
        );
        if let Some(line) = &d.log {
            let tail = if self.failed { " stream-error" } else { "" };
            eprintln!("distfs-serve: {line} {}{tail}", self.bytes);
        }
    }
}
