//! Importing bytes and file trees into UnixFS DAGs, byte-for-byte like Kubo's `ipfs add`
//! (boxo importer), streaming blocks into a [`BlockSink`] as soon as each is complete.
//!
//! Layout of the module:
//! - [`chunker`] / [`buzhash`] / [`squashfs`]: cutting a file into chunks (`size-N`,
//!   `buzhash`, `squashfs`: AppImages and squashfs images cut at their own blocks).
//! - [`file`](mod@file): balanced and trickle file DAGs (SPECS.md §3.2–§3.4), memory bounded by
//!   depth × max links, never by file size.
//! - [`dir`] / [`hamt`]: directory nodes and HAMT sharding (SPECS.md §3.6; the hash is
//!   `unixfs::murmur3_x64_64`, shared with the reader).
//! - [`tree`]: the edge that reads a path on disk (files, directories, symlinks) in Kubo's
//!   order and reports `added <cid> <path>` events. It is the only part that touches files.
//! - [`sink`]: where blocks go (CAR, disk store, memory, null, tee).
//!
//! Everything except `tree` is pure: bytes in, blocks out, no files, no tokio.

pub mod buzhash;
pub mod chunker;
pub mod dir;
pub mod file;
pub mod hamt;
pub mod sink;
pub mod squashfs;
pub mod tree;

use std::path::PathBuf;

use cid::Cid;

pub use chunker::ChunkerSpec;
pub use dir::{build_directory, DirEntry};
pub use file::{import_chunked, import_file, import_file_seekable, FileNode};
pub use sink::{BlockSink, CarSink, NullSink, Tee, VecSink};
pub use tree::{add_path, AddedEntry};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file being read (`-` for a stream).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The `--chunker` value is not usable.
    #[error("chunker {spec:?}: {reason}")]
    BadChunker {
        /// The spec as given.
        spec: String,
        /// What is wrong and what to use instead.
        reason: String,
    },
    /// A file name is not UTF-8; UnixFS link names must be.
    #[error("{path}: file name is not valid UTF-8 (UnixFS names must be UTF-8); rename it or leave it out")]
    NonUtf8Name {
        /// The offending path.
        path: PathBuf,
    },
    /// A file system object that UnixFS cannot represent (fifo, socket, device).
    #[error(
        "{path}: unsupported file type (only regular files, directories and symlinks can be added)"
    )]
    UnsupportedFileType {
        /// The offending path.
        path: PathBuf,
    },
    /// The options contradict each other.
    #[error("invalid import options: {0}")]
    InvalidOptions(String),
    /// A sink could not take a block.
    #[error("storing block {cid}: {reason}")]
    Sink {
        /// The block that was refused.
        cid: Cid,
        /// Why.
        reason: String,
    },
    /// A HAMT ran out of hash bits (more than 64 bits of identical prefix).
    #[error("sharded directory too deep: names {first:?} and {second:?} collide on every level")]
    HamtTooDeep {
        /// One name.
        first: String,
        /// Another name with the same full hash.
        second: String,
    },
    /// A node would exceed the block size limit.
    #[error("a {kind} node of {size} bytes exceeds the {max}-byte block limit; use smaller chunks or fewer links")]
    BlockTooLarge {
        /// Which node.
        kind: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

impl ImportError {
    /// Names the file an I/O error came from (the core builders only know streams).
    pub fn with_path(self, path: impl Into<PathBuf>) -> ImportError {
        match self {
            ImportError::Io { source, .. } => ImportError::Io {
                path: path.into(),
                source,
            },
            other => other,
        }
    }

    pub(crate) fn stream_io(source: std::io::Error) -> ImportError {
        ImportError::Io {
            path: PathBuf::from("-"),
            source,
        }
    }
}

/// File DAG layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// boxo's balanced builder (Kubo's default).
    #[default]
    Balanced,
    /// boxo's trickle builder (`--trickle`).
    Trickle,
}

/// How a directory's size is estimated for the sharding decision (SPECS.md §3.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SizeEstimate {
    /// Σ len(name) + len(CID bytes) (Kubo's default, "links-bytes").
    #[default]
    Links,
    /// The exact serialized size of the basic directory block ("block-bytes",
    /// unixfs-v1-2025).
    Block,
}

