//! Parsing what a request asks for, with no I/O: the content path (`/ipfs/{cid}/a/b`, bounded
//! in length and depth, each segment percent-decoded once), the response format
//! (`?format=` versus `Accept`, IPIP-0523), the CAR parameters (`dag-scope`, `entity-bytes`,
//! `car-version`/`car-order`/`car-dups` and their `Accept` twins) and a single `Range`.
//!
//! Format rules for this strict trustless gateway (SPECS.md §6.1–6.2):
//! - `format=` wins over `Accept` when both are present (IPIP-0523).
//! - A known gateway format we do not produce (`tar`, `dag-json`, `dag-cbor`, `json`,
//!   `cbor`), or an `Accept` that names only types we do not produce (e.g. `application/json`),
//!   is **406**: the request is well-formed, we just cannot answer it in that form.
//! - No `format=` and no `Accept` at all (or only `*/*`) is **400**: the spec lets a
//!   trustless-only gateway refuse requests that do not say which verifiable type they want,
//!   and 400 tells the client its request is incomplete rather than that a type is missing.
//! - An unknown `format=` value is 400 (a typo, not a negotiation).

use cid::Cid;

use super::error::ServeError;

/// Longest request path we look at.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most segments after the CID.
pub const MAX_PATH_DEPTH: usize = 64;

/// Media type of a raw block.
pub const RAW_TYPE: &str = "application/vnd.ipld.raw";
/// Media type of a CAR.
pub const CAR_TYPE: &str = "application/vnd.ipld.car";
/// Media type of a signed IPNS record.
pub const IPNS_RECORD_TYPE: &str = "application/vnd.ipfs.ipns-record";

/// A parsed `/ipfs/{cid}/seg/seg` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentPath {
    /// The root CID.
    pub cid: Cid,
    /// The CID as the client spelled it (echoed in `X-Ipfs-Path`).
    pub cid_text: String,
    /// Decoded path segments after the CID (no empty, `.` or `..` segments).
    pub segments: Vec<String>,
}

/// Parses the part of a request path after `/ipfs/` (still percent-encoded).
pub fn parse_content_path(rest: &str) -> Result<ContentPath, ServeError> {
    if rest.len() > MAX_PATH_BYTES {
        return Err(ServeError::bad_request(format!(
            "path is {} bytes, longer than the {MAX_PATH_BYTES}-byte limit",
            rest.len()
        )));
    }
    let mut parts = rest.split('/');
    let cid_text = percent_decode(parts.next().unwrap_or(""))?;
    let cid = parse_cid(&cid_text)?;
    let mut segments = Vec::new();
    let raw: Vec<&str> = parts.collect();
    let last = raw.len();
    for (i, seg) in raw.into_iter().enumerate() {
        if seg.is_empty() {
            // A trailing slash names the same thing; an empty segment inside is an error.
            if i + 1 == last {
                continue;
            }
            return Err(ServeError::bad_request("empty path segment ('//')"));
        }
        let seg = percent_decode(seg)?;
        if seg == "." || seg == ".." || seg.contains('/') || seg.contains('\0') {
            return Err(ServeError::bad_request(format!(
                "path segment {seg:?} is not allowed"
            )));
        }
        segments.push(seg);
        if segments.len() > MAX_PATH_DEPTH {
            return Err(ServeError::bad_request(format!(
                "path deeper than {MAX_PATH_DEPTH} segments"
            )));
        }
    }
    Ok(ContentPath {
        cid,
        cid_text,
        segments,
    })
}

/// Parses a CID string, answering 400 with the reason on failure.
pub fn parse_cid(text: &str) -> Result<Cid, ServeError> {
    Cid::try_from(text).map_err(|e| ServeError::BadCid {
        input: text.chars().take(120).collect(),
        reason: e.to_string(),
    })
}

/// Decodes `%XX` escapes once; the result must be UTF-8 (UnixFS names are UTF-8 in practice).
pub fn percent_decode(s: &str) -> Result<String, ServeError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ServeError::bad_request("malformed %-escape in path"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ServeError::bad_request("path is not UTF-8"))
}

/// What the client wants back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wanted {
    /// One raw block.
    Raw,
    /// A CAR stream, with the parameters that came from `Accept` (query ones applied later).
    Car(CarAccept),
    /// A signed IPNS record.
    IpnsRecord,
}

