//! IPNS records held by the gateway, keyed by the name's multihash, served as
//! `application/vnd.ipfs.ipns-record` on `/ipns/{name}?format=ipns-record` and
//! `/routing/v1/ipns/{name}`, and accepted on `PUT /routing/v1/ipns/{name}`.
//!
//! A PUT is taken only if the record verifies for that name (`name::verify`: signature,
//! key, validity, size) and its sequence is higher than the held record's; otherwise the
//! answer is 4xx with the reason. Accepted records are written atomically to the record
//! directory (`--ipns-dir`, else `<store>/ipns`) as `<k51name>.ipns-record`.
//!
//! Serving does not re-verify: the directory is the truth, and a file an operator drops
//! there (or one loaded at start, such as the conformance fixtures with their deliberately
//! broken records) is served as stored. Clients verify what they get. `Cache-Control:
//! max-age` is the record's TTL when the record decodes, else [`DEFAULT_RECORD_MAX_AGE`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use bytes::Bytes;

use axum::body::Body;
use axum::extract::{Path as AxumPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use super::error::ServeError;
use super::request::{negotiate, percent_decode, Query, Wanted, IPNS_RECORD_TYPE};
use super::sources::SourceError;
use super::stats::{tagged, RouteKind};
use super::{header_str, set, Gateway};
use crate::name::{self, IpnsName};

/// Largest record accepted (boxo `MaxRecordSize`, SPECS.md §7.1).
pub const MAX_RECORD_SIZE: usize = name::MAX_RECORD_SIZE;
/// Most records loaded from a directory.
pub const MAX_RECORD_FILES: usize = 10_000;
/// `Cache-Control: max-age` for records whose TTL cannot be read (the routing spec's default).
pub const DEFAULT_RECORD_MAX_AGE: u64 = 60;
/// Longest `max-age` sent for a record, whatever its TTL (fixtures carry 100 years).
pub const MAX_RECORD_MAX_AGE: u64 = 365 * 86_400;

/// The binary multihash an IPNS name stands for, whatever its spelling: a CID (base36
/// `k51…`, base32 `bafz…`, CIDv0 `Qm…`) or a bare base58 multihash (`12D3KooW…`).
pub fn name_key(name: &str) -> Result<Vec<u8>, ServeError> {
    parse_name(name).map(|n| n.to_bytes())
}

fn parse_name(name: &str) -> Result<IpnsName, ServeError> {
    name.parse::<IpnsName>().map_err(|e| ServeError::BadName {
        input: name.chars().take(80).collect(),
        reason: e.to_string(),
    })
}

/// Signed IPNS records by name. The lock guards only map operations (no `.await` held);
/// the async mutex serializes PUTs so that check-then-write is atomic.
#[derive(Default)]
pub struct IpnsRecords {
    map: RwLock<HashMap<Vec<u8>, Bytes>>,
    dir: Option<PathBuf>,
    put_lock: tokio::sync::Mutex<()>,
}

impl IpnsRecords {
    /// An empty in-memory set (accepted records are not persisted).
    pub fn new() -> IpnsRecords {
        IpnsRecords::default()
    }

    /// An empty set persisting accepted records in `dir` (created if missing).
    pub fn with_dir(dir: &Path) -> Result<IpnsRecords, SourceError> {
        std::fs::create_dir_all(dir).map_err(|source| SourceError::RecordDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(IpnsRecords {
            dir: Some(dir.to_path_buf()),
            ..IpnsRecords::default()
        })
    }

    /// The directory accepted records are written to, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Stores (or replaces) the record for `name` in memory, unverified.
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

    /// The record for `name`, if held: the file `<dir>/<k51name>.ipns-record` when there is
    /// one (read fresh, so the directory stays the truth), else the copy in memory.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, ServeError> {
        let parsed = parse_name(name)?;
        if let Some(path) = self.record_path(&parsed) {
            let read = tokio::task::spawn_blocking(move || read_record_file(&path))
                .await
                .map_err(|e| ServeError::Internal {
                    what: e.to_string(),
                })?;
            if let Some(bytes) = read? {
                return Ok(Some(bytes));
            }
        }
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(&parsed.to_bytes()).cloned())
    }

    fn record_path(&self, name: &IpnsName) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{name}.ipns-record")))
    }

    /// Accepts `record` for `name` if it verifies and its sequence is higher than the held
    /// record's (a held record that no longer verifies, e.g. expired, does not block it).
    /// Persists it when the set has a directory. Returns the accepted sequence.
    #[tracing::instrument(skip_all, fields(name = %name))]
    pub async fn put(&self, name: &str, record: Bytes) -> Result<u64, ServeError> {
        let parsed = parse_name(name)?;
        let now = SystemTime::now();
        let new = name::verify(&parsed, &record, now).map_err(|e| ServeError::RecordRefused {
            reason: e.to_string(),
        })?;
        let _guard = self.put_lock.lock().await;
        if let Some(held) = self.get(name).await? {
            if let Ok(held) = name::verify(&parsed, &held, now) {
                if new.sequence <= held.sequence {
                    return Err(ServeError::StaleRecord {
                        held: held.sequence,
                        offered: new.sequence,
                    });
                }
            }
        }
        if let Some(path) = self.record_path(&parsed) {
            let bytes = record.clone();
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
                .await
                .map_err(|e| ServeError::Internal {
                    what: e.to_string(),
                })?
                .map_err(|e| ServeError::Internal {
                    what: format!("persisting the record: {e}"),
                })?;
        }
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(parsed.to_bytes(), record);
        tracing::info!(sequence = new.sequence, value = %new.value, "accepted IPNS record");
        Ok(new.sequence)
    }

    /// How many records are held in memory.
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

