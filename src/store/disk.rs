//! The on-disk block store: one file per block, named by the block's multihash.
//!
//! Layout: `DIR/blocks/<xx>/<hex multihash>`, where `xx` is two hex digits of the digest
//! (not of the multihash prefix, which is the same for every sha2-256 block). Writes go to a
//! temp file in the same directory and are renamed into place, so a reader (or a crash) never
//! sees a half-written block. Each file is sealed as it is written (`store::seal`): a read
//! whose seal matches returns the bytes verified when they were stored, any other read
//! verifies them against the CID asked for. A block that fails is deleted and reported, so
//! that the caller can fetch it again.
//!
//! Stores opened with [`DiskStore::open`] fsync each block before the rename (a publisher's or
//! gateway's store, where a block is the only copy). A cache opened with
//! [`DiskStore::open_unsynced`] skips the fsync: after a power loss a block file may be torn or
//! empty, and the seal check (or the hash) on every read drops it and the cache fetches it
//! again, so nothing wrong is ever served and the write path does not wait for the disk.
//!
//! The sync methods are for sync callers (the importer's sink, tools); the async
//! [`BlockStore`] impl moves every file operation onto `spawn_blocking`.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cid::Cid;

use super::seal::{self, Seal};
use super::{BlockStore, StoreError};
use crate::block::{Block, MAX_BLOCK_SIZE};

/// A directory of content-addressed block files. Cheap to clone.
#[derive(Clone, Debug)]
pub struct DiskStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    blocks: PathBuf,
    whole: PathBuf,
    tmp_counter: AtomicU64,
    /// fsync each block file before renaming it into place.
    fsync: bool,
}

impl DiskStore {
    /// Opens (creating if needed) a durable store rooted at `dir`: blocks are fsynced.
    pub fn open(dir: impl AsRef<Path>) -> Result<DiskStore, StoreError> {
        DiskStore::open_with(dir, true)
    }

    /// Opens (creating if needed) a cache rooted at `dir`, whose writes are not fsynced
    /// (see the module doc: verification on read makes that safe for a cache).
    pub fn open_unsynced(dir: impl AsRef<Path>) -> Result<DiskStore, StoreError> {
        DiskStore::open_with(dir, false)
    }

    fn open_with(dir: impl AsRef<Path>, fsync: bool) -> Result<DiskStore, StoreError> {
        let blocks = dir.as_ref().join("blocks");
        fs::create_dir_all(&blocks).map_err(|source| StoreError::Io {
            path: blocks.clone(),
            source,
        })?;
        Ok(DiskStore {
            inner: Arc::new(Inner {
                dir: dir.as_ref().to_path_buf(),
                blocks,
                whole: dir.as_ref().join("whole"),
                tmp_counter: AtomicU64::new(0),
                fsync,
            }),
        })
    }

    /// The store's directory (the one given to `open`).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The directory of block files (`DIR/blocks`).
    pub fn blocks_dir(&self) -> &Path {
        &self.inner.blocks
    }

    /// The directory of whole files (`DIR/whole`, see `store::whole`; created on first use).
    pub fn whole_dir(&self) -> &Path {
        &self.inner.whole
    }

    /// The file that holds (or would hold) the block named by `cid`.
    pub fn path_of(&self, cid: &Cid) -> PathBuf {
        self.path_of_mh(&self.inner.blocks, cid.hash())
    }

    /// The whole file (`store::whole`) of the file whose root is `cid`.
    pub fn whole_path_of(&self, cid: &Cid) -> PathBuf {
        self.path_of_mh(&self.inner.whole, cid.hash())
    }

    /// The file an index key names: a block's multihash bytes, or those followed by
    /// [`WHOLE_MARK`] for a whole file; `None` for anything else.
    pub fn path_of_key(&self, key: &[u8]) -> Option<PathBuf> {
        let mut rest = key;
        let mh = multihash::Multihash::<64>::read(&mut rest).ok()?;
        match rest {
            [] => Some(self.path_of_mh(&self.inner.blocks, &mh)),
            [WHOLE_MARK] => Some(self.path_of_mh(&self.inner.whole, &mh)),
            _ => None,
        }
    }

    /// `<top>/<first digest byte, hex>/<multihash, hex>`, built in one allocation: a warm
    /// listing of small files computes one per child, and two hex strings and two joins
    /// were a tenth of its time.
    fn path_of_mh(&self, top: &Path, mh: &multihash::Multihash<64>) -> PathBuf {
        let mut encoded = [0u8; 80];
        let len = mh.write(&mut encoded[..]).unwrap_or(0);
        let shard = mh.digest().first().copied().unwrap_or(0);
        let blocks = top.as_os_str().as_bytes();
        let mut path = Vec::with_capacity(blocks.len() + 4 + 2 * len);
        path.extend_from_slice(blocks);
        path.push(b'/');
        push_hex(&mut path, &[shard]);
        path.push(b'/');
        push_hex(&mut path, &encoded[..len]);
        PathBuf::from(std::ffi::OsString::from_vec(path))
    }