/// CAR parameters carried on the `Accept` media type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CarAccept {
    /// `version=`
    pub version: Option<String>,
    /// `order=`
    pub order: Option<String>,
    /// `dups=`
    pub dups: Option<String>,
}

/// Decides the response format from `?format=` and the `Accept` header.
pub fn negotiate(format: Option<&str>, accept: Option<&str>) -> Result<Wanted, ServeError> {
    if let Some(f) = format {
        return match f {
            "raw" => Ok(Wanted::Raw),
            "car" => Ok(Wanted::Car(CarAccept::default())),
            "ipns-record" => Ok(Wanted::IpnsRecord),
            "tar" | "dag-json" | "dag-cbor" | "json" | "cbor" => Err(ServeError::NotAcceptable {
                what: format!("format={f}"),
            }),
            other => Err(ServeError::bad_request(format!(
                "unknown format {other:?} (use raw, car or ipns-record)"
            ))),
        };
    }
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Err(ServeError::NoFormat);
    };
    let mut only_wildcards = true;
    let mut ranges: Vec<(u32, usize, Wanted)> = Vec::new();
    for (pos, item) in accept.split(',').take(32).enumerate() {
        let mut params = item.split(';');
        let mime = params.next().unwrap_or("").trim().to_ascii_lowercase();
        if mime.is_empty() {
            continue;
        }
        if mime != "*/*" && mime != "application/*" {
            only_wildcards = false;
        }
        let mut q = 1000u32;
        let mut car = CarAccept::default();
        for p in params {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().trim_matches('"'));
            match k.as_str() {
                "q" => q = parse_q(v),
                "version" => car.version = Some(v.to_string()),
                "order" => car.order = Some(v.to_string()),
                "dups" => car.dups = Some(v.to_string()),
                _ => {}
            }
        }
        let wanted = match mime.as_str() {
            RAW_TYPE => Wanted::Raw,
            CAR_TYPE => Wanted::Car(car),
            IPNS_RECORD_TYPE => Wanted::IpnsRecord,
            _ => continue,
        };
        if q > 0 {
            ranges.push((q, pos, wanted));
        }
    }
    // Highest q first; the client's order breaks ties.
    ranges.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    match ranges.into_iter().next() {
        Some((_, _, wanted)) => Ok(wanted),
        None if only_wildcards => Err(ServeError::NoFormat),
        None => Err(ServeError::NotAcceptable {
            what: format!("Accept: {}", accept.chars().take(200).collect::<String>()),
        }),
    }
}

/// `q=0.5` → 500; malformed values count as 1.
fn parse_q(v: &str) -> u32 {
    v.parse::<f32>()
        .ok()
        .filter(|q| (0.0..=1.0).contains(q))
        .map_or(1000, |q| (q * 1000.0) as u32)
}

/// How much of the DAG under the path's terminus a CAR carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DagScope {
    /// Only the terminal block.
    Block,
    /// Enough to read the whole file or enumerate the whole directory.
    Entity,
    /// Everything below the terminus.
    All,
}

/// `entity-bytes=from:to`: inclusive offsets; negative counts from the end; `to = None` is `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityBytes {
    /// First byte (negative: from the end).
    pub from: i64,
    /// Last byte inclusive (negative: from the end); `None` = to the end.
    pub to: Option<i64>,
}

impl EntityBytes {
    /// The half-open byte range `[start, end)` within a file of `size` bytes, or `None` when
    /// nothing of the file is inside (the CAR then carries only the terminal block).
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        let abs = |v: i64| -> u64 {
            if v < 0 {
                size.saturating_sub(v.unsigned_abs())
            } else {
                v as u64
            }
        };
        let start = abs(self.from);
        let end = match self.to {
            None => size,
            Some(t) => abs(t).saturating_add(1).min(size),
        };
        (start < end).then_some((start, end))
    }
}

/// Everything that shapes a CAR response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarParams {
    /// `dag-scope`
    pub scope: DagScope,
    /// `entity-bytes`
    pub entity_bytes: Option<EntityBytes>,
    /// `dups=y`: repeat a block every time the walk meets it.
    pub dups: bool,
}

impl CarParams {
    /// The response `Content-Type`.
    pub fn content_type(&self) -> String {
        let dups = if self.dups { "y" } else { "n" };
        format!("{CAR_TYPE}; version=1; order=dfs; dups={dups}")
    }
}

