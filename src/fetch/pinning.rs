//! The IPFS Pinning Service API: its wire objects ([`Pin`], [`PinStatus`], [`PinResults`],
//! [`Failure`]) shared by our server (`serve::pins`) and our client ([`PinningClient`], what
//! `distfs publish --pin-service` uses against any endpoint of the API, ours or a
//! commercial one).
//!
//! Facts relied on (ipfs/pinning-services-api-spec, `ipfs-pinning-service.yaml`, v0.1.x):
//! - every request carries `Authorization: Bearer <access token>`; a missing or wrong token
//!   is answered 401;
//! - `POST {endpoint}/pins` with a `Pin` (`cid` required; `name` ≤ 255 characters, `origins`
//!   ≤ 20 multiaddrs, `meta` string→string) is answered **202** with a `PinStatus`
//!   (`requestid`, `status` ∈ queued|pinning|pinned|failed, `created` RFC 3339, `pin`,
//!   `delegates` (1–20 multiaddrs), optional `info` string→string);
//! - `GET {endpoint}/pins/{requestid}` → 200 `PinStatus`; `POST` there replaces the pin (202,
//!   new `requestid`); `DELETE` there → 202 with no body;
//! - errors are `{"error": {"reason": "...", "details": "..."}}` (`reason` required).
//!
//! The client reads answers leniently (unknown fields ignored, `null` for a list or map taken
//! as empty, `info` values of any JSON type) because commercial services differ in those
//! details; it bounds every request in time and every answer in size.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Deserializer, Serialize};

use super::body::{self, error_chain, BodyError};
use super::GatewayClient;

/// The largest answer body read (a `PinStatus` is well under 1 KiB; a list of 1000 of
/// them can reach a few MiB).
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Default limit for one request to a pinning service.
pub const DEFAULT_PINNING_TIMEOUT: Duration = Duration::from_secs(30);

/// A pin request: what to pin (the `Pin` object of the spec).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The root CID of the DAG to pin recursively.
    pub cid: String,
    /// An optional name for lookups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Multiaddrs known to provide the data.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub origins: Vec<String>,
    /// String metadata kept with the pin.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
}

/// Where a pin request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinState {
    /// Waiting for a worker.
    Queued,
    /// Being fetched.
    Pinning,
    /// Held whole.
    Pinned,
    /// Given up (see `info`).
    Failed,
}

impl PinState {
    /// The spec's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            PinState::Queued => "queued",
            PinState::Pinning => "pinning",
            PinState::Pinned => "pinned",
            PinState::Failed => "failed",
        }
    }

    /// Parses the spec's name.
    pub fn parse(text: &str) -> Option<PinState> {
        match text {
            "queued" => Some(PinState::Queued),
            "pinning" => Some(PinState::Pinning),
            "pinned" => Some(PinState::Pinned),
            "failed" => Some(PinState::Failed),
            _ => None,
        }
    }

    /// Pinned or failed: nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, PinState::Pinned | PinState::Failed)
    }
}

/// A pin request and its state (the `PinStatus` object of the spec).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinStatus {
    /// The request's id, for status checks, replacement and removal.
    pub requestid: String,
    /// Where it stands.
    pub status: PinState,
    /// When the request was made (RFC 3339).
    pub created: String,
    /// What was asked.
    pub pin: Pin,
    /// Multiaddrs of the service's nodes that take data.
    #[serde(default, deserialize_with = "null_as_default")]
    pub delegates: Vec<String>,
    /// Extra information (ours: `status_details`, `reason` when failed, `dag_size`).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub info: BTreeMap<String, serde_json::Value>,
}

impl PinStatus {
    /// `info[key]` as text (a string as is, anything else as JSON).
    pub fn info_text(&self, key: &str) -> Option<String> {
        self.info.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }
}

/// The answer to a listing (`PinResults`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PinResults {
    /// How many requests match the filters (may exceed `results.len()`).
    pub count: u64,
    /// The matching requests, newest first, at most the asked limit.
    #[serde(default, deserialize_with = "null_as_default")]
    pub results: Vec<PinStatus>,
}

/// An error answer (`Failure`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The error.
    pub error: FailureBody,
}

