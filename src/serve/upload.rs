//! The authenticated block upload endpoint: `POST /api/v1/car`.
//!
//! A publisher sends a CARv1 body (`Content-Type: application/vnd.ipld.car`) with
//! `Authorization: Bearer <token>`. The gateway checks the token (compared in constant time),
//! refuses bodies over its size limit before reading them whole, parses the CAR and verifies
//! every block (hash against CID, block size limit) on a blocking thread, and only when the
//! whole CAR is good writes its blocks into the writable disk store (the first `--store`).
//! A rejected upload stores nothing. The answer is JSON: `{"roots": [...], "blocks": n,
//! "stored": n, "already_present": n, "bytes": n}`.
//!
//! Uploads are off unless a token is configured (`distfs serve --upload-token-file FILE`);
//! then every upload request is answered 403 with a hint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::ServeError;
use super::header_str;
use super::request::CAR_TYPE;
use super::stats::{tagged, RouteKind};
use super::Gateway;
use crate::block::Block;
use crate::car::CarReader;
use crate::store::disk::DiskStore;

/// Default largest upload body (a publisher splits bigger uploads into several CARs).
pub const DEFAULT_MAX_UPLOAD: usize = 128 * 1024 * 1024;

/// What the upload endpoint needs: where blocks go, the token, the body limit.
pub struct UploadConfig {
    /// The writable store uploads go into.
    pub store: DiskStore,
    /// The bearer token a request must present (non-empty).
    pub token: String,
    /// Largest accepted body in bytes.
    pub max_bytes: usize,
}

/// Upload counters (a part of `/debug/stats`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadStats {
    /// Uploads accepted.
    pub accepted: u64,
    /// Uploads refused (token, type, size, bad CAR).
    pub refused: u64,
    /// Blocks written that the store did not hold.
    pub blocks_stored: u64,
    /// Blocks received that the store already held.
    pub blocks_already_present: u64,
    /// Bytes of block data received in accepted uploads.
    pub bytes: u64,
}

/// The upload endpoint's state.
pub struct Uploads {
    config: UploadConfig,
    accepted: AtomicU64,
    refused: AtomicU64,
    stored: AtomicU64,
    present: AtomicU64,
    bytes: AtomicU64,
}

impl Uploads {
    /// Uploads into `config.store`, guarded by `config.token`.
    pub fn new(config: UploadConfig) -> Uploads {
        Uploads {
            config,
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            present: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// A copy of the counters.
    pub fn stats(&self) -> UploadStats {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UploadStats {
            accepted: n(&self.accepted),
            refused: n(&self.refused),
            blocks_stored: n(&self.stored),
            blocks_already_present: n(&self.present),
            bytes: n(&self.bytes),
        }
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| {
            let (scheme, token) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        }) else {
            return false;
        };
        constant_time_eq(given.as_bytes(), self.config.token.as_bytes())
    }
}

/// Byte equality whose time depends only on the lengths, not on where the bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The JSON answer to an accepted upload.
#[derive(Debug, serde::Serialize)]
struct Accepted {
    roots: Vec<String>,
    blocks: u64,
    stored: u64,
    already_present: u64,
    bytes: u64,
}

/// `POST /api/v1/car`.
pub async fn upload_handler(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let result = upload(&gw, req).await;
    let refused = result.is_err();
    if let (true, Some(up)) = (refused, gw.uploads()) {
        up.refused.fetch_add(1, Ordering::Relaxed);
    }
    let mut resp = tagged(RouteKind::Upload, None, result);
    if refused {
        // The body may be partly unread: this connection cannot carry another request, and
        // the client must not reuse it (it would see the rest of our answer as garbage).
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[tracing::instrument(skip_all)]
async fn upload(gw: &Gateway, req: Request) -> Result<Response, ServeError> {
    let up = gw.uploads().ok_or(ServeError::UploadsDisabled)?;
    if !up.authorized(header_str(req.headers(), header::AUTHORIZATION)) {
        return Err(ServeError::Unauthorized);
    }
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(CAR_TYPE) {
        return Err(ServeError::UnsupportedMediaType {
            got: content_type.chars().take(100).collect(),
            want: CAR_TYPE,
        });
    }
    let limit = up.config.max_bytes;
    let declared = header_str(req.headers(), header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ServeError::PayloadTooLarge { limit });
    }
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            // axum reports an over-limit body as a length-limit error in the chain.
            let text = format!(
                "{e}: {}",
                std::error::Error::source(&e).map_or_else(String::new, |s| s.to_string())
            );
            if text.to_ascii_lowercase().contains("length limit") {
                ServeError::PayloadTooLarge { limit }
            } else {
                ServeError::bad_request(format!("reading the upload body: {e}"))
            }
        })?;
    let store = up.config.store.clone();
    let accepted = tokio::task::spawn_blocking(move || store_car(&store, body))
        .await
        .map_err(|e| ServeError::Internal {
            what: format!("upload task failed: {e}"),
        })??;
    up.accepted.fetch_add(1, Ordering::Relaxed);
    up.stored.fetch_add(accepted.stored, Ordering::Relaxed);
    up.present
        .fetch_add(accepted.already_present, Ordering::Relaxed);
    up.bytes.fetch_add(accepted.bytes, Ordering::Relaxed);
    tracing::info!(
        blocks = accepted.blocks,
        stored = accepted.stored,
        already_present = accepted.already_present,
        "upload accepted"
    );
    Ok((StatusCode::OK, axum::Json(accepted)).into_response())
}

