//! The trustless-gateway client: one base URL, one raw block per request.
//!
//! `GET {base}/ipfs/{cid}?format=raw` with `Accept: application/vnd.ipld.raw` (SPECS.md §6.1:
//! send both). The answer is checked in order: status (404/410 → not found; 429/5xx →
//! retryable with `Retry-After`), content type, declared length, then the body is read
//! chunk by chunk and abandoned as soon as it passes [`MAX_BLOCK_SIZE`], and finally hashed
//! against the CID ([`Block::verified`]). Connections are reused through one shared
//! `reqwest::Client` (pass the same client to every `GatewayClient`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use cid::Cid;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tracing::Instrument;

use super::{precheck, BlockSource, FetchError};
use crate::block::{Block, BlockError, MAX_BLOCK_SIZE};

/// The media type of one raw block.
const RAW_MEDIA_TYPE: &str = "application/vnd.ipld.raw";
/// Default limit for one whole request (connect, headers and body).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle pooled connections are closed after this (SPECS.md §6.3 etiquette: ~30 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `Retry-After` we parse; the fetcher applies its own, smaller cap.
const MAX_RETRY_AFTER_PARSED: u64 = 3600;

/// A client for one trustless gateway.
#[derive(Clone, Debug)]
pub struct GatewayClient {
    /// The base URL without a trailing slash, as given (used as the source's name).
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl GatewayClient {
    /// A client for `base` (e.g. `https://trustless-gateway.link`) with its own HTTP client
    /// and the default request timeout. Prefer [`GatewayClient::with_client`] with one shared
    /// client when talking to several gateways.
    pub fn new(base: &str) -> Result<GatewayClient, FetchError> {
        GatewayClient::with_client(base, GatewayClient::http_client()?, DEFAULT_REQUEST_TIMEOUT)
    }

    /// A client for `base` using `http` (shared connection pool) and `timeout` per request.
    pub fn with_client(
        base: &str,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Result<GatewayClient, FetchError> {
        let invalid = |reason: &str| FetchError::InvalidUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a gateway base URL takes no query or fragment"));
        }
        if url.host_str().is_none() {
            return Err(invalid("no host"));
        }
        Ok(GatewayClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            timeout,
        })
    }

    /// An HTTP client suited to gateways: rustls, pooled connections with a 30 s idle
    /// timeout, a connect timeout. Share one between all gateway clients.
    pub fn http_client() -> Result<reqwest::Client, FetchError> {
        reqwest::Client::builder()
            .user_agent(concat!("distfs/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| FetchError::Client {
                reason: e.to_string(),
            })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Asks the gateway for the empty identity block (`bafkqaaa`), which it can answer
    /// without looking anything up: shows whether it answers as a trustless gateway, within
    /// this client's timeout. Returns how long it took.
    pub async fn probe(&self) -> Result<std::time::Duration, FetchError> {
        let cid = Cid::new_v1(
            crate::block::codec::RAW,
            multihash::Multihash::wrap(crate::block::mh::IDENTITY, &[]).map_err(|e| {
                FetchError::Client {
                    reason: e.to_string(),
                }
            })?,
        );
        let start = std::time::Instant::now();
        self.fetch(&cid, &self.block_url(&cid)).await?;
        Ok(start.elapsed())
    }

    /// The URL a block is requested from.
    pub fn block_url(&self, cid: &Cid) -> String {
        format!("{}/ipfs/{cid}?format=raw", self.base)
    }

    async fn fetch(&self, cid: &Cid, url: &str) -> Result<Block, FetchError> {
        let span = tracing::Span::current();
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::AttemptTimeout {
                    cid: *cid,
                    url: url.to_string(),
                    after: self.timeout,
                }
            } else {
                FetchError::Transport {
                    cid: *cid,
                    url: url.to_string(),
                    reason: error_chain(&e),
                }
            }
        };
        let resp = self
            .http
            .get(url)
            .header(ACCEPT, RAW_MEDIA_TYPE)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        span.record("status", status.as_u16());
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(FetchError::NotFound { cid: *cid });
        }
        if status != StatusCode::OK {
            return Err(FetchError::Status {
                cid: *cid,
                url: url.to_string(),
                status: status.as_u16(),
                retry_after: resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
            });
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_raw_media_type(&content_type) {
            return Err(FetchError::BadContentType {
                cid: *cid,
                url: url.to_string(),
                content_type,
            });
        }
        let too_large = || FetchError::TooLarge {
            cid: *cid,
            url: url.to_string(),
            limit: MAX_BLOCK_SIZE,
        };
        let declared = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BLOCK_SIZE as u64) {
            return Err(too_large());
        }
        let cap = declared.map_or(64 * 1024, |n| n as usize);
        let mut body = BytesMut::with_capacity(cap);
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BLOCK_SIZE {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        span.record("bytes", body.len());
        Block::verified(*cid, body.freeze()).map_err(|e| match e {
            BlockError::HashMismatch { .. } => FetchError::Corrupt {
                cid: *cid,
                url: url.to_string(),
            },
            BlockError::TooLarge { .. } => too_large(),
            BlockError::UnsupportedHash { code, .. } => {
                FetchError::Unverifiable { cid: *cid, code }
            }
            BlockError::IdentityTooLarge { .. } => FetchError::BadIdentity {
                cid: *cid,
                reason: e.to_string(),
            },
        })
    }
}

