//! One process per cache directory: an exclusive `flock` on `DIR/lock`, held for the life of
//! a [`CacheLock`], with the holder's pid and what it is doing (its mount point) written into
//! the file so that a second process can say who holds it.
//!
//! The kernel drops an `flock` when its holder exits, `kill -9` included, so a stale lock
//! file never blocks a restart; the text in it is only read after the lock was refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The lock file's name inside the cache directory.
pub const LOCK_FILE: &str = "lock";

/// Why the cache directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("cache dir {} is in use by distfs pid {pid} {what}", dir.display())]
    Held {
        dir: PathBuf,
        pid: String,
        what: String,
    },
    /// The lock file could not be opened or locked.
    #[error("locking cache dir {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An exclusive hold on a cache directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
    path: PathBuf,
}

impl CacheLock {
    /// Takes the lock on `dir` (created if needed) at once, or fails naming the holder.
    /// `what` says what this process does with the cache, in the words a second process
    /// should print after "in use by distfs pid N " (e.g. "mounted at /mnt/dist").
    pub fn acquire(dir: &Path, what: &str) -> Result<CacheLock, LockError> {
        let io_err = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io_err)?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io_err(err));
            }
            let (pid, what) = read_holder(&mut file);
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                pid,
                what,
            });
        }
        let text = format!("{}\n{what}\n", std::process::id());
        let write = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(text.as_bytes())?;
            f.flush()
        };
        write(&mut file).map_err(io_err)?;
        Ok(CacheLock { _file: file, path })
    }

    /// Takes over a lock handed from another process (a hot restart): `file` is the same open
    /// lock file, so the `flock` on it is already held and stays held when the other process
    /// exits. Writes this process's pid and `what` into it.
    pub fn adopt(mut file: File, dir: &Path, what: &str) -> Result<CacheLock, LockError> {
        let text = format!("{}\n{what}\n", std::process::id());
        let write = |f: &mut File| -> io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(text.as_bytes())?;
            f.flush()
        };
        write(&mut file).map_err(|source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(CacheLock {
            _file: file,
            path: dir.join(LOCK_FILE),
        })
    }

    /// The open lock file (to hand it to the next process of a hot restart).
    pub fn file(&self) -> &File {
        &self._file
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds the lock on `dir`, if anyone: `(pid, what it does)` as the holder wrote them.
/// Takes and drops a shared lock to find out, so it never blocks and never disturbs a holder.
pub fn holder(dir: &Path) -> Result<Option<(String, String)>, LockError> {
    let io_err = |source| LockError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let mut file = match OpenOptions::new().read(true).open(dir.join(LOCK_FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    // SAFETY: flock on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(None); // nobody holds it; our shared lock goes with the file
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(io_err(err));
    }
    Ok(Some(read_holder(&mut file)))
}

/// The holder's pid and activity from the lock file. The holder writes them just after
/// taking the lock, so an empty file is read again a few times (bounded) before giving up.
fn read_holder(file: &mut File) -> (String, String) {
    for _ in 0..50 {
        let mut text = String::new();
        if file.rewind().is_ok() && file.read_to_string(&mut text).is_ok() {
            let mut lines = text.lines();
            if let (Some(pid), Some(what)) = (lines.next(), lines.next()) {
                return (pid.trim().to_owned(), what.trim().to_owned());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (
        "(unknown)".to_owned(),
        "(holder did not say what it does)".to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_names_the_first_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let first = CacheLock::acquire(dir.path(), "mounted at /mnt/x").unwrap();
        let err = CacheLock::acquire(dir.path(), "running gc").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "in use by distfs pid {} mounted at /mnt/x",
                std::process::id()
            )),
            "{msg}"
        );
        drop(first);
        let again = CacheLock::acquire(dir.path(), "running gc").unwrap();
        assert_eq!(
            fs::read_to_string(again.path()).unwrap(),
            format!("{}\nrunning gc\n", std::process::id())
        );
    }
}
