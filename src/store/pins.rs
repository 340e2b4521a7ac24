//! Pins: DAGs kept whole in the cache, through eviction, `gc` and restarts.
//!
//! [`CacheStore::pin`] walks every block under a root (fetching what is missing, a level of
//! the DAG at a time, [`PIN_CONCURRENCY`] blocks at once), makes sure each is on disk, marks
//! it pinned in the quota index, and records the pin as `DIR/pins/<root cid>`: a header, the
//! label it was asked by, and the multihash (hex) of every block, one a line. The file is
//! written to a temp file, fsynced and renamed, so a crash leaves the old pin set or the new
//! one. Listing the blocks (rather than the root alone) lets a restart rebuild the pinned set
//! without reading a single block.

// Errors carry the root CID and the cache's structured error, as the house rules ask; a
// pin is a long network walk next to which moving ~250 bytes on failure is noise.
#![allow(
    clippy::result_large_err,
    reason = "structured error fields on network paths"
)]

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cid::Cid;
use futures::stream::{self, StreamExt};
use prost::Message;

use super::cache::{CacheError, CacheStore};
use super::index::Key;
use crate::block::{codec, mh, multihash_key, Block};
use crate::unixfs::node::link_cid;
use crate::unixfs::pb::PbNodeBytes;
use crate::unixfs::{UnixfsError, MAX_LINKS};

/// Blocks a pin fetches at once.
pub const PIN_CONCURRENCY: usize = 16;
/// The deepest DAG a pin follows.
pub const MAX_PIN_DEPTH: usize = 64;
const HEADER: &str = "distfs-pin 1";

/// Why a pin failed (nothing was pinned).
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// A block could not be had.
    #[error("pinning {root}: {source}")]
    Block {
        root: Cid,
        #[source]
        source: CacheError,
    },
    /// A block is not a valid dag-pb node.
    #[error("pinning {root}: {source}")]
    Dag {
        root: Cid,
        #[source]
        source: UnixfsError,
    },
    /// The DAG is deeper than [`MAX_PIN_DEPTH`].
    #[error("pinning {root}: DAG deeper than {MAX_PIN_DEPTH} levels")]
    TooDeep { root: Cid },
    /// The pin record could not be written or removed.
    #[error("pin record {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One pin as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRecord {
    /// The root of the pinned DAG.
    pub root: Cid,
    /// What the user asked to pin (e.g. `/ipfs/<cid>/project/1.0`).
    pub label: String,
    /// Every pinned block's multihash bytes.
    pub keys: Vec<Key>,
}

/// Progress of a running pin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinProgress {
    /// Blocks walked so far.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks discovered and not walked yet.
    pub queued: u64,
}

/// What a finished pin did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PinReport {
    /// Blocks pinned.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks that had to be fetched.
    pub fetched: u64,
}

/// The directory of pin records in a cache directory.
pub fn pins_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("pins")
}

/// Every readable pin record in `cache_dir`; unreadable ones are logged and skipped.
pub fn load_all(cache_dir: &Path) -> Vec<PinRecord> {
    let dir = pins_dir(cache_dir);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "pin") {
            continue;
        }
        match fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| parse(&t))
        {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(path = %path.display(), "ignoring unreadable pin record: {e}"),
        }
    }
    out
}

fn parse(text: &str) -> Result<PinRecord, String> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(format!("first line is not {HEADER:?}"));
    }
    let root = lines.next().ok_or("no root line")?;
    let root = Cid::from_str(root).map_err(|e| format!("root {root:?}: {e}"))?;
    let label = lines.next().ok_or("no label line")?.to_owned();
    let keys = lines
        .map(|l| hex::decode(l).map_err(|e| format!("block line {l:?}: {e}")))
        .collect::<Result<_, _>>()?;
    Ok(PinRecord { root, label, keys })
}

fn record_path(cache_dir: &Path, root: &Cid) -> PathBuf {
    pins_dir(cache_dir).join(format!("{root}.pin"))
}

/// Writes a record atomically (temp file, fsync, rename, fsync of the directory).
fn write_record(cache_dir: &Path, r: &PinRecord) -> Result<(), PinError> {
    let dir = pins_dir(cache_dir);
    let path = record_path(cache_dir, &r.root);
    let tmp = dir.join(format!(".tmp-{}-{}", std::process::id(), r.root));
    let write = || -> io::Result<()> {
        fs::create_dir_all(&dir)?;
        let mut f = io::BufWriter::new(fs::File::create(&tmp)?);
        writeln!(f, "{HEADER}\n{}\n{}", r.root, r.label.replace('\n', " "))?;
        for k in &r.keys {
            writeln!(f, "{}", hex::encode(k))?;
        }
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        PinError::Io {
            path: path.clone(),
            source,
        }
    })
}

/// The links of a block to follow (dag-pb only; raw and other codecs are leaves).
fn links(block: &Block) -> Result<Vec<Cid>, UnixfsError> {
    let cid = block.cid();
    if cid.codec() != codec::DAG_PB {
        return Ok(Vec::new());
    }
    let pb = PbNodeBytes::decode(block.data().clone()).map_err(|e| UnixfsError::Protobuf {
        cid: *cid,
        what: "dag-pb PBNode",
        reason: e.to_string(),
    })?;
    if pb.links.len() > MAX_LINKS {
        return Err(UnixfsError::TooManyLinks {
            cid: *cid,
            count: pb.links.len(),
            max: MAX_LINKS,
        });
    }
    pb.links
        .iter()
        .enumerate()
        .map(|(i, l)| link_cid(cid, i, l))
        .collect()
}

