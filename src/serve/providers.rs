//! Delegated routing for providers (SPECS.md §8): `GET /routing/v1/providers/{cid}` answers
//! from the HTTP gateway providers announced to this gateway, and `PUT /routing/v1/providers`
//! takes announcements (our shape, see `fetch::routing`; refused unless the gateway was
//! started to accept them).
//!
//! The table is bounded: [`MAX_KEYS`] CIDs, [`MAX_PER_KEY`] providers per CID (a provider is
//! identified by its first address), and each announcement expires after [`PROVIDER_TTL`]
//! unless it is repeated. Only gateway records (`peer` schema, `transport-ipfs-gateway-http`)
//! with at least one address are kept. Answers are JSON, or NDJSON when the client asks for
//! `application/x-ndjson`; `filter-protocols` is honoured (records here speak one protocol).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cid::Cid;

use super::error::ServeError;
use super::stats::{tagged, RouteKind};
use super::{header_str, set, Gateway};
use crate::block::multihash_key;
use crate::fetch::routing::{
    parse_json, ProviderRecord, RoutingClient, GATEWAY_PROTOCOL, MAX_PROVIDERS,
};

/// Most CIDs with providers held.
pub const MAX_KEYS: usize = 100_000;
/// Most providers held per CID.
pub const MAX_PER_KEY: usize = 20;
/// How long an announcement counts.
pub const PROVIDER_TTL: Duration = Duration::from_secs(24 * 3600);
/// Largest announcement body.
pub const MAX_ANNOUNCE_BYTES: usize = 256 * 1024;

/// Providers of one CID, with when each was announced.
type Entries = Vec<(ProviderRecord, Instant)>;

/// Announced providers by CID (multihash). The mutex guards only map operations (no
/// `.await` while held).
#[derive(Default)]
pub struct Providers {
    table: Mutex<HashMap<Vec<u8>, Entries>>,
}