#[async_trait]
impl BlockSource for GatewayClient {
    fn name(&self) -> &str {
        &self.base
    }

    /// One request, no retries (the [`super::Fetcher`] decides about retries).
    async fn get(&self, cid: &Cid) -> Result<Block, FetchError> {
        if let Some(b) = precheck(cid)? {
            return Ok(b);
        }
        let url = self.block_url(cid);
        let span = tracing::debug_span!(
            "gateway_get",
            cid = %cid,
            url = %url,
            status = tracing::field::Empty,
            bytes = tracing::field::Empty,
            ms = tracing::field::Empty,
        );
        let start = Instant::now();
        let result = self.fetch(cid, &url).instrument(span.clone()).await;
        span.record("ms", start.elapsed().as_millis() as u64);
        match &result {
            Ok(_) => tracing::debug!(parent: &span, "block received"),
            Err(e) if e.is_not_found() => tracing::debug!(parent: &span, "not found"),
            Err(e) => tracing::debug!(parent: &span, error = %e, "request failed"),
        }
        result
    }
}

/// Whether a `Content-Type` value names a raw block (parameters ignored).
fn is_raw_media_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(RAW_MEDIA_TYPE))
}

/// `Retry-After` in delay-seconds form; the HTTP-date form is not honoured (`None`, so the
/// fetcher uses its default backoff).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(MAX_RETRY_AFTER_PARSED)))
}

/// A reqwest error with its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_check() {
        assert!(is_raw_media_type("application/vnd.ipld.raw"));
        assert!(is_raw_media_type("Application/Vnd.IPLD.Raw; charset=x"));
        assert!(!is_raw_media_type("text/html"));
        assert!(!is_raw_media_type("application/vnd.ipld.car"));
        assert!(!is_raw_media_type(""));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999"),
            Some(Duration::from_secs(MAX_RETRY_AFTER_PARSED))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn base_url_validation() {
        assert!(GatewayClient::new("http://127.0.0.1:8080/").is_ok());
        assert!(GatewayClient::new("ftp://example").is_err());
        assert!(GatewayClient::new("not a url").is_err());
        assert!(GatewayClient::new("http://h/?q=1").is_err());
        let g = GatewayClient::new("https://gw.example/prefix/").unwrap();
        let cid: Cid = "bafkqaaa".parse().unwrap();
        assert_eq!(
            g.block_url(&cid),
            "https://gw.example/prefix/ipfs/bafkqaaa?format=raw"
        );
    }
}
