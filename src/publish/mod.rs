//! Publishing a release: adds a version of a project to a distribution tree, signs an IPNS
//! record for the new root and pushes blocks and record to a `distfs serve` target.
//!
//! One [`publish`] run:
//! 1. finds the current root — `--root /ipfs/CID`, else the record the target holds for the
//!    key's name (its signature is checked; an expired record still gives the sequence to
//!    continue from), else an empty distribution with sequence 0;
//! 2. imports the files ([`import_options_for`]: squashfs-aware chunking for AppImages and
//!    squashfs images, fixed-size otherwise) and writes the version's `dist.json`
//!    ([`distjson`]);
//! 3. rebuilds the version, project and root directories ([`layout`]), fetching only the
//!    blocks on that path from the target (then any `--gateway`) through `fetch`
//!    ([`remote`]);
//! 4. signs a record with sequence + 1 for `/ipfs/<new root>`;
//! 5. pushes the new blocks the target lacks as CAR uploads ([`push`]), then the record.
//!
//! Import settings: Kubo's `ipfs add --cid-version 1` (CIDv1, raw leaves, 256 KiB chunks,
//! 174 links, balanced). CIDv1 because raw leaves need it and because dist.ipfs.tech's own
//! tree is CIDv1; raw leaves because a leaf's CID then depends only on its bytes, so the
//! same chunk in two versions (or two files) is one block, stored and uploaded once.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use cid::Cid;

use crate::fetch::{
    Fetcher, FetcherConfig, PushClient, PushError, RecordApi, RecordClient, RecordFetchError,
    DEFAULT_RECORD_TIMEOUT,
};
use crate::import::{ChunkerSpec, ImportError, ImportOptions, Profile};
use crate::name::key::Keypair;
use crate::name::{record, IpnsName};
use crate::walk::WalkError;

pub mod distjson;
pub mod hub;
pub mod layout;
pub mod pin;
pub mod push;
pub mod remote;

