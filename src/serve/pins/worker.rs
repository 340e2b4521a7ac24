//! The background walk of one pin request: waits for a worker slot, takes its root's lock
//! (one walk per root at a time), marks the request `pinning`, and pins the DAG into the
//! store through a [`CacheStore`] over the service's quota whose fetcher asks the request's
//! origins, then the upstreams. A walk that fails for a reason that may pass (a source down,
//! a timeout, a block not found yet) is tried again after a growing delay, at most
//! [`super::PinConfig::attempts`] times; then the request is `failed` with `info.reason`.
//! Every wait is bounded: the fetcher's per-block deadline and retry budget bound each walk.

use std::sync::Arc;

use cid::Cid;

use super::records::LABEL_PREFIX;
use super::PinService;
use crate::fetch::multiaddr::gateway_url;
use crate::fetch::pinning::{Pin, PinState};
use crate::fetch::Fetcher;
use crate::store::cache::CacheStore;
use crate::store::pins::{PinError, PinProgress, PinReport};

/// Walks request `id` to pinned or failed (see the module doc). Logs; never fails.
#[tracing::instrument(skip_all, fields(requestid = %id))]
pub(super) async fn walk(svc: Arc<PinService>, id: String) {
    let Ok(_slot) = svc.workers.acquire().await else {
        return;
    };
    let Some(status) = svc.get(&id) else {
        return; // deleted while queued
    };
    let outcome = match Cid::try_from(status.pin.cid.as_str()) {
        Err(e) => Some(Err(format!("cid {:?}: {e}", status.pin.cid))),
        Ok(cid) => {
            let lock = svc.root_lock(cid);
            let _one_walk = lock.lock().await;
            match svc
                .update(&id, |e| {
                    e.status.status = PinState::Pinning;
                    set_info(e, "status_details", "fetching".into());
                })
                .await
            {
                None => None,
                Some(_) => Some(walk_with_retries(&svc, &id, cid, &status.pin).await),
            }
        }
    };
    let mut replaced = None;
    if let Some(outcome) = outcome {
        let done = svc
            .update(&id, |e| {
                e.status.info.clear();
                match &outcome {
                    Ok(r) => {
                        e.status.status = PinState::Pinned;
                        set_info(e, "dag_size", r.bytes.to_string());
                        set_info(e, "blocks", r.blocks.to_string());
                        set_info(e, "fetched_blocks", r.fetched.to_string());
                    }
                    Err(reason) => {
                        e.status.status = PinState::Failed;
                        set_info(e, "reason", reason.clone());
                        set_info(e, "status_details", reason.clone());
                    }
                }
                replaced = e.replaces.take();
            })
            .await;
        match (&outcome, done.is_some()) {
            (Ok(r), true) => {
                tracing::info!(cid = %status.pin.cid, blocks = r.blocks, bytes = r.bytes, "pinned")
            }
            (Err(reason), true) => tracing::warn!(cid = %status.pin.cid, "pin failed: {reason}"),
            (_, false) => {
                tracing::info!(cid = %status.pin.cid, "pin request deleted while it was walked")
            }
        }
    }
    // The request may have been deleted or failed; a replaced root is no longer needed.
    svc.release_if_unused(&status.pin.cid).await;
    if let Some(old) = replaced {
        svc.release_if_unused(&old).await;
    }
}

/// Pins `cid` into the store, trying again while the failure may pass; the report, or the
/// reason it failed.
async fn walk_with_retries(
    svc: &Arc<PinService>,
    id: &str,
    cid: Cid,
    pin: &Pin,
) -> Result<PinReport, String> {
    let mut sources: Vec<String> = Vec::new();
    for origin in &pin.origins {
        match gateway_url(origin) {
            Some(url) if !sources.contains(&url) => sources.push(url),
            Some(_) => {}
            None => tracing::debug!(origin, "origin names no HTTP gateway; skipped"),
        }
    }
    for url in &svc.config.upstreams {
        if !sources.contains(url) {
            sources.push(url.clone());
        }
    }
    let fetcher =
        Fetcher::from_gateways(&sources, svc.config.fetch.clone()).map_err(|e| e.to_string())?;
    let cache = CacheStore::with_quota(Arc::clone(&svc.quota), fetcher);
    let label = format!("{LABEL_PREFIX}{cid}");
    let progress = |p: PinProgress| {
        svc.note(id, |e| {
            let text = format!(
                "{} blocks ({} bytes) walked, {} more found",
                p.blocks, p.bytes, p.queued
            );
            set_info(e, "status_details", text);
        })
    };
    let mut delay = svc.config.retry_delay;
    let mut attempt = 1;
    loop {
        let err = match cache.pin(cid, &[], &label, &progress).await {
            Ok(report) => return Ok(report),
            Err(e) => e,
        };
        let may_pass = matches!(&err, PinError::Block { source, .. }
            if source.is_retryable() || source.is_not_found());
        if !may_pass || attempt >= svc.config.attempts || svc.get(id).is_none() {
            let mut reason = err.to_string();
            if sources.is_empty() {
                reason.push_str(
                    " (the pin named no origin this service can reach: give origins as \
                     /ip4|/dns/<host>/tcp/<port>/http or .../tls/http multiaddrs of a gateway \
                     that has the data)",
                );
            } else if attempt > 1 {
                reason.push_str(&format!(" (after {attempt} attempts)"));
            }
            return Err(reason);
        }
        tracing::info!(attempt, ?delay, "pin attempt failed, trying again: {err}");
        svc.note(id, |e| {
            let text = format!("attempt {attempt} failed ({err}); trying again in {delay:?}");
            set_info(e, "status_details", text);
        });
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
        attempt += 1;
    }
}

fn set_info(e: &mut super::records::Entry, key: &str, value: String) {
    e.status
        .info
        .insert(key.to_string(), serde_json::Value::String(value));
}
