//! IPNS records held by the gateway: an in-memory map from a name's multihash to the signed
//! record bytes, loaded at start from a directory (`<name>.ipns-record`, or
//! `<name>_<anything>.ipns-record` as in the conformance fixtures) and extendable with
//! [`IpnsRecords::insert`]. Served as `application/vnd.ipfs.ipns-record` on
//! `/ipns/{name}?format=ipns-record` and `/routing/v1/ipns/{name}`.
//!
//! Records are served as stored; verifying them (and reading their TTL for `Cache-Control`)
//! needs the IPNS CBOR decoder of a later issue. Until then `max-age` is a fixed
//! [`DEFAULT_RECORD_MAX_AGE`] seconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use bytes::Bytes;
use cid::multibase;
use cid::Cid;
use multihash::Multihash;

use axum::body::Body;
use axum::extract::{Path as AxumPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::error::ServeError;
use super::request::{negotiate, percent_decode, Query, Wanted, IPNS_RECORD_TYPE};
use super::sources::SourceError;
use super::stats::{tagged, RouteKind};
use super::{header_str, set, Gateway};

/// Largest record accepted (boxo `MaxRecordSize`, SPECS.md §7.1).
pub const MAX_RECORD_SIZE: usize = 10 * 1024;
/// Most records loaded from a directory.
pub const MAX_RECORD_FILES: usize = 10_000;
/// `Cache-Control: max-age` for records until TTLs are decoded (the routing spec's default).
pub const DEFAULT_RECORD_MAX_AGE: u64 = 60;

/// The binary multihash an IPNS name stands for, whatever its spelling: a CID (base36
/// `k51…`, base32 `bafz…`, CIDv0 `Qm…`) or a bare base58 multihash (`12D3KooW…`).
pub fn name_key(name: &str) -> Result<Vec<u8>, ServeError> {
    if name.is_empty() || name.len() > 256 {
        return Err(ServeError::BadName {
            input: name.chars().take(80).collect(),
            reason: "length must be 1..=256".into(),
        });
    }
    if let Ok(cid) = Cid::try_from(name) {
        return Ok(cid.hash().to_bytes());
    }
    let bytes = multibase::Base::Base58Btc
        .decode(name)
        .map_err(|e| ServeError::BadName {
            input: name.into(),
            reason: format!("not a CID or base58 multihash: {e}"),
        })?;
    let mh = Multihash::<64>::from_bytes(&bytes).map_err(|e| ServeError::BadName {
        input: name.into(),
        reason: format!("not a multihash: {e}"),
    })?;
    Ok(mh.to_bytes())
}

/// Signed IPNS records by name. The lock guards only map operations (no `.await` held).
#[derive(Default)]
pub struct IpnsRecords {
    map: RwLock<HashMap<Vec<u8>, Bytes>>,
}

impl IpnsRecords {
    /// An empty set.
    pub fn new() -> IpnsRecords {
        IpnsRecords::default()
    }

    /// Stores (or replaces) the record for `name`.
    pub fn insert(&self, name: &str, record: Bytes) -> Result<(), ServeError> {
        if record.len() > MAX_RECORD_SIZE {
            return Err(ServeError::bad_request(format!(
                "IPNS record is {} bytes, over the {MAX_RECORD_SIZE}-byte limit",
                record.len()
            )));
        }
        let key = name_key(name)?;
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, record);
        Ok(())
    }

    /// The record for `name`, if held.
    pub fn get(&self, name: &str) -> Result<Option<Bytes>, ServeError> {
        let key = name_key(name)?;
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(&key).cloned())
    }

    /// How many records are held.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads every `*.ipns-record` file in `dir` (on a blocking thread). The name is the file
    /// stem up to the first `_` (IPNS names never contain `_`). Returns how many were loaded.
    pub async fn load_dir(&self, dir: &Path) -> Result<usize, SourceError> {
        let dir = dir.to_path_buf();
        let found = tokio::task::spawn_blocking(move || read_record_dir(&dir))
            .await
            .map_err(|e| SourceError::Task(e.to_string()))??;
        let n = found.len();
        for (path, name, bytes) in found {
            self.insert(&name, bytes).map_err(|e| SourceError::Record {
                path,
                reason: e.to_string(),
            })?;
        }
        Ok(n)
    }
}

type RecordFile = (PathBuf, String, Bytes);