    /// Reads a block and proves it: by its seal, or else by hashing it against `cid` (and
    /// sealing it then). A block that fails is removed and reported as
    /// [`StoreError::Corrupt`].
    pub fn get_sync(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        if let Some(b) = Block::from_identity(cid)? {
            return Ok(Some(b));
        }
        let path = self.path_of(cid);
        let (file, data) = match read_bounded(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StoreError::Io { path, source }),
        };
        let sealed = seal::sealed_size(data.len());
        if sealed && seal::check(&file, cid, &data) == Seal::Matches {
            return Ok(Some(Block::from_sealed(*cid, Bytes::from(data))));
        }
        match Block::verified(*cid, Bytes::from(data)) {
            Ok(b) => {
                if sealed {
                    seal::write(&file, &b);
                }
                Ok(Some(b))
            }
            Err(e) => {
                tracing::warn!(cid = %cid, path = %path.display(), "dropping corrupt block: {e}");
                let _ = fs::remove_file(&path);
                Err(StoreError::Corrupt(e))
            }
        }
    }

    /// Writes a block with write-then-rename; a block already present is left alone.
    pub fn put_sync(&self, block: &Block) -> Result<(), StoreError> {
        if block.cid().hash().code() == crate::block::mh::IDENTITY {
            return Ok(());
        }
        let path = self.path_of(block.cid());
        if path.exists() {
            return Ok(());
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        let dir = path.parent().unwrap_or(&self.inner.blocks);
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let n = self.inner.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(block.data())?;
            if seal::sealed_size(block.data().len()) {
                seal::write(&f, block);
            }
            if self.inner.fsync {
                f.sync_data()?;
            }
            fs::rename(&tmp, &path)
        };
        if let Err(source) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Io { path, source });
        }
        Ok(())
    }

    /// Whether the block's file exists (not verified).
    pub fn has_sync(&self, cid: &Cid) -> bool {
        cid.hash().code() == crate::block::mh::IDENTITY || self.path_of(cid).exists()
    }
}

/// Free and total bytes of a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Bytes available to unprivileged writers.
    pub free: u64,
    /// Bytes of the filesystem.
    pub total: u64,
}

/// The space of the filesystem holding `path` (`statvfs`).
pub fn space(path: &Path) -> io::Result<Space> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid C string; `buf` is a properly sized, writable statvfs (a plain
    // C struct of integers, for which all zeroes is valid).
    let (rc, buf) = unsafe {
        let mut buf: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut buf), buf)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(
        clippy::useless_conversion,
        reason = "statvfs field widths differ between platforms"
    )]
    let (avail, blocks, frsize) = (
        u64::from(buf.f_bavail),
        u64::from(buf.f_blocks),
        u64::from(buf.f_frsize),
    );
    Ok(Space {
        free: avail.saturating_mul(frsize),
        total: blocks.saturating_mul(frsize),
    })
}

/// The byte after a multihash that makes an index key name a whole file rather than a block.
pub const WHOLE_MARK: u8 = b'w';

/// Reads a block file, refusing anything larger than a block can be. The buffer is sized
/// from the file's length (no probing reads or regrowth copies on the hot path).
/// Appends `bytes` in lower-case hex.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

fn read_bounded(path: &Path) -> io::Result<(fs::File, Vec<u8>)> {
    use std::io::Read;
    let f = fs::File::open(path)?;
    let cap = MAX_BLOCK_SIZE as u64 + 1;
    let len = f.metadata().map_or(0, |m| m.len()).min(cap);
    let mut data = Vec::with_capacity(len as usize + 1);
    (&f).take(cap).read_to_end(&mut data)?;
    Ok((f, data))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|join| {
        Err(StoreError::Io {
            path: PathBuf::new(),
            source: io::Error::other(format!("store task failed: {join}")),
        })
    })
}

#[async_trait]
impl BlockStore for DiskStore {
    async fn get(&self, cid: &Cid) -> Result<Option<Block>, StoreError> {
        let (store, cid) = (self.clone(), *cid);
        blocking(move || store.get_sync(&cid)).await
    }

    async fn put(&self, block: Block) -> Result<(), StoreError> {
        let store = self.clone();
        blocking(move || store.put_sync(&block)).await
    }

