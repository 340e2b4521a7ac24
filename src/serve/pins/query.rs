//! Pure parts of the pinning API: checking a submitted [`Pin`], parsing the `GET /pins`
//! query into a [`ListQuery`], and matching requests against it. No I/O.
//!
//! Filters (spec `components/parameters`): `cid` (up to 10, repeated or comma-separated),
//! `name` with `match` = exact (default) | iexact | partial | ipartial, `status` (repeated or
//! comma-separated; **default `pinned`**, the spec's "only successful pins" when no status is
//! given), `before` / `after` (RFC 3339, on `created`), `limit` (1–1000, default 10) and
//! `meta` (a JSON object of strings; every pair must be present). Unknown parameters are
//! ignored.

use std::collections::BTreeMap;

use cid::Cid;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::fetch::pinning::{Pin, PinState, PinStatus};
use crate::fetch::precheck;

/// Longest `name` (spec: maxLength 255).
pub const MAX_NAME_CHARS: usize = 255;
/// Most `origins` (spec: maxItems 20).
pub const MAX_ORIGINS: usize = 20;
/// Most `meta` entries (spec: maxProperties 1000).
pub const MAX_META: usize = 1000;
/// Most CIDs in one `cid` filter (spec: maxItems 10).
pub const MAX_CID_FILTER: usize = 10;
/// Largest `limit` (spec: maximum 1000) and its default (spec: 10).
pub const MAX_LIMIT: usize = 1000;
const DEFAULT_LIMIT: usize = 10;

/// Checks a submitted pin; its parsed CID, or what is wrong with it.
pub fn check_pin(pin: &Pin) -> Result<Cid, String> {
    let cid = Cid::try_from(pin.cid.as_str())
        .map_err(|e| format!("cid {:?} is not a CID: {e}", clip(&pin.cid)))?;
    precheck(&cid).map_err(|e| e.to_string())?;
    if let Some(name) = &pin.name {
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(format!("name is over {MAX_NAME_CHARS} characters"));
        }
    }
    if pin.origins.len() > MAX_ORIGINS {
        return Err(format!("more than {MAX_ORIGINS} origins"));
    }
    if pin.meta.len() > MAX_META {
        return Err(format!("more than {MAX_META} meta entries"));
    }
    Ok(cid)
}

/// How `name` is compared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Match {
    /// Whole name, case-sensitive.
    #[default]
    Exact,
    /// Whole name, ignoring case.
    IExact,
    /// Substring, case-sensitive.
    Partial,
    /// Substring, ignoring case.
    IPartial,
}

/// A parsed `GET /pins` query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Requests for any of these CIDs (empty = any).
    pub cids: Vec<Cid>,
    /// The name to match, and how.
    pub name: Option<(String, Match)>,
    /// Requests in any of these states.
    pub statuses: Vec<PinState>,
    /// Created strictly before this (Unix nanoseconds).
    pub before: Option<i128>,
    /// Created strictly after this (Unix nanoseconds).
    pub after: Option<i128>,
    /// Most results returned.
    pub limit: usize,
    /// Meta pairs that must all be present.
    pub meta: BTreeMap<String, String>,
}

impl Default for ListQuery {
    fn default() -> ListQuery {
        ListQuery {
            cids: Vec::new(),
            name: None,
            statuses: vec![PinState::Pinned],
            before: None,
            after: None,
            limit: DEFAULT_LIMIT,
            meta: BTreeMap::new(),
        }
    }
}

