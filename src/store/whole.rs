//! Whole files: complete copies of UnixFS files in the cache directory
//! (`DIR/whole/<xx>/<hex multihash of the file's root>`), so that the kernel can read them
//! directly (FUSE passthrough, see `fs::iomode`) and no READ reaches the daemon.
//!
//! A whole file is written only from blocks the cache holds, each verified when it was
//! stored and proved by its seal or hash when read back (`dist::whole` feeds the bytes). It
//! is written to a temp file, sealed like a block (XXH3-128 of all its bytes, seeded by the
//! root's multihash), fsynced and renamed into place, so a crash never leaves a torn whole
//! file under its name.
//!
//! Passthrough reads bypass the daemon, so a whole file is handed out ([`WholeFiles::open`])
//! only after it was proved by this process: written by it, or read in full with its seal
//! matching. That proof runs in the background the first time a session opens the file,
//! and that open reads through the daemon as before. A whole file that fails its proof is
//! deleted. What a proof cannot catch is a disk that changes the bytes later, while the
//! daemon runs: block reads check their seal every time, passthrough reads do not (see
//! `--no-passthrough`).
//!
//! Whole files count towards the cache quota under their own index key (the multihash
//! followed by [`WHOLE_MARK`]) and are evicted like blocks. One is written only if it fits
//! under the low-water mark without evicting anything: whole files copy what blocks hold,
//! and never push blocks out. At most one whole file is written or proved at a time, on a
//! blocking thread.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use cid::Cid;

use super::disk::WHOLE_MARK;
use super::index::Key;
use super::quota::Quota;
use super::seal;
use crate::block::multihash_key;

/// Files smaller than this are never copied whole: the page cache serves them well, and a
/// copy would cost a file, an fsync and a quota entry each.
pub const MIN_SIZE: u64 = 1024 * 1024;
/// Bytes read, hashed and written per step.
const CHUNK: u64 = 1024 * 1024;

/// Why writing or proving a whole file failed.
#[derive(Debug, thiserror::Error)]
pub enum WholeError {
    /// A filesystem operation failed.
    #[error("whole file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bytes could not be read from the cached blocks.
    #[error("whole file of {cid}: reading its blocks failed: {reason}")]
    Source { cid: Cid, reason: String },
    /// The blocks gave fewer or more bytes than asked for.
    #[error("whole file of {cid}: asked for {want} bytes at {offset}, got {got}")]
    Short {
        cid: Cid,
        offset: u64,
        want: u64,
        got: u64,
    },
    /// The cache's filesystem refused the seal (no user extended attributes).
    #[error("whole file {path}: cannot seal it (the filesystem has no user extended attributes)")]
    Unsealable { path: PathBuf },
}

/// What the whole-file tier did since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WholeStats {
    /// Whole files written.
    pub written: u64,
    /// Whole files found on disk and proved.
    pub proved: u64,
    /// Whole files found wrong and deleted.
    pub dropped: u64,
    /// Opens answered with a whole file.
    pub opened: u64,
}

/// The whole files of one cache directory. Share it as `Arc<WholeFiles>`.
#[derive(Debug)]
pub struct WholeFiles {
    quota: Arc<Quota>,
    rt: tokio::runtime::Handle,
    /// Keys of the whole files proved by this process. The mutex guards only set
    /// operations (no I/O while held).
    proved: Mutex<HashSet<Key>>,
    /// A write or proof is running.
    busy: AtomicBool,
    tmp_counter: AtomicU64,
    written: AtomicU64,
    proved_count: AtomicU64,
    dropped: AtomicU64,
    opened: AtomicU64,
}

/// The index key of `cid`'s whole file.
fn key_of(cid: &Cid) -> Key {
    let mut key = multihash_key(cid);
    key.push(WHOLE_MARK);
    key
}

impl WholeFiles {
    /// The whole files of the cache `quota` keeps; background work runs on `rt`.
    pub fn new(quota: Arc<Quota>, rt: tokio::runtime::Handle) -> Arc<WholeFiles> {
        Arc::new(WholeFiles {
            quota,
            rt,
            proved: Mutex::default(),
            busy: AtomicBool::new(false),
            tmp_counter: AtomicU64::new(0),
            written: AtomicU64::new(0),
            proved_count: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        })
    }

    fn proved(&self) -> MutexGuard<'_, HashSet<Key>> {
        self.proved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was done since start.
    pub fn stats(&self) -> WholeStats {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WholeStats {
            written: n(&self.written),
            proved: n(&self.proved_count),
            dropped: n(&self.dropped),
            opened: n(&self.opened),
        }
    }

