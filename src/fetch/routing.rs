//! Delegated routing V1 for providers (SPECS.md §8): ask a routing endpoint which HTTP
//! gateways provide a CID, and tell one that we do.
//!
//! - [`RoutingClient::providers`]: `GET {base}/routing/v1/providers/{cid}?filter-protocols=
//!   transport-ipfs-gateway-http` with `Accept: application/x-ndjson, application/json`.
//!   A 404 is an empty answer; JSON (`{"Providers":[...]}`) and NDJSON (one record a line)
//!   are both read, chosen by the response's `Content-Type`; unknown fields are ignored and
//!   records of other schemas or protocols (a legacy `bitswap` record) are skipped. Bounded
//!   in size ([`MAX_ANSWER_BYTES`]), records ([`MAX_PROVIDERS`]) and time (one timeout).
//! - [`gateway_url`]: a provider's multiaddr as a gateway base URL:
//!   `/dns4|dns6|dns|ip4|ip6/<host>/tcp/<port>/tls/http` (and the deprecated `/https`) →
//!   `https://host:port`; plain `/http` → `http://host:port` only for loopback and private
//!   addresses (a LAN site cache, tests), never across the internet.
//! - [`RoutingClient::announce`]: `PUT {base}/routing/v1/providers` with
//!   `{"Providers":[{"Schema":"peer","ID":..,"Addrs":[..],"Protocols":
//!   ["transport-ipfs-gateway-http"],"Keys":[cid,..]}]}`. The accepted routing spec has no
//!   write API for providers (IPIP-378's signed `bitswap` PUT was dropped), so this is our
//!   own shape, read by `distfs serve`: the peer schema plus `Keys`. No signature: an HTTP
//!   provider cannot make a client accept wrong bytes, every block is verified.

use std::net::IpAddr;
use std::time::Duration;

use bytes::BytesMut;
use cid::Cid;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use super::gateway::GatewayClient;
use super::multiaddr;

/// The transfer protocol name of a trustless HTTP gateway provider.
pub const GATEWAY_PROTOCOL: &str = "transport-ipfs-gateway-http";
/// Largest routing answer read.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Most provider records taken from one answer (the spec's JSON limit).
pub const MAX_PROVIDERS: usize = 100;
/// Default limit for one routing request.
pub const DEFAULT_ROUTING_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a routing request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// A base URL that cannot be used.
    #[error("routing endpoint URL {url:?} is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Building the HTTP client failed.
    #[error("cannot build the HTTP client: {reason}")]
    Client { reason: String },
    /// Connecting, sending or reading failed, or the request timed out.
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
    /// A status we cannot use.
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    /// The answer is not routing JSON/NDJSON or is too large.
    #[error("{url}: bad answer: {reason}")]
    BadAnswer { url: String, reason: String },
}

/// One provider record (the `peer` schema, and the legacy `bitswap` one, which has a single
/// `Protocol`). Unknown fields are ignored when reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderRecord {
    /// `peer` (or the legacy `bitswap`, or anything else, which is skipped).
    #[serde(rename = "Schema", default)]
    pub schema: String,
    /// The peer ID (opaque here).
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Multiaddrs in text form; missing = unknown.
    #[serde(rename = "Addrs", default)]
    pub addrs: Vec<String>,
    /// Transfer protocols; missing = unknown.
    #[serde(rename = "Protocols", default)]
    pub protocols: Vec<String>,
    /// The legacy schema's single protocol.
    #[serde(rename = "Protocol", default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// CIDs provided (only in our announce shape).
    #[serde(rename = "Keys", default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

impl ProviderRecord {
    /// A record announcing an HTTP gateway at `addrs` for `keys`.
    pub fn gateway(id: &str, addrs: Vec<String>, keys: Vec<String>) -> ProviderRecord {
        ProviderRecord {
            schema: "peer".into(),
            id: Some(id.to_string()),
            addrs,
            protocols: vec![GATEWAY_PROTOCOL.into()],
            protocol: None,
            keys,
        }
    }

