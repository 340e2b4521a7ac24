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
//! only after it was proved by this process: written by it, read in full with its seal
//! matching (a job run when the first handle of a session closes), or read chunk by chunk
//! through the daemon with every chunk matching its sum ([`WholeFiles::read_checked`], what
//! a new daemon's first reads of the file do). A whole file that fails its proof is
//! deleted. What a proof cannot catch is a disk that changes the bytes later, while the
//! daemon runs: block reads check their seal every time, passthrough reads do not (see
//! `--no-passthrough`).
//!
//! Besides its seal, a whole file carries chunk sums (`user.distfs.sums`: XXH3-64 of each
//! chunk of 1 MiB or more, at most 256 chunks), so that a part of it can be checked and
//! answered before the rest was read.
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

mod checked;

/// Files smaller than this are never copied whole: the page cache serves them well, and a
/// copy would cost a file, an fsync and a quota entry each.
pub const MIN_SIZE: u64 = 1024 * 1024;
/// Bytes read, hashed and written per step.
const CHUNK: u64 = 1024 * 1024;
/// Makes every write or proof wait this many milliseconds before it starts. For tests: a
/// job that finishes while a reader holds the file open is a race in real use, and this
/// makes it one a test can land in.
pub const JOB_DELAY_ENV: &str = "DISTFS_WHOLE_JOB_DELAY_MS";

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
    /// Keys of the whole files proved by this process. The mutex guards only set
    /// operations (no I/O while held).
    proved: Mutex<HashSet<Key>>,
    /// Copies open for reads through the daemon before they are proved.
    checking: checked::Open,
    /// A write or proof is running.
    busy: AtomicBool,
    /// The cache's filesystem cannot seal whole files: none are written.
    unsealable: AtomicBool,
    /// [`JOB_DELAY_ENV`].
    job_delay: Option<std::time::Duration>,
    tmp_counter: AtomicU64,
    written: AtomicU64,
    proved_count: AtomicU64,
    dropped: AtomicU64,
    opened: AtomicU64,
}

/// Whether the filesystem of `dir` has `size` bytes free beyond a tenth of itself: a copy
/// never fills the disk the blocks need (a full disk would also lower the cache's limit).
fn disk_has_room(dir: &Path, size: u64) -> bool {
    super::disk::space(dir).is_ok_and(|s| s.free >= size.saturating_add(s.total / 10))
}

/// The index key of `cid`'s whole file.
fn key_of(cid: &Cid) -> Key {
    let mut key = multihash_key(cid);
    key.push(WHOLE_MARK);
    key
}