    /// The whole file of `cid` (a file of `size` bytes), open for reading, if this process
    /// has proved it. A whole file on disk but not proved yet starts its proof in the
    /// background and answers `None` this time. Blocking, but only an `open` and an
    /// `fstat` of a local file.
    pub fn open(self: &Arc<Self>, cid: &Cid, size: u64) -> Option<File> {
        if size < MIN_SIZE {
            return None;
        }
        let key = key_of(cid);
        if !self.proved().contains(&key) {
            if self.quota.index().contains(&key) {
                self.prove_later(*cid, size);
            }
            return None;
        }
        let path = self.quota.disk().whole_path_of(cid);
        match File::open(&path) {
            Ok(file) if file.metadata().is_ok_and(|m| m.len() == size) => {
                self.quota.touch_key(&key);
                self.opened.fetch_add(1, Ordering::Relaxed);
                Some(file)
            }
            // Evicted (or changed under us): it has to be written and proved again.
            _ => {
                self.proved().remove(&key);
                None
            }
        }
    }

    /// A ticket to write the whole file of `cid` (`size` bytes), if one is wanted: the file
    /// is large enough, has no whole file yet, fits in the cache without evicting, and no
    /// other write or proof is running. The ticket holds that turn until it is dropped.
    pub fn begin(self: &Arc<Self>, cid: &Cid, size: u64) -> Option<Ticket> {
        if size < MIN_SIZE
            || self.quota.index().contains(&key_of(cid))
            || !self.quota.has_room_for(size)
            || self.busy.swap(true, Ordering::AcqRel)
        {
            return None;
        }
        Some(Ticket {
            whole: Arc::clone(self),
            cid: *cid,
            size,
        })
    }

    fn prove_later(self: &Arc<Self>, cid: Cid, size: u64) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return; // asked again at a later open
        }
        let ticket = Ticket {
            whole: Arc::clone(self),
            cid,
            size,
        };
        self.rt.spawn_blocking(move || ticket.prove());
    }

    fn temp_path(&self, dir: &Path) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Deletes a whole file found wrong, and forgets it.
    fn drop_file(&self, cid: &Cid, path: &Path, why: &dyn std::fmt::Display) {
        tracing::warn!(cid = %cid, path = %path.display(), "dropping a whole file: {why}");
        let key = key_of(cid);
        self.proved().remove(&key);
        let _ = std::fs::remove_file(path);
        self.quota.forget_key(&key);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The turn to write (or prove) one whole file; see [`WholeFiles::begin`].
#[derive(Debug)]
pub struct Ticket {
    whole: Arc<WholeFiles>,
    cid: Cid,
    size: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.whole.busy.store(false, Ordering::Release);
    }
}