    /// Whether the record says it speaks the trustless gateway protocol (a `peer` record
    /// listing it; legacy `bitswap` records never do).
    pub fn is_gateway(&self) -> bool {
        self.schema == "peer" && self.protocols.iter().any(|p| p == GATEWAY_PROTOCOL)
    }

    /// The gateway base URLs of the record's usable multiaddrs (none unless
    /// [`ProviderRecord::is_gateway`]).
    pub fn gateway_urls(&self) -> Vec<String> {
        if !self.is_gateway() {
            return Vec::new();
        }
        self.addrs.iter().filter_map(|a| gateway_url(a)).collect()
    }
}

/// The JSON body of a providers answer or announcement.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProvidersBody {
    /// The records (`null` reads as none).
    #[serde(rename = "Providers", default, deserialize_with = "null_as_empty")]
    pub providers: Vec<serde_json::Value>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<serde_json::Value>, D::Error> {
    use serde::Deserialize;
    Ok(Option::<Vec<serde_json::Value>>::deserialize(d)?.unwrap_or_default())
}

/// Records from a JSON answer (`{"Providers":[...]}`); records that do not parse as a
/// provider record are skipped, at most [`MAX_PROVIDERS`] are kept.
pub fn parse_json(body: &[u8]) -> Result<Vec<ProviderRecord>, String> {
    let parsed: ProvidersBody = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(parsed
        .providers
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .take(MAX_PROVIDERS)
        .collect())
}

/// Records from an NDJSON answer (one JSON record a line, blank lines allowed); lines that
/// do not parse are skipped, at most [`MAX_PROVIDERS`] are kept.
pub fn parse_ndjson(body: &[u8]) -> Vec<ProviderRecord> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| serde_json::from_slice(l).ok())
        .take(MAX_PROVIDERS)
        .collect()
}

/// A provider multiaddr (text form) as a gateway base URL, or `None` if it is not one we
/// can use (see the module doc): [`multiaddr::gateway_url`], with plain HTTP allowed only to
/// a loopback, private or link-local address (never across the internet or to a name).
pub fn gateway_url(addr: &str) -> Option<String> {
    let url = multiaddr::gateway_url(addr)?;
    if url.starts_with("https://") {
        return Some(url);
    }
    let parsed = Url::parse(&url).ok()?;
    let ip = parsed
        .host_str()?
        .trim_matches(['[', ']'])
        .parse::<IpAddr>()
        .ok()?;
    is_local(ip).then_some(url)
}

/// Loopback, private (RFC 1918 / ULA) or link-local: where plain HTTP stays on the site.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// A client for one delegated-routing endpoint.
#[derive(Clone, Debug)]
pub struct RoutingClient {
    base: Url,
    http: reqwest::Client,
    timeout: Duration,
}

impl RoutingClient {
    /// A client for `base` (e.g. `https://delegated-ipfs.dev`), with its own HTTP client.
    pub fn new(base: &str, timeout: Duration) -> Result<RoutingClient, RoutingError> {
        let http = GatewayClient::http_client().map_err(|e| RoutingError::Client {
            reason: e.to_string(),
        })?;
        let invalid = |reason: &str| RoutingError::InvalidUrl {
            url: base.to_string(),
            reason: reason.to_string(),
        };
        let url = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("expected http(s)://host[:port]"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a routing base URL takes no query or fragment"));
        }
        Ok(RoutingClient {
            base: url,
            http,
            timeout,
        })
    }