    async fn has(&self, cid: &Cid) -> Result<bool, StoreError> {
        let (store, cid) = (self.clone(), *cid);
        blocking(move || Ok(store.has_sync(&cid))).await
    }
}

/// The importer writes straight into a disk store (`distfs add --store`).
impl crate::import::BlockSink for DiskStore {
    fn put(&mut self, block: Block) -> Result<(), crate::import::ImportError> {
        self.put_sync(&block)
            .map_err(|e| crate::import::ImportError::Sink {
                cid: *block.cid(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::codec;

    #[test]
    fn block_files_are_named_by_shard_and_multihash_hex() {
        // The layout caches already on disk use: `<first digest byte>/<multihash>`, in hex.
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open_unsynced(dir.path()).unwrap();
        let b = Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"x"));
        let mh = b.cid().hash();
        let want = dir
            .path()
            .join("blocks")
            .join(hex::encode(&mh.digest()[..1]))
            .join(hex::encode(mh.to_bytes()));
        assert_eq!(store.path_of(b.cid()), want);
        assert_eq!(store.path_of_key(&mh.to_bytes()), Some(want));
    }

    #[tokio::test]
    async fn small_blocks_are_hashed_on_read_and_never_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open_unsynced(dir.path()).unwrap();
        let small = Block::encode(cid::Version::V1, codec::RAW, Bytes::from(vec![1u8; 100]));
        let large = Block::encode(cid::Version::V1, codec::RAW, Bytes::from(vec![2u8; 4096]));
        for b in [&small, &large] {
            store.put(b.clone()).await.unwrap();
            assert_eq!(store.get(b.cid()).await.unwrap().as_ref(), Some(b));
        }
        let sealed = |b: &Block| {
            let file = fs::File::open(store.path_of(b.cid())).unwrap();
            seal::check(&file, b.cid(), b.data()) == Seal::Matches
        };
        assert!(!sealed(&small) && sealed(&large));
        // A flipped bit in a small block is caught by its hash.
        let mut rotten = small.data().to_vec();
        rotten[50] ^= 1;
        fs::write(store.path_of(small.cid()), &rotten).unwrap();
        assert!(matches!(
            store.get(small.cid()).await,
            Err(StoreError::Corrupt(_))
        ));
    }

    #[tokio::test]
    async fn put_get_and_corruption_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let b = Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"hello\n"));
        store.put(b.clone()).await.unwrap();
        assert_eq!(store.get(b.cid()).await.unwrap(), Some(b.clone()));
        // Reopened store sees it (persistence).
        let again = DiskStore::open(dir.path()).unwrap();
        assert!(again.has(b.cid()).await.unwrap());
        // Rot the file: the read fails as corrupt, and the file is gone.
        fs::write(store.path_of(b.cid()), b"hellO\n").unwrap();
        assert!(matches!(
            store.get(b.cid()).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(!store.path_of(b.cid()).exists());
        assert_eq!(store.get(b.cid()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn unsealed_files_are_hashed_and_sealed_and_rot_under_a_seal_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open_unsynced(dir.path()).unwrap();
        let b = Block::encode(
            cid::Version::V1,
            codec::RAW,
            Bytes::from(vec![7u8; 100_000]),
        );
        let path = store.path_of(b.cid());
        // A file as an older distfs wrote it: the bytes, no seal.
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b.data()).unwrap();
        let file = fs::File::open(&path).unwrap();
        assert_eq!(seal::check(&file, b.cid(), b.data()), Seal::Unproven);
        assert_eq!(store.get(b.cid()).await.unwrap(), Some(b.clone()));
        assert_eq!(seal::check(&file, b.cid(), b.data()), Seal::Matches);
        // One bit flipped in place, seal left as it was: dropped, as without seals.
        let mut rotten = b.data().to_vec();
        rotten[54_321] ^= 0x10;
        fs::write(&path, &rotten).unwrap();
        assert!(matches!(
            store.get(b.cid()).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(!path.exists());
        // Truncated (a torn write after a power loss): dropped too.
        store.put(b.clone()).await.unwrap();
        fs::write(&path, &b.data()[..4096]).unwrap();
        assert!(matches!(
            store.get(b.cid()).await,
            Err(StoreError::Corrupt(_))
        ));
        // Written by put: sealed, and read back whole.
        store.put(b.clone()).await.unwrap();
        let file = fs::File::open(&path).unwrap();
        assert_eq!(seal::check(&file, b.cid(), b.data()), Seal::Matches);
        assert_eq!(store.get(b.cid()).await.unwrap(), Some(b));
    }
}
