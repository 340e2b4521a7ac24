//! Provider discovery: asks the configured delegated-routing endpoints which HTTP gateways
//! provide the mounted root (at start, before the root is read, and again for every new
//! root a name mount moves to) and adds them to the fetcher's sources, where they are
//! health-scored like configured gateways and can never deliver an unverified byte.
//!
//! Bounded: each round waits at most [`ROUND_LIMIT`], at most [`MAX_DISCOVERED`] providers
//! are added for the life of the mount, and a new root is noticed by looking every
//! [`ROOT_POLL`].

use std::sync::Arc;
use std::time::Duration;

use cid::Cid;

use crate::dist::DistView;
use crate::fetch::routing::RoutingClient;
use crate::fetch::{Fetcher, ORIGIN_ROUTING};

/// Most providers added through routing.
pub const MAX_DISCOVERED: usize = 8;
/// How long one discovery round may take (all endpoints asked at once).
pub const ROUND_LIMIT: Duration = Duration::from_secs(5);
/// How often the root is checked for a change.
pub const ROOT_POLL: Duration = Duration::from_secs(5);

/// One round: asks every endpoint for providers of `root` (concurrently, bounded by
/// [`ROUND_LIMIT`]) and adds new gateway URLs until [`MAX_DISCOVERED`]; the URLs added.
#[tracing::instrument(skip_all, fields(root = %root))]
pub async fn discover(routing: &[RoutingClient], fetcher: &Fetcher, root: Cid) -> Vec<String> {
    let asks = routing
        .iter()
        .map(|r| async move { (r.base().to_string(), r.providers(&root).await) });
    let answers = match tokio::time::timeout(ROUND_LIMIT, futures::future::join_all(asks)).await {
        Ok(a) => a,
        Err(_) => {
            tracing::warn!(limit = ?ROUND_LIMIT, "provider discovery took too long; skipped this round");
            return Vec::new();
        }
    };
    let mut added = Vec::new();
    for (endpoint, answer) in answers {
        let records = match answer {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(routing = %endpoint, "provider lookup failed: {e}");
                continue;
            }
        };
        for url in records.iter().flat_map(|r| r.gateway_urls()) {
            let known = fetcher
                .stats()
                .iter()
                .filter(|s| s.origin == ORIGIN_ROUTING)
                .count();
            if known >= MAX_DISCOVERED {
                tracing::info!(
                    max = MAX_DISCOVERED,
                    "provider cap reached; not adding more"
                );
                return added;
            }
            match fetcher.add_gateway(&url, ORIGIN_ROUTING) {
                Ok(true) => {
                    tracing::info!(routing = %endpoint, gateway = %url, "added a provider found through routing");
                    added.push(url);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(gateway = %url, "provider not usable: {e}"),
            }
        }
    }
    added
}

/// Runs a discovery round whenever the view's root changes; runs until dropped.
pub async fn follow_roots(
    routing: Arc<Vec<RoutingClient>>,
    fetcher: Fetcher,
    view: Arc<DistView>,
    mut last: Cid,
) {
    let mut tick = tokio::time::interval(ROOT_POLL);
    loop {
        tick.tick().await;
        let now = view.root_cid();
        if now != last {
            last = now;
            discover(&routing, &fetcher, now).await;
        }
    }
}
