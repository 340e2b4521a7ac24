//! `distfs mount --supervise`: a small parent process mounts (answering the kernel's
//! FUSE_INIT itself, `fs::mount::mount_held`), keeps the connection open, and runs the daemon
//! as its child on that connection (`fs::handover::adopt`). If the child dies, by any signal,
//! `kill -9` included, the mount stays (the parent holds the connection) and the parent
//! starts a new child within a bounded back-off; after [`MAX_CRASHES`] crashes within
//! [`CRASH_WINDOW`] it unmounts and gives up with a clear message. SIGTERM or SIGINT to the
//! parent stops the child (which unmounts) and exits 0. A `distfs restart` hands over from
//! child to successor as usual; the parent is a child subreaper, so the successor becomes
//! its child and is supervised in turn.
//!
//! What survives a crash: the mount, every inode number (journaled before each reply that
//! hands one out, `dist::inode`), and requests the dead child read but never answered (the
//! new child has the kernel re-deliver them, FUSE_NOTIFY_RESEND). Open file handles keep
//! reading (a handle the new child does not know reads without its eviction guard). Lost:
//! in-memory counters and caches, as on a restart, and the eviction guards of open files.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::config::Config;
use super::DaemonError;
use crate::fs::handover::KernelInit;
use crate::fs::mount::{lazy_unmount, mount_held, MountConfig, Mounted};

/// The environment variable naming the FUSE connection a supervised child serves.
pub const FD_ENV: &str = "DISTFS_SUPERVISED_FD";
/// The connection's INIT values (JSON [`KernelInit`]).
const INIT_ENV: &str = "DISTFS_SUPERVISED_INIT";
/// How many children were started before this one (0: a fresh mount).
const GEN_ENV: &str = "DISTFS_SUPERVISED_GEN";
/// Crashes tolerated within [`CRASH_WINDOW`].
pub const MAX_CRASHES: usize = 5;
/// The window crashes are counted in.
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// The first back-off; doubled per recent crash, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the child may take to stop on SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// What a supervised child got from its parent.
pub struct Supervised {
    /// The live FUSE connection.
    pub fuse: OwnedFd,
    /// What the kernel offered at INIT.
    pub init: KernelInit,
    /// Children started before this one (0: nothing to recover).
    pub generation: u64,
}