/// The body of a [`Failure`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureBody {
    /// A machine-readable code (e.g. `UNAUTHORIZED`).
    pub reason: String,
    /// A human explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Why a pinning service request failed.
#[derive(Debug, thiserror::Error)]
pub enum PinningError {
    /// The endpoint URL cannot be used.
    #[error("pinning service URL {url:?} is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Building the HTTP client failed.
    #[error("cannot build the HTTP client: {reason}")]
    Client { reason: String },
    /// Connecting, sending or reading failed (or timed out).
    #[error("{url}: request failed: {reason}")]
    Transport { url: String, reason: String },
    /// The service refused the request.
    #[error("{url}: HTTP {status} {reason}{}", details.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        url: String,
        status: u16,
        reason: String,
        details: Option<String>,
    },
    /// The answer is not what the spec says.
    #[error("{url}: unexpected answer: {reason}")]
    BadAnswer { url: String, reason: String },
}

impl PinningError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            PinningError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether asking again later may succeed (transport trouble, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            PinningError::Transport { .. } => true,
            PinningError::Refused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// A client for one pinning service endpoint (the URL the `/pins` paths hang off, e.g.
/// `https://api.example.com/psa`).
#[derive(Clone, Debug)]
pub struct PinningClient {
    endpoint: String,
    token: String,
    http: reqwest::Client,
    timeout: Duration,
}

impl PinningClient {
    /// A client for `endpoint` sending `token`; `timeout` bounds each request.
    pub fn new(
        endpoint: &str,
        token: &str,
        timeout: Duration,
    ) -> Result<PinningClient, PinningError> {
        let invalid = |reason: &str| PinningError::InvalidUrl {
            url: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
            return Err(invalid("expected http(s)://host[:port][/prefix]"));
        }
        if token.is_empty() || token.contains(char::is_whitespace) {
            return Err(invalid(
                "the access token must be non-empty, with no spaces",
            ));
        }
        let http = GatewayClient::http_client().map_err(|e| PinningError::Client {
            reason: e.to_string(),
        })?;
        Ok(PinningClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
            timeout,
        })
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Asks the service to pin `pin` (`POST /pins`).
    #[tracing::instrument(skip_all, fields(endpoint = %self.endpoint, cid = %pin.cid))]
    pub async fn add(&self, pin: &Pin) -> Result<PinStatus, PinningError> {
        let url = format!("{}/pins", self.endpoint);
        let req = self.json_post(&url, pin)?;
        let body = self
            .send(&url, req, &[StatusCode::ACCEPTED, StatusCode::OK])
            .await?;
        parse(&url, &body)
    }

    /// The state of a request (`GET /pins/{requestid}`).
    pub async fn status(&self, requestid: &str) -> Result<PinStatus, PinningError> {
        let url = format!("{}/pins/{}", self.endpoint, path_segment(requestid));
        let body = self
            .send(&url, self.http.get(&url), &[StatusCode::OK])
            .await?;
        parse(&url, &body)
    }

    /// Replaces a request with `pin` (`POST /pins/{requestid}`); the new request's state.
    pub async fn replace(&self, requestid: &str, pin: &Pin) -> Result<PinStatus, PinningError> {
        let url = format!("{}/pins/{}", self.endpoint, path_segment(requestid));
        let req = self.json_post(&url, pin)?;
        let body = self
            .send(&url, req, &[StatusCode::ACCEPTED, StatusCode::OK])
            .await?;
        parse(&url, &body)
    }

    /// Removes a request (`DELETE /pins/{requestid}`).
    pub async fn remove(&self, requestid: &str) -> Result<(), PinningError> {
        let url = format!("{}/pins/{}", self.endpoint, path_segment(requestid));
        let ok = [StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT];
        self.send(&url, self.http.delete(&url), &ok).await.map(drop)
    }

    /// Lists requests (`GET /pins?...`); `query` holds `(key, value)` pairs, repeated keys
    /// for lists (e.g. `("status", "queued"), ("status", "pinning")`).
    pub async fn list(&self, query: &[(&str, &str)]) -> Result<PinResults, PinningError> {
        let url = format!("{}/pins", self.endpoint);
        let req = self.http.get(&url).query(query);
        let body = self.send(&url, req, &[StatusCode::OK]).await?;
        parse(&url, &body)
    }

    fn json_post(&self, url: &str, pin: &Pin) -> Result<reqwest::RequestBuilder, PinningError> {
        let body = serde_json::to_vec(pin).map_err(|e| PinningError::BadAnswer {
            url: url.to_string(),
            reason: format!("cannot encode the pin: {e}"),
        })?;
        Ok(self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body))
    }

    async fn send(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
        ok: &[StatusCode],
    ) -> Result<Bytes, PinningError> {
        let resp = req
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .header(ACCEPT, "application/json")
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| transport(url, &e))?;
        let status = resp.status();
        let is_json = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = read_bounded(url, resp).await?;
        if ok.contains(&status) {
            return Ok(body);
        }
        let failure = is_json
            .then(|| serde_json::from_slice::<Failure>(&body).ok())
            .flatten();
        let (reason, details) = match failure {
            Some(f) => (f.error.reason, f.error.details),
            None => {
                let text = String::from_utf8_lossy(&body);
                let line = text
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .map(|l| l.chars().take(300).collect());
                (
                    status.canonical_reason().unwrap_or("error").to_string(),
                    line,
                )
            }
        };
        Err(PinningError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            reason,
            details,
        })
    }
}

