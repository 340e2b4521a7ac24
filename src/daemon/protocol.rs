//! The control socket's wire format: the client writes one JSON [`Request`] line, the daemon
//! answers with one or more JSON [`Reply`] lines (zero or more `progress`, then exactly one
//! `done` or `error`) and closes the connection.
//!
//! ```text
//! → {"op":"pin","path":"app/1.0.0"}
//! ← {"type":"progress","blocks":12,"bytes":3145728,"queued":40}
//! ← {"type":"done","result":{"pinned":{"label":"...","cid":"...","blocks":52,"bytes":13000000,"fetched":40}}}
//! ```

use serde::{Deserialize, Serialize};

use super::status::Status;

/// The socket's file name inside the cache directory.
pub const SOCKET_FILE: &str = "control.sock";
/// The longest request line accepted.
pub const MAX_REQUEST: usize = 64 * 1024;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    /// The daemon's state ([`Status`]).
    Status,
    /// Pin a path inside the mount (absolute under the mount point, or relative to the mount
    /// root) or `/ipfs/<cid>[/path]`.
    Pin {
        /// The path.
        path: String,
    },
    /// Release the pin of a path (same forms as `pin`), a pinned CID or a pin label.
    Unpin {
        /// The path, CID or label.
        path: String,
    },
    /// Re-resolve the root now.
    Refresh,
    /// Evict down to the quota (or to `target` bytes) and remove crash leftovers.
    Gc {
        /// Evict down to this many bytes instead of the daemon's quota.
        #[serde(default)]
        target: Option<u64>,
    },
    /// The daemon's metrics in Prometheus text format.
    Metrics,
    /// Hand the mount over to a new process and exit (a hot restart).
    Restart {
        /// The binary to start (default: the daemon's own executable, as named now).
        #[serde(default)]
        binary: Option<String>,
    },
}

/// One line of an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Reply {
    /// Work in progress (pin): blocks and bytes so far, blocks still queued.
    Progress {
        /// Blocks pinned so far.
        blocks: u64,
        /// Bytes pinned so far.
        bytes: u64,
        /// Blocks known but not fetched yet.
        queued: u64,
    },
    /// The final answer.
    Done {
        /// What came of it.
        result: Outcome,
    },
    /// The request failed; the reason, in words for a person.
    Error {
        /// Why.
        message: String,
    },
}

/// A successful request's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Answer to [`Request::Status`].
    Status(Box<Status>),
    /// Answer to [`Request::Pin`].
    Pinned(PinOutcome),
    /// Answer to [`Request::Unpin`]: the labels released and their block counts.
    Unpinned(Vec<(String, u64)>),
    /// Answer to [`Request::Refresh`].
    Refreshed(RefreshOutcome),
    /// Answer to [`Request::Gc`].
    Collected(GcOutcome),
    /// Answer to [`Request::Metrics`]: Prometheus text.
    Metrics(String),
    /// Answer to [`Request::Restart`]: the old daemon exits right after sending it.
    Restarted(RestartOutcome),
}

/// What a restart did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartOutcome {
    /// The daemon that handed the mount over (exiting).
    pub old_pid: u32,
    /// The daemon serving the mount now.
    pub new_pid: u32,
}

/// What a pin did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinOutcome {
    /// The label the pin is recorded under (`/ipfs/<root>/<path>`).
    pub label: String,
    /// The CID of the pinned DAG.
    pub cid: String,
    /// Blocks pinned.
    pub blocks: u64,
    /// Bytes pinned.
    pub bytes: u64,
    /// Blocks that had to be fetched.
    pub fetched: u64,
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshOutcome {
    /// The root spec that was re-resolved.
    pub root: String,
    /// The root CID before.
    pub old: String,
    /// The root CID now.
    pub new: String,
    /// The record's sequence number (IPNS names).
    pub sequence: Option<u64>,
    /// Where the answer came from.
    pub source: String,
    /// Seconds until the next scheduled refresh.
    pub ttl_secs: u64,
}

/// What a gc did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcOutcome {
    /// Temp files of dead writers removed.
    pub temp_removed: u64,
    /// Blocks evicted.
    pub evicted_blocks: u64,
    /// Bytes evicted.
    pub evicted_bytes: u64,
    /// Bytes cached after.
    pub bytes: u64,
    /// Blocks cached after.
    pub blocks: u64,
    /// Pinned bytes (never evicted).
    pub pinned_bytes: u64,
    /// The size evicted down to, if any.
    pub limit: Option<u64>,
}