    /// The base URL as given.
    pub fn base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/routing/v1/providers{tail}", self.base())
    }

    /// The HTTP gateway providers the endpoint knows for `cid` (records, unfiltered by
    /// address; use [`ProviderRecord::gateway_urls`]).
    #[tracing::instrument(skip_all, fields(cid = %cid, routing = %self.base()))]
    pub async fn providers(&self, cid: &Cid) -> Result<Vec<ProviderRecord>, RoutingError> {
        let url = self.url(&format!("/{cid}?filter-protocols={GATEWAY_PROTOCOL}"));
        let transport = |e: reqwest::Error| RoutingError::Transport {
            url: url.clone(),
            reason: e.to_string(),
        };
        let work = async {
            let resp = self
                .http
                .get(&url)
                .header(ACCEPT, "application/x-ndjson, application/json")
                .send()
                .await
                .map_err(transport)?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(Vec::new()),
                s => {
                    return Err(RoutingError::Status {
                        url: url.clone(),
                        status: s.as_u16(),
                    })
                }
            }
            let ndjson = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/x-ndjson"));
            let mut resp = resp;
            let mut body = BytesMut::new();
            while let Some(chunk) = resp.chunk().await.map_err(transport)? {
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    // NDJSON may stream more than we want: keep what we have.
                    if ndjson {
                        break;
                    }
                    return Err(RoutingError::BadAnswer {
                        url: url.clone(),
                        reason: format!("over {MAX_ANSWER_BYTES} bytes"),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            if ndjson {
                Ok(parse_ndjson(&body))
            } else {
                parse_json(&body).map_err(|reason| RoutingError::BadAnswer {
                    url: url.clone(),
                    reason,
                })
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(RoutingError::Transport {
                    url: url.clone(),
                    reason: format!("no answer within {:?}", self.timeout),
                })
            })
    }

    /// Announces `record` (our shape, see the module doc).
    #[tracing::instrument(skip_all, fields(routing = %self.base()))]
    pub async fn announce(&self, record: &ProviderRecord) -> Result<(), RoutingError> {
        let url = self.url("");
        let body = serde_json::json!({ "Providers": [record] }).to_string();
        let resp = self
            .http
            .put(&url)
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| RoutingError::Transport {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(RoutingError::Status {
                url,
                status: resp.status().as_u16(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiaddrs_to_urls() {
        let cases = [
            (
                "/dns4/example.com/tcp/443/tls/http",
                Some("https://example.com:443"),
            ),
            (
                "/dns/example.com/tcp/443/https",
                Some("https://example.com:443"),
            ),
            (
                "/dns6/gw.example.org/tcp/8443/tls/http",
                Some("https://gw.example.org:8443"),
            ),
            (
                "/ip4/1.2.3.4/tcp/443/tls/sni/gw.example.net/http",
                Some("https://gw.example.net:443"),
            ),
            (
                "/ip4/203.0.113.7/tcp/443/tls/http",
                Some("https://203.0.113.7:443"),
            ),
            (
                "/ip6/2001:db8::1/tcp/443/tls/http",
                Some("https://[2001:db8::1]:443"),
            ),
            (
                "/ip4/127.0.0.1/tcp/8080/http",
                Some("http://127.0.0.1:8080"),
            ),
            ("/ip4/10.1.2.3/tcp/80/http", Some("http://10.1.2.3:80")),
            ("/ip6/::1/tcp/8080/http", Some("http://[::1]:8080")),
            (
                "/ip4/127.0.0.1/tcp/8080/http/p2p/12D3KooWabc",
                Some("http://127.0.0.1:8080"),
            ),
            // Plain HTTP across the internet, or to a name: refused.
            ("/ip4/203.0.113.7/tcp/80/http", None),
            ("/dns4/example.com/tcp/80/http", None),
            // Not HTTP at all (bitswap over TCP/QUIC), or malformed.
            ("/ip4/1.2.3.4/tcp/4001", None),
            ("/ip4/1.2.3.4/udp/4001/quic-v1", None),
            ("/ip4/1.2.3.4/tcp/0/tls/http", None),
            ("/ip4/1.2.3.4/tcp/99999/tls/http", None),
            ("/ip4/not-an-ip/tcp/443/tls/http", None),
            ("/dns4/bad host/tcp/443/tls/http", None),
            ("/dns4/a.com/tcp/443/tls/http/extra", None),
            ("dns4/a.com/tcp/443/tls/http", None),
            ("", None),
        ];
        for (addr, want) in cases {
            assert_eq!(gateway_url(addr).as_deref(), want, "{addr}");
        }
    }

    /// The shape delegated-ipfs.dev answers with (a Kubo peer record with bitswap
    /// addresses, an HTTP provider, and a legacy `bitswap` record), plus fields we do not
    /// know, which must be ignored.
    const JSON: &str = r#"{"Providers":[
        {"Addrs":["/ip4/147.75.87.85/tcp/4001","/ip4/147.75.87.85/udp/4001/quic-v1"],
         "ID":"12D3KooWDpp7U7W9Q8feMZPPEpPP5FKXTUakLgnVLbavfjb9mzrT",
         "Protocols":["transport-bitswap"],"Schema":"peer","Extra":{"x":1}},
        {"Addrs":["/dns4/gw.example.com/tcp/443/tls/http","/ip4/1.2.3.4/tcp/4001"],
         "ID":"12D3KooWHttpProviderPeerIdxxxxxxxxxxxxxxxxxxxxxxxxx",
         "Protocols":["transport-ipfs-gateway-http"],"Schema":"peer","Metadata":"oBIA"},
        {"Schema":"bitswap","Protocol":"transport-bitswap","ID":"12D3KooWLegacy",
         "Addrs":["/dns4/legacy.example.com/tcp/443/tls/http"]},
        {"Schema":"future-thing","Whatever":true},
        "not even an object"
    ]}"#;

    #[test]
    fn json_answers() {
        let recs = parse_json(JSON.as_bytes()).unwrap();
        assert_eq!(recs.len(), 4, "the string entry is skipped");
        let urls: Vec<String> = recs.iter().flat_map(ProviderRecord::gateway_urls).collect();
        assert_eq!(urls, ["https://gw.example.com:443"]);
        assert!(
            !recs[2].is_gateway(),
            "a legacy bitswap record is never a gateway"
        );
        assert_eq!(parse_json(br#"{"Providers":null}"#).unwrap(), vec![]);
        assert_eq!(parse_json(b"{}").unwrap(), vec![]);
        assert!(parse_json(b"<html>").is_err());
    }

    #[test]
    fn ndjson_answers() {
        let body = concat!(
            r#"{"Schema":"peer","ID":"a","Addrs":["/ip4/127.0.0.1/tcp/9/http"],"Protocols":["transport-ipfs-gateway-http"]}"#,
            "\n\n",
            r#"{"Schema":"bitswap","Protocol":"transport-bitswap","ID":"b","Addrs":["/ip4/127.0.0.1/tcp/8/http"]}"#,
            "\nnot json\n",
            r#"{"Schema":"peer","ID":"c","Protocols":["transport-ipfs-gateway-http"]}"#,
            "\n"
        );
        let recs = parse_ndjson(body.as_bytes());
        assert_eq!(recs.len(), 3);
        let urls: Vec<String> = recs.iter().flat_map(ProviderRecord::gateway_urls).collect();
        assert_eq!(
            urls,
            ["http://127.0.0.1:9"],
            "missing Addrs = no address known"
        );
    }

    #[test]
    fn urls_to_multiaddrs_and_back() {
        for (url, addr) in [
            ("http://127.0.0.1:8080", "/ip4/127.0.0.1/tcp/8080/http"),
            (
                "https://gw.example.com",
                "/dns/gw.example.com/tcp/443/tls/http",
            ),
            ("http://[::1]:9/", "/ip6/::1/tcp/9/http"),
        ] {
            assert_eq!(multiaddr::multiaddr_of_url(url).as_deref(), Some(addr));
            assert!(gateway_url(addr).is_some(), "{addr}");
        }
        assert_eq!(multiaddr::multiaddr_of_url("http://h/path"), None);
        assert_eq!(multiaddr::multiaddr_of_url("ftp://h"), None);
    }

    #[test]
    fn announce_shape_round_trips() {
        let rec = ProviderRecord::gateway(
            "id",
            vec!["/ip4/127.0.0.1/tcp/1/http".into()],
            vec!["bafkqaaa".into()],
        );
        let text = serde_json::to_string(&serde_json::json!({ "Providers": [&rec] })).unwrap();
        assert!(
            text.contains(r#""Protocols":["transport-ipfs-gateway-http"]"#),
            "{text}"
        );
        assert_eq!(parse_json(text.as_bytes()).unwrap(), vec![rec]);
    }
}