pub use push::PushReport;

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A project, version or channel name that cannot be used.
    #[error("{what} name {name:?} {reason}")]
    BadName {
        what: &'static str,
        name: String,
        reason: String,
    },
    /// The version is already published.
    #[error(
        "{project} {version} is already published (versions are immutable: pick a new version)"
    )]
    VersionExists { project: String, version: String },
    /// The channel name is taken by an entry of the project directory.
    #[error("channel {channel:?} clashes with an entry of project {project} of the same name; pick another channel name")]
    ChannelConflict { channel: String, project: String },
    /// Two files to publish share a name, or one is named like a generated file.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// Something on the tree's path is not a directory.
    #[error("{what} ({cid}) is not a directory")]
    NotADirectory { what: String, cid: Cid },
    /// A `versions` or `channels` entry that is not a file.
    #[error("{what} ({cid}) is not a file")]
    NotAFile { what: String, cid: Cid },
    /// A `versions` or `channels` file over the size limit.
    #[error("{what} is {size} bytes, over the {max}-byte limit")]
    TooLarge { what: String, size: u64, max: u64 },
    /// A `versions` or `channels` file that is not UTF-8.
    #[error("{what} is not UTF-8 text")]
    NotText { what: String },
    /// The record the target holds for our name is unusable.
    #[error("the target's record for {name} is unusable: {reason} (pass --root /ipfs/CID to publish over it)")]
    TargetRecord { name: String, reason: String },
    /// Reading the current tree failed.
    #[error("reading the current tree: {0}")]
    Walk(Box<WalkError>),
    /// Importing the files failed.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// Signing failed.
    #[error("signing the record: {0}")]
    Sign(String),
    /// Talking to the target failed.
    #[error(transparent)]
    Push(#[from] PushError),
    /// Reading the target's record failed.
    #[error("reading the current record: {0}")]
    Record(#[from] RecordFetchError),
    /// Reading the target as a block source failed to start.
    #[error("cannot read blocks from the target: {0}")]
    Fetch(String),
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A worker task died.
    #[error("publish task failed: {0}")]
    Task(String),
}

impl From<WalkError> for PublishError {
    fn from(e: WalkError) -> PublishError {
        PublishError::Walk(Box::new(e))
    }
}

/// The import settings of published trees (see the module doc for why).
pub fn import_options() -> ImportOptions {
    let mut opts = Profile::UnixfsV0_2015.options();
    opts.cid_version = cid::Version::V1;
    opts.raw_leaves = true;
    opts
}

/// The import settings for one published file: AppImages and squashfs images are cut at
/// squashfs block boundaries (so unchanged files inside them dedupe between versions);
/// everything else uses [`import_options`].
pub fn import_options_for(path: &std::path::Path, first_bytes: &[u8]) -> ImportOptions {
    let mut opts = import_options();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let squashfs = name.ends_with(".AppImage")
        || name.ends_with(".squashfs")
        || name.ends_with(".sqfs")
        || first_bytes.starts_with(b"hsqs");
    if squashfs {
        opts.chunker = ChunkerSpec::Squashfs;
    }
    opts
}

/// What to publish.
#[derive(Clone, Debug)]
pub struct Release {
    /// Project directory name.
    pub project: String,
    /// Version directory name.
    pub version: String,
    /// Channel to point at this version.
    pub channel: Option<String>,
    /// Files (or directories) to put in the version directory, by their base names.
    pub files: Vec<PathBuf>,
    /// `owner` in `dist.json`.
    pub owner: Option<String>,
    /// `description` in `dist.json`.
    pub description: Option<String>,
    /// The key's name is this one project's own tree (version directories at its root, as
    /// `distfs mount --project NAME=ROOT` shows it), not a distribution of projects.
    pub single: bool,
}

/// How to publish.
#[derive(Clone, Debug)]
pub struct Options {
    /// Start from this root instead of the one the target's record names.
    pub root: Option<Cid>,
    /// The record's TTL (how often readers re-resolve).
    pub ttl: Duration,
    /// How long the record stays valid.
    pub lifetime: Duration,
    /// The upload token.
    pub token: String,
    /// More trustless gateways to read the current tree from (after the target).
    pub gateways: Vec<String>,
    /// Import settings per file (tests override; [`import_options_for`] by default).
    pub chunking: fn(&std::path::Path, &[u8]) -> ImportOptions,
}

impl Options {
    /// TTL 60 s, lifetime 7 days, default chunking.
    pub fn new(token: String) -> Options {
        Options {
            root: None,
            ttl: Duration::from_secs(60),
            lifetime: Duration::from_secs(7 * 24 * 3600),
            token,
            gateways: Vec::new(),
            chunking: import_options_for,
        }
    }
}

/// What a publish did.
#[derive(Clone, Debug)]
pub struct Published {
    /// The key's IPNS name.
    pub name: String,
    /// The root published before (if any).
    pub previous: Option<Cid>,
    /// The new root.
    pub root: Cid,
    /// The new version directory.
    pub version_dir: Cid,
    /// The new record's sequence number.
    pub sequence: u64,
    /// The project's `versions` file now.
    pub versions: String,
    /// What was uploaded.
    pub pushed: PushReport,
}

/// The current state at the target: the root to build on and the next sequence number.
pub(crate) struct Current {
    pub(crate) root: Option<Cid>,
    pub(crate) next_sequence: u64,
}

pub(crate) async fn current(
    client: &PushClient,
    name: &IpnsName,
    root: Option<Cid>,
) -> Result<Current, PublishError> {
    let unusable = |reason: String| PublishError::TargetRecord {
        name: name.to_string(),
        reason,
    };
    let records = RecordClient::new(
        client.base(),
        RecordApi::Routing,
        RecordClient::http_client()?,
        DEFAULT_RECORD_TIMEOUT,
    )?;
    let Some(bytes) = records.get(&name.to_string()).await? else {
        return Ok(Current {
            root,
            next_sequence: 0,
        });
    };
    // Checked as of the epoch: the signature and the name must hold, but a record that has
    // expired since the last publish still says which sequence to continue from.
    let rec = record::verify(name, &bytes, SystemTime::UNIX_EPOCH)
        .map_err(|e| unusable(e.to_string()))?;
    let next_sequence = rec
        .sequence
        .checked_add(1)
        .ok_or_else(|| unusable("sequence number is at its maximum".into()))?;
    let root = match root {
        Some(r) => Some(r),
        None => Some(root_of(&rec.value).map_err(unusable)?),
    };
    Ok(Current {
        root,
        next_sequence,
    })
}

/// The CID of an `/ipfs/<cid>` record value (no sub-path: a distribution root is a
/// directory CID).
pub fn root_of(value: &str) -> Result<Cid, String> {
    let rest = value
        .strip_prefix("/ipfs/")
        .ok_or_else(|| format!("value {value:?} is not an /ipfs/<cid> path"))?;
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        return Err(format!(
            "value {value:?} has a sub-path; expected /ipfs/<cid>"
        ));
    }
    rest.parse()
        .map_err(|e| format!("value {value:?}: bad CID: {e}"))
}