impl WholeFiles {
    /// The whole files of the cache `quota` keeps.
    pub fn new(quota: Arc<Quota>) -> Arc<WholeFiles> {
        Arc::new(WholeFiles {
            quota,
            proved: Mutex::default(),
            checking: checked::Open::default(),
            busy: AtomicBool::new(false),
            unsealable: AtomicBool::new(false),
            job_delay: std::env::var(JOB_DELAY_ENV)
                .ok()
                .and_then(|ms| ms.parse().ok())
                .map(|ms: u64| std::time::Duration::from_millis(ms.min(60_000))),
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
    /// has written or proved it. Blocking, but only an `open` and an `fstat` of a local
    /// file.
    pub fn open(&self, cid: &Cid, size: u64) -> Option<File> {
        if size < MIN_SIZE {
            return None;
        }
        let key = key_of(cid);
        if !self.proved().contains(&key) {
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
                self.checking.remove(&key);
                None
            }
        }
    }

    /// Whether the cache holds a whole copy of `cid` (a file of `size` bytes), proved or
    /// not: a read of it may be answered by [`WholeFiles::read_checked`]. Never blocks on
    /// I/O.
    pub fn has_copy(&self, cid: &Cid, size: u64) -> bool {
        size >= MIN_SIZE && self.quota.index().contains(&key_of(cid))
    }

    /// `len` bytes at `offset` of the file `cid` (`size` bytes) from its whole copy, for a
    /// read through the daemon: each chunk the read touches is checked against the copy's
    /// chunk sums the first time this process reads it, and a copy with every chunk checked
    /// is proved (later opens get it by passthrough). `None` when there is no copy, it has
    /// no sums and is not proved, or it failed: the caller reads the blocks. A copy with a
    /// wrong chunk is deleted. Blocking: local file reads. Run the [`ReadAhead`] it may
    /// give on another blocking thread.
    pub fn read_checked(
        self: &Arc<Self>,
        cid: &Cid,
        size: u64,
        offset: u64,
        len: u64,
    ) -> Option<(Bytes, Option<ReadAhead>)> {
        let key = key_of(cid);
        if !self.has_copy(cid, size) {
            self.checking.remove(&key);
            return None;
        }
        let trusted = self.proved().contains(&key);
        let copy = match self.checking.get(&key) {
            Some(copy) => copy,
            None => {
                let path = self.quota.disk().whole_path_of(cid);
                let file = checked::open(&path).ok()?;
                if file.metadata().ok()?.len() != size {
                    return None;
                }
                let sums = match seal::read_sums(&file, cid, size) {
                    Some(sums) => sums,
                    // An older copy: usable only once proved as a whole.
                    None if trusted => seal::StreamingSums::new(cid, size).finish(),
                    None => return None,
                };
                let kept = Arc::clone(&self.checking.kept);
                let copy = checked::Checking::new(key, file, size, sums, kept);
                self.checking.insert(Arc::clone(&copy));
                copy
            }
        };
        match copy.read(offset, len, trusted) {
            checked::Read::Bytes {
                bytes,
                proved,
                ahead,
            } => {
                if proved {
                    self.chunks_proved(cid, size);
                }
                let ahead = ahead.map(|chunk| self.read_ahead(copy, cid, size, chunk));
                Some((bytes, ahead))
            }
            checked::Read::Wrong { chunk } => {
                self.chunk_wrong(&copy, cid, chunk);
                None
            }
            checked::Read::Failed(e) => {
                tracing::debug!(cid = %cid, "reading the whole copy failed: {e}");
                self.checking.remove(&copy.key);
                None
            }
        }
    }

    /// [`WholeFiles::read_checked`] if it can be answered without I/O, from the chunks
    /// kept in memory for the reads of `cid`'s copy: so it needs no blocking thread.
    pub fn read_kept(
        self: &Arc<Self>,
        cid: &Cid,
        size: u64,
        offset: u64,
        len: u64,
    ) -> Option<(Bytes, Option<ReadAhead>)> {
        let copy = self.checking.get(&key_of(cid))?;
        let (bytes, ahead) = copy.read_kept(offset, len)?;
        let ahead = ahead.map(|chunk| self.read_ahead(copy, cid, size, chunk));
        Some((bytes, ahead))
    }

    fn read_ahead(
        self: &Arc<Self>,
        copy: Arc<checked::Checking>,
        cid: &Cid,
        size: u64,
        chunk: u64,
    ) -> ReadAhead {
        ReadAhead {
            whole: Arc::clone(self),
            trusted: self.proved().contains(&copy.key),
            copy,
            cid: *cid,
            size,
            chunk,
        }
    }

    /// No handle reads `cid`'s file through the daemon any more: its copy, if open for
    /// checked reads, is closed and its buffers freed.
    pub fn closed(&self, cid: &Cid) {
        self.checking.remove(&key_of(cid));
    }

    fn chunks_proved(&self, cid: &Cid, size: u64) {
        if self.proved().insert(key_of(cid)) {
            self.proved_count.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(cid = %cid, size, "whole file proved chunk by chunk");
        }
    }

    /// Drops the copy `copy` read from, found wrong: once, however many reads found it.
    fn chunk_wrong(&self, copy: &checked::Checking, cid: &Cid, chunk: u64) {
        if !copy.condemn() {
            return;
        }
        let path = self.quota.disk().whole_path_of(cid);
        self.drop_file(cid, &path, &format!("chunk {chunk} does not match its sum"));
    }

    /// The work the file `cid` (`size` bytes) needs, if any, with the turn to do it: a
    /// proof of its whole file on disk if this process has not proved it, or else a new
    /// whole file if the file is large enough and fits in the cache without evicting.
    /// `None` when nothing is needed or another job holds the turn (the next close asks
    /// again). Called when the last handle that read the file through the daemon closes,
    /// so that no job competes with a reader.
    pub fn begin(self: &Arc<Self>, cid: &Cid, size: u64) -> Option<Job> {
        if size < MIN_SIZE {
            return None;
        }
        let key = key_of(cid);
        let on_disk = self.quota.index().contains(&key);
        if on_disk && self.proved().contains(&key) {
            return None;
        }
        if !on_disk
            && (self.unsealable.load(Ordering::Relaxed)
                || !self.quota.has_room_for(size)
                || !disk_has_room(self.quota.disk().dir(), size))
        {
            return None;
        }
        if self.busy.swap(true, Ordering::AcqRel) {
            return None;
        }
        let ticket = Ticket {
            whole: Arc::clone(self),
            cid: *cid,
            size,
        };
        Some(if on_disk {
            Job::Prove(Proof(ticket))
        } else {
            Job::Write(ticket)
        })
    }

    /// The whole files this process has proved (hex index keys), for a hot restart: the
    /// next process takes them over rather than reading each copy again.
    pub fn proved_snapshot(&self) -> Vec<String> {
        self.proved().iter().map(hex::encode).collect()
    }

    /// Takes over the proofs of a hot restart's snapshot (keys that do not parse, or name
    /// no whole file in the index, are ignored).
    pub fn restore_proved(&self, keys: &[String]) {
        let index = self.quota.index();
        let mut proved = self.proved();
        for key in keys.iter().filter_map(|k| hex::decode(k).ok()) {
            if super::index::is_whole(&key) && index.contains(&key) {
                proved.insert(key);
            }
        }
    }

    /// Whether a write or proof is running now.
    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
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
        self.checking.remove(&key);
        let _ = std::fs::remove_file(path);
        self.quota.forget_key(&key);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// A chunk of a whole copy to read ahead of the reads that will want it, on a blocking
/// thread ([`WholeFiles::read_checked`] asks for it).
#[derive(Debug)]
pub struct ReadAhead {
    whole: Arc<WholeFiles>,
    copy: Arc<checked::Checking>,
    cid: Cid,
    size: u64,
    chunk: u64,
    trusted: bool,
}

impl ReadAhead {
    /// Reads and checks the chunk. Blocking.
    pub fn run(self) {
        match self.copy.read_ahead(self.chunk, self.trusted) {
            Ok(Some(true)) => self.whole.chunks_proved(&self.cid, self.size),
            Ok(Some(false)) => {}
            Ok(None) => self.whole.chunk_wrong(&self.copy, &self.cid, self.chunk),
            Err(e) => {
                tracing::debug!(cid = %self.cid, "reading ahead in the whole copy failed: {e}");
                self.whole.checking.remove(&self.copy.key);
            }
        }
    }
}

/// What [`WholeFiles::begin`] found to do.
#[derive(Debug)]
pub enum Job {
    /// Write the whole file ([`Ticket::write`]).
    Write(Ticket),
    /// Prove the whole file on disk ([`Proof::run`]).
    Prove(Proof),
}

/// The turn to prove one whole file on disk.
#[derive(Debug)]
pub struct Proof(Ticket);

impl Proof {
    /// Reads the whole file in full and checks its length and seal: proved for this
    /// process if they match, deleted if not. Blocking: run it on a blocking thread.
    pub fn run(self) {
        self.0.delay();
        self.0.prove();
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
    fn delay(&self) {
        if let Some(d) = self.whole.job_delay {
            std::thread::sleep(d);
        }
    }

    /// Writes the whole file from `read(offset, len)`, which must answer exactly those
    /// verified bytes of the file (a read of the cached blocks). Blocking: run it on a
    /// blocking thread. On success the file is proved for this process and counted by the
    /// quota; on failure nothing is left behind.
    pub fn write<E: std::fmt::Display>(
        self,
        mut read: impl FnMut(u64, u64) -> Result<Bytes, E>,
    ) -> Result<(), WholeError> {
        self.delay();
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
            let mut sums = seal::StreamingSums::new(&cid, size);
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
                sums.update(&bytes);
                file.write_all(&bytes).map_err(io_err(&tmp))?;
                offset += want;
            }
            if !seal::write_seal(&file, &seal.finish()) {
                return Err(WholeError::Unsealable { path: tmp.clone() });
            }
            // Best effort: without sums, a new daemon reads the blocks until it proved
            // the copy as a whole.
            if !seal::write_sums(&file, &sums.finish()) {
                tracing::debug!("the filesystem refused the chunk sums of {}", tmp.display());
            }
            file.sync_all().map_err(io_err(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            if matches!(e, WholeError::Unsealable { .. })
                && !whole.unsealable.swap(true, Ordering::Relaxed)
            {
                tracing::warn!("{e}: no whole copies, so no passthrough, for this cache dir");
            }
            return Err(e);
        }
        let key = key_of(&cid);
        whole.quota.written_key(key.clone(), size);
        whole.proved().insert(key);
        whole.written.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(cid = %cid, size, "whole file written");
        Ok(())
    }

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
            let mut sums = seal::StreamingSums::new(&cid, size);
            let mut buf = vec![0u8; CHUNK as usize];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                seal.update(&buf[..n]);
                sums.update(&buf[..n]);
            }
            Ok(if seal.finish() == want {
                // A copy from before chunk sums, or with its sums damaged, gets them now.
                let sums = sums.finish();
                if seal::read_sums(&file, &cid, size).as_ref() != Some(&sums) {
                    seal::write_sums(&file, &sums);
                }
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
mod tests;
