//! The gateway's Prometheus metrics (`GET /metrics`, OpenMetrics text, encoded by the
//! `prometheus-client` crate): what an operator graphs and alerts on.
//!
//! - `distfs_serve_requests_total{route,status}`: requests by route kind (`raw`, `car`,
//!   `ipns-record`, `routing-ipns`, `upload`, `other`) and status class (`2xx`…);
//! - `distfs_serve_response_bytes_total{route}`: body bytes sent, counted as they leave;
//! - `distfs_serve_blocks_total{route}`: blocks sent (one per raw block GET, one per CAR
//!   section streamed);
//! - `distfs_serve_car_responses_total`: successful CAR responses;
//! - `distfs_serve_record_puts_total{result}`: `PUT /routing/v1/ipns/…` records
//!   `accepted` or `refused`;
//! - `distfs_serve_request_duration_seconds{route}`: time from a request's arrival (queueing
//!   for a slot included) to its response headers; a streamed body's time is not in it.
//!
//! - with `--upstream` (the site cache), `distfs_serve_upstream_{hits,misses,fetches,
//!   fetched_bytes,corrupt_dropped}_total` and the gauges `distfs_serve_store_{bytes,blocks}`,
//!   read from the caching store at scrape time.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::stats::RouteKind;

/// The media type of the exposition (OpenMetrics text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Live metrics of one gateway. Cheap to update from any task (atomics inside).
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels2, Counter>,
    bytes: Family<Labels1, Counter>,
    blocks: Family<Labels1, Counter>,
    car_responses: Counter,
    record_puts: Family<Labels1, Counter>,
    duration: Family<Labels1, Histogram>,
}

fn duration_histogram() -> Histogram {
    // 1 ms … ~16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("distfs_serve");
        let requests = Family::<Labels2, Counter>::default();
        let bytes = Family::<Labels1, Counter>::default();
        let blocks = Family::<Labels1, Counter>::default();
        let car_responses = Counter::default();
        let record_puts = Family::<Labels1, Counter>::default();
        let duration = Family::<Labels1, Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "requests",
            "Requests by route kind and status class",
            requests.clone(),
        );
        registry.register(
            "response_bytes",
            "Response body bytes sent, by route kind",
            bytes.clone(),
        );
        registry.register(
            "blocks",
            "Blocks sent (raw responses and CAR sections), by route kind",
            blocks.clone(),
        );
        registry.register(
            "car_responses",
            "Successful CAR responses",
            car_responses.clone(),
        );
        registry.register(
            "record_puts",
            "IPNS records PUT to /routing/v1/ipns, by result",
            record_puts.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response headers, by route kind",
            duration.clone(),
        );
        Metrics {
            registry,
            requests,
            bytes,
            blocks,
            car_responses,
            record_puts,
            duration,
        }
    }
}

impl Metrics {
    /// Counts a response whose headers are ready after `took`.
    pub fn response(&self, kind: RouteKind, method: &Method, status: StatusCode, took: Duration) {
        let route = route(kind);
        self.requests
            .get_or_create(&[("route", route), ("status", class(status))])
            .inc();
        self.duration
            .get_or_create(&[("route", route)])
            .observe(took.as_secs_f64());
        let ok = status.is_success();
        match kind {
            RouteKind::Raw if ok && method == Method::GET => self.block_sent(kind),
            RouteKind::Car if ok => {
                self.car_responses.inc();
            }
            RouteKind::RoutingIpns if method == Method::PUT => {
                let result = if ok { "accepted" } else { "refused" };
                self.record_puts.get_or_create(&[("result", result)]).inc();
            }
            _ => {}
        }
    }

    /// Counts `n` body bytes sent for a response of route `kind`.
    pub fn bytes_sent(&self, kind: RouteKind, n: u64) {
        self.bytes
            .get_or_create(&[("route", route(kind))])
            .inc_by(n);
    }

    /// Counts one block sent for a response of route `kind`.
    pub fn block_sent(&self, kind: RouteKind) {
        self.blocks.get_or_create(&[("route", route(kind))]).inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        self.encode_with(None)
    }