impl Ticket {
    /// Writes the whole file from `read(offset, len)`, which must answer exactly those
    /// verified bytes of the file (a read of the cached blocks). Blocking: run it on a
    /// blocking thread. On success the file is proved for this process and counted by the
    /// quota; on failure nothing is left behind.
    pub fn write<E: std::fmt::Display>(
        self,
        mut read: impl FnMut(u64, u64) -> Result<Bytes, E>,
    ) -> Result<(), WholeError> {
        let whole = &self.whole;
        let (cid, size) = (self.cid, self.size);
        let path = whole.quota.disk().whole_path_of(&cid);
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WholeError::Io { path, source }
        };
        let dir = path.parent().unwrap_or(whole.quota.disk().whole_dir());
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let tmp = whole.temp_path(dir);
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut seal = seal::Streaming::new(&cid);
            let mut offset = 0;
            while offset < size {
                let want = CHUNK.min(size - offset);
                let bytes = read(offset, want).map_err(|e| WholeError::Source {
                    cid,
                    reason: e.to_string(),
                })?;
                if bytes.len() as u64 != want {
                    return Err(WholeError::Short {
                        cid,
                        offset,
                        want,
                        got: bytes.len() as u64,
                    });
                }
                seal.update(&bytes);
                file.write_all(&bytes).map_err(io_err(&tmp))?;
                offset += want;
            }
            if !seal::write_seal(&file, &seal.finish()) {
                return Err(WholeError::Unsealable { path: tmp.clone() });
            }
            file.sync_all().map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let key = key_of(&cid);
        whole.quota.written_key(key.clone(), size);
        whole.proved().insert(key);
        whole.written.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(cid = %cid, size, "whole file written");
        Ok(())
    }

    /// Reads the whole file on disk in full and checks its length and seal: proved for
    /// this process if they match, deleted if not. Blocking.
    fn prove(self) {
        let whole = &self.whole;
        let (cid, size) = (self.cid, self.size);
        let path = whole.quota.disk().whole_path_of(&cid);
        let check = || -> io::Result<Result<(), String>> {
            let mut file = File::open(&path)?;
            let len = file.metadata()?.len();
            if len != size {
                return Ok(Err(format!("{len} bytes, the file has {size}")));
            }
            let Some(want) = seal::read_seal(&file) else {
                return Ok(Err("it has no seal".into()));
            };
            let mut seal = seal::Streaming::new(&cid);
            let mut buf = vec![0u8; CHUNK as usize];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                seal.update(&buf[..n]);
            }
            Ok(if seal.finish() == want {
                Ok(())
            } else {
                Err("its bytes do not match its seal".into())
            })
        };
        match check() {
            Ok(Ok(())) => {
                whole.proved().insert(key_of(&cid));
                whole.proved_count.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(cid = %cid, size, "whole file proved");
            }
            Ok(Err(why)) => whole.drop_file(&cid, &path, &why),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                whole.quota.forget_key(&key_of(&cid));
            }
            Err(e) => whole.drop_file(&cid, &path, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{codec, Block};
    use crate::store::disk::DiskStore;

    const SIZE: usize = 3 * 1024 * 1024 + 77;

    fn setup(dir: &Path, limit: Option<u64>) -> Arc<WholeFiles> {
        let disk = DiskStore::open_unsynced(dir).unwrap();
        let quota = Arc::new(Quota::open(disk, limit).unwrap());
        WholeFiles::new(quota, tokio::runtime::Handle::current())
    }

    fn content() -> (Cid, Vec<u8>) {
        let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
        // Any CID names the file here; a raw block's is the simplest to make.
        let cid = *Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"root")).cid();
        (cid, data)
    }

    fn reader(data: &[u8]) -> impl FnMut(u64, u64) -> Result<Bytes, String> + '_ {
        |off, len| {
            Ok(Bytes::copy_from_slice(
                &data[off as usize..(off + len) as usize],
            ))
        }
    }

    async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_written_file_is_handed_out_and_proved_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (cid, data) = content();
        let whole = setup(dir.path(), None);
        assert!(
            whole.open(&cid, SIZE as u64).is_none(),
            "nothing written yet"
        );
        let ticket = whole.begin(&cid, SIZE as u64).expect("wanted");
        assert!(whole.begin(&cid, SIZE as u64).is_none(), "one at a time");
        ticket.write(reader(&data)).unwrap();
        assert!(whole.begin(&cid, SIZE as u64).is_none(), "already there");
        let mut f = whole.open(&cid, SIZE as u64).expect("proved by its writer");
        let mut back = Vec::new();
        f.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(
            whole.quota.usage().bytes,
            SIZE as u64,
            "counted by the quota"
        );

        // A new process finds it, counts it, and proves it before handing it out.
        let again = setup(dir.path(), None);
        assert_eq!(again.quota.usage().bytes, SIZE as u64);
        assert!(again.open(&cid, SIZE as u64).is_none(), "not proved yet");
        wait_until("proved", || again.stats().proved == 1).await;
        assert!(again.open(&cid, SIZE as u64).is_some());
        assert_eq!(again.stats().opened, 1);

        // Evicted like a block: the file goes, and is no longer handed out.
        again.quota.evict_to(0);
        assert!(!again.quota.disk().whole_path_of(&cid).exists());
        assert!(again.open(&cid, SIZE as u64).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_changed_or_short_whole_file_is_deleted_not_handed_out() {
        let dir = tempfile::tempdir().unwrap();
        let (cid, data) = content();
        let whole = setup(dir.path(), None);
        whole
            .begin(&cid, SIZE as u64)
            .unwrap()
            .write(reader(&data))
            .unwrap();
        let path = whole.quota.disk().whole_path_of(&cid);
        // One flipped bit, in place (the seal attribute stays).
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SIZE / 2] ^= 1;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
        let again = setup(dir.path(), None);
        assert!(again.open(&cid, SIZE as u64).is_none());
        wait_until("dropped", || again.stats().dropped == 1).await;
        assert!(!path.exists(), "the wrong whole file is deleted");
        assert_eq!(again.quota.usage().bytes, 0, "and forgotten by the quota");
        assert!(again.open(&cid, SIZE as u64).is_none());

        // A whole file written afresh, then asked for under another length.
        let third = setup(dir.path(), None);
        third
            .begin(&cid, SIZE as u64)
            .unwrap()
            .write(reader(&data))
            .unwrap();
        let fourth = setup(dir.path(), None);
        assert!(fourth.open(&cid, SIZE as u64 + 1).is_none());
        wait_until("dropped", || fourth.stats().dropped == 1).await;
        assert!(!path.exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_leaves_nothing_and_a_full_cache_gets_no_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (cid, data) = content();
        let whole = setup(dir.path(), None);
        let mut calls = 0;
        let err = whole
            .begin(&cid, SIZE as u64)
            .unwrap()
            .write(|off, len| {
                calls += 1;
                if calls == 2 {
                    Err("block missing".to_string())
                } else {
                    reader(&data)(off, len)
                }
            })
            .unwrap_err();
        assert!(err.to_string().contains("block missing"), "{err}");
        let left: Vec<_> = walkdir(whole.quota.disk().whole_dir());
        assert!(left.is_empty(), "left behind: {left:?}");
        assert_eq!(whole.quota.usage().bytes, 0);
        assert!(whole.open(&cid, SIZE as u64).is_none());
        // The turn is free again after a failure.
        assert!(whole.begin(&cid, SIZE as u64).is_some());

        // A cache whose limit leaves no room under low water gets no copy.
        let small = tempfile::tempdir().unwrap();
        let tight = setup(small.path(), Some(SIZE as u64));
        assert!(tight.begin(&cid, SIZE as u64).is_none());
        // Files below the minimum are never copied.
        assert!(whole.begin(&cid, MIN_SIZE - 1).is_none());
    }

    fn walkdir(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            for e in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                out.push(e.path());
            }
        }
        out
    }
}
