//! `GET|HEAD /ipfs/{cid}?format=raw`: one block, byte for byte, with the trustless gateway's
//! headers (SPECS.md §6.2), `Range` (206/416) and `If-None-Match` (304). Identity CIDs are
//! answered from the CID itself (so the `bafkqaaa` probe is 200 with an empty body).

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::error::ServeError;
use super::request::{parse_range, ContentPath, RAW_TYPE};
use super::{header_str, not_modified, set, Gateway};

/// Headers every immutable `/ipfs/` response carries.
pub(crate) const IMMUTABLE: &str = "public, max-age=29030400, immutable";

/// Answers a raw-block request.
#[tracing::instrument(skip_all, fields(cid = %path.cid))]
pub async fn serve_raw(
    gw: &Gateway,
    path: &ContentPath,
    req_headers: &HeaderMap,
    head: bool,
) -> Result<Response, ServeError> {
    if !path.segments.is_empty() {
        return Err(ServeError::bad_request(format!(
            "a raw block has no path: ask for /ipfs/{} alone (or use format=car for a path)",
            path.cid_text
        )));
    }
    let cid = path.cid;
    let block = gw
        .store()
        .get(&cid)
        .await?
        .ok_or(ServeError::BlockNotFound { cid })?;
    let data = block.data().clone();
    let size = data.len() as u64;
    let etag = format!("\"{cid}.raw\"");

    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, RAW_TYPE);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, IMMUTABLE);
    set(h, header::ETAG, &etag);
    set(h, header::ACCEPT_RANGES, "bytes");
    set(h, header::VARY, "Accept");
    set(
        h,
        header::HeaderName::from_static("x-ipfs-path"),
        &format!("/ipfs/{}", path.cid_text),
    );
    set(
        h,
        header::HeaderName::from_static("x-ipfs-roots"),
        &cid.to_string(),
    );
    set(
        h,
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{cid}.bin\""),
    );
    if not_modified(req_headers, &etag) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    let (status, body) = match parse_range(header_str(req_headers, header::RANGE), size)? {
        Some((start, end)) => {
            set(
                resp.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes {start}-{}/{size}", end - 1),
            );
            let (start, end) = (start as usize, end as usize);
            if start >= end || end > data.len() {
                return Err(ServeError::RangeNotSatisfiable { size });
            }
            (StatusCode::PARTIAL_CONTENT, data.slice(start..end))
        }
        None => (StatusCode::OK, data),
    };
    *resp.status_mut() = status;
    set(
        resp.headers_mut(),
        header::CONTENT_LENGTH,
        &body.len().to_string(),
    );
    if !head {
        *resp.body_mut() = Body::from(body);
    }
    Ok(resp)
}
