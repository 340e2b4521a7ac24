//! Fetching signed IPNS records over HTTP (SPECS.md §6.1, §8): from a trustless gateway
//! (`GET {base}/ipns/{name}?format=ipns-record` with `Accept: application/vnd.ipfs.ipns-record`)
//! or a delegated-routing endpoint (`GET {base}/routing/v1/ipns/{name}`). Bounded in size
//! ([`MAX_RECORD_BYTES`]) and time (one timeout per request). The bytes come back
//! unverified: `name::verify` decides what they are worth.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use super::gateway::GatewayClient;

/// The record media type.
pub const IPNS_RECORD_MEDIA_TYPE: &str = "application/vnd.ipfs.ipns-record";
/// Largest response body accepted (the IPNS record limit, 10 KiB).
pub const MAX_RECORD_BYTES: usize = 10 * 1024;
/// Default limit for one record request.
pub const DEFAULT_RECORD_TIMEOUT: Duration = Duration::from_secs(15);

/// Which HTTP API a record endpoint speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordApi {
    /// A trustless gateway: `/ipns/{name}?format=ipns-record`.
    Gateway,
    /// Delegated routing V1: `/routing/v1/ipns/{name}`.
    Routing,
}

/// Why a record could not be fetched from one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFetchError {
    /// A base URL that cannot be used.
    #[error("record endpoint URL {url:?} is invalid: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// Building the HTTP client failed.
    #[error("cannot build the HTTP client: {reason}")]
    Client {
        /// Why.
        reason: String,
    },
    /// Connecting, sending or reading failed, or the request timed out.
    #[error("{url}: {reason}")]
    Transport {
        /// The request URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A status other than 200 or 404.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The request URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The body is not a record (HTML from a path gateway, JSON, …).
    #[error("{url} answered with content type {content_type:?}, not {IPNS_RECORD_MEDIA_TYPE}")]
    BadContentType {
        /// The request URL.
        url: String,
        /// What it said.
        content_type: String,
    },
    /// The body passed the record size limit.
    #[error("{url} sent more than {MAX_RECORD_BYTES} bytes for a record")]
    TooLarge {
        /// The request URL.
        url: String,
    },
}

/// One record endpoint.
#[derive(Clone, Debug)]
pub struct RecordClient {
    base: String,
    api: RecordApi,
    http: reqwest::Client,
    timeout: Duration,
}

impl RecordClient {
    /// A client for `base` speaking `api`, sharing `http`'s connection pool.
    pub fn new(
        base: &str,
        api: RecordApi,
        http: reqwest::Client,
        timeout: Duration,
    ) -> Result<RecordClient, RecordFetchError> {
        let invalid = |reason: &str| RecordFetchError::InvalidUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("must be an http(s) URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a base URL takes no query or fragment"));
        }
        Ok(RecordClient {
            base: base.trim_end_matches('/').to_string(),
            api,
            http,
            timeout,
        })
    }

    /// A shared HTTP client suited to gateways (see [`GatewayClient::http_client`]).
    pub fn http_client() -> Result<reqwest::Client, RecordFetchError> {
        GatewayClient::http_client().map_err(|e| RecordFetchError::Client {
            reason: e.to_string(),
        })
    }

    /// `"{api} {base}"`, for logs.
    pub fn describe(&self) -> String {
        let api = match self.api {
            RecordApi::Gateway => "gateway",
            RecordApi::Routing => "routing",
        };
        format!("{api} {}", self.base)
    }

    /// The URL the record of `name` (any spelling without `/`) is asked at.
    pub fn record_url(&self, name: &str) -> String {
        match self.api {
            RecordApi::Gateway => format!("{}/ipns/{name}?format=ipns-record", self.base),
            RecordApi::Routing => format!("{}/routing/v1/ipns/{name}", self.base),
        }
    }

    /// The record bytes for `name`, `Ok(None)` when the endpoint does not have one (404).
    #[tracing::instrument(skip_all, fields(name = %name, source = %self.base))]
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, RecordFetchError> {
        let url = self.record_url(name);
        let transport = |e: reqwest::Error| RecordFetchError::Transport {
            url: url.clone(),
            reason: if e.is_timeout() {
                format!("no answer within {:?}", self.timeout)
            } else {
                e.to_string()
            },
        };
        let resp = self
            .http
            .get(&url)
            .header(ACCEPT, IPNS_RECORD_MEDIA_TYPE)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status != StatusCode::OK {
            return Err(RecordFetchError::Status {
                url,
                status: status.as_u16(),
            });
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim();
        if !media.eq_ignore_ascii_case(IPNS_RECORD_MEDIA_TYPE) {
            return Err(RecordFetchError::BadContentType { url, content_type });
        }
        let declared = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_RECORD_BYTES as u64) {
            return Err(RecordFetchError::TooLarge { url });
        }
        let mut body = BytesMut::new();
        let mut resp = resp;
        while let Some(chunk) = resp.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_RECORD_BYTES {
                return Err(RecordFetchError::TooLarge { url });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some(body.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_per_api() {
        let http = reqwest::Client::new();
        let g = RecordClient::new(
            "http://h:1/",
            RecordApi::Gateway,
            http.clone(),
            DEFAULT_RECORD_TIMEOUT,
        )
        .unwrap();
        assert_eq!(
            g.record_url("k51x"),
            "http://h:1/ipns/k51x?format=ipns-record"
        );
        let r = RecordClient::new(
            "http://h:1",
            RecordApi::Routing,
            http.clone(),
            DEFAULT_RECORD_TIMEOUT,
        )
        .unwrap();
        assert_eq!(r.record_url("k51x"), "http://h:1/routing/v1/ipns/k51x");
        assert!(
            RecordClient::new("ftp://h", RecordApi::Routing, http, DEFAULT_RECORD_TIMEOUT).is_err()
        );
    }
}
