//! The publisher's HTTP client for a `distfs serve` target: asks which blocks it already
//! holds (`HEAD /ipfs/{cid}?format=raw`), uploads blocks as a CAR (`POST /api/v1/car` with a
//! bearer token), and stores IPNS records through delegated routing
//! (`PUT /routing/v1/ipns/{name}`, SPECS.md §8; reading them is [`super::RecordClient`]).
//!
//! Every request is bounded in time; every answer we read is bounded in size. Error
//! messages carry the server's one-line reason so that a refused upload says why.

use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use super::body::{self, error_chain, BodyError};
use super::GatewayClient;

/// The media type of a CAR body.
const CAR_MEDIA_TYPE: &str = "application/vnd.ipld.car";
/// The media type of a signed IPNS record.
const IPNS_RECORD_MEDIA_TYPE: &str = "application/vnd.ipfs.ipns-record";
/// The most bytes of an answer body we read (JSON receipts, error messages).
const MAX_ANSWER: usize = 64 * 1024;
/// Time limit for one small request (HEAD, record PUT).
pub const DEFAULT_PUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why talking to the target failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The target URL cannot be used.
    #[error("target URL {url:?} is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Building the HTTP client failed.
    #[error("cannot build the HTTP client: {reason}")]
    Client { reason: String },
    /// Connecting, sending or reading failed (or timed out).
    #[error("{url}: request failed: {reason}")]
    Transport { url: String, reason: String },
    /// The target refused the request (wrong token, uploads disabled, bad record, ...).
    #[error("{url}: HTTP {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    /// The answer is not what the protocol says it should be.
    #[error("{url}: unexpected answer: {reason}")]
    BadAnswer { url: String, reason: String },
}

impl PushError {
    /// The HTTP status of a refusal, if the target answered one.
    pub fn status(&self) -> Option<u16> {
        match self {
            PushError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What the target said about an accepted CAR upload.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct UploadReceipt {
    /// Root CIDs named in the CAR header.
    #[serde(default)]
    pub roots: Vec<String>,
    /// Blocks in the CAR.
    pub blocks: u64,
    /// Blocks the target did not hold before.
    pub stored: u64,
    /// Blocks the target already held.
    pub already_present: u64,
    /// Bytes of block data.
    pub bytes: u64,
}

/// A client for one publishing target.
#[derive(Clone, Debug)]
pub struct PushClient {
    base: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl PushClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`); `timeout` bounds each small
    /// request (uploads get a limit scaled by their size).
    pub fn new(base: &str, timeout: Duration) -> Result<PushClient, PushError> {
        let invalid = |reason: &str| PushError::InvalidUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
            return Err(invalid("expected http(s)://host[:port][/prefix]"));
        }
        let http = GatewayClient::http_client().map_err(|e| PushError::Client {
            reason: e.to_string(),
        })?;
        Ok(PushClient {
            base: base.trim_end_matches('/').to_string(),
            http,
            timeout,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the target holds the block `cid` (a `HEAD` of its raw form).
    pub async fn has_block(&self, cid: &Cid) -> Result<bool, PushError> {
        let url = format!("{}/ipfs/{cid}?format=raw", self.base);
        let resp = self
            .http
            .head(&url)
            .header(ACCEPT, "application/vnd.ipld.raw")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND | StatusCode::GONE => Ok(false),
            status => Err(refused(&url, status, resp).await),
        }
    }

    /// Uploads one CAR with the bearer `token`.
    #[tracing::instrument(skip_all, fields(bytes = car.len()))]
    pub async fn upload_car(&self, car: Bytes, token: &str) -> Result<UploadReceipt, PushError> {
        let url = format!("{}/api/v1/car", self.base);
        // At least the small-request limit, plus a second per MiB (a slow link is slow, not dead).
        let timeout = self.timeout + Duration::from_secs(car.len() as u64 / (1024 * 1024));
        let resp = self
            .http
            .post(&url)
            .header(CONTENT_TYPE, CAR_MEDIA_TYPE)
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .timeout(timeout)
            .body(car)
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        if resp.status() != StatusCode::OK {
            return Err(refused(&url, resp.status(), resp).await);
        }
        let body = read_bounded(&url, resp, MAX_ANSWER).await?;
        serde_json::from_slice(&body).map_err(|e| PushError::BadAnswer {
            url,
            reason: format!("upload receipt is not the expected JSON: {e}"),
        })
    }

    /// Stores `record` for `name` at the target (`PUT /routing/v1/ipns/{name}`).
    pub async fn put_record(&self, name: &str, record: Bytes) -> Result<(), PushError> {
        let url = format!("{}/routing/v1/ipns/{name}", self.base);
        let resp = self
            .http
            .put(&url)
            .header(CONTENT_TYPE, IPNS_RECORD_MEDIA_TYPE)
            .timeout(self.timeout)
            .body(record)
            .send()
            .await
            .map_err(|e| transport(&url, &e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(refused(&url, resp.status(), resp).await)
        }
    }
}

fn transport(url: &str, e: &reqwest::Error) -> PushError {
    PushError::Transport {
        url: url.to_string(),
        reason: error_chain(e),
    }
}

/// A refusal with the first line of the server's explanation.
async fn refused(url: &str, status: StatusCode, resp: reqwest::Response) -> PushError {
    let body = read_bounded(url, resp, MAX_ANSWER)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let message = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no reason given)")
        .chars()
        .take(300)
        .collect();
    PushError::Refused {
        url: url.to_string(),
        status: status.as_u16(),
        message,
    }
}

/// Reads a body, failing once it passes `limit` bytes.
async fn read_bounded(
    url: &str,
    resp: reqwest::Response,
    limit: usize,
) -> Result<Bytes, PushError> {
    body::read_bounded(resp, limit).await.map_err(|e| match e {
        BodyError::Transport(reason) => PushError::Transport {
            url: url.to_string(),
            reason,
        },
        BodyError::TooLarge(limit) => PushError::BadAnswer {
            url: url.to_string(),
            reason: format!("answer over {limit} bytes"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_url_validation() {
        assert!(PushClient::new("http://127.0.0.1:1/", DEFAULT_PUSH_TIMEOUT).is_ok());
        assert!(PushClient::new("ftp://x", DEFAULT_PUSH_TIMEOUT).is_err());
        assert!(PushClient::new("http://x/?a=b", DEFAULT_PUSH_TIMEOUT).is_err());
        let c = PushClient::new("http://h:1/p/", DEFAULT_PUSH_TIMEOUT).unwrap();
        assert_eq!(c.base(), "http://h:1/p");
    }
}