/// Verifies every block of the CAR in `body`, then writes the ones `store` lacks. Nothing is
/// written unless the whole CAR is valid.
fn store_car(store: &DiskStore, body: Bytes) -> Result<Accepted, ServeError> {
    let rejected = |e: &dyn std::fmt::Display| {
        ServeError::bad_request(format!("CAR rejected, nothing was stored: {e}"))
    };
    let mut reader = CarReader::new(&body[..]).map_err(|e| rejected(&e))?;
    let roots = reader.roots().iter().map(|c| c.to_string()).collect();
    let mut blocks: Vec<Block> = Vec::new();
    while let Some(block) = reader.next_block().map_err(|e| rejected(&e))? {
        blocks.push(block);
    }
    let mut out = Accepted {
        roots,
        blocks: blocks.len() as u64,
        stored: 0,
        already_present: 0,
        bytes: 0,
    };
    for block in &blocks {
        out.bytes += block.data().len() as u64;
        if store.has_sync(block.cid()) {
            out.already_present += 1;
        } else {
            store.put_sync(block)?;
            out.stored += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        let dir = tempfile::tempdir().unwrap();
        let up = Uploads::new(UploadConfig {
            store: DiskStore::open(dir.path()).unwrap(),
            token: "s3cret".into(),
            max_bytes: 10,
        });
        assert!(up.authorized(Some("Bearer s3cret")));
        assert!(up.authorized(Some("bearer  s3cret ")));
        assert!(!up.authorized(Some("Bearer s3cre")));
        assert!(!up.authorized(Some("Basic s3cret")));
        assert!(!up.authorized(Some("s3cret")));
        assert!(!up.authorized(None));
    }

    #[test]
    fn a_bad_block_stores_nothing() {
        use crate::block::codec;
        use crate::car::{encode_header, encode_section};
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let good = Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"good"));
        let other = Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"evil"));
        let mut car = encode_header(&[*good.cid()]);
        car.extend(encode_section(&good));
        // A section whose bytes do not hash to its CID.
        let mut bad = encode_section(&other);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        car.extend(bad);
        assert!(store_car(&store, Bytes::from(car.clone())).is_err());
        assert!(!store.has_sync(good.cid()));
        // The good part alone is accepted, and a second upload finds it present.
        let mut car = encode_header(&[*good.cid()]);
        car.extend(encode_section(&good));
        let first = store_car(&store, Bytes::from(car.clone())).unwrap();
        assert_eq!((first.stored, first.already_present), (1, 0));
        let again = store_car(&store, Bytes::from(car)).unwrap();
        assert_eq!((again.stored, again.already_present), (0, 1));
    }
}