/// Query parameters of a gateway request that matter to us.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Query {
    /// `format=`
    pub format: Option<String>,
    /// `dag-scope=`
    #[serde(rename = "dag-scope")]
    pub dag_scope: Option<String>,
    /// `entity-bytes=`
    #[serde(rename = "entity-bytes")]
    pub entity_bytes: Option<String>,
    /// `car-version=`
    #[serde(rename = "car-version")]
    pub car_version: Option<String>,
    /// `car-order=`
    #[serde(rename = "car-order")]
    pub car_order: Option<String>,
    /// `car-dups=`
    #[serde(rename = "car-dups")]
    pub car_dups: Option<String>,
}

/// Combines the query and `Accept` CAR parameters (query wins) and validates them.
pub fn car_params(query: &Query, accept: &CarAccept) -> Result<CarParams, ServeError> {
    let version = query.car_version.as_ref().or(accept.version.as_ref());
    if let Some(v) = version {
        if v != "1" {
            return Err(ServeError::bad_request(format!(
                "CAR version {v:?} is not supported (only version 1)"
            )));
        }
    }
    let order = query.car_order.as_ref().or(accept.order.as_ref());
    if let Some(o) = order {
        if o != "dfs" && o != "unk" {
            return Err(ServeError::bad_request(format!(
                "CAR order {o:?} is not supported (use dfs or unk)"
            )));
        }
    }
    let dups = match query
        .car_dups
        .as_ref()
        .or(accept.dups.as_ref())
        .map(|s| s.as_str())
    {
        None | Some("n") => false,
        Some("y") => true,
        Some(d) => {
            return Err(ServeError::bad_request(format!(
                "dups {d:?} must be y or n"
            )))
        }
    };
    let scope = match query.dag_scope.as_deref() {
        None | Some("all") => DagScope::All,
        Some("entity") => DagScope::Entity,
        Some("block") => DagScope::Block,
        Some(s) => {
            return Err(ServeError::bad_request(format!(
                "dag-scope {s:?} must be block, entity or all"
            )))
        }
    };
    let entity_bytes = query
        .entity_bytes
        .as_deref()
        .map(parse_entity_bytes)
        .transpose()?;
    Ok(CarParams {
        scope,
        entity_bytes,
        dups,
    })
}

/// Parses `from:to` (`to` may be `*`). Rejects what can be seen to be empty up front.
pub fn parse_entity_bytes(s: &str) -> Result<EntityBytes, ServeError> {
    let bad = || {
        ServeError::bad_request(format!(
            "entity-bytes {s:?} must be from:to with integers (to may be *)"
        ))
    };
    let (from, to) = s.split_once(':').ok_or_else(bad)?;
    let from: i64 = from.parse().map_err(|_| bad())?;
    let to = match to {
        "*" => None,
        t => Some(t.parse::<i64>().map_err(|_| bad())?),
    };
    if let Some(t) = to {
        let same_sign = (from >= 0) == (t >= 0);
        if same_sign && t < from {
            return Err(ServeError::bad_request(format!(
                "entity-bytes {s:?}: to is before from"
            )));
        }
    }
    Ok(EntityBytes { from, to })
}