fn read_record_dir(dir: &Path) -> Result<Vec<RecordFile>, SourceError> {
    let dir_err = |source| SourceError::RecordDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_err)? {
        let path = entry.map_err(dir_err)?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ipns-record"))
        else {
            continue;
        };
        let name = stem.split('_').next().unwrap_or(stem).to_string();
        if out.len() >= MAX_RECORD_FILES {
            return Err(SourceError::Record {
                path,
                reason: format!("more than {MAX_RECORD_FILES} records in the directory"),
            });
        }
        let rec_err = |reason: String| SourceError::Record {
            path: path.clone(),
            reason,
        };
        let len = std::fs::metadata(&path)
            .map_err(|e| rec_err(e.to_string()))?
            .len();
        if len > MAX_RECORD_SIZE as u64 {
            return Err(rec_err(format!(
                "{len} bytes, over the {MAX_RECORD_SIZE}-byte record limit"
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| rec_err(e.to_string()))?;
        out.push((path, name, Bytes::from(bytes)));
    }
    Ok(out)
}

/// `GET|HEAD /ipns/{name}[?format=ipns-record]`: the stored record. Resolving a name to
/// content (raw/CAR of what it points at) needs record verification, a later issue: 406.
pub async fn gateway_handler(
    State(gw): State<Arc<Gateway>>,
    axum::extract::Query(query): axum::extract::Query<Query>,
    req: Request,
) -> Response {
    let rest = req.uri().path().strip_prefix("/ipns/").unwrap_or_default();
    let result = (|| {
        let (name, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let name = percent_decode(name)?;
        let accept = header_str(req.headers(), header::ACCEPT);
        match negotiate(query.format.as_deref(), accept)? {
            Wanted::IpnsRecord => {}
            _ => {
                return Err(ServeError::NotAcceptable {
                    what: "content under /ipns/ (only format=ipns-record is served here; \
                           resolve the record and ask /ipfs/)"
                        .into(),
                })
            }
        }
        if !tail.is_empty() {
            return Err(ServeError::bad_request(
                "an IPNS record has no path: ask for /ipns/{name} alone",
            ));
        }
        Ok(name)
    })();
    let head = req.method() == Method::HEAD;
    match result {
        Ok(name) => tagged(
            RouteKind::IpnsRecord,
            None,
            record_response(&gw, &name, head, true),
        ),
        Err(e) => tagged(RouteKind::IpnsRecord, None, Err(e)),
    }
}

/// `GET|HEAD /routing/v1/ipns/{name}` with `Accept: application/vnd.ipfs.ipns-record`
/// (SPECS.md §8: 406 when the Accept header does not ask for a record).
pub async fn routing_handler(
    State(gw): State<Arc<Gateway>>,
    AxumPath(name): AxumPath<String>,
    req: Request,
) -> Response {
    let head = req.method() == Method::HEAD;
    let accept = header_str(req.headers(), header::ACCEPT);
    let result = match negotiate(None, accept) {
        Ok(Wanted::IpnsRecord) => record_response(&gw, &name, head, false),
        _ => Err(ServeError::NotAcceptable {
            what: format!("routing needs Accept: {IPNS_RECORD_TYPE}"),
        }),
    };
    let mut resp = tagged(RouteKind::RoutingIpns, None, result);
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

#[tracing::instrument(skip_all, fields(name = %name))]
fn record_response(
    gw: &Gateway,
    name: &str,
    head: bool,
    attachment: bool,
) -> Result<Response, ServeError> {
    let record = gw
        .records()
        .get(name)?
        .ok_or_else(|| ServeError::NameNotFound { name: name.into() })?;
    let digest = Sha256::digest(&record);
    let etag = format!("\"{}\"", hex::encode(digest.get(..16).unwrap_or_default()));
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, IPNS_RECORD_TYPE);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        h,
        header::CACHE_CONTROL,
        &format!("public, max-age={DEFAULT_RECORD_MAX_AGE}"),
    );
    set(h, header::ETAG, &etag);
    set(h, header::VARY, "Accept");
    set(h, header::CONTENT_LENGTH, &record.len().to_string());
    if attachment {
        set(
            h,
            header::CONTENT_DISPOSITION,
            &format!("attachment; filename=\"{name}.ipns-record\""),
        );
    }
    if !head {
        *resp.body_mut() = Body::from(record);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_spellings_share_a_key() {
        // SPECS.md §7.2 vector: three spellings of one Ed25519 name.
        let a = name_key("12D3KooWLQzUv2FHWGVPXTXSZpdHs7oHbXub2G5WC8Tx4NQhyd2d").unwrap();
        let b = name_key("k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam").unwrap();
        let c =
            name_key("bafzaajaiaejcbhltvusd6q2t7tm3lmke4vu4lieeerm25eihikbh3ncjntnm6t6o").unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(name_key("not a name!").is_err());
    }

    #[test]
    fn oversize_record_is_refused() {
        let r = IpnsRecords::new();
        let name = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
        assert!(r
            .insert(name, Bytes::from(vec![0u8; MAX_RECORD_SIZE + 1]))
            .is_err());
        r.insert(name, Bytes::from_static(b"rec")).unwrap();
        let other = "12D3KooWLQzUv2FHWGVPXTXSZpdHs7oHbXub2G5WC8Tx4NQhyd2d";
        assert_eq!(r.get(other).unwrap().unwrap(), Bytes::from_static(b"rec"));
    }
}
