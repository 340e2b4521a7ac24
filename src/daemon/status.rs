//! What `distfs status` reports, as the daemon builds it and the CLI prints it. The JSON
//! form (`distfs status --json`) is this structure serialized; its field names are stable:
//!
//! - `root`: `spec` (what was asked to mount) and `cid` (what is mounted now)
//! - `mountpoint`, `pid`, `uptime_secs`, `offline`, `metrics_listen` (bound address or null)
//! - `names[]`: `name`, `cid`, `sequence`, `ttl_secs`, `source`, `last_refresh_unix`,
//!   `last_refresh_error`, `refresh_failures` (one entry for a name root; none for `/ipfs/`)
//! - `cache`: `dir`, `bytes`, `blocks`, `limit`, `pinned_bytes`, `hits`, `misses`,
//!   `hit_ratio`, `fetches`, `fetched_bytes`, `corrupt_dropped`, `evicted_blocks`,
//!   `evicted_bytes`, `in_flight`, `max_in_flight`
//! - `projects[]`: each project of its own name (configured, then hub entries): `name`,
//!   `origin` (`configured`/`hub`), `root`, `publisher`, `state` (`unresolved`,
//!   `resolving`, `ready`, `failed`), `cid`, `sequence`, `ttl_secs`, `source`,
//!   `last_refresh_unix`, `error`, `failures`, `shown` (false when a clash hides it)
//! - `clashes[]`: `name`, `shown` and `hidden` origins (`configured`, `main-root`, `hub`;
//!   configured > main root > hub); `hub_rejected[]`: `[name, reason]` of each unusable
//!   hub entry; `hub_error`: why the whole `projects.json` is unusable, if it is
//! - `gateways[]`: `url`, `local` (the probed local gateway), `requests`, `blocks`,
//!   `not_found`, `errors`, `bytes`, `latency_ewma_ms`, `recent_errors`, `demoted`,
//!   `dropped`, `backoff_ms`

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// The daemon's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The root.
    pub root: RootStatus,
    /// The mount point.
    pub mountpoint: String,
    /// The daemon's process id.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// Whether the daemon serves from the cache only.
    pub offline: bool,
    /// The bound `/metrics` address, if serving one.
    pub metrics_listen: Option<String>,
    /// The names the daemon follows.
    pub names: Vec<NameStatus>,
    /// The block cache.
    pub cache: CacheStatus,
    /// Each block source.
    pub gateways: Vec<GatewayStatus>,
    /// Projects of their own names.
    #[serde(default)]
    pub projects: Vec<crate::dist::union::ProjectReport>,
    /// Names claimed by more than one origin, and who won.
    #[serde(default)]
    pub clashes: Vec<crate::dist::union::Clash>,
    /// Hub entries rejected, with why.
    #[serde(default)]
    pub hub_rejected: Vec<(String, String)>,
    /// Why the main root's `projects.json` is unusable, if it is.
    #[serde(default)]
    pub hub_error: Option<String>,
}

/// The mounted root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootStatus {
    /// The root spec (`/ipns/...` or `/ipfs/...`).
    pub spec: String,
    /// The root CID mounted now.
    pub cid: String,
}

/// A followed name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameStatus {
    /// The name (`/ipns/<key>` or `/ipns/<domain>`).
    pub name: String,
    /// What it resolved to last.
    pub cid: String,
    /// The IPNS record's sequence, if the name is a key.
    pub sequence: Option<u64>,
    /// The TTL of the last resolution.
    pub ttl_secs: u64,
    /// Where the last answer came from.
    pub source: String,
    /// When it was last resolved successfully (Unix seconds).
    pub last_refresh_unix: Option<u64>,
    /// Why the last refresh failed, if it did (cleared by a success).
    pub last_refresh_error: Option<String>,
    /// Refreshes that failed since start.
    pub refresh_failures: u64,
}

/// The block cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheStatus {
    /// The cache directory.
    pub dir: String,
    /// Bytes cached.
    pub bytes: u64,
    /// Blocks cached.
    pub blocks: u64,
    /// The quota, if any.
    pub limit: Option<u64>,
    /// Bytes pinned.
    pub pinned_bytes: u64,
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that needed a fetch.
    pub misses: u64,
    /// hits / (hits + misses), or null before any read.
    pub hit_ratio: Option<f64>,
    /// Blocks fetched.
    pub fetches: u64,
    /// Bytes fetched.
    pub fetched_bytes: u64,
    /// Blocks found corrupt on disk and fetched again.
    pub corrupt_dropped: u64,
    /// Blocks evicted since start.
    pub evicted_blocks: u64,
    /// Bytes evicted since start.
    pub evicted_bytes: u64,
    /// Block requests in flight now.
    pub in_flight: u64,
    /// The fetch window now: requests allowed in flight, sized by the sources' round trip
    /// (at most the configured `max-in-flight`).
    pub max_in_flight: u64,
    /// Whole copies of files and passthrough reads of them.
    #[serde(default)]
    pub whole: WholeStatus,
}