/// Writes `bytes` to `path` through a temp file in the same directory and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A record file's bytes, `None` if there is no such file; refuses oversize files.
fn read_record_file(path: &Path) -> Result<Option<Bytes>, ServeError> {
    let internal = |e: std::io::Error| ServeError::Internal {
        what: format!("reading {}: {e}", path.display()),
    };
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(internal(e)),
    };
    if len > MAX_RECORD_SIZE as u64 {
        return Err(ServeError::Internal {
            what: format!("{} is {len} bytes, over the record limit", path.display()),
        });
    }
    std::fs::read(path)
        .map(|b| Some(Bytes::from(b)))
        .map_err(internal)
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

/// `GET|HEAD /ipns/{name}[?format=ipns-record]`: the stored record. Content under a name
/// (raw/CAR of what it points at) is not served here: resolve the record, ask `/ipfs/` (406).
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
            record_response(&gw, &name, head, true).await,
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
        Ok(Wanted::IpnsRecord) => record_response(&gw, &name, head, false).await,
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

/// `PUT /routing/v1/ipns/{name}` with a record body (`Content-Type:
/// application/vnd.ipfs.ipns-record`, at most 10 KiB): 200 when accepted; 400 when it does
/// not verify for `name`; 409 when its sequence is not above the held record's; 406 for
/// another content type (SPECS.md §8).
pub async fn routing_put_handler(
    State(gw): State<Arc<Gateway>>,
    AxumPath(name): AxumPath<String>,
    req: Request,
) -> Response {
    let result = async {
        let ct = header_str(req.headers(), header::CONTENT_TYPE).unwrap_or_default();
        let media = ct.split(';').next().unwrap_or_default().trim();
        if !media.eq_ignore_ascii_case(IPNS_RECORD_TYPE) {
            return Err(ServeError::NotAcceptable {
                what: format!("a PUT body of type {ct:?} (send Content-Type: {IPNS_RECORD_TYPE})"),
            });
        }
        let body = axum::body::to_bytes(req.into_body(), MAX_RECORD_SIZE)
            .await
            .map_err(|_| ServeError::RecordRefused {
                reason: format!("body unreadable or over the {MAX_RECORD_SIZE}-byte record limit"),
            })?;
        let seq = gw.records().put(&name, body).await?;
        let mut resp = Response::new(Body::from(format!("accepted sequence {seq}\n")));
        set(
            resp.headers_mut(),
            header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        );
        *resp.status_mut() = StatusCode::OK;
        Ok(resp)
    }
    .await;
    let mut resp = tagged(RouteKind::RoutingIpns, None, result);
    resp.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    resp
}

/// `max-age` for a record: its TTL in seconds when it verifies for `name`, clamped.
fn record_max_age(name: &str, record: &[u8]) -> u64 {
    name.parse::<IpnsName>()
        .ok()
        .and_then(|n| name::verify(&n, record, SystemTime::now()).ok())
        .map_or(DEFAULT_RECORD_MAX_AGE, |r| {
            r.ttl.as_secs().min(MAX_RECORD_MAX_AGE)
        })
}

#[tracing::instrument(skip_all, fields(name = %name))]
async fn record_response(
    gw: &Gateway,
    name: &str,
    head: bool,
    attachment: bool,
) -> Result<Response, ServeError> {
    let record = gw
        .records()
        .get(name)
        .await?
        .ok_or_else(|| ServeError::NameNotFound { name: name.into() })?;
    let max_age = record_max_age(name, &record);
    let digest = Sha256::digest(&record);
    let etag = format!("\"{}\"", hex::encode(digest.get(..16).unwrap_or_default()));
    let mut resp = Response::new(Body::empty());
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, IPNS_RECORD_TYPE);
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        h,
        header::CACHE_CONTROL,
        &format!("public, max-age={max_age}"),
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

    #[tokio::test]
    async fn oversize_record_is_refused() {
        let r = IpnsRecords::new();
        let name = "k51qzi5uqu5dk3v4rmjber23h16xnr23bsggmqqil9z2gduiis5se8dht36dam";
        assert!(r
            .insert(name, Bytes::from(vec![0u8; MAX_RECORD_SIZE + 1]))
            .is_err());
        r.insert(name, Bytes::from_static(b"rec")).unwrap();
        let other = "12D3KooWLQzUv2FHWGVPXTXSZpdHs7oHbXub2G5WC8Tx4NQhyd2d";
        assert_eq!(
            r.get(other).await.unwrap().unwrap(),
            Bytes::from_static(b"rec")
        );
    }
}
