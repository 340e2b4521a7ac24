//! Mounting and unmounting: stale-mount detection and clearing, the fuser session, and the
//! unmount fallbacks FUSE.md measured (an unmount that fails with EBUSY uses up fuser's
//! handle, so a lazy `umount2(MNT_DETACH)` follows, and `fusermount3 -u -z` when not root).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use fuser::{Config, MountOption, SessionACL};

use super::DistFs;

/// Why mounting failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount point does not exist or is not a directory.
    #[error("{path}: not a directory (create it first: mkdir -p {path})")]
    NotADirectory { path: String },
    /// A dead FUSE mount sits at the mount point and could not be cleared.
    #[error("{path}: a dead FUSE mount is in the way (\"Transport endpoint is not connected\"); clear it with: fusermount3 -u -z {path}  (as root: umount -l {path})")]
    Stale { path: String },
    /// The kernel refused the mount.
    #[error("mounting {path} failed: {source} (is /dev/fuse present and fusermount3 installed?)")]
    Mount {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Options for [`mount`].
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Let other users see the mount (needs `user_allow_other` in /etc/fuse.conf when not root).
    pub allow_other: bool,
}

/// What happened to a mount point that was checked for a stale mount.
#[derive(Debug, PartialEq, Eq)]
pub enum StaleCheck {
    /// Nothing was in the way.
    Clean,
    /// A dead mount was found and lazily unmounted.
    Cleared,
}

/// Detects a dead FUSE mount at `path` (left by a killed daemon) and clears it.
pub fn clear_stale(path: &Path) -> Result<StaleCheck, MountError> {
    let shown = path.display().to_string();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(StaleCheck::Clean),
        Ok(_) => Err(MountError::NotADirectory { path: shown }),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(path = %shown, "clearing a dead FUSE mount left by an earlier daemon");
            lazy_unmount(path);
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => Ok(StaleCheck::Cleared),
                _ => Err(MountError::Stale { path: shown }),
            }
        }
        Err(_) => Err(MountError::NotADirectory { path: shown }),
    }
}

/// Detaches whatever is mounted at `path`, as root with `umount2(MNT_DETACH)`, otherwise with
/// `fusermount3 -u -z`. Best effort: the caller checks the result.
pub fn lazy_unmount(path: &Path) {
    if let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc == 0 {
            return;
        }
    }
    let _ = Command::new("fusermount3")
        .arg("-u")
        .arg("-z")
        .arg(path)
        .status();
}

/// Mounts `fs` at the configured mount point, read-only, and serves it from a background
/// thread. Dropping the returned session unmounts.
pub fn mount(fs: DistFs, cfg: &MountConfig) -> Result<fuser::BackgroundSession, MountError> {
    clear_stale(&cfg.mountpoint)?;
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("distfs".into()),
        // Passed to the kernel (fuser's `Subtype` reaches only fusermount3): the mount table
        // then shows type `fuse.distfs`, which `distfs doctor` looks for (`fs::probe`).
        MountOption::CUSTOM("subtype=distfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    if cfg.allow_other {
        config.acl = SessionACL::All;
    }
    fuser::spawn_mount(fs, &cfg.mountpoint, &config).map_err(|source| MountError::Mount {
        path: cfg.mountpoint.display().to_string(),
        source,
    })
}

/// The kernel readahead window distfs asks for on its mounts, in KiB.
pub const READ_AHEAD_KB: u32 = 1024;

/// Raises the kernel's readahead window of the FUSE mount whose device number is `dev` to
/// [`READ_AHEAD_KB`], so that sequential readers send 1 MiB READs instead of 128 KiB ones
/// (FUSE.md: `set_max_readahead` cannot raise it; the bdi's `read_ahead_kb` can). Root only;
/// anyone else keeps the kernel's default, which works, just with 8 times the requests.
pub fn raise_readahead(dev: u64) {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, READ_AHEAD_KB.to_string()) {
        Ok(()) => tracing::debug!(%path, kb = READ_AHEAD_KB, "raised the readahead window"),
        Err(e) => tracing::debug!(%path, "kept the kernel's readahead window: {e}"),
    }
}

/// Drops kernel cache entries after a root swap, through the session's FUSE notifier
/// (FUSE.md: `inval_entry`/`inval_inode` work from any thread). Each call writes to
/// `/dev/fuse`, so [`Invalidator::apply`] runs them on a blocking thread.
#[derive(Clone)]
pub struct Invalidator {
    notifier: std::sync::Arc<fuser::Notifier>,
}

impl Invalidator {
    /// An invalidator for the mount served by `session`.
    pub fn new(session: &fuser::BackgroundSession) -> Invalidator {
        Invalidator {
            notifier: std::sync::Arc::new(session.notifier()),
        }
    }

    /// Sends every invalidation; entries the kernel does not hold (ENOENT) are not errors.
    /// Returns how many the kernel accepted.
    pub async fn apply(&self, items: Vec<crate::dist::Invalidation>) -> usize {
        use crate::dist::Invalidation;
        let notifier = self.notifier.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut ok = 0;
            for item in &items {
                let result = match item {
                    Invalidation::Inode(ino) => notifier.inval_inode(fuser::INodeNo(*ino), 0, 0),
                    Invalidation::Entry { parent, name } => {
                        notifier.inval_entry(fuser::INodeNo(*parent), std::ffi::OsStr::new(name))
                    }
                };
                match result {
                    Ok(()) => ok += 1,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                    Err(e) => tracing::debug!(?item, "kernel invalidation failed: {e}"),
                }
            }
            ok
        })
        .await;
        done.unwrap_or(0)
    }
}