/// Parses a single-range `Range: bytes=…` against a body of `size` bytes. `Ok(None)` means
/// "serve the whole body" (no header, an unsupported unit, a multi-range or a malformed value,
/// all of which RFC 9110 lets a server ignore); unsatisfiable ranges are 416.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ServeError> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Ok(None),
        ("", suffix) => {
            let Ok(n) = suffix.parse::<u64>() else {
                return Ok(None);
            };
            if n == 0 {
                return Err(ServeError::RangeNotSatisfiable { size });
            }
            (size.saturating_sub(n), size)
        }
        (first, last) => {
            let Ok(first) = first.parse::<u64>() else {
                return Ok(None);
            };
            let last = if last.is_empty() {
                size
            } else {
                match last.parse::<u64>() {
                    Ok(l) if l >= first => l.saturating_add(1).min(size),
                    _ => return Ok(None),
                }
            };
            (first, last)
        }
    };
    if start >= size || start >= end {
        return Err(ServeError::RangeNotSatisfiable { size });
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_path_decodes_segments_once() {
        let p = parse_content_path("bafkqaaa/a%2525b/%C4%85/").unwrap();
        assert_eq!(p.segments, vec!["a%25b".to_string(), "ą".to_string()]);
        assert!(parse_content_path("bafkqaaa/../x").is_err());
        assert!(parse_content_path("bafkqaaa/a//b").is_err());
        assert!(parse_content_path("bafkqaaa/a%2Fb").is_err());
        assert!(matches!(
            parse_content_path("not-a-cid"),
            Err(ServeError::BadCid { .. })
        ));
        let deep = format!("bafkqaaa{}", "/a".repeat(MAX_PATH_DEPTH + 1));
        assert!(parse_content_path(&deep).is_err());
    }

    #[test]
    fn format_beats_accept_and_errors_are_classified() {
        let car = Some("application/vnd.ipld.car");
        assert_eq!(negotiate(Some("raw"), car).unwrap(), Wanted::Raw);
        assert!(matches!(negotiate(None, car).unwrap(), Wanted::Car(_)));
        assert_eq!(negotiate(Some("tar"), None).unwrap_err().status(), 406);
        assert_eq!(negotiate(Some("zip"), None).unwrap_err().status(), 400);
        assert_eq!(
            negotiate(None, Some("application/json"))
                .unwrap_err()
                .status(),
            406
        );
        assert_eq!(negotiate(None, None).unwrap_err().status(), 400);
        assert_eq!(negotiate(None, Some("*/*")).unwrap_err().status(), 400);
        let prefer_raw = "application/vnd.ipld.car;q=0.5, application/vnd.ipld.raw";
        assert_eq!(negotiate(None, Some(prefer_raw)).unwrap(), Wanted::Raw);
        let with_params = "application/vnd.ipld.car; version=1; order=dfs; dups=y";
        let Wanted::Car(acc) = negotiate(None, Some(with_params)).unwrap() else {
            panic!("not car")
        };
        assert_eq!(acc.dups.as_deref(), Some("y"));
    }

    #[test]
    fn car_params_query_wins_and_validates() {
        let accept = CarAccept {
            dups: Some("y".into()),
            ..Default::default()
        };
        let q = Query {
            car_dups: Some("n".into()),
            ..Default::default()
        };
        assert!(!car_params(&q, &accept).unwrap().dups);
        assert!(car_params(&Query::default(), &accept).unwrap().dups);
        let v2 = Query {
            car_version: Some("2".into()),
            ..Default::default()
        };
        assert_eq!(car_params(&v2, &accept).unwrap_err().status(), 400);
        let unk = Query {
            car_order: Some("unk".into()),
            ..Default::default()
        };
        assert!(car_params(&unk, &CarAccept::default()).is_ok());
        let bad_scope = Query {
            dag_scope: Some("most".into()),
            ..Default::default()
        };
        assert!(car_params(&bad_scope, &CarAccept::default()).is_err());
    }

    #[test]
    fn entity_bytes_parse_and_resolve() {
        let eb = |s| parse_entity_bytes(s).unwrap();
        assert_eq!(eb("0:1000").resolve(3072), Some((0, 1001)));
        assert_eq!(eb("2200:*").resolve(3072), Some((2200, 3072)));
        assert_eq!(eb("-1024:*").resolve(3072), Some((2048, 3072)));
        assert_eq!(eb("499:-1000").resolve(3072), Some((499, 2073)));
        assert_eq!(eb("-9999:-3").resolve(1026), Some((0, 1024)));
        assert_eq!(eb("5000:*").resolve(3072), None);
        assert!(parse_entity_bytes("10:5").is_err());
        assert!(parse_entity_bytes("a:b").is_err());
        assert!(parse_entity_bytes("10").is_err());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(Some("bytes=6-16"), 31).unwrap(), Some((6, 17)));
        assert_eq!(parse_range(Some("bytes=-3"), 31).unwrap(), Some((28, 31)));
        assert_eq!(
            parse_range(Some("bytes=30-99"), 31).unwrap(),
            Some((30, 31))
        );
        assert_eq!(parse_range(Some("bytes=0-"), 31).unwrap(), Some((0, 31)));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 31).unwrap(), None);
        assert_eq!(parse_range(Some("items=1-2"), 31).unwrap(), None);
        assert_eq!(parse_range(None, 31).unwrap(), None);
        assert_eq!(
            parse_range(Some("bytes=31-"), 31).unwrap_err().status(),
            416
        );
        assert_eq!(parse_range(Some("bytes=0-0"), 0).unwrap_err().status(), 416);
    }
}
