//! Where the gateway's blocks come from: [`Sources`], a [`BlockStore`] that asks each source
//! in order (disk stores, CAR files loaded into memory, then the site cache of `upstream`), and
//! [`load_car`], which reads a CAR file into a [`MemStore`] with every block verified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use cid::Cid;

use crate::block::Block;
use crate::car::{CarError, CarReader};
use crate::store::{BlockStore, MemStore, StoreError};

/// Why a source could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The CAR file could not be opened.
    #[error("CAR file {path}: {source}")]
    CarOpen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CAR file is malformed or holds a block that fails verification.
    #[error("CAR file {path}: {source} (the file is corrupt or not a CARv1)")]
    CarRead {
        path: PathBuf,
        #[source]
        source: Box<CarError>,
    },
    /// A block store could not be opened.
    #[error("block store: {0}")]
    Store(#[from] StoreError),
    /// The IPNS record directory could not be read.
    #[error("IPNS record directory {path}: {source}")]
    RecordDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record file is unusable (too large, unreadable, badly named).
    #[error("IPNS record {path}: {reason}")]
    Record { path: PathBuf, reason: String },
    /// Uploads were asked for but there is no disk store to write them to.
    #[error("uploads need a writable block store: add --store DIR (uploads go to the first one)")]
    UploadNeedsStore,
    /// The upload token file is unusable.
    #[error("upload token file {path}: {reason}")]
    UploadToken { path: PathBuf, reason: String },
    /// The upstreams or the site cache directory cannot be used.
    #[error("site cache: {0}")]
    Upstream(String),
    /// A start-up task died.
    #[error("loading sources: {0}")]
    Task(String),
}

/// Block sources asked in order; the first that holds a block answers.
#[derive(Default, Clone)]
pub struct Sources {
    stores: Vec<Arc<dyn BlockStore>>,
}

impl Sources {
    /// No sources yet.
    pub fn new() -> Sources {
        Sources::default()
    }

    /// Appends a source (asked after the ones already added).
    pub fn push(&mut self, store: Arc<dyn BlockStore>) {
        self.stores.push(store);
    }

    /// How many sources there are.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }
}

#[async_trait]
impl BlockStore for Sources {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if let Some(b) = Block::from_identity(cid)? {
            return Ok(Some(b));
        }
        for s in &self.stores {
            if let Some(b) = s.get(cid).await? {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Writes go to the first source (the primary store).
    async fn put(&self, block: Block) -> Result<(), StoreError> {
        match self.stores.first() {
            Some(s) => s.put(block).await,
            None => Ok(()),
        }
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        for s in &self.stores {
            if s.has(cid).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Reads a whole CAR file into memory, verifying every block (on a blocking thread).
/// Returns the store and the CAR's header roots.
pub async fn load_car(path: &Path) -> Result<(MemStore, Vec<Cid>), SourceError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || load_car_sync(&path))
        .await
        .map_err(|e| SourceError::Task(e.to_string()))?
}

fn load_car_sync(path: &Path) -> Result<(MemStore, Vec<Cid>), SourceError> {
    let file = std::fs::File::open(path).map_err(|source| SourceError::CarOpen {
        path: path.to_path_buf(),
        source,
    })?;
    let read_err = |source| SourceError::CarRead {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let mut reader = CarReader::new(std::io::BufReader::new(file)).map_err(read_err)?;
    let roots = reader.roots().to_vec();
    let store = MemStore::new();
    while let Some(block) = reader.next_block().map_err(read_err)? {
        store.insert(block);
    }
    Ok((store, roots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[tokio::test]
    async fn sources_ask_in_order_and_answer_identity() {
        let a = MemStore::new();
        let b = MemStore::new();
        let block = Block::encode(
            cid::Version::V1,
            crate::block::codec::RAW,
            Bytes::from_static(b"x"),
        );
        b.insert(block.clone());
        let mut s = Sources::new();
        s.push(Arc::new(a));
        s.push(Arc::new(b));
        assert_eq!(s.get(block.cid()).await.unwrap(), Some(block.clone()));
        assert!(s.has(block.cid()).await.unwrap());
        let empty: Cid = "bafkqaaa".parse().unwrap();
        assert!(s.get(&empty).await.unwrap().unwrap().data().is_empty());
        let other = Block::encode(
            cid::Version::V1,
            crate::block::codec::RAW,
            Bytes::from_static(b"y"),
        );
        assert_eq!(s.get(other.cid()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn corrupt_car_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.car");
        std::fs::write(&p, b"\x05hello").unwrap();
        assert!(matches!(
            load_car(&p).await,
            Err(SourceError::CarRead { .. })
        ));
        assert!(matches!(
            load_car(&dir.path().join("missing.car")).await,
            Err(SourceError::CarOpen { .. })
        ));
    }
}
