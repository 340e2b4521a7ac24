//! The daemon's metrics in Prometheus text format (encoded by `prometheus-client` from a
//! [`Status`] snapshot at each scrape), answered over the control socket (`distfs status
//! --prometheus`) and, opt-in, over plain HTTP at `GET /metrics` on `--metrics-listen ADDR`
//! (a loopback address is expected; another one is served with a warning). The HTTP side is
//! a minimal HTTP/1.0 responder: one request per connection, the request head bounded in
//! size and time, a bounded number of connections at once.
//!
//! Metrics: `distfs_cache_bytes`, `distfs_cache_blocks`, `distfs_cache_limit_bytes`,
//! `distfs_cache_pinned_bytes`, `distfs_cache_hits_total`, `distfs_cache_misses_total`,
//! `distfs_fetches_total`, `distfs_fetched_bytes_total`, `distfs_evicted_blocks_total`,
//! `distfs_evicted_bytes_total`, `distfs_fetches_in_flight`, `distfs_fetch_window`,
//! `distfs_passthrough_enabled`, `distfs_passthrough_opens_total`,
//! `distfs_whole_written_total`, `distfs_whole_proved_total`, `distfs_whole_dropped_total`,
//! `distfs_whole_files`, `distfs_whole_bytes`,
//! per gateway (label `gateway`)
//! `distfs_gateway_requests_total`, `distfs_gateway_errors_total`,
//! `distfs_gateway_latency_ewma_ms`, `distfs_gateway_dropped`, per name (label `name`)
//! `distfs_root_sequence`, `distfs_refresh_failures_total`.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode as encode_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::state::Shared;
use super::status::Status;

/// The longest HTTP request head read.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP connections served at once.
const MAX_CONNECTIONS: usize = 16;

type Labels = Vec<(String, String)>;

fn gauge(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let g: Gauge = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    reg.register(name, help, g);
}

fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