    /// The exposition text, with the site cache's counters when there is one (they live in
    /// the caching store, so they are written here at scrape time, before `# EOF`).
    pub fn encode_with(&self, upstream: Option<&super::upstream::UpstreamStats>) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        let Some(up) = upstream else {
            return out;
        };
        let body = out.strip_suffix("# EOF\n").unwrap_or(&out).to_string();
        let mut text = body;
        let c = &up.cache;
        for (name, help, value) in [
            (
                "upstream_hits",
                "Blocks answered from the site cache's store",
                c.hits,
            ),
            (
                "upstream_misses",
                "Blocks not in the site cache's store when asked",
                c.misses,
            ),
            (
                "upstream_fetches",
                "Blocks fetched from upstream gateways",
                c.fetches,
            ),
            (
                "upstream_fetched_bytes",
                "Verified bytes fetched from upstream gateways",
                c.fetched_bytes,
            ),
            (
                "upstream_corrupt_dropped",
                "Stored blocks that failed verification and were dropped",
                c.corrupt_dropped,
            ),
        ] {
            text.push_str(&format!(
                "# HELP distfs_serve_{name} {help}.\n# TYPE distfs_serve_{name} counter\ndistfs_serve_{name}_total {value}\n"
            ));
        }
        for (name, help, value) in [
            (
                "store_bytes",
                "Bytes held in the site cache's store",
                up.bytes,
            ),
            (
                "store_blocks",
                "Blocks held in the site cache's store",
                up.blocks,
            ),
        ] {
            text.push_str(&format!(
                "# HELP distfs_serve_{name} {help}.\n# TYPE distfs_serve_{name} gauge\ndistfs_serve_{name} {value}\n"
            ));
        }
        text.push_str("# EOF\n");
        text
    }
}

/// The `route` label of a route kind (the same spelling as `/debug/stats`).
fn route(kind: RouteKind) -> &'static str {
    match kind {
        RouteKind::Raw => "raw",
        RouteKind::Car => "car",
        RouteKind::IpnsRecord => "ipns-record",
        RouteKind::RoutingIpns => "routing-ipns",
        RouteKind::Upload => "upload",
        RouteKind::Other => "other",
    }
}

fn class(status: StatusCode) -> &'static str {
    match status.as_u16() / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_the_exposition() {
        let m = Metrics::default();
        let d = Duration::from_millis(3);
        m.response(RouteKind::Raw, &Method::GET, StatusCode::OK, d);
        m.response(RouteKind::Raw, &Method::HEAD, StatusCode::OK, d);
        m.response(RouteKind::Raw, &Method::GET, StatusCode::NOT_FOUND, d);
        m.response(
            RouteKind::RoutingIpns,
            &Method::PUT,
            StatusCode::BAD_REQUEST,
            d,
        );
        m.bytes_sent(RouteKind::Raw, 10);
        let text = m.encode();
        for line in [
            "distfs_serve_requests_total{route=\"raw\",status=\"2xx\"} 2",
            "distfs_serve_requests_total{route=\"raw\",status=\"4xx\"} 1",
            "distfs_serve_blocks_total{route=\"raw\"} 1",
            "distfs_serve_record_puts_total{result=\"refused\"} 1",
            "distfs_serve_response_bytes_total{route=\"raw\"} 10",
            "distfs_serve_request_duration_seconds_count{route=\"raw\"} 3",
            "# TYPE distfs_serve_car_responses counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn upstream_counters_come_before_eof() {
        let m = Metrics::default();
        let mut up = crate::serve::upstream::UpstreamStats::default();
        up.cache.hits = 7;
        up.bytes = 99;
        let text = m.encode_with(Some(&up));
        assert!(text
            .lines()
            .any(|l| l == "distfs_serve_upstream_hits_total 7"));
        assert!(text.lines().any(|l| l == "distfs_serve_store_bytes 99"));
        assert!(text.ends_with("# EOF\n") && text.matches("# EOF").count() == 1);
    }
}