/// The connection this process was given by a supervisor, if any.
pub fn inherited() -> Option<Supervised> {
    let fd: RawFd = std::env::var(FD_ENV).ok()?.parse().ok()?;
    let init: KernelInit = serde_json::from_str(&std::env::var(INIT_ENV).ok()?).ok()?;
    let generation = std::env::var(GEN_ENV).ok()?.parse().ok()?;
    // Another fd number than one the supervisor passed would not be a FUSE connection.
    // SAFETY: F_GETFD has no side effects; it checks that `fd` is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the supervisor passed this fd for this process; nothing else owns it.
    let fuse = unsafe { OwnedFd::from_raw_fd(fd) };
    Some(Supervised {
        fuse,
        init,
        generation,
    })
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// Runs the supervisor until SIGTERM/SIGINT, an unmount, or too many crashes.
pub fn run(config: Config) -> Result<(), DaemonError> {
    // SAFETY: prctl and signal with a handler that only stores an atomic (async-signal-safe).
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
    }
    let held = mount_held(&MountConfig {
        mountpoint: config.mountpoint.clone(),
        allow_other: config.allow_other,
    })?;
    let init = serde_json::to_string(&held.init).unwrap_or_default();
    let fd = held.fuse.as_raw_fd();
    let spawn = |generation: u64| -> Result<u32, DaemonError> {
        let mut cmd = Command::new("/proc/self/exe");
        cmd.args(std::env::args_os().skip(1))
            .env(FD_ENV, fd.to_string())
            .env(INIT_ENV, &init)
            .env(GEN_ENV, generation.to_string())
            .stdin(Stdio::null());
        // SAFETY: only fcntl (async-signal-safe) between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(DaemonError::Runtime)?;
        tracing::info!(pid = child.id(), generation, "started the daemon");
        Ok(child.id())
    };
    let mut generation = 0;
    let mut current = spawn(generation)?;
    let mut crashes: VecDeque<Instant> = VecDeque::new();
    loop {
        if STOP.load(Ordering::Relaxed) {
            stop_child(current);
            lazy_unmount(&config.mountpoint);
            // Leave without fuser's unmount on drop: the mount is gone already.
            std::process::exit(0);
        }
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        if pid as u32 != current {
            continue; // an old daemon of a restart, reaped
        }
        let clean = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if clean {
            if let Some(next) = successor(&config.cache_dir, current) {
                tracing::info!(old = current, new = next, "the daemon was restarted");
                current = next;
                continue;
            }
            tracing::info!("the daemon ended (unmounted)");
            lazy_unmount(&config.mountpoint);
            std::process::exit(0);
        }
        let how = if libc::WIFSIGNALED(status) {
            format!("killed by signal {}", libc::WTERMSIG(status))
        } else {
            format!("exit status {}", libc::WEXITSTATUS(status))
        };
        let now = Instant::now();
        crashes.push_back(now);
        while crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            crashes.pop_front();
        }
        if crashes.len() >= MAX_CRASHES {
            lazy_unmount(&config.mountpoint);
            return Err(DaemonError::GaveUp {
                crashes: crashes.len(),
                window: CRASH_WINDOW.as_secs(),
                last: how,
            });
        }
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << (crashes.len() - 1).min(16))
            .min(MAX_BACKOFF);
        tracing::warn!(pid = current, %how, ?backoff, "the daemon died; starting another on the same mount");
        std::thread::sleep(backoff);
        generation += 1;
        current = spawn(generation)?;
    }
}

/// The daemon that took over from `old` (a hot restart): the cache lock's holder, if it is
/// another live process.
fn successor(cache_dir: &std::path::Path, old: u32) -> Option<u32> {
    let (pid, _) = crate::store::lock::holder(cache_dir).ok()??;
    let pid: u32 = pid.parse().ok()?;
    (pid != old && std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

/// SIGTERM to the child (it unmounts), then a bounded wait, then SIGKILL.
fn stop_child(pid: u32) {
    let pid = pid as i32;
    // SAFETY: kill/waitpid on our own child; valid out-pointer.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        let start = Instant::now();
        let mut status = 0;
        while start.elapsed() < STOP_GRACE {
            if libc::waitpid(pid, &mut status, libc::WNOHANG) != 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
}

/// The inode journal's file name in the cache dir.
pub(crate) const JOURNAL_FILE: &str = "inodes.journal";

impl Supervised {
    /// Serves the connection the supervisor gave; after a crash, has the kernel re-deliver
    /// what the dead daemon read but never answered, before this one starts reading.
    pub(crate) fn adopt(
        self,
        fs: crate::fs::DistFs,
        allow_other: bool,
        uid: u32,
        gid: u32,
    ) -> Result<Mounted, DaemonError> {
        let takeover = |e: crate::fs::handover::HandoverError| DaemonError::Takeover(e.into());
        let fuse = self.fuse.try_clone().map_err(|e| {
            DaemonError::Takeover(super::restart::RestartError::Io {
                what: "dup of the FUSE fd",
                source: e,
            })
        })?;
        let adopted = crate::fs::handover::adopt(fs, self.fuse, self.init, allow_other, uid, gid)
            .map_err(takeover)?;
        if self.generation > 0 {
            crate::fs::handover::notify_resend(&fuse).map_err(takeover)?;
            tracing::info!(
                generation = self.generation,
                "recovered the mount after the previous daemon died"
            );
        }
        let session = adopted.serve().map_err(takeover)?;
        Ok(Mounted { session, fuse })
    }
}