impl ListQuery {
    /// Parses a raw query string (`None` = no query).
    pub fn parse(raw: Option<&str>) -> Result<ListQuery, String> {
        let mut q = ListQuery::default();
        let mut statuses = Vec::new();
        let mut matching = None;
        let mut name = None;
        for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value)?;
            match key {
                "cid" => {
                    for c in value.split(',').filter(|c| !c.is_empty()) {
                        let cid = Cid::try_from(c)
                            .map_err(|e| format!("cid filter {:?}: {e}", clip(c)))?;
                        if !q.cids.contains(&cid) {
                            q.cids.push(cid);
                        }
                    }
                    if q.cids.len() > MAX_CID_FILTER {
                        return Err(format!("more than {MAX_CID_FILTER} CIDs in the cid filter"));
                    }
                }
                "name" => {
                    if value.chars().count() > MAX_NAME_CHARS {
                        return Err(format!("name filter over {MAX_NAME_CHARS} characters"));
                    }
                    name = Some(value);
                }
                "match" => {
                    matching = Some(match value.as_str() {
                        "exact" => Match::Exact,
                        "iexact" => Match::IExact,
                        "partial" => Match::Partial,
                        "ipartial" => Match::IPartial,
                        other => {
                            return Err(format!(
                                "match {:?}: use exact, iexact, partial or ipartial",
                                clip(other)
                            ))
                        }
                    })
                }
                "status" => {
                    for s in value.split(',').filter(|s| !s.is_empty()) {
                        let st = PinState::parse(s).ok_or_else(|| {
                            format!(
                                "status {:?}: use queued, pinning, pinned or failed",
                                clip(s)
                            )
                        })?;
                        if !statuses.contains(&st) {
                            statuses.push(st);
                        }
                    }
                }
                "before" => q.before = Some(parse_time("before", &value)?),
                "after" => q.after = Some(parse_time("after", &value)?),
                "limit" => {
                    q.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| format!("limit must be 1 to {MAX_LIMIT}"))?;
                }
                "meta" => {
                    q.meta = serde_json::from_str(&value)
                        .map_err(|e| format!("meta must be a JSON object of strings: {e}"))?;
                }
                _ => {}
            }
        }
        if !statuses.is_empty() {
            q.statuses = statuses;
        }
        q.name = name.map(|n| (n, matching.unwrap_or_default()));
        Ok(q)
    }

    /// Whether a request (its state and creation time) passes every filter.
    pub fn matches(&self, status: &PinStatus, cid: Option<&Cid>, created: i128) -> bool {
        if !self.statuses.contains(&status.status) {
            return false;
        }
        if !self.cids.is_empty() && !cid.is_some_and(|c| self.cids.contains(c)) {
            return false;
        }
        if self.before.is_some_and(|b| created >= b) || self.after.is_some_and(|a| created <= a) {
            return false;
        }
        if let Some((want, how)) = &self.name {
            let Some(have) = &status.pin.name else {
                return false;
            };
            let ok = match how {
                Match::Exact => have == want,
                Match::IExact => have.to_lowercase() == want.to_lowercase(),
                Match::Partial => have.contains(want.as_str()),
                Match::IPartial => have.to_lowercase().contains(&want.to_lowercase()),
            };
            if !ok {
                return false;
            }
        }
        self.meta
            .iter()
            .all(|(k, v)| status.pin.meta.get(k) == Some(v))
    }
}

/// RFC 3339 text of a Unix time in nanoseconds.
pub fn format_time(nanos: i128) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

fn parse_time(what: &str, text: &str) -> Result<i128, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .map_err(|e| format!("{what} {:?} is not an RFC 3339 time: {e}", clip(text)))
}

/// Decodes a query value: `+` is a space, `%XX` an escape; the result must be UTF-8.
fn decode(value: &str) -> Result<String, String> {
    super::super::request::percent_decode(&value.replace('+', " "))
        .map_err(|_| "a query value has a malformed %-escape or is not UTF-8".to_string())
}

