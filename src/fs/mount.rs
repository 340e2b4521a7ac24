//! Mounting and unmounting: stale-mount detection and clearing, the `--allow-other` check
//! against /etc/fuse.conf, the fuser session (read-only, `default_permissions`), and the
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
    /// `--allow-other` asked for by a user other than root, and fuse.conf does not permit it.
    #[error("--allow-other: {conf} has no uncommented `user_allow_other` line{why}, so fusermount3 refuses allow_other for users other than root; add the line `user_allow_other` to {conf} (as root: echo user_allow_other >> {conf}), or mount as root, which needs no change")]
    AllowOtherDenied {
        /// The FUSE configuration file checked.
        conf: String,
        /// Why it could not be read, when it could not (starts with a separator).
        why: String,
    },
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

/// The FUSE configuration file fusermount3 reads.
pub const FUSE_CONF: &str = "/etc/fuse.conf";

/// Whether the text of a fuse.conf permits `allow_other` for users other than root: a line
/// that is `user_allow_other` once comments (`#` to the end of the line) and surrounding
/// blanks are removed, as fusermount3 reads it.
pub fn fuse_conf_allows_other(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.split_once('#').map_or(line, |(before, _)| before);
        line.trim() == "user_allow_other"
    })
}

/// Checks, before mounting, that `--allow-other` can work for the user with effective uid
/// `euid`: root always can; anyone else needs `user_allow_other` in the file `conf`
/// (normally [`FUSE_CONF`]). The error says what to add and where.
pub fn check_allow_other_for(euid: u32, conf: &Path) -> Result<(), MountError> {
    if euid == 0 {
        return Ok(());
    }
    let denied = |why: String| MountError::AllowOtherDenied {
        conf: conf.display().to_string(),
        why,
    };
    match std::fs::read_to_string(conf) {
        Ok(text) if fuse_conf_allows_other(&text) => Ok(()),
        Ok(_) => Err(denied(String::new())),
        Err(e) => Err(denied(format!(" (reading it failed: {e})"))),
    }
}