/// Whole copies of cached files, which the kernel reads by FUSE passthrough.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholeStatus {
    /// New opens may be read by passthrough (configured, and the kernel agreed).
    pub passthrough: bool,
    /// Whole copies written since start.
    pub written: u64,
    /// Whole copies found on disk and proved since start.
    pub proved: u64,
    /// Whole copies found wrong and deleted since start.
    pub dropped: u64,
    /// Opens read by passthrough since start.
    pub passthrough_opens: u64,
    /// A whole copy is being written or proved now.
    #[serde(default)]
    pub busy: bool,
    /// Whole copies in the cache dir now (not counted in `cache.blocks`).
    #[serde(default)]
    pub files: u64,
    /// Their bytes (counted in `cache.bytes`, which the quota limits).
    #[serde(default)]
    pub bytes: u64,
}

/// One block source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    /// Its base URL.
    pub url: String,
    /// True for the local gateway found by the start-up probe.
    pub local: bool,
    /// `config` (configured, or probed at start) or `routing` (a provider found through
    /// delegated routing).
    #[serde(default)]
    pub origin: String,
    /// Requests sent.
    pub requests: u64,
    /// Blocks delivered.
    pub blocks: u64,
    /// "Not found" answers.
    pub not_found: u64,
    /// Failed requests.
    pub errors: u64,
    /// Bytes delivered.
    pub bytes: u64,
    /// Latency EWMA in milliseconds, once it answered.
    pub latency_ewma_ms: Option<f64>,
    /// Decayed recent error count (ranking weight).
    pub recent_errors: f64,
    /// Ranked down for recent errors or a running backoff.
    pub demoted: bool,
    /// Dropped for sending a bad block.
    pub dropped: bool,
    /// Milliseconds left in a Retry-After backoff.
    pub backoff_ms: Option<u64>,
}

/// `n` bytes in a short human form (KiB, MiB, ... powers of 1024).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

impl Status {
    /// The human report `distfs status` prints.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "root:        {} = {}", self.root.spec, self.root.cid);
        let _ = writeln!(s, "mountpoint:  {}", self.mountpoint);
        let _ = writeln!(
            s,
            "daemon:      pid {}, up {} s{}",
            self.pid,
            self.uptime_secs,
            if self.offline { ", offline" } else { "" }
        );
        if let Some(m) = &self.metrics_listen {
            let _ = writeln!(s, "metrics:     http://{m}/metrics");
        }
        for n in &self.names {
            let _ = writeln!(
                s,
                "name:        {} → {} (sequence {}, ttl {} s, from {})",
                n.name,
                n.cid,
                n.sequence.map_or("-".to_owned(), |q| q.to_string()),
                n.ttl_secs,
                n.source
            );
            if let Some(e) = &n.last_refresh_error {
                let _ = writeln!(s, "             last refresh failed: {e}");
            }
        }
        for p in &self.projects {
            let _ = writeln!(
                s,
                "project:     {} ({}, {}) {}{}{}",
                p.name,
                p.origin,
                p.root,
                p.state,
                p.cid.as_ref().map_or(String::new(), |c| format!(" → {c}")),
                p.sequence
                    .map_or(String::new(), |q| format!(" (sequence {q})")),
            );
            if let Some(e) = &p.error {
                let _ = writeln!(s, "             error: {e}");
            }
        }
        for c in &self.clashes {
            let hidden: Vec<String> = c.hidden.iter().map(|o| o.to_string()).collect();
            let _ = writeln!(
                s,
                "clash:       {}: the {} project is shown; hidden: {}",
                c.name,
                c.shown,
                hidden.join(", ")
            );
        }
        for (name, reason) in &self.hub_rejected {
            let _ = writeln!(s, "hub entry:   {name:?} rejected: {reason}");
        }
        if let Some(e) = &self.hub_error {
            let _ = writeln!(s, "hub index:   unusable: {e}");
        }
        let c = &self.cache;
        let _ = writeln!(
            s,
            "cache:       {} in {} blocks of {} ({} pinned), {}",
            human_bytes(c.bytes),
            c.blocks,
            c.limit.map_or("no limit".to_owned(), human_bytes),
            human_bytes(c.pinned_bytes),
            c.dir
        );
        let _ = writeln!(
            s,
            "reads:       {} hits, {} misses{}; {} fetched ({}); {} in flight of {}",
            c.hits,
            c.misses,
            c.hit_ratio
                .map_or(String::new(), |r| format!(" ({:.1}% hits)", r * 100.0)),
            c.fetches,
            human_bytes(c.fetched_bytes),
            c.in_flight,
            c.max_in_flight
        );
        let w = &c.whole;
        let _ = writeln!(
            s,
            "passthrough: {}; {} opens; whole copies: {} ({}), {} written, {} proved, {} dropped",
            if w.passthrough { "on" } else { "off" },
            w.passthrough_opens,
            w.files,
            human_bytes(w.bytes),
            w.written,
            w.proved,
            w.dropped
        );
        for g in &self.gateways {
            let mut state = Vec::new();
            if g.local {
                state.push("local".to_owned());
            }
            if g.origin == crate::fetch::ORIGIN_ROUTING {
                state.push("found through routing".to_owned());
            }
            if g.dropped {
                state.push("DROPPED (sent a bad block)".to_owned());
            } else if g.demoted {
                state.push("demoted".to_owned());
            }
            if let Some(b) = g.backoff_ms {
                state.push(format!("backing off {b} ms"));
            }
            let _ = writeln!(
                s,
                "gateway:     {} — {} requests, {} errors, {} latency{}",
                g.url,
                g.requests,
                g.errors,
                g.latency_ewma_ms
                    .map_or("no".to_owned(), |l| format!("{l:.0} ms")),
                if state.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", state.join(", "))
                }
            );
        }
        s
    }
}