/// How the estimate is compared with the threshold.
///
/// Current Kubo (boxo with ipfs/boxo#1088, Kubo ≥ 0.40) shards when the estimate is
/// strictly greater than the threshold. Kubo ≤ 0.39 — including Kubo 0.22 (boxo 0.11,
/// `io/directory.go` `needsToSwitchToHAMTDir`: `estimatedSize+operationSizeChange >=
/// HAMTShardingSize`) — sharded at greater-or-equal, so a directory whose links estimate is
/// exactly 262144 is a HAMT there and a basic directory now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ThresholdCompare {
    /// `estimate > threshold` (current Kubo; the default).
    #[default]
    Greater,
    /// `estimate >= threshold` (Kubo ≤ 0.39, e.g. Kubo 0.22).
    GreaterOrEqual,
}

/// HAMT sharding parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HamtOptions {
    /// Size threshold in bytes (Kubo: 256 KiB).
    pub threshold: usize,
    /// How the size is estimated.
    pub estimate: SizeEstimate,
    /// `>` or `>=`.
    pub compare: ThresholdCompare,
    /// Shard width: a power of two, multiple of 8, at most 1024 (Kubo: 256).
    pub fanout: usize,
}

impl Default for HamtOptions {
    fn default() -> Self {
        HamtOptions {
            threshold: 262_144,
            estimate: SizeEstimate::Links,
            compare: ThresholdCompare::Greater,
            fanout: 256,
        }
    }
}

/// Everything that decides the DAG's shape. [`ImportOptions::default`] is Kubo's default
/// (= the `unixfs-v0-2015` profile).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of dag-pb nodes (raw leaves are always CIDv1).
    pub cid_version: cid::Version,
    /// Raw leaves instead of UnixFS File leaves.
    pub raw_leaves: bool,
    /// How files are cut.
    pub chunker: ChunkerSpec,
    /// Balanced or trickle.
    pub layout: Layout,
    /// Max links per file node (Kubo: 174).
    pub max_links: usize,
    /// Directory sharding.
    pub hamt: HamtOptions,
    /// Store each entry's permission bits (UnixFS 1.5 `mode`).
    pub preserve_mode: bool,
    /// Store each entry's modification time (UnixFS 1.5 `mtime`).
    pub preserve_mtime: bool,
    /// Include dotfiles below the top level (Kubo `--hidden`).
    pub include_hidden: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Profile::UnixfsV0_2015.options()
    }
}

/// Named import profiles (IPIP-0499).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// CIDv0, 256 KiB chunks, 174 links, dag-pb leaves, links estimate (Kubo default).
    UnixfsV0_2015,
    /// CIDv1, 1 MiB chunks, 1024 links, raw leaves, block estimate.
    UnixfsV1_2025,
}

impl Profile {
    /// Parses a profile name (`legacy-cid-v0` is Kubo's alias of `unixfs-v0-2015`).
    pub fn parse(name: &str) -> Result<Profile, ImportError> {
        match name {
            "unixfs-v0-2015" | "legacy-cid-v0" => Ok(Profile::UnixfsV0_2015),
            "unixfs-v1-2025" => Ok(Profile::UnixfsV1_2025),
            other => Err(ImportError::InvalidOptions(format!(
                "unknown profile {other:?}; use unixfs-v0-2015 or unixfs-v1-2025"
            ))),
        }
    }

    /// The options the profile stands for.
    pub fn options(self) -> ImportOptions {
        match self {
            Profile::UnixfsV0_2015 => ImportOptions {
                cid_version: cid::Version::V0,
                raw_leaves: false,
                chunker: ChunkerSpec::Size(262_144),
                layout: Layout::Balanced,
                max_links: 174,
                hamt: HamtOptions::default(),
                preserve_mode: false,
                preserve_mtime: false,
                include_hidden: false,
            },
            Profile::UnixfsV1_2025 => ImportOptions {
                cid_version: cid::Version::V1,
                raw_leaves: true,
                chunker: ChunkerSpec::Size(1_048_576),
                layout: Layout::Balanced,
                max_links: 1024,
                hamt: HamtOptions {
                    estimate: SizeEstimate::Block,
                    ..HamtOptions::default()
                },
                preserve_mode: false,
                preserve_mtime: false,
                include_hidden: false,
            },
        }
    }
}

