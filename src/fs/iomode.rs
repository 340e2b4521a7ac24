//! How each open file is read: through the daemon (READ requests, the FUSE inode's page
//! cache) or by FUSE passthrough, where the kernel reads a whole copy of the file in the
//! cache (`store::whole`) itself and no READ reaches the daemon.
//!
//! Owns the per-inode mode the kernel enforces (kernel ≥ 6.9, `fs/fuse/iomode.c`): the
//! handles open at once on one inode must all be of one kind, and passthrough handles must
//! share one backing id; an open that breaks this fails with EIO. So a file opened while
//! handles of it are open gets their kind, and the first open decides. The daemon's count
//! of open handles drops only at RELEASE, which the kernel sends after it has dropped the
//! handle's mode itself, so the daemon never believes an inode is free while the kernel
//! does not.
//!
//! A hot restart hands the modes over in its snapshot. Under `--supervise` the inodes with a
//! backing id are also journaled, so that a daemon started after a crash answers their
//! opens with the ids the kernel still holds (a new id, or a cached open, would fail with
//! EIO while handles of the dead daemon are open); it never learns how many are open, so
//! it keeps those ids until the connection ends.
//!
//! Passthrough needs the kernel's consent at FUSE_INIT and root (the backing-file ioctl
//! checks `CAP_SYS_ADMIN`), and the cache dir must not be on a stacked filesystem such as
//! overlayfs (ELOOP). The first refused backing file turns passthrough off for the mount,
//! with one warning; reads go on through the daemon.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use fuser::{BackingId, FileHandle, FopenFlags, ReplyOpen};
use serde::{Deserialize, Serialize};

/// The open flags of a passthrough handle (fuser adds `FOPEN_PASSTHROUGH`). The kernel
/// refuses any flag outside `FOPEN_PASSTHROUGH_MASK` with EINVAL (so the open fails with EIO),
/// `FOPEN_KEEP_CACHE` among them: the page cache is the backing file's. No FLUSH is needed
/// on close: nothing is ever written.
const PASSTHROUGH_FLAGS: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// The mode of one inode with open handles.
#[derive(Debug)]
enum Mode {
    /// Read through the daemon.
    Cached { open: u32 },
    /// Read by passthrough to a backing file; `raw` is `id`'s number, kept for a hot restart.
    Backed { id: BackingId, raw: u32, open: u32 },
    /// Passthrough handles opened by the process that handed the mount over: their backing
    /// id is still registered with the kernel, and is taken over at this inode's next open.
    Adopted { raw: u32, open: u32 },
    /// Passthrough handles of a daemon that died (`--supervise`), known from the journal
    /// but not how many are open: every open of the inode uses `raw`, which stays
    /// registered until the connection ends.
    Recovered { raw: u32 },
}

impl Mode {
    /// The count of open handles; `None` for a recovered inode, whose count is unknown.
    fn open_count(&mut self) -> Option<&mut u32> {
        match self {
            Mode::Cached { open } | Mode::Backed { open, .. } | Mode::Adopted { open, .. } => {
                Some(open)
            }
            Mode::Recovered { .. } => None,
        }
    }

    fn backing(&self) -> Option<u32> {
        match self {
            Mode::Cached { .. } => None,
            Mode::Backed { raw, .. } | Mode::Adopted { raw, .. } | Mode::Recovered { raw } => {
                Some(*raw)
            }
        }
    }
}

/// One inode's mode in a hot-restart snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeRecord {
    /// The inode.
    pub ino: u64,
    /// Its backing id, if its handles are passthrough ones.
    pub backing: Option<u32>,
    /// Handles open.
    pub open: u32,
}

/// The modes of the open inodes of one connection. The mutex guards only map operations
/// and the replies sent under it (an `open` of a local file and one ioctl at most), so that
/// the mode and the kernel's view of it change together.
#[derive(Debug, Default)]
pub struct IoModes {
    /// The configuration allows passthrough.
    wanted: bool,
    /// The connection negotiated it and no backing file was refused.
    enabled: AtomicBool,
    inodes: Mutex<HashMap<u64, Mode>>,
    passthrough_opens: AtomicU64,
    /// Where the inodes with a backing id are journaled (`--supervise`), so that a daemon
    /// started after a crash answers their opens with the ids the kernel holds.
    journal: Option<PathBuf>,
}

