//! Pinning for the daemon and the offline `distfs pin`: turning a path (inside the mount, or
//! `/ipfs/<cid>[/path]`) into the CID to pin plus the blocks on the way to it, and recording
//! which blocks a path resolution read.

use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use cid::Cid;

use crate::block::Block;
use crate::dist::inode::Kind;
use crate::dist::{DistView, ROOT_INO};
use crate::store::{BlockStore, StoreError};

/// Symlinks (`latest`, channels) followed at most while resolving one path.
const MAX_LINKS_FOLLOWED: usize = 8;

/// A block store that records the CIDs of the blocks read through it (to pin the directories
/// on the way to a path).
pub struct Recorder<'a, S: ?Sized> {
    store: &'a S,
    seen: Mutex<Vec<Cid>>,
}

impl<'a, S: BlockStore + ?Sized> Recorder<'a, S> {
    /// Records reads through `store`.
    pub fn new(store: &'a S) -> Self {
        Recorder {
            store,
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The CIDs read so far.
    pub fn into_seen(self) -> Vec<Cid> {
        self.seen.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl<S: BlockStore + ?Sized> BlockStore for Recorder<'_, S> {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let b = self.store.get(cid).await?;
        if b.is_some() {
            // Short critical section, no `.await` while held.
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(*cid);
        }
        Ok(b)
    }
    async fn put(&self, block: Block) -> Result<(), StoreError> {
        self.store.put(block).await
    }
    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        self.store.has(cid).await
    }
}

/// Why a pin path could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// Not `/ipfs/<cid>...`, not under the mount point.
    #[error("{path}: give a path inside the mount {mountpoint} (or relative to its root), or /ipfs/<cid>[/path]")]
    Outside { path: String, mountpoint: String },
    /// `/ipfs/<x>` where x is no CID.
    #[error("{path}: {cid:?} is not a CID")]
    BadCid { path: String, cid: String },
    /// A path step failed in the view.
    #[error("{path}: {source}")]
    View {
        path: String,
        #[source]
        source: crate::dist::view::ViewError,
    },
    /// The path names a symlink of the DAG (pin its target instead).
    #[error("{path}: is a symlink; pin the path it points to")]
    Symlink { path: String },
    /// Too many `latest`/channel links followed.
    #[error("{path}: too many links followed")]
    TooManyLinks { path: String },
}

/// Where a pin path points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinPath {
    /// `/ipfs/<cid>` and the path segments below it.
    Ipfs(Cid, Vec<String>),
    /// Segments relative to the mount root.
    Mount(Vec<String>),
}

/// Classifies `path` for a mount at `mountpoint`: `/ipfs/<cid>[/p]` unless the mount point
/// itself is a prefix of it; an absolute path under the mount point; a relative path from
/// the mount root.
pub fn classify(path: &str, mountpoint: &Path) -> Result<PinPath, PathError> {
    let segs = |rest: &str| -> Vec<String> {
        rest.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_owned)
            .collect()
    };
    if let Ok(rest) = Path::new(path).strip_prefix(mountpoint) {
        return Ok(PinPath::Mount(segs(&rest.to_string_lossy())));
    }
    if let Some(rest) = path.strip_prefix("/ipfs/") {
        let mut parts = segs(rest).into_iter();
        let first = parts.next().unwrap_or_default();
        let cid = Cid::from_str(&first).map_err(|_| PathError::BadCid {
            path: path.to_owned(),
            cid: first.clone(),
        })?;
        return Ok(PinPath::Ipfs(cid, parts.collect()));
    }
    if path.starts_with('/') {
        return Err(PathError::Outside {
            path: path.to_owned(),
            mountpoint: mountpoint.display().to_string(),
        });
    }
    Ok(PinPath::Mount(segs(path)))
}

/// Maps mount-relative segments to DAG segments under the view's current root, following
/// the synthetic `latest` and channel links; returns the root CID and the DAG segments.
pub async fn dag_path(
    view: &DistView,
    segments: &[String],
) -> Result<(Cid, Vec<String>), PathError> {
    let root = view.root_cid();
    let label = segments.join("/");
    let mut out: Vec<String> = Vec::new();
    let mut parent = ROOT_INO;
    let mut queue: std::collections::VecDeque<String> = segments.iter().cloned().collect();
    let mut followed = 0;
    while let Some(seg) = queue.pop_front() {
        if seg == ".." {
            return Err(PathError::Outside {
                path: label,
                mountpoint: "(\"..\" is not allowed)".to_owned(),
            });
        }
        let node = view
            .lookup(parent, &seg)
            .await
            .map_err(|source| PathError::View {
                path: label.clone(),
                source,
            })?;
        match &node.kind {
            Kind::Latest(target) => {
                followed += 1;
                if followed > MAX_LINKS_FOLLOWED || target.starts_with('/') {
                    return Err(PathError::TooManyLinks { path: label });
                }
                // A project-relative target: resolve it in the same directory.
                let steps = target.split('/').filter(|s| !s.is_empty() && *s != ".");
                for (i, t) in steps.enumerate() {
                    queue.insert(i, t.to_owned());
                }
            }
            Kind::Symlink => return Err(PathError::Symlink { path: label }),
            Kind::Dir | Kind::File => {
                out.push(seg);
                parent = node.ino;
            }
        }
    }
    Ok((root, out))
}

/// The label a pin is recorded under: `/ipfs/<root>/<segments>`.
pub fn label(root: &Cid, segments: &[String]) -> String {
    format!(
        "/ipfs/{root}{}",
        segments.iter().map(|s| format!("/{s}")).collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_by_mount_point_first() {
        let m = Path::new("/mnt/dist");
        assert_eq!(
            classify("/mnt/dist/app/1.0", m).unwrap(),
            PinPath::Mount(vec!["app".into(), "1.0".into()])
        );
        assert_eq!(
            classify("app/./latest/", m).unwrap(),
            PinPath::Mount(vec!["app".into(), "latest".into()])
        );
        assert!(matches!(
            classify("/etc/passwd", m),
            Err(PathError::Outside { .. })
        ));
        assert!(matches!(
            classify("/ipfs/nope/x", m),
            Err(PathError::BadCid { .. })
        ));
        let cid = "bafkqaaa";
        assert_eq!(
            classify(&format!("/ipfs/{cid}/a"), m).unwrap(),
            PinPath::Ipfs(Cid::from_str(cid).unwrap(), vec!["a".into()])
        );
    }
}
