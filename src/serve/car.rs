//! `GET|HEAD /ipfs/{cid}[/path]?format=car`: a CARv1 stream of the blocks that prove the path
//! and the part of the DAG the request's `dag-scope`/`entity-bytes` asks for (SPECS.md §6.1).
//!
//! The path is resolved before the response starts, so a missing root or segment is a clean
//! 404. Then a task walks the DAG and feeds sections through a small bounded channel, so a
//! CAR of any size streams in bounded memory and a slow client slows the walk. A block that
//! turns out to be missing after the 200 has been sent aborts the body: the connection is
//! closed without the final chunk, so clients see a truncated transfer rather than a short
//! CAR that looks complete (the error is logged). Identity blocks are never written.

use std::collections::HashSet;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use cid::Cid;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::dag::{self, Resolved, Sink};
use super::error::ServeError;
use super::raw::IMMUTABLE;
use super::request::{CarParams, ContentPath, DagScope};
use super::{not_modified, set, Gateway};
use crate::block::{mh, Block};
use crate::car::{encode_header, encode_section};
use crate::store::BlockStore;

/// Sections buffered between the walking task and the socket.
const CHANNEL_DEPTH: usize = 16;

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
    let resolved = dag::resolve(store.as_ref(), path.cid, &path.segments).await?;
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
    let roots: Vec<String> = resolved.roots.iter().map(Cid::to_string).collect();
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

    let (tx, rx) = mpsc::channel::<Result<Bytes, ServeError>>(CHANNEL_DEPTH);
    let root = path.cid;
    tokio::spawn(async move {
        if let Err(e) = stream_car(store, root, resolved, params, &tx).await {
            tracing::warn!(cid = %root, error = %e, "CAR stream ended early");
            let _ = tx.send(Err(e)).await;
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    *resp.body_mut() = Body::from_stream(stream);
    Ok(resp)
}

/// Writes the header, the path blocks and the scoped walk into `tx`. Returns `Ok` early when
/// the client has gone away.
async fn stream_car(
    store: std::sync::Arc<dyn BlockStore>,
    root: Cid,
    resolved: Resolved,
    params: CarParams,
    tx: &mpsc::Sender<Result<Bytes, ServeError>>,
) -> Result<(), ServeError> {
    let mut out = Emitter {
        tx,
        seen: HashSet::new(),
        dups: params.dups,
        closed: false,
    };
    out.send(Bytes::from(encode_header(&[root]))).await;
    let terminal = resolved.path.last().cloned();
    for block in &resolved.path {
        out.block(block).await;
    }
    let Some(terminal) = terminal else {
        return Ok(());
    };
    match params.scope {
        DagScope::Block if params.entity_bytes.is_none() => Ok(()),
        DagScope::All if params.entity_bytes.is_none() => {
            dag::walk(store.as_ref(), &terminal, dag::Scope::All, &mut out).await
        }
        _ => {
            let scope = match params.entity_bytes {
                Some(eb) => dag::Scope::Bytes(eb),
                None => dag::Scope::Entity,
            };
            dag::walk(store.as_ref(), &terminal, scope, &mut out).await
        }
    }
}

/// Turns blocks into CAR sections on the channel, dropping identity blocks and (with
/// `dups=n`) repeats.
pub(crate) struct Emitter<'a> {
    tx: &'a mpsc::Sender<Result<Bytes, ServeError>>,
    seen: HashSet<Cid>,
    dups: bool,
    closed: bool,
}

impl Emitter<'_> {
    async fn send(&mut self, bytes: Bytes) {
        if !self.closed && self.tx.send(Ok(bytes)).await.is_err() {
            self.closed = true;
        }
    }
}

impl dag::Sink for Emitter<'_> {
    /// Whether the walk should descend into this block's children (false for a repeat when
    /// `dups=n`: its subtree was already written).
    async fn block(&mut self, block: &Block) -> bool {
        if block.cid().hash().code() == mh::IDENTITY {
            return true;
        }
        let first = self.seen.insert(*block.cid());
        if !first && !self.dups {
            return false;
        }
        self.send(Bytes::from(encode_section(block))).await;
        true
    }

    fn closed(&self) -> bool {
        self.closed
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