impl IoModes {
    /// The modes of a new connection; passthrough is used only if `wanted`, and only once
    /// [`IoModes::negotiated`] says the kernel agreed.
    pub fn new(wanted: bool) -> IoModes {
        IoModes {
            wanted,
            ..IoModes::default()
        }
    }

    /// These modes, journaling the inodes with a backing id into `path` (rewritten whole,
    /// by rename, whenever that set changes; one `ino raw_id` line each). With `recover`,
    /// the journal a dead daemon left is read first, and its inodes are `Recovered`;
    /// without, it is cleared.
    pub fn with_journal(mut self, path: PathBuf, recover: bool) -> IoModes {
        if recover {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut inodes = self.lock();
            for line in text.lines() {
                let mut words = line.split_ascii_whitespace();
                if let (Some(Ok(ino)), Some(Ok(raw))) = (
                    words.next().map(str::parse::<u64>),
                    words.next().map(str::parse::<u32>),
                ) {
                    inodes.insert(ino, Mode::Recovered { raw });
                }
            }
            drop(inodes);
        }
        self.journal = Some(path);
        self.write_journal(&self.lock());
        self
    }

    /// Rewrites the journal from `inodes` (best effort: a failure is logged, and costs only
    /// the recovery of those inodes after a crash). A few syscalls on a local file, under the
    /// mode lock, only when the set of inodes with a backing id changes.
    fn write_journal(&self, inodes: &HashMap<u64, Mode>) {
        let Some(path) = &self.journal else { return };
        let mut text = String::new();
        for (ino, mode) in inodes {
            if let Some(raw) = mode.backing() {
                text.push_str(&format!("{ino} {raw}\n"));
            }
        }
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
            tracing::warn!(path = %path.display(), "cannot journal passthrough handles: {e}");
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Mode>> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the connection's FUSE_INIT settled: whether the kernel grants passthrough.
    pub fn negotiated(&self, granted: bool) {
        self.enabled
            .store(self.wanted && granted, Ordering::Relaxed);
        if self.wanted && !granted {
            tracing::info!(
                "the kernel offers no FUSE passthrough: every read goes through the daemon"
            );
        }
    }

    /// Whether new opens may use passthrough.
    pub fn passthrough_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Opens answered by passthrough since start.
    pub fn passthrough_opens(&self) -> u64 {
        self.passthrough_opens.load(Ordering::Relaxed)
    }

    /// Answers the open of `ino` as handle `fh`: in the mode of its handles open now, or,
    /// for its first handle, by passthrough to what `backing` opens when it opens something,
    /// else through the daemon (with `flags`).
    pub(crate) fn open(
        &self,
        ino: u64,
        fh: FileHandle,
        flags: FopenFlags,
        reply: ReplyOpen,
        backing: impl FnOnce() -> Option<File>,
    ) {
        let mut inodes = self.lock();
        match inodes.get_mut(&ino) {
            Some(Mode::Cached { open }) => {
                *open = open.saturating_add(1);
                reply.opened(fh, flags);
            }
            Some(Mode::Backed { id, open, .. }) => {
                *open = open.saturating_add(1);
                self.passthrough_opens.fetch_add(1, Ordering::Relaxed);
                reply.opened_passthrough(fh, PASSTHROUGH_FLAGS, id);
            }
            Some(Mode::Recovered { raw }) => {
                // SAFETY: `raw` was registered on this connection by a daemon that died
                // without closing it, and `into_raw` below gives ownership back before the
                // wrapper could close it: every open of this inode reuses it.
                let id = unsafe { reply.wrap_backing(*raw) };
                self.passthrough_opens.fetch_add(1, Ordering::Relaxed);
                reply.opened_passthrough(fh, PASSTHROUGH_FLAGS, &id);
                let _ = id.into_raw();
            }
            Some(Mode::Adopted { raw, open }) => {
                let (raw, open) = (*raw, open.saturating_add(1));
                // SAFETY: `raw` was registered on this connection by the process that handed
                // it over, which never closed it (it exits without running destructors), and
                // it is wrapped once: the entry becomes `Backed` and owns it from now on.
                let id = unsafe { reply.wrap_backing(raw) };
                self.passthrough_opens.fetch_add(1, Ordering::Relaxed);
                reply.opened_passthrough(fh, PASSTHROUGH_FLAGS, &id);
                inodes.insert(ino, Mode::Backed { id, raw, open });
            }
            None => {
                if self.passthrough_enabled() {
                    if let Some(file) = backing() {
                        match reply.open_backing(&file) {
                            Ok(id) => {
                                // Keep the number (for a hot restart) and the owner that
                                // closes it when the last handle goes.
                                let raw = id.into_raw();
                                // SAFETY: `raw` was just registered on this connection and
                                // ownership of it was given up by `into_raw` above.
                                let id = unsafe { reply.wrap_backing(raw) };
                                self.passthrough_opens.fetch_add(1, Ordering::Relaxed);
                                reply.opened_passthrough(fh, PASSTHROUGH_FLAGS, &id);
                                inodes.insert(ino, Mode::Backed { id, raw, open: 1 });
                                self.write_journal(&inodes);
                                return;
                            }
                            Err(e) => self.refused(&e),
                        }
                    }
                }
                inodes.insert(ino, Mode::Cached { open: 1 });
                reply.opened(fh, flags);
            }
        }
    }

    fn refused(&self, e: &std::io::Error) {
        if self.enabled.swap(false, Ordering::Relaxed) {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) => " (it needs root: CAP_SYS_ADMIN)",
                Some(libc::ELOOP) => " (the cache dir is on a stacked filesystem, e.g. overlayfs)",
                _ => "",
            };
            tracing::warn!(
                "the kernel refused a passthrough backing file: {e}{hint}; every read goes \
                 through the daemon from now on"
            );
        }
    }

    /// A handle of `ino` was released. True when it was the last handle of the inode, it
    /// read through the daemon, and passthrough is on: the moment to offer the file for a
    /// whole copy (with passthrough off, a copy would never be read).
    pub(crate) fn release(&self, ino: u64) -> bool {
        let mut inodes = self.lock();
        let Some(mode) = inodes.get_mut(&ino) else {
            return false;
        };
        let Some(open) = mode.open_count() else {
            return false; // recovered: kept for good
        };
        *open = open.saturating_sub(1);
        if *open > 0 {
            return false;
        }
        // Dropping a `Backed` closes its backing id; an `Adopted` one that was never taken
        // over stays registered until the connection ends.
        let removed = inodes.remove(&ino);
        if removed.as_ref().is_some_and(|m| m.backing().is_some()) {
            self.write_journal(&inodes);
        }
        matches!(removed, Some(Mode::Cached { .. })) && self.passthrough_enabled()
    }

    /// The modes of the inodes open now, for a hot restart.
    pub fn snapshot(&self) -> Vec<ModeRecord> {
        self.lock()
            .iter_mut()
            .map(|(&ino, mode)| ModeRecord {
                ino,
                backing: mode.backing(),
                // A recovered inode's count is unknown: the next process keeps its id until
                // as many releases as could ever come, which is for good.
                open: mode.open_count().map_or(u32::MAX, |n| *n),
            })
            .collect()
    }

    /// Takes over the modes of a hot restart's snapshot.
    pub fn restore(&self, records: &[ModeRecord]) {
        let mut inodes = self.lock();
        for r in records {
            let mode = match r.backing {
                None => Mode::Cached { open: r.open },
                Some(raw) if r.open == u32::MAX => Mode::Recovered { raw },
                Some(raw) => Mode::Adopted { raw, open: r.open },
            };
            inodes.insert(r.ino, mode);
        }
        // A supervised daemon that took over by a hot restart journals what it took over,
        // for a crash before its first change of that set.
        self.write_journal(&inodes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_is_recovered_kept_and_cleared_on_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passthrough.journal");
        std::fs::write(&path, "7 3\nnot a line\n9 12\n11\n").unwrap();
        let modes = IoModes::new(true).with_journal(path.clone(), true);
        let mut got = modes.snapshot();
        got.sort_by_key(|r| r.ino);
        let want = |ino, raw| ModeRecord {
            ino,
            backing: Some(raw),
            open: u32::MAX,
        };
        assert_eq!(got, vec![want(7, 3), want(9, 12)]);
        // Releases of the dead daemon's handles never drop a recovered id.
        assert!(!modes.release(7));
        assert_eq!(modes.snapshot().len(), 2);
        // The journal now holds exactly the recovered inodes (the junk is gone).
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        assert_eq!(lines, ["7 3", "9 12"]);
        // A hot restart's next process takes recovered inodes over as recovered.
        let next = IoModes::new(true).with_journal(path.clone(), false);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "", "cleared");
        next.restore(&modes.snapshot());
        assert_eq!(next.snapshot().len(), 2);
        assert!(next.snapshot().iter().all(|r| r.open == u32::MAX));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    }
}
