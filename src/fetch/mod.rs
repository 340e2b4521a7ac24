//! Block sources: where blocks come from when the local store does not hold them.
//!
//! `fetch` owns everything between "I need the block named by this CID" and "here are bytes
//! that hash to it": the [`BlockSource`] trait, the trustless-gateway client
//! ([`GatewayClient`], the only place that names `reqwest`), and the multi-source
//! [`Fetcher`] (health scores, failover, retry budgets, a window of requests in flight sized
//! by the round trip, single-flight, a deadline per `get`). Every block leaves this module verified: a source
//! that sends bytes that do not hash to the CID is dropped for the rest of the session.
//!
//! The delegated-routing client for HTTP providers ([`routing`]: find gateways that provide a
//! CID, announce one) lives here too.
//!
//! The publisher's client for a `distfs serve` target ([`PushClient`]: block presence, CAR
//! upload, IPNS records) and the IPFS Pinning Service API client ([`pinning`]) live here
//! too, so that `reqwest` stays in this module; [`multiaddr`] turns gateway multiaddrs into
//! URLs and back.
//!
//! Identity CIDs are decoded locally and never fetched; CIDs whose hash we cannot verify are
//! refused before any request is made.

// Errors carry the CID (88 bytes) plus URL and reason, as the house rules ask; they travel
// only on network paths where moving ~150 bytes is noise next to the request itself.
#![allow(
    clippy::result_large_err,
    reason = "structured error fields on network paths"
)]

use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;

use crate::block::Block;

mod body;
mod fetcher;
mod flight;
mod gateway;
mod health;
pub mod multiaddr;
pub mod pinning;
mod push;
mod record;
pub mod routing;
mod window;

pub use fetcher::{Fetcher, FetcherConfig, ORIGIN_CONFIG, ORIGIN_ROUTING};
pub use flight::{FlightLost, SingleFlight};
pub use gateway::{GatewayClient, DEFAULT_REQUEST_TIMEOUT};
pub use health::SourceStats;
pub use push::{PushClient, PushError, UploadReceipt, DEFAULT_PUSH_TIMEOUT};
pub use record::{
    RecordApi, RecordClient, RecordFetchError, DEFAULT_RECORD_TIMEOUT, IPNS_RECORD_MEDIA_TYPE,
    MAX_RECORD_BYTES,
};

/// Something that can hand out one verified block. Implementations must verify what they
/// return (construct it with [`Block::verified`]) and must answer [`FetchError::NotFound`]
/// for a definite "I do not have it" (a negative answer, not a failure of the source).
#[async_trait]
pub trait BlockSource: Send + Sync {
    /// A short human name for logs and stats (for a gateway: its base URL).
    fn name(&self) -> &str;
    /// The block named by `cid`, verified.
    async fn get(&self, cid: &Cid) -> Result<Block, FetchError>;
}

/// Why a block could not be fetched. `Clone` so that one in-flight fetch can hand its
/// outcome to every caller waiting on it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Every source that answered said it does not have the block (404/410).
    #[error("block {cid} not found at any source (check the CID, or add a gateway that has it)")]
    NotFound { cid: Cid },
    /// Every attempt within the retry budget failed; `attempts` lists (source, reason).
    #[error("block {cid}: all sources failed ({}); check the gateways and the network", fmt_attempts(.attempts))]
    AllSourcesFailed {
        cid: Cid,
        attempts: Vec<(String, String)>,
    },
    /// No source delivered the block before the per-`get` deadline.
    #[error("block {cid}: no source delivered it within {after:?}; check the network or raise the fetch deadline")]
    Timeout { cid: Cid, after: Duration },
    /// The source sent bytes that do not hash to the CID; it is not trusted any more.
    #[error(
        "block {cid}: {url} sent bytes that do not match the CID (source dropped for this session)"
    )]
    Corrupt { cid: Cid, url: String },
    /// The response body exceeded the block size limit.
    #[error("block {cid}: {url} sent more than {limit} bytes, the block size limit")]
    TooLarge { cid: Cid, url: String, limit: usize },
    /// The response was not a raw block (probably not a trustless gateway, or a path gateway
    /// that ignored `format=raw`).
    #[error("block {cid}: {url} answered with content type {content_type:?}, not application/vnd.ipld.raw (is it a trustless gateway?)")]
    BadContentType {
        cid: Cid,
        url: String,
        content_type: String,
    },
    /// An HTTP status other than success or not-found.
    #[error("block {cid}: {url} answered HTTP {status}")]
    Status {
        cid: Cid,
        url: String,
        status: u16,
        /// The server's `Retry-After`, when given in seconds.
        retry_after: Option<Duration>,
    },
    /// Connecting, sending or reading failed.
    #[error("block {cid}: request to {url} failed: {reason}")]
    Transport {
        cid: Cid,
        url: String,
        reason: String,
    },
    /// One request to one source took longer than the per-attempt timeout.
    #[error("block {cid}: {url} did not answer within {after:?}")]
    AttemptTimeout {
        cid: Cid,
        url: String,
        after: Duration,
    },
    /// The CID's hash function is one we cannot verify, so no source is asked.
    #[error("block {cid}: multihash code {code:#x} cannot be verified here, refusing to fetch it")]
    Unverifiable { cid: Cid, code: u64 },
    /// An identity CID that is not acceptable (too much inline data).
    #[error("identity CID {cid} is invalid: {reason}")]
    BadIdentity { cid: Cid, reason: String },
    /// No sources are configured (or every source was dropped for sending bad blocks).
    #[error("block {cid}: no usable sources (configure a gateway; sources that sent bad blocks are dropped)")]
    NoSources { cid: Cid },
    /// A gateway base URL that cannot be used.
    #[error("gateway URL {url:?} is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Building the HTTP client failed (TLS setup).
    #[error("cannot build the HTTP client: {reason}")]
    Client { reason: String },
    /// The task running the fetch ended without an answer (panic or runtime shutdown).
    #[error("block {cid}: fetch task ended without an answer: {reason}")]
    TaskFailed { cid: Cid, reason: String },
}

