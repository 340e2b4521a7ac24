//! `GET|HEAD /ipfs/{cid}[/path]?format=car`: a CARv1 stream of the blocks that prove the path
//! and the part of the DAG the request's `dag-scope`/`entity-bytes` asks for (SPECS.md §6.1).
//!
//! The path is resolved before the response starts, so a missing root or segment is a clean
//! 404. Then a task walks the DAG and feeds sections through a small bounded channel, so a
//! CAR of any size streams in bounded memory and a slow client slows the walk. A block that
//! turns out to be missing after the 200 has been sent aborts the body: the connection is
//! closed without the final chunk, so clients see a truncated transfer rather than a short
//! CAR that looks complete (the error is logged). The walk itself (path blocks, HAMT shards
//! on the hash path, scope, ranges, dups, no identity blocks) is [`crate::walk::CarWalker`].

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use cid::Cid;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::error::ServeError;
use super::metrics::Metrics;
use super::raw::IMMUTABLE;
use super::request::{CarParams, ContentPath, DagScope};
use super::stats::RouteKind;
use super::{not_modified, set, Gateway};
use crate::car::{encode_header, encode_section};
use crate::store::BlockStore;
use crate::unixfs::ByteRange;
use crate::walk::{self, CarOptions, CarWalker};

/// Sections buffered between the walking task and the socket (each at most one 2 MiB
/// block, so one response holds at most ~16 MiB ahead of a slow client).
const CHANNEL_DEPTH: usize = 8;

type Chunk = Result<Bytes, ServeError>;

/// Answers a CAR request.
#[tracing::instrument(skip_all, fields(cid = %path.cid))]
pub async fn serve_car(
    gw: &Gateway,
    path: &ContentPath,
    params: CarParams,
    req_headers: &HeaderMap,
    head: bool,
) -> Result<Response, ServeError> {
    let store = gw.store().clone();
    let roots = segment_cids(store.as_ref(), path).await?;
    let etag = car_etag(path, &params);

    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, &params.content_type());
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::CACHE_CONTROL, IMMUTABLE);
    set(h, header::ETAG, &etag);
    set(h, header::VARY, "Accept");
    set(h, header::ACCEPT_RANGES, "none");
    let mut ipfs_path = format!("/ipfs/{}", path.cid_text);
    for s in &path.segments {
        ipfs_path.push('/');
        ipfs_path.push_str(&percent_encode_segment(s));
    }
    set(
        h,
        header::HeaderName::from_static("x-ipfs-path"),
        &ipfs_path,
    );
    let roots: Vec<String> = roots.iter().map(Cid::to_string).collect();
    set(
        h,
        header::HeaderName::from_static("x-ipfs-roots"),
        &roots.join(","),
    );
    set(
        h,
        header::CONTENT_DISPOSITION,
        &format!("attachment; filename=\"{}.car\"", path.cid),
    );
    if not_modified(req_headers, &etag) {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    if head {
        return Ok(resp);
    }

    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL_DEPTH);
    let (ready_tx, ready_rx) = oneshot::channel();
    let root = path.cid;
    let segments = path.segments.clone();
    let opts = CarOptions {
        scope: match params.scope {
            DagScope::Block => walk::DagScope::Block,
            DagScope::Entity => walk::DagScope::Entity,
            DagScope::All => walk::DagScope::All,
        },
        entity_bytes: params.entity_bytes.map(|eb| ByteRange {
            from: eb.from,
            to: eb.to,
        }),
        dups: params.dups,
    };
    let metrics = Arc::clone(gw.metrics());
    tokio::spawn(
        stream_car(store, root, segments, opts, ready_tx, (tx, metrics))
            .instrument(tracing::Span::current()),
    );
    // The task resolves the path first: a failure there is still a clean error status.
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            return Err(ServeError::Internal {
                what: "CAR task ended before resolving the path".into(),
            })
        }
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    *resp.body_mut() = Body::from_stream(stream);
    Ok(resp)
}

/// The root and the CID each path segment names (what `X-Ipfs-Roots` lists). Resolving here
/// also answers a missing root or segment with 404 before anything is streamed.
async fn segment_cids(store: &dyn BlockStore, path: &ContentPath) -> Result<Vec<Cid>, ServeError> {
    let mut roots = Vec::with_capacity(path.segments.len() + 1);
    let mut current = path.cid;
    walk::get_block(store, &current)
        .await
        .map_err(|e| walk_error(path, e))?;
    roots.push(current);
    for seg in &path.segments {
        current = walk::resolve_path(store, &current, &[seg.as_str()])
            .await
            .map_err(|e| walk_error(path, e))?;
        roots.push(current);
    }
    Ok(roots)
}

/// Maps a walk failure to the gateway's status table.
fn walk_error(path: &ContentPath, e: walk::WalkError) -> ServeError {
    if let Some(cid) = e.missing_block() {
        if *cid == path.cid {
            return ServeError::BlockNotFound { cid: *cid };
        }
    }
    if e.is_not_found()
        || e.missing_block().is_some()
        || matches!(e, walk::WalkError::NotADirectory { .. })
    {
        let reason = match &e {
            walk::WalkError::NotADirectory { cid, .. } => {
                format!("{cid} is not a directory (pathing into non-UnixFS data is not supported)")
            }
            other => other.to_string(),
        };
        return ServeError::PathNotFound {
            root: path.cid.to_string(),
            path: path.segments.join("/"),
            reason,
        };
    }
    ServeError::Walk(Box::new(e))
}

/// The walking task: resolves, reports readiness, then streams header and sections (each
/// counted in `metrics` once handed to the body). A walk error after the start is sent as the
/// stream's last item, which aborts the response.
async fn stream_car(
    store: Arc<dyn BlockStore>,
    root: Cid,
    segments: Vec<String>,
    opts: CarOptions,
    ready: oneshot::Sender<Result<(), ServeError>>,
    (tx, metrics): (mpsc::Sender<Chunk>, Arc<Metrics>),
) {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let mut walker = CarWalker::new(store.as_ref(), root, &segs, opts);
    if let Err(e) = walker.resolve().await {
        let cp = ContentPath {
            cid: root,
            cid_text: root.to_string(),
            segments: segments.clone(),
        };
        let _ = ready.send(Err(walk_error(&cp, e)));
        return;
    }
    if ready.send(Ok(())).is_err() {
        return;
    }
    if tx
        .send(Ok(Bytes::from(encode_header(&[root]))))
        .await
        .is_err()
    {
        return;
    }
    loop {
        match walker.next_block().await {
            Ok(Some(block)) => {
                if tx
                    .send(Ok(Bytes::from(encode_section(&block))))
                    .await
                    .is_err()
                {
                    return; // the client went away
                }
                metrics.block_sent(RouteKind::Car);
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(cid = %root, error = %e, "CAR stream ended early; aborting the response");
                let _ = tx.send(Err(ServeError::Walk(Box::new(e)))).await;
                return;
            }
        }
    }
}

/// A strong validator: the CAR for a given root, path and parameters is deterministic
/// (order=dfs), so hash those.
fn car_etag(path: &ContentPath, params: &CarParams) -> String {
    let mut h = Sha256::new();
    h.update(path.cid.to_bytes());
    for s in &path.segments {
        h.update([0]);
        h.update(s.as_bytes());
    }
    h.update(format!("{:?}", params).as_bytes());
    let d = h.finalize();
    format!(
        "\"{}.car.{}\"",
        path.cid,
        hex::encode(d.get(..8).unwrap_or_default())
    )
}

/// Percent-encodes a path segment for a header (keeps unreserved ASCII).
fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