fn clip(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";

    fn status(state: PinState, name: Option<&str>, meta: &[(&str, &str)]) -> PinStatus {
        PinStatus {
            requestid: "r".into(),
            status: state,
            created: String::new(),
            pin: Pin {
                cid: A.into(),
                name: name.map(str::to_string),
                origins: Vec::new(),
                meta: meta
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
            delegates: Vec::new(),
            info: BTreeMap::new(),
        }
    }

    #[test]
    fn defaults_list_pinned_only() {
        let q = ListQuery::parse(None).unwrap();
        assert_eq!(q, ListQuery::default());
        let cid: Cid = A.parse().unwrap();
        assert!(q.matches(&status(PinState::Pinned, None, &[]), Some(&cid), 0));
        assert!(!q.matches(&status(PinState::Queued, None, &[]), Some(&cid), 0));
    }

    #[test]
    fn filters() {
        let cid: Cid = A.parse().unwrap();
        let other: Cid = "bafkqaaa".parse().unwrap();
        let st = status(PinState::Failed, Some("Kubo/v1.2"), &[("app", "x")]);
        let ok = |q: &str| {
            ListQuery::parse(Some(q))
                .unwrap()
                .matches(&st, Some(&cid), 1_000)
        };
        assert!(ok("status=failed"));
        assert!(ok("status=queued,failed"));
        assert!(ok("status=queued&status=failed"));
        assert!(!ok("status=pinned"));
        assert!(ok(&format!("status=failed&cid=bafkqaaa,{A}")));
        assert!(!ok("status=failed&cid=bafkqaaa"));
        assert!(ok("status=failed&name=Kubo%2Fv1.2"));
        assert!(!ok("status=failed&name=kubo%2Fv1.2"));
        assert!(ok("status=failed&name=kubo%2Fv1.2&match=iexact"));
        assert!(ok("status=failed&name=bo/v&match=partial"));
        assert!(ok("status=failed&name=BO&match=ipartial"));
        assert!(!ok("status=failed&name=BO&match=partial"));
        assert!(ok("status=failed&meta=%7B%22app%22%3A%22x%22%7D"));
        assert!(!ok("status=failed&meta=%7B%22app%22%3A%22y%22%7D"));
        assert!(ok("status=failed&before=1970-01-01T00:00:00.000002Z"));
        assert!(!ok("status=failed&after=1970-01-01T00:00:00.000002Z"));
        assert!(ok("status=failed&unknown=1"));
        assert!(!ListQuery::parse(Some(&format!("status=failed&cid={A}")))
            .unwrap()
            .matches(&st, Some(&other), 0));
        assert_eq!(ListQuery::parse(Some("limit=1000")).unwrap().limit, 1000);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=x",
            "status=done",
            "cid=nope",
            "match=fuzzy&name=a",
            "before=yesterday",
            "meta=%7B",
            "name=%ZZ",
        ] {
            assert!(ListQuery::parse(Some(bad)).is_err(), "{bad}");
        }
        let many = (0..11)
            .map(|i| {
                format!(
                    "cid={}",
                    Cid::new_v1(
                        0x55,
                        multihash::Multihash::<64>::wrap(0x12, &[i; 32]).unwrap()
                    )
                )
            })
            .collect::<Vec<_>>()
            .join("&");
        assert!(ListQuery::parse(Some(&many)).is_err());
    }

    #[test]
    fn pin_checks() {
        let pin = |cid: &str| Pin {
            cid: cid.into(),
            ..Pin::default()
        };
        assert!(check_pin(&pin(A)).is_ok());
        assert!(check_pin(&pin("not-a-cid")).is_err());
        let long = Pin {
            name: Some("x".repeat(256)),
            ..pin(A)
        };
        assert!(check_pin(&long).is_err());
        let origins = Pin {
            origins: vec!["/ip4/1.2.3.4/tcp/1/http".into(); 21],
            ..pin(A)
        };
        assert!(check_pin(&origins).is_err());
        // blake2b-256: cannot be verified here, so it cannot be pinned.
        let mh = multihash::Multihash::<64>::wrap(0xb220, &[7u8; 32]).unwrap();
        assert!(check_pin(&pin(&Cid::new_v1(0x55, mh).to_string())).is_err());
    }

    #[test]
    fn times_round_trip() {
        let t = format_time(1_700_000_000_123_456_789);
        assert_eq!(t, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse_time("t", &t).unwrap(), 1_700_000_000_123_456_789);
    }
}