/// `ipfs add`-style flags before resolution: `None` means "not given".
#[derive(Clone, Debug, Default)]
pub struct AddFlags {
    /// `--profile`.
    pub profile: Option<Profile>,
    /// `--cid-version`.
    pub cid_version: Option<u8>,
    /// `--raw-leaves[=bool]`.
    pub raw_leaves: Option<bool>,
    /// `--chunker`.
    pub chunker: Option<ChunkerSpec>,
    /// `--trickle`.
    pub trickle: bool,
    /// `--preserve-mode`.
    pub preserve_mode: bool,
    /// `--preserve-mtime`.
    pub preserve_mtime: bool,
    /// `--hidden`.
    pub hidden: bool,
    /// Shard at `>=` like Kubo ≤ 0.39 instead of `>`.
    pub legacy_hamt_threshold: bool,
}

impl AddFlags {
    /// Resolves flags the way Kubo's `add` command does: a profile acts like config
    /// (its raw-leaves choice counts as explicit), `--cid-version 1` turns raw leaves on
    /// unless they were set, and mode/mtime force dag-pb leaves — an error if raw leaves
    /// were asked for explicitly (Kubo `core/commands/add.go`).
    pub fn resolve(&self) -> Result<ImportOptions, ImportError> {
        let mut opts = self.profile.unwrap_or(Profile::UnixfsV0_2015).options();
        let mut raw_set = self.profile.is_some() && opts.raw_leaves;
        let mut raw = if self.profile.is_some() {
            opts.raw_leaves
        } else {
            false
        };
        if let Some(v) = self.raw_leaves {
            raw_set = true;
            raw = v;
        }
        match self.cid_version {
            None => {}
            Some(0) => opts.cid_version = cid::Version::V0,
            Some(1) => opts.cid_version = cid::Version::V1,
            Some(v) => {
                return Err(ImportError::InvalidOptions(format!(
                    "unknown CID version {v}; use 0 or 1"
                )))
            }
        }
        if self.preserve_mode || self.preserve_mtime {
            if raw_set && raw {
                return Err(ImportError::InvalidOptions(
                    "raw-leaves can't be used with UnixFS metadata like mode or modification \
                     time; drop --raw-leaves (or pass --raw-leaves=false)"
                        .into(),
                ));
            }
            raw_set = true;
            raw = false;
        }
        opts.raw_leaves = if raw_set {
            raw
        } else {
            opts.cid_version == cid::Version::V1
        };
        if let Some(c) = self.chunker {
            opts.chunker = c;
        }
        if self.trickle {
            opts.layout = Layout::Trickle;
        }
        opts.preserve_mode = self.preserve_mode;
        opts.preserve_mtime = self.preserve_mtime;
        opts.include_hidden = self.hidden;
        if self.legacy_hamt_threshold {
            opts.hamt.compare = ThresholdCompare::GreaterOrEqual;
        }
        Ok(opts)
    }
}

/// UnixFS 1.5 metadata of one entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits (`& 0o7777`).
    pub mode: Option<u32>,
    /// Modification time.
    pub mtime: Option<Mtime>,
}

/// A modification time: seconds since the epoch and a nanosecond fraction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mtime {
    /// Whole seconds (may be negative).
    pub seconds: i64,
    /// Fraction in `0..1_000_000_000`; 0 is not written (SPECS.md §2.3).
    pub nanos: u32,
}

impl Metadata {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.mtime.is_none()
    }

    pub(crate) fn apply(&self, data: &mut crate::unixfs::pb::Data) {
        data.mode = self.mode;
        data.mtime = self.mtime.map(|t| crate::unixfs::pb::UnixTime {
            seconds: Some(t.seconds),
            fractional_nanoseconds: (t.nanos != 0).then_some(t.nanos),
        });
    }
}