/// [`check_allow_other_for`] the current process and /etc/fuse.conf, when `allow_other` is
/// asked for; nothing otherwise.
pub fn check_allow_other(allow_other: bool) -> Result<(), MountError> {
    if !allow_other {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    check_allow_other_for(euid, Path::new(FUSE_CONF))
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

/// A mounted filesystem: its session and a duplicate of its FUSE connection's fd (for a
/// hot restart, `fs::handover`).
pub struct Mounted {
    /// The session serving the mount; dropping it unmounts.
    pub session: fuser::BackgroundSession,
    /// The connection's fd (the same open `/dev/fuse` file).
    pub fuse: std::os::fd::OwnedFd,
}

/// Mounts `fs` at the configured mount point, read-only, and serves it from a background
/// thread. Dropping the returned session unmounts.
///
/// Always with `default_permissions`: the kernel checks the mode bits the view reports
/// (owner = the mounting user), so a 0444 file is not executable and a 0600 one is private
/// to the mounting user, for every caller, as users expect of a read-only tree. With
/// `allow_other`, other users get what the "other" bits give them (r-x on 0555, r-- on 0444).
pub fn mount(fs: DistFs, cfg: &MountConfig) -> Result<Mounted, MountError> {
    check_allow_other(cfg.allow_other)?;
    clear_stale(&cfg.mountpoint)?;
    let config = fuse_config(cfg);
    let err = |source| MountError::Mount {
        path: cfg.mountpoint.display().to_string(),
        source,
    };
    let session = fuser::Session::new(fs, &cfg.mountpoint, &config).map_err(err)?;
    let fuse = std::os::fd::AsFd::as_fd(&session)
        .try_clone_to_owned()
        .map_err(err)?;
    let session = session.spawn().map_err(err)?;
    Ok(Mounted { session, fuse })
}

/// fuser's settings for a distfs mount.
fn fuse_config(cfg: &MountConfig) -> Config {
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
        MountOption::DefaultPermissions,
    ];
    if cfg.allow_other {
        config.acl = SessionACL::All;
    }
    config
}

/// A mount held by a supervisor that serves nothing itself: it answered the kernel's INIT
/// (with distfs's settings) and keeps the connection open for daemons it starts
/// (`fs::handover::adopt`). Dropping it unmounts.
pub struct HeldMount {
    _session: fuser::Session<InitOnly>,
    /// The connection's fd.
    pub fuse: std::os::fd::OwnedFd,
    /// What the kernel offered at INIT.
    pub init: super::handover::KernelInit,
}

/// The supervisor's stand-in filesystem: answers INIT only (it never runs a loop).
pub struct InitOnly {
    init: super::handover::InitRecord,
}

impl fuser::Filesystem for InitOnly {
    fn init(
        &mut self,
        _req: &fuser::Request,
        config: &mut fuser::KernelConfig,
    ) -> std::io::Result<()> {
        let _ = self.init.set(super::handover::KernelInit::of(config));
        let _ = super::configure(config);
        Ok(())
    }
}

/// Mounts like [`mount`] but serves nothing: see [`HeldMount`].
pub fn mount_held(cfg: &MountConfig) -> Result<HeldMount, MountError> {
    check_allow_other(cfg.allow_other)?;
    clear_stale(&cfg.mountpoint)?;
    let err = |source| MountError::Mount {
        path: cfg.mountpoint.display().to_string(),
        source,
    };
    let record = super::handover::InitRecord::default();
    let only = InitOnly {
        init: record.clone(),
    };
    let session = fuser::Session::new(only, &cfg.mountpoint, &fuse_config(cfg)).map_err(err)?;
    let fuse = std::os::fd::AsFd::as_fd(&session)
        .try_clone_to_owned()
        .map_err(err)?;
    let init = *record
        .get()
        .ok_or_else(|| err(io::Error::other("the kernel sent no FUSE_INIT")))?;
    Ok(HeldMount {
        _session: session,
        fuse,
        init,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_conf_parser() {
        // (text, allows other users): what each case exercises.
        let cases = [
            ("", false),                                     // empty file
            ("user_allow_other\n", true),                    // the line itself
            ("user_allow_other", true),                      // no final newline
            ("#user_allow_other\n", false),                  // Debian's default: commented out
            ("# user_allow_other\n", false),                 // commented with a blank
            ("  user_allow_other  \n", true),                // surrounding blanks
            ("\tuser_allow_other\t# shared builds\n", true), // trailing comment
            ("mount_max = 1000\nuser_allow_other\n", true),  // among other settings
            ("mount_max = 1000\n", false),                   // other settings only
            ("user_allow_others\n", false),                  // a longer word
            ("user_allow_other = 1\n", false),               // not the bare keyword
            ("xuser_allow_other\n", false),                  // a prefix
            ("USER_ALLOW_OTHER\n", false),                   // case matters to fusermount3
            ("user_allow_other\r\n", true),                  // CRLF line end
        ];
        for (text, want) in cases {
            assert_eq!(fuse_conf_allows_other(text), want, "{text:?}");
        }
    }

    #[test]
    fn allow_other_check_reads_the_file_and_says_what_to_add() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("fuse.conf");
        std::fs::write(&conf, "# mount_max = 1000\n#user_allow_other\n").unwrap();
        let err = check_allow_other_for(1000, &conf).unwrap_err().to_string();
        assert!(err.contains("add the line `user_allow_other`"), "{err}");
        assert!(err.contains(&conf.display().to_string()), "{err}");
        assert!(err.contains("as root, which needs no change"), "{err}");
        // Root needs nothing, whatever the file says.
        check_allow_other_for(0, &conf).unwrap();
        std::fs::write(&conf, "user_allow_other\n").unwrap();
        check_allow_other_for(1000, &conf).unwrap();
        // A missing file is refused too, and says so.
        let missing = dir.path().join("absent.conf");
        let err = check_allow_other_for(1000, &missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("reading it failed"), "{err}");
        check_allow_other_for(0, &missing).unwrap();
    }
}