/// Publishes `release` to the target behind `client`, signed with `key`.
#[tracing::instrument(skip_all, fields(project = %release.project, version = %release.version))]
pub async fn publish(
    key: &Keypair,
    release: &Release,
    client: &PushClient,
    opts: &Options,
) -> Result<Published, PublishError> {
    let name = key.name();
    let cur = current(client, &name, opts.root).await?;
    tracing::info!(root = ?cur.root.map(|c| c.to_string()), sequence = cur.next_sequence, "current state");

    // Import the files on a blocking thread (file reads, hashing).
    let files = release.files.clone();
    let chunking = opts.chunking;
    let (mut sink, facts, mut entries) =
        tokio::task::spawn_blocking(move || push::import_files(&files, chunking))
            .await
            .map_err(|e| PublishError::Task(e.to_string()))??;
    let info = distjson::ReleaseInfo {
        project: release.project.clone(),
        version: release.version.clone(),
        owner: release.owner.clone(),
        description: release.description.clone(),
    };
    let dist_json = distjson::dist_json(&info, &facts, SystemTime::now());
    entries.push(push::text_entry("dist.json", &dist_json, &mut sink)?);

    let mut sources = vec![client.base().to_string()];
    sources.extend(opts.gateways.iter().cloned());
    let fetcher = Fetcher::from_gateways(&sources, FetcherConfig::default())
        .map_err(|e| PublishError::Fetch(e.to_string()))?;
    let store = remote::Remote::new(fetcher);
    let addition = layout::Addition {
        project: release.project.clone(),
        version: release.version.clone(),
        channel: release.channel.clone(),
        entries,
    };
    let tree = if release.single {
        let p = layout::add_version_to_project(
            &store,
            cur.root.as_ref(),
            addition,
            &import_options(),
            &mut sink,
        )
        .await?;
        layout::NewTree {
            root: p.root,
            project_dir: p.root,
            version_dir: p.version_dir,
            versions: p.versions,
            root_sharded: p.sharded,
        }
    } else {
        layout::add_version(
            &store,
            cur.root.as_ref(),
            addition,
            &import_options(),
            &mut sink,
        )
        .await?
    };
    tracing::info!(
        fetched = store.fetched(),
        root = %tree.root,
        "new tree built (blocks of the current tree read)"
    );

    let eol = SystemTime::now() + opts.lifetime;
    let value = format!("/ipfs/{}", tree.root);
    let rec = record::create(key, &value, cur.next_sequence, eol, opts.ttl)
        .map_err(|e| PublishError::Sign(e.to_string()))?;

    let pushed = push::push_blocks(client, sink, &tree.root, &opts.token).await?;
    client.put_record(&name.to_string(), rec).await?;
    Ok(Published {
        name: name.to_string(),
        previous: cur.root,
        root: tree.root,
        version_dir: tree.version_dir,
        sequence: cur.next_sequence,
        versions: tree.versions,
        pushed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values() {
        let cid = "bafkqaaa";
        assert_eq!(root_of(&format!("/ipfs/{cid}")).unwrap().to_string(), cid);
        assert!(root_of("/ipns/example.com").is_err());
        assert!(root_of(&format!("/ipfs/{cid}/sub")).is_err());
        assert!(root_of("/ipfs/notacid").is_err());
    }

    #[test]
    fn chunking_choice() {
        use std::path::Path;
        assert_eq!(
            import_options_for(Path::new("a/hello-x86_64.AppImage"), b"").chunker,
            ChunkerSpec::Squashfs
        );
        assert_eq!(
            import_options_for(Path::new("image.bin"), b"hsqs\0\0").chunker,
            ChunkerSpec::Squashfs
        );
        let plain = import_options_for(Path::new("tool.tar.gz"), b"\x1f\x8b");
        assert_eq!(plain.chunker, ChunkerSpec::Size(262_144));
        assert!(plain.raw_leaves);
        assert_eq!(plain.cid_version, cid::Version::V1);
    }
}