impl CacheStore {
    /// Pins the whole DAG under `root` plus the single blocks `extra` (e.g. the directories
    /// on the path to it), recorded under `label`. Fetches what is missing, writes every
    /// block to disk before returning, and calls `progress` after each DAG level. Pinning a
    /// root again replaces its record. On error nothing new stays pinned.
    #[tracing::instrument(skip_all, fields(root = %root))]
    pub async fn pin(
        &self,
        root: Cid,
        extra: &[Cid],
        label: &str,
        progress: &(dyn Fn(PinProgress) + Send + Sync),
    ) -> Result<PinReport, PinError> {
        let quota = self.quota();
        let mut seen: HashSet<Cid> = HashSet::new();
        let mut keys: Vec<Key> = Vec::new();
        let mut report = PinReport::default();
        let fetches_before = self.stats().fetches;
        let mut frontier: Vec<Cid> = extra.iter().copied().chain([root]).collect();
        let mut depth = 0;
        let result: Result<(), PinError> = async {
            while !frontier.is_empty() {
                if depth > MAX_PIN_DEPTH + extra.len() {
                    return Err(PinError::TooDeep { root });
                }
                depth += 1;
                let level: Vec<Cid> = frontier
                    .drain(..)
                    .filter(|c| c.hash().code() != mh::IDENTITY && seen.insert(*c))
                    .collect();
                // Mark before fetching: a block must not be evicted between its write and
                // the end of the pin.
                let level_keys: Vec<Key> = level.iter().map(multihash_key).collect();
                quota.pin_keys(&level_keys);
                keys.extend(level_keys);
                let mut blocks = stream::iter(level)
                    .map(|cid| async move {
                        let block = self.get(&cid).await?;
                        self.store_now(&block).await?;
                        Ok::<_, CacheError>(block)
                    })
                    .buffer_unordered(PIN_CONCURRENCY);
                while let Some(block) = blocks.next().await {
                    let block = block.map_err(|source| PinError::Block { root, source })?;
                    report.blocks += 1;
                    report.bytes += block.data().len() as u64;
                    // Only the DAG under the root is walked; `extra` blocks are pinned alone.
                    if depth > 1 || *block.cid() == root {
                        let more =
                            links(&block).map_err(|source| PinError::Dag { root, source })?;
                        frontier.extend(more);
                    }
                }
                progress(PinProgress {
                    blocks: report.blocks,
                    bytes: report.bytes,
                    queued: frontier.len() as u64,
                });
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            quota.unpin_keys(&keys);
            return Err(e);
        }
        let dir = self.disk().dir().to_path_buf();
        let old = load_all(&dir).into_iter().find(|r| r.root == root);
        let record = PinRecord {
            root,
            label: label.to_owned(),
            keys,
        };
        let written = {
            let (dir, record) = (dir.clone(), record.clone());
            tokio::task::spawn_blocking(move || write_record(&dir, &record)).await
        };
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                quota.unpin_keys(&record.keys);
                return Err(e);
            }
            Err(join) => {
                quota.unpin_keys(&record.keys);
                return Err(PinError::Io {
                    path: record_path(&dir, &root),
                    source: io::Error::other(join.to_string()),
                });
            }
        }
        if let Some(old) = old {
            quota.unpin_keys(&old.keys);
        }
        report.fetched = self.stats().fetches - fetches_before;
        Ok(report)
    }

    /// Removes the pin recorded for `root`, or for the label `what` (a CID string or the
    /// label given to [`CacheStore::pin`]); the records removed. The blocks stay cached and
    /// become evictable.
    pub async fn unpin(&self, what: &str) -> Result<Vec<PinRecord>, PinError> {
        let dir = self.disk().dir().to_path_buf();
        let what = what.to_owned();
        let removed = tokio::task::spawn_blocking(move || unpin_records(&dir, &what))
            .await
            .map_err(|join| PinError::Io {
                path: PathBuf::new(),
                source: io::Error::other(join.to_string()),
            })??;
        for r in &removed {
            self.quota().unpin_keys(&r.keys);
        }
        Ok(removed)
    }

    /// The pins recorded in the cache directory.
    pub fn pins(&self) -> Vec<PinRecord> {
        load_all(self.disk().dir())
    }
}

/// Removes the records matching `what` (root CID or label) from disk; blocking.
pub fn unpin_records(cache_dir: &Path, what: &str) -> Result<Vec<PinRecord>, PinError> {
    let mut removed = Vec::new();
    for r in load_all(cache_dir) {
        if r.root.to_string() == what || r.label == what {
            let path = record_path(cache_dir, &r.root);
            fs::remove_file(&path).map_err(|source| PinError::Io { path, source })?;
            removed.push(r);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let b = Block::encode(
            cid::Version::V1,
            codec::RAW,
            bytes::Bytes::from_static(b"x"),
        );
        let r = PinRecord {
            root: *b.cid(),
            label: "/ipfs/x/a b".into(),
            keys: vec![multihash_key(b.cid()), vec![1, 2, 3]],
        };
        write_record(dir.path(), &r).unwrap();
        assert_eq!(load_all(dir.path()), vec![r.clone()]);
        // A torn or foreign record is skipped, not fatal.
        fs::write(pins_dir(dir.path()).join("junk.pin"), "nonsense").unwrap();
        assert_eq!(load_all(dir.path()), vec![r.clone()]);
        assert_eq!(unpin_records(dir.path(), "/ipfs/x/a b").unwrap(), vec![r]);
        assert!(load_all(dir.path()).is_empty());
    }
}