/// `status` as Prometheus text.
pub fn encode(status: &Status) -> Result<String, String> {
    let mut reg = Registry::default();
    let c = &status.cache;
    gauge(
        &mut reg,
        "distfs_cache_bytes",
        "Bytes in the block cache",
        c.bytes,
    );
    gauge(
        &mut reg,
        "distfs_cache_blocks",
        "Blocks in the block cache",
        c.blocks,
    );
    if let Some(l) = c.limit {
        gauge(&mut reg, "distfs_cache_limit_bytes", "The cache quota", l);
    }
    gauge(
        &mut reg,
        "distfs_cache_pinned_bytes",
        "Pinned bytes",
        c.pinned_bytes,
    );
    counter(
        &mut reg,
        "distfs_cache_hits",
        "Block reads answered from the cache",
        c.hits,
    );
    counter(
        &mut reg,
        "distfs_cache_misses",
        "Block reads that needed a fetch",
        c.misses,
    );
    counter(
        &mut reg,
        "distfs_fetches",
        "Blocks fetched from gateways",
        c.fetches,
    );
    counter(
        &mut reg,
        "distfs_fetched_bytes",
        "Verified bytes fetched",
        c.fetched_bytes,
    );
    counter(
        &mut reg,
        "distfs_evicted_blocks",
        "Blocks evicted",
        c.evicted_blocks,
    );
    counter(
        &mut reg,
        "distfs_evicted_bytes",
        "Bytes evicted",
        c.evicted_bytes,
    );
    gauge(
        &mut reg,
        "distfs_fetches_in_flight",
        "Block requests in flight",
        c.in_flight,
    );
    gauge(
        &mut reg,
        "distfs_fetch_window",
        "Block requests allowed in flight, sized by the round trip",
        c.max_in_flight,
    );
    gauge(
        &mut reg,
        "distfs_passthrough_enabled",
        "1 when new opens may be read by FUSE passthrough",
        u64::from(c.whole.passthrough),
    );
    counter(
        &mut reg,
        "distfs_passthrough_opens",
        "Opens read by FUSE passthrough from a whole copy",
        c.whole.passthrough_opens,
    );
    counter(
        &mut reg,
        "distfs_whole_written",
        "Whole copies of files written",
        c.whole.written,
    );
    counter(
        &mut reg,
        "distfs_whole_proved",
        "Whole copies found on disk and proved against their seal",
        c.whole.proved,
    );
    counter(
        &mut reg,
        "distfs_whole_dropped",
        "Whole copies found wrong and deleted",
        c.whole.dropped,
    );
    gauge(
        &mut reg,
        "distfs_whole_files",
        "Whole copies of files in the cache dir (not in distfs_cache_blocks)",
        c.whole.files,
    );
    gauge(
        &mut reg,
        "distfs_whole_bytes",
        "Bytes of whole copies (counted in distfs_cache_bytes)",
        c.whole.bytes,
    );

    let requests = Family::<Labels, Counter>::default();
    let errors = Family::<Labels, Counter>::default();
    let latency = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let dropped = Family::<Labels, Gauge>::default();
    for g in &status.gateways {
        let l = vec![("gateway".to_owned(), g.url.clone())];
        requests.get_or_create(&l).inc_by(g.requests);
        errors.get_or_create(&l).inc_by(g.errors);
        if let Some(ms) = g.latency_ewma_ms {
            latency.get_or_create(&l).set(ms);
        }
        dropped.get_or_create(&l).set(i64::from(g.dropped));
    }
    reg.register(
        "distfs_gateway_requests",
        "Requests sent to a gateway",
        requests,
    );
    reg.register(
        "distfs_gateway_errors",
        "Failed requests to a gateway",
        errors,
    );
    reg.register(
        "distfs_gateway_latency_ewma_ms",
        "Moving average of a gateway's answer latency",
        latency,
    );
    reg.register(
        "distfs_gateway_dropped",
        "1 when a gateway was dropped for sending a bad block",
        dropped,
    );

    let sequence = Family::<Labels, Gauge>::default();
    let failures = Family::<Labels, Counter>::default();
    for n in &status.names {
        let l = vec![("name".to_owned(), n.name.clone())];
        if let Some(s) = n.sequence {
            sequence
                .get_or_create(&l)
                .set(i64::try_from(s).unwrap_or(i64::MAX));
        }
        failures.get_or_create(&l).inc_by(n.refresh_failures);
    }
    reg.register(
        "distfs_root_sequence",
        "Sequence of the IPNS record the root resolved to",
        sequence,
    );
    reg.register(
        "distfs_refresh_failures",
        "Refreshes of the root that failed",
        failures,
    );

    let mut out = String::new();
    encode_text(&mut out, &reg).map_err(|e| format!("encoding metrics: {e}"))?;
    Ok(out)
}

/// Binds the metrics listener (inside a runtime); warns about a non-loopback address.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "serving /metrics on a non-loopback address: anyone who can reach it can read the daemon's metrics");
    }
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` until the runtime shuts down.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!("metrics accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &shared).await {
                tracing::debug!("metrics connection: {e}");
            }
            drop(permit);
        });
    }
}

/// Reads the request head (bounded) and answers it.
async fn respond(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(HEAD_TIMEOUT, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() > MAX_HEAD {
                return Err(std::io::Error::other("request head too large"));
            }
        }
        Ok(())
    })
    .await;
    let (status, ctype, body) = match read {
        Ok(Ok(())) => route(&head, shared),
        Ok(Err(_)) => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request head too large\n".to_owned(),
        ),
        Err(_) => (
            "408 Request Timeout",
            "text/plain",
            "request timeout\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The answer to a request head.
fn route(head: &[u8], shared: &Shared) -> (&'static str, &'static str, String) {
    let text = String::from_utf8_lossy(head);
    let mut first = text.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    match (method, path) {
        ("GET", "/metrics") => match encode(&shared.status()) {
            Ok(body) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            ),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served here\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served here\n".to_owned(),
        ),
    }
}