/// Percent-encodes anything but unreserved characters (a request id is opaque text).
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse<T: for<'de> Deserialize<'de>>(url: &str, body: &[u8]) -> Result<T, PinningError> {
    serde_json::from_slice(body).map_err(|e| PinningError::BadAnswer {
        url: url.to_string(),
        reason: format!("not the JSON the pinning service API specifies: {e}"),
    })
}

fn transport(url: &str, e: &reqwest::Error) -> PinningError {
    PinningError::Transport {
        url: url.to_string(),
        reason: error_chain(e),
    }
}

async fn read_bounded(url: &str, resp: reqwest::Response) -> Result<Bytes, PinningError> {
    body::read_bounded(resp, MAX_ANSWER)
        .await
        .map_err(|e| match e {
            BodyError::Transport(reason) => PinningError::Transport {
                url: url.to_string(),
                reason,
            },
            BodyError::TooLarge(limit) => PinningError::BadAnswer {
                url: url.to_string(),
                reason: format!("answer over {limit} bytes"),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_status_parsing() {
        // Shaped like a commercial service's answer: nulls, extra fields, non-string info.
        let text = r#"{"requestid":"abc","status":"pinned","created":"2020-07-27T17:32:28Z",
            "pin":{"cid":"bafkqaaa","name":null,"origins":null,"meta":null,"extra":1},
            "delegates":["/dnsaddr/pin.example"],"info":{"dag_size":42,"status_details":"ok"},
            "vendor":"x"}"#;
        let st: PinStatus = serde_json::from_str(text).unwrap();
        assert_eq!(st.status, PinState::Pinned);
        assert!(st.pin.origins.is_empty() && st.pin.meta.is_empty() && st.pin.name.is_none());
        assert_eq!(st.info_text("dag_size").as_deref(), Some("42"));
        assert_eq!(st.info_text("status_details").as_deref(), Some("ok"));
        let bad = r#"{"requestid":"a","status":"done","created":"x","pin":{"cid":"c"}}"#;
        assert!(serde_json::from_str::<PinStatus>(bad).is_err());
    }

    #[test]
    fn pin_serializes_only_what_is_set() {
        let pin = Pin {
            cid: "bafkqaaa".into(),
            ..Pin::default()
        };
        assert_eq!(
            serde_json::to_string(&pin).unwrap(),
            r#"{"cid":"bafkqaaa"}"#
        );
        for s in ["queued", "pinning", "pinned", "failed"] {
            assert_eq!(PinState::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn client_validation() {
        let t = DEFAULT_PINNING_TIMEOUT;
        assert!(PinningClient::new("http://127.0.0.1:1/psa/", "tok", t).is_ok());
        assert!(PinningClient::new("ftp://x", "tok", t).is_err());
        assert!(PinningClient::new("http://x", "", t).is_err());
        assert!(PinningClient::new("http://x", "a b", t).is_err());
        let c = PinningClient::new("http://h:1/psa/", "tok", t).unwrap();
        assert_eq!(c.endpoint(), "http://h:1/psa");
    }
}