fn fmt_attempts(attempts: &[(String, String)]) -> String {
    if attempts.is_empty() {
        return "no attempts".to_string();
    }
    attempts
        .iter()
        .map(|(url, reason)| format!("{url}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl FetchError {
    /// Whether trying again (later, or at another source) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => {
                *status == 408 || *status == 429 || (500..600).contains(status)
            }
            FetchError::Transport { .. }
            | FetchError::AttemptTimeout { .. }
            | FetchError::Timeout { .. }
            | FetchError::AllSourcesFailed { .. }
            | FetchError::TaskFailed { .. } => true,
            _ => false,
        }
    }

    /// A definite negative answer: cache it as "not available", don't count it against the
    /// source.
    pub fn is_not_found(&self) -> bool {
        matches!(self, FetchError::NotFound { .. })
    }

    /// The source sent wrong bytes: drop the bytes and the source.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, FetchError::Corrupt { .. })
    }

    /// How long the source asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Checks, before any request, that a fetched block for `cid` could be verified.
/// `Ok(Some(block))` for an identity CID (decoded inline, never fetched).
pub fn precheck(cid: &Cid) -> Result<Option<Block>, FetchError> {
    use crate::block::mh;
    match Block::from_identity(cid) {
        Ok(Some(b)) => return Ok(Some(b)),
        Ok(None) => {}
        Err(e) => {
            return Err(FetchError::BadIdentity {
                cid: *cid,
                reason: e.to_string(),
            })
        }
    }
    match cid.hash().code() {
        mh::SHA2_256 | mh::SHA2_512 => Ok(None),
        // Must list exactly the hashes `block::verify` implements.
        code => Err(FetchError::Unverifiable { cid: *cid, code }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn policy_methods() {
        let cid = Cid::from_str("bafkqaaa").unwrap();
        let st = |status| FetchError::Status {
            cid,
            url: "u".into(),
            status,
            retry_after: None,
        };
        assert!(st(503).is_retryable());
        assert!(st(429).is_retryable());
        assert!(!st(400).is_retryable());
        assert!(FetchError::NotFound { cid }.is_not_found());
        assert!(!FetchError::NotFound { cid }.is_retryable());
        let corrupt = FetchError::Corrupt {
            cid,
            url: "u".into(),
        };
        assert!(corrupt.is_corrupt() && !corrupt.is_retryable());
    }

    #[test]
    fn precheck_identity_and_unverifiable() {
        let id = Cid::from_str("bafkqaaa").unwrap();
        assert!(precheck(&id).unwrap().unwrap().data().is_empty());
        // blake2b-256 (0xb220): we cannot verify it, so we must not fetch it.
        let mh = multihash::Multihash::<64>::wrap(0xb220, &[7u8; 32]).unwrap();
        let cid = Cid::new_v1(crate::block::codec::RAW, mh);
        assert!(matches!(
            precheck(&cid),
            Err(FetchError::Unverifiable { code: 0xb220, .. })
        ));
        let sha =
            Cid::from_str("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").unwrap();
        assert!(precheck(&sha).unwrap().is_none());
    }
}