impl Providers {
    /// An empty table.
    pub fn new() -> Providers {
        Providers::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Entries>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `record` as a provider of `cid` (replacing an entry with the same first
    /// address); `false` when the table is full.
    pub fn add(&self, cid: &Cid, record: ProviderRecord) -> bool {
        let now = Instant::now();
        let key = multihash_key(cid);
        let mut table = self.lock();
        if !table.contains_key(&key) && table.len() >= MAX_KEYS {
            table.retain(|_, v| {
                v.retain(|(_, t)| now.duration_since(*t) < PROVIDER_TTL);
                !v.is_empty()
            });
            if table.len() >= MAX_KEYS {
                return false;
            }
        }
        let list = table.entry(key).or_default();
        list.retain(|(r, t)| {
            r.addrs.first() != record.addrs.first() && now.duration_since(*t) < PROVIDER_TTL
        });
        if list.len() >= MAX_PER_KEY {
            list.remove(0);
        }
        let mut stored = record;
        stored.keys.clear();
        list.push((stored, now));
        true
    }

    /// The live providers of `cid`, newest first.
    pub fn get(&self, cid: &Cid) -> Vec<ProviderRecord> {
        let now = Instant::now();
        let table = self.lock();
        let mut out: Vec<ProviderRecord> = table
            .get(&multihash_key(cid))
            .map(|v| {
                v.iter()
                    .filter(|(_, t)| now.duration_since(*t) < PROVIDER_TTL)
                    .map(|(r, _)| r.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.reverse();
        out.truncate(MAX_PROVIDERS);
        out
    }
}

/// The query of a providers lookup.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ProvidersQuery {
    #[serde(rename = "filter-protocols")]
    filter_protocols: Option<String>,
}

/// `GET /routing/v1/providers/{cid}`.
pub async fn get_handler(
    State(gw): State<Arc<Gateway>>,
    Path(cid_text): Path<String>,
    Query(query): Query<ProvidersQuery>,
    headers: HeaderMap,
) -> Response {
    let cid = match cid_text.parse::<Cid>() {
        Ok(c) => c,
        Err(e) => {
            return tagged(
                RouteKind::Other,
                None,
                Err(ServeError::BadCid {
                    input: cid_text.chars().take(100).collect(),
                    reason: e.to_string(),
                }),
            )
        }
    };
    let mut records = gw.providers().get(&cid);
    if let Some(filter) = &query.filter_protocols {
        let wanted: Vec<String> = filter
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .collect();
        if !wanted.iter().any(|p| p == GATEWAY_PROTOCOL) {
            records.clear();
        }
    }
    let ndjson = header_str(&headers, header::ACCEPT)
        .is_some_and(|a| a.to_ascii_lowercase().contains("application/x-ndjson"));
    let (content_type, body) = if ndjson {
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        ("application/x-ndjson", text)
    } else {
        let body = serde_json::json!({ "Providers": records });
        ("application/json", body.to_string())
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, content_type);
    set(
        h,
        header::CACHE_CONTROL,
        if records.is_empty() {
            "public, max-age=15"
        } else {
            "public, max-age=300"
        },
    );
    set(h, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
    set(h, header::VARY, "Accept");
    tagged(RouteKind::Other, Some(cid), Ok(resp))
}

/// `PUT /routing/v1/providers`: `{"Providers":[record with "Keys"]}`; 204 when every usable
/// record was taken.
pub async fn put_handler(State(gw): State<Arc<Gateway>>, body: Bytes) -> Response {
    tagged(RouteKind::Other, None, put(&gw, &body))
}

fn put(gw: &Gateway, body: &[u8]) -> Result<Response, ServeError> {
    if !gw.accepts_announcements() {
        return Err(ServeError::NotAcceptable {
            what: "provider announcements (start the gateway with --accept-providers)".into(),
        });
    }
    if body.len() > MAX_ANNOUNCE_BYTES {
        return Err(ServeError::PayloadTooLarge {
            limit: MAX_ANNOUNCE_BYTES,
        });
    }
    let records =
        parse_json(body).map_err(|e| ServeError::bad_request(format!("providers JSON: {e}")))?;
    let mut taken = 0usize;
    for r in records {
        if !r.is_gateway() || r.addrs.is_empty() || r.keys.is_empty() {
            continue;
        }
        for key in r.keys.iter().take(MAX_PROVIDERS) {
            let cid = key.parse::<Cid>().map_err(|e| ServeError::BadCid {
                input: key.chars().take(100).collect(),
                reason: e.to_string(),
            })?;
            if !gw.providers().add(&cid, r.clone()) {
                return Err(ServeError::Busy { limit: MAX_KEYS });
            }
            taken += 1;
        }
    }
    if taken == 0 {
        return Err(ServeError::bad_request(format!(
            "no usable provider record: send peer records with Protocols [{GATEWAY_PROTOCOL}], Addrs and Keys"
        )));
    }
    tracing::info!(keys = taken, "provider announcement accepted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How often a gateway repeats its announcement (well inside [`PROVIDER_TTL`]).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(3600);
/// How soon a failed announcement is retried.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(30);

/// Announces `record` to every endpoint in `routing`, now and then every
/// [`ANNOUNCE_EVERY`] (a failed endpoint is retried after 30 s); runs until dropped.
pub async fn announce_loop(routing: Vec<RoutingClient>, record: ProviderRecord) {
    loop {
        let mut failed = false;
        for r in &routing {
            match r.announce(&record).await {
                Ok(()) => {
                    tracing::info!(routing = %r.base(), keys = record.keys.len(), addrs = ?record.addrs, "announced as a provider")
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(routing = %r.base(), "provider announcement failed: {e}");
                }
            }
        }
        tokio::time::sleep(if failed {
            ANNOUNCE_RETRY
        } else {
            ANNOUNCE_EVERY
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_keeps_one_entry_per_address_and_is_bounded() {
        let p = Providers::new();
        let cid: Cid = "bafkqaaa".parse().unwrap();
        let rec = |a: &str| ProviderRecord::gateway("id", vec![a.into()], vec![]);
        assert!(p.add(&cid, rec("/ip4/127.0.0.1/tcp/1/http")));
        assert!(p.add(&cid, rec("/ip4/127.0.0.1/tcp/1/http")));
        assert_eq!(p.get(&cid).len(), 1);
        for port in 2..40 {
            p.add(&cid, rec(&format!("/ip4/127.0.0.1/tcp/{port}/http")));
        }
        let got = p.get(&cid);
        assert_eq!(got.len(), MAX_PER_KEY);
        assert_eq!(
            got[0].addrs[0], "/ip4/127.0.0.1/tcp/39/http",
            "newest first"
        );
    }
}
