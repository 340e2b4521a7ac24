//! The gateway's one status-code table: every way a request can fail, as a [`ServeError`]
//! with structured fields, mapped to an HTTP status by [`ServeError::status`] and answered
//! with a one-line `text/plain` body that says what was wrong.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cid::Cid;

use crate::fetch::FetchError;
use crate::store::cache::CacheError;
use crate::store::StoreError;

/// Why the gateway refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The first path segment is not a CID we can parse.
    #[error("invalid CID {input:?}: {reason}")]
    BadCid { input: String, reason: String },
    /// An IPNS name that is neither a CID nor a base58 multihash.
    #[error("invalid IPNS name {input:?}: {reason}")]
    BadName { input: String, reason: String },
    /// A query parameter, header or path piece is malformed.
    #[error("bad request: {what}")]
    BadRequest { what: String },
    /// A strict trustless gateway needs `?format=` or a supported `Accept`.
    #[error(
        "this is a trustless gateway: ask for ?format=raw, ?format=car or ?format=ipns-record \
         (or the matching Accept header)"
    )]
    NoFormat,
    /// The asked-for response format exists but this gateway does not produce it.
    #[error("not acceptable: {what} (this trustless gateway serves application/vnd.ipld.raw, application/vnd.ipld.car and application/vnd.ipfs.ipns-record)")]
    NotAcceptable { what: String },
    /// The root block is not held by any source.
    #[error("block {cid} not found on this gateway")]
    BlockNotFound { cid: Cid },
    /// A path segment does not exist below its parent (or its parent is not a directory).
    #[error("/ipfs/{root}/{path} does not exist: {reason}")]
    PathNotFound {
        /// The root CID as text (a `Cid` would make every `Result` here large).
        root: String,
        /// The requested path below the root.
        path: String,
        /// What the walk found instead.
        reason: String,
    },
    /// `Cache-Control: only-if-cached` and the root block is not held locally.
    #[error("block {cid} is not cached here (only-if-cached was asked)")]
    NotCached { cid: Cid },
    /// No record is held for this IPNS name.
    #[error("no IPNS record held for {name}")]
    NameNotFound { name: String },
    /// A PUT record that does not verify for its name (the reason says which rule failed).
    #[error("IPNS record refused: {reason}")]
    RecordRefused { reason: String },
    /// A PUT record whose sequence is not above the record already held.
    #[error("IPNS record refused: sequence {offered} is not above the held sequence {held}")]
    StaleRecord { held: u64, offered: u64 },
    /// The `Range` asks only for bytes past the end.
    #[error("range not satisfiable: the block is {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// Too many requests are in flight; try again shortly.
    #[error("gateway busy: {limit} requests in flight, retry shortly")]
    Busy { limit: usize },
    /// A source failed (disk error, corrupt block).
    #[error("block store failed: {0}")]
    Store(#[from] StoreError),
    /// A DAG walk failed for a reason other than a missing name (corrupt or hostile DAG,
    /// too deep, store failure).
    #[error("walking the DAG: {0}")]
    Walk(Box<crate::walk::WalkError>),
    /// An upload arrived but this gateway takes none.
    #[error("uploads are disabled on this gateway (start it with --upload-token-file FILE and a --store DIR)")]
    UploadsDisabled,
    /// An upload without the right `Authorization: Bearer` token.
    #[error("upload refused: missing or wrong bearer token (send Authorization: Bearer <token>)")]
    Unauthorized,
    /// A request body of the wrong media type.
    #[error("unsupported content type {got:?}: send {want}")]
    UnsupportedMediaType { got: String, want: &'static str },
    /// A request body over the size limit.
    #[error("request body over the {limit}-byte limit: split the upload into smaller CARs")]
    PayloadTooLarge { limit: usize },
    /// Anything else that is our fault (a walk over a malformed DAG, a task that died).
    #[error("internal error: {what}")]
    Internal { what: String },
}

impl ServeError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ServeError::BadCid { .. }
            | ServeError::BadName { .. }
            | ServeError::BadRequest { .. }
            | ServeError::NoFormat
            | ServeError::RecordRefused { .. } => StatusCode::BAD_REQUEST,
            ServeError::StaleRecord { .. } => StatusCode::CONFLICT,
            ServeError::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            ServeError::UploadsDisabled => StatusCode::FORBIDDEN,
            ServeError::Unauthorized => StatusCode::UNAUTHORIZED,
            ServeError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServeError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServeError::BlockNotFound { .. }
            | ServeError::PathNotFound { .. }
            | ServeError::NameNotFound { .. } => StatusCode::NOT_FOUND,
            ServeError::NotCached { .. } => StatusCode::PRECONDITION_FAILED,
            ServeError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ServeError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServeError::Store(e) => store_status(e),
            ServeError::Walk(e) => match &**e {
                crate::walk::WalkError::Store { source, .. } => store_status(source),
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ServeError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Shorthand for [`ServeError::BadRequest`].
    pub fn bad_request(what: impl Into<String>) -> ServeError {
        ServeError::BadRequest { what: what.into() }
    }
}

/// A store failure's status: an upstream fetch that ran out of time is 504, any other
/// upstream failure 502 (SPECS.md §6.2, recursive gateways), a local store failure 500.
fn store_status(e: &StoreError) -> StatusCode {
    let StoreError::Io { source, .. } = e else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let upstream = source
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<CacheError>());
    match upstream {
        Some(CacheError::Fetch(FetchError::Timeout { .. })) => StatusCode::GATEWAY_TIMEOUT,
        Some(CacheError::Fetch(_) | CacheError::Offline { .. }) => StatusCode::BAD_GATEWAY,
        Some(CacheError::Store(_)) | None => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        let body = format!("{}\n", self.to_string().replace(['\n', '\r'], " "));
        let mut resp = (status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        match &self {
            ServeError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
            }
            ServeError::Busy { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ServeError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let cid: Cid = "bafkqaaa".parse().unwrap();
        let cases = [
            (ServeError::NoFormat, 400),
            (ServeError::bad_request("x"), 400),
            (ServeError::NotAcceptable { what: "x".into() }, 406),
            (ServeError::BlockNotFound { cid }, 404),
            (ServeError::RangeNotSatisfiable { size: 3 }, 416),
            (ServeError::NotCached { cid }, 412),
            (ServeError::Busy { limit: 1 }, 429),
            (ServeError::Internal { what: "x".into() }, 500),
            (ServeError::UploadsDisabled, 403),
            (ServeError::Unauthorized, 401),
            (ServeError::PayloadTooLarge { limit: 1 }, 413),
            (ServeError::RecordRefused { reason: "x".into() }, 400),
            (
                ServeError::StaleRecord {
                    held: 2,
                    offered: 1,
                },
                409,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(err.status().as_u16(), code, "{err}");
        }
    }

    #[test]
    fn upstream_failures_are_502_and_504() {
        let cid: Cid = "bafkqaaa".parse().unwrap();
        // What the caching store's `BlockStore::get` turns a failed fetch into.
        let wrapped = |e: FetchError| {
            ServeError::Store(StoreError::Io {
                path: "x".into(),
                source: std::io::Error::other(CacheError::Fetch(e)),
            })
        };
        let timeout = wrapped(FetchError::Timeout {
            cid,
            after: std::time::Duration::from_secs(1),
        });
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        let corrupt = wrapped(FetchError::Corrupt {
            cid,
            url: "u".into(),
        });
        assert_eq!(corrupt.status(), StatusCode::BAD_GATEWAY);
        let walk = ServeError::Walk(Box::new(crate::walk::WalkError::Store {
            cid,
            source: StoreError::Io {
                path: "x".into(),
                source: std::io::Error::other(CacheError::Fetch(FetchError::NoSources { cid })),
            },
        }));
        assert_eq!(walk.status(), StatusCode::BAD_GATEWAY);
        let local = ServeError::Store(StoreError::Io {
            path: "x".into(),
            source: std::io::Error::other("disk"),
        });
        assert_eq!(local.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn body_is_one_line() {
        let resp = ServeError::bad_request("two\nlines").into_response();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"bad request: two lines\n");
        let range = ServeError::RangeNotSatisfiable { size: 31 }.into_response();
        assert_eq!(range.headers()[header::CONTENT_RANGE], "bytes */31");
    }
}
