//! The checks behind `distfs doctor`: is this machine able to run distfs, and is every
//! distfs mount on it alive. Each check returns [`Finding`]s (ok, warn or fail, what was
//! seen, and for a problem one line saying how to fix it); the CLI prints them and decides
//! the exit code. Every check is bounded in time: gateways and names by a timeout, mounts by
//! a probe on a helper thread (`fs::probe`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fetch::GatewayClient;
use crate::fs::mount::lazy_unmount;
use crate::fs::probe::{self, Liveness, MountEntry};
use crate::name::{Resolver, RootSpec};
use crate::store::lock;

/// Free space under which the cache dir fails the check.
const MIN_FREE: u64 = 64 * 1024 * 1024;
/// Free space under which the cache dir gets a warning.
const LOW_FREE: u64 = 1024 * 1024 * 1024;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but something may bite later.
    Warn,
    /// Broken.
    Fail,
}

/// One printed result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Ok, warn or fail.
    pub status: Status,
    /// What was checked and what was seen.
    pub what: String,
    /// How to fix it (for warn and fail).
    pub fix: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Finding {
        Finding {
            status: Status::Ok,
            what: what.into(),
            fix: None,
        }
    }

    fn warn(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            status: Status::Warn,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            status: Status::Fail,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `/dev/fuse` exists and this user can open it.
pub fn dev_fuse() -> Finding {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => Finding::ok("/dev/fuse: present and openable"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Finding::fail(
            "/dev/fuse: missing",
            "load the module (modprobe fuse); in a container, pass the device (--device /dev/fuse)",
        ),
        Err(e) => Finding::fail(
            format!("/dev/fuse: cannot open it: {e}"),
            "make it readable and writable for users (chmod 0666 /dev/fuse, as most distributions ship it)",
        ),
    }
}

/// `fusermount3` is on `PATH` and, for users other than root, setuid root.
pub fn fusermount() -> Finding {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("fusermount3"))
            .find(|p| p.is_file())
    });
    let install = "install fuse3 (apt-get install fuse3)";
    let Some(path) = found else {
        return if is_root() {
            Finding::warn(
                "fusermount3: not on PATH (root mounts without it, but unmounting by hand needs it)",
                install,
            )
        } else {
            Finding::fail("fusermount3: not on PATH", install)
        };
    };
    let shown = path.display();
    match std::fs::metadata(&path) {
        Ok(m) if m.uid() == 0 && m.permissions().mode() & 0o4000 != 0 => {
            Finding::ok(format!("fusermount3: {shown}, setuid root"))
        }
        Ok(_) if is_root() => {
            Finding::ok(format!("fusermount3: {shown} (not setuid; fine for root)"))
        }
        Ok(_) => Finding::fail(
            format!("fusermount3: {shown} is not setuid root, so users cannot mount"),
            format!("chown root {shown} && chmod u+s {shown} (or reinstall fuse3)"),
        ),
        Err(e) => Finding::fail(format!("fusermount3: {shown}: {e}"), install),
    }
}

/// `/etc/fuse.conf` has `user_allow_other` (only `--allow-other` as a user needs it).
pub fn fuse_conf() -> Finding {
    let text = std::fs::read_to_string("/etc/fuse.conf").unwrap_or_default();
    if text.lines().any(|l| l.trim() == "user_allow_other") {
        Finding::ok("/etc/fuse.conf: user_allow_other is set")
    } else {
        Finding::warn(
            "/etc/fuse.conf: user_allow_other is not set (only needed for --allow-other by a user other than root)",
            "add a line \"user_allow_other\" to /etc/fuse.conf",
        )
    }
}

/// The cache directory: usable (exists and writable, or creatable), enough free space, and
/// who holds its lock.
/// The kernel release of `uname -r` as (major, minor), if it parses.
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether mounts can use FUSE passthrough to whole copies (`fs::iomode`): Linux 6.9 or
/// later and a daemon running as root. Without it warm and hot reads go through the daemon.
pub fn passthrough() -> Finding {
    let fix_kernel = "warm and hot reads go through the daemon (slower); Linux 6.9 or later \
                      lets the kernel read cached files itself";
    match kernel_version() {
        None => Finding::warn("passthrough: cannot read the kernel version", fix_kernel),
        Some((major, minor)) if (major, minor) < (6, 9) => Finding::warn(
            format!("passthrough: kernel {major}.{minor} has no FUSE passthrough"),
            fix_kernel,
        ),
        Some(_) if !is_root() => Finding::warn(
            "passthrough: needs the daemon to run as root (CAP_SYS_ADMIN)",
            "run the mount as root (the systemd unit does) for reads at local-disk speed",
        ),
        Some((major, minor)) => Finding::ok(format!(
            "passthrough: kernel {major}.{minor} and root; fully cached files are read by the kernel"
        )),
    }
}

pub fn cache_dir(dir: &Path) -> Vec<Finding> {
    let shown = dir.display();
    let mut out = Vec::new();
    let existing = dir
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    if dir.exists() && !dir.is_dir() {
        out.push(Finding::fail(
            format!("cache dir {shown}: not a directory"),
            "move the file away or pass another --cache-dir",
        ));
        return out;
    }
    let probe = existing.join(format!(".distfs-doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            out.push(Finding::ok(if existing == dir {
                format!("cache dir {shown}: exists and is writable")
            } else {
                format!("cache dir {shown}: does not exist yet; can be created")
            }));
        }
        Err(e) => out.push(Finding::fail(
            format!(
                "cache dir {shown}: {} is not writable: {e}",
                existing.display()
            ),
            format!(
                "give the mounting user the directory (chown USER {}) or pass another --cache-dir",
                existing.display()
            ),
        )),
    }
    match crate::store::disk::space(existing).map(|s| s.free) {
        Ok(free) => {
            let mib = free / (1024 * 1024);
            let what = format!("cache dir {shown}: {mib} MiB free");
            let fix = "free space on that filesystem, or pass a --cache-dir on a larger one";
            out.push(if free < MIN_FREE {
                Finding::fail(what, fix)
            } else if free < LOW_FREE {
                Finding::warn(what, fix)
            } else {
                Finding::ok(what)
            });
        }
        Err(e) => out.push(Finding::warn(
            format!("cache dir {shown}: cannot read free space: {e}"),
            "check the filesystem (df)",
        )),
    }
    if dir.is_dir() {
        out.push(match lock::holder(dir) {
            Ok(Some((pid, what))) => Finding::ok(format!(
                "cache dir {shown}: in use by distfs pid {pid} {what}"
            )),
            Ok(None) => Finding::ok(format!(
                "cache dir {shown}: not in use (no live lock holder)"
            )),
            Err(e) => Finding::warn(
                format!("cache dir {shown}: cannot read its lock: {e}"),
                format!(
                    "check the permissions of {}",
                    dir.join(lock::LOCK_FILE).display()
                ),
            ),
        });
    }
    out
}

/// The gateway at `url` answers `GET /ipfs/bafkqaaa?format=raw` within `timeout`.
pub async fn gateway(url: &str, timeout: Duration) -> Finding {
    let fix = format!(
        "check the URL and that the gateway is up and trustless (curl -s '{}/ipfs/bafkqaaa?format=raw' must answer 200)",
        url.trim_end_matches('/')
    );
    let client = match GatewayClient::http_client() {
        Ok(http) => GatewayClient::with_client(url, http, timeout),
        Err(e) => Err(e),
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => return Finding::fail(format!("gateway {url}: {e}"), fix),
    };
    match client.probe().await {
        Ok(took) => Finding::ok(format!("gateway {url}: answers ({} ms)", took.as_millis())),
        Err(e) => Finding::fail(format!("gateway {url}: {e}"), fix),
    }
}

/// The root `spec` resolves through `resolver` within `timeout`.
pub async fn name(resolver: &Resolver, spec: &str, timeout: Duration) -> Finding {
    let fix = "check that the name is published and that a --gateway serving its records answers";
    let parsed: RootSpec = match spec.parse() {
        Ok(s) => s,
        Err(e) => {
            return Finding::fail(
                format!("root {spec}: {e}"),
                "use /ipfs/<cid>, /ipns/<key> or /ipns/<dnslink-domain>",
            )
        }
    };
    match tokio::time::timeout(timeout, resolver.resolve(&parsed)).await {
        Ok(Ok(r)) => {
            let seq = r
                .sequence
                .map(|s| format!(", sequence {s}"))
                .unwrap_or_default();
            Finding::ok(format!(
                "root {spec}: resolves to {} (from {}{seq})",
                r.cid, r.source
            ))
        }
        Ok(Err(e)) => Finding::fail(format!("root {spec}: {e}"), fix),
        Err(_) => Finding::fail(format!("root {spec}: no answer within {timeout:?}"), fix),
    }
}

/// A distfs mount and how it answered.
#[derive(Clone, Debug)]
pub struct MountCheck {
    /// The mount.
    pub entry: MountEntry,
    /// Its probe result.
    pub liveness: Liveness,
}

impl MountCheck {
    /// Whether `--fix` can do something for it (dead or hung).
    pub fn fixable(&self) -> bool {
        matches!(self.liveness, Liveness::Dead | Liveness::Hung { .. })
    }

    /// The printed result.
    pub fn finding(&self) -> Finding {
        let path = self.entry.mountpoint.display();
        let abort = format!(
            "distfs doctor --fix (or by hand: echo 1 > {}/{}/abort; umount -l {path})",
            probe::FUSECTL_DIR,
            self.entry.minor
        );
        match &self.liveness {
            Liveness::Alive => Finding::ok(format!("mount {path}: alive")),
            Liveness::Dead => Finding::fail(
                format!("mount {path}: dead (its daemon is gone: transport endpoint is not connected)"),
                format!("distfs doctor --fix (or by hand: fusermount3 -u -z {path}), then mount again"),
            ),
            Liveness::Hung { after } => Finding::fail(
                format!("mount {path}: hung (no answer within {after:?}; its daemon is stopped or stuck)"),
                abort,
            ),
            Liveness::Failed { reason } => Finding::fail(format!("mount {path}: {reason}"), abort),
        }
    }
}

/// Probes every distfs mount (only those at `only` when it is not empty), each bounded by
/// `bound`.
pub fn mounts(only: &[PathBuf], bound: Duration) -> std::io::Result<Vec<MountCheck>> {
    let found = probe::distfs_mounts()?;
    Ok(found
        .into_iter()
        .filter(|m| only.is_empty() || only.contains(&m.mountpoint))
        .map(|entry| {
            let liveness = probe::probe(&entry.mountpoint, bound);
            MountCheck { entry, liveness }
        })
        .collect())
}

/// Clears a dead or hung mount: aborts its FUSE connection (a dead one's may already be
/// gone), detaches the mount point lazily, and checks again.
pub fn fix_mount(check: &MountCheck, bound: Duration) -> Finding {
    let entry = &check.entry;
    let path = entry.mountpoint.display();
    let aborted = probe::abort_connection(entry.minor);
    if let Err(e) = &aborted {
        tracing::debug!(minor = entry.minor, "abort: {e}");
    }
    lazy_unmount(&entry.mountpoint);
    let still = probe::distfs_mounts()
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.mountpoint == entry.mountpoint && m.minor == entry.minor);
    let how = if aborted.is_ok() {
        "connection aborted, unmounted"
    } else {
        "unmounted"
    };
    match still {
        None => Finding::ok(format!("mount {path}: cleared ({how})")),
        Some(entry) => {
            let again = MountCheck {
                liveness: probe::probe(&entry.mountpoint, bound),
                entry,
            };
            match again.liveness {
                Liveness::Alive => Finding::ok(format!("mount {path}: alive again")),
                _ => Finding::fail(
                    format!("mount {path}: still there after the fix"),
                    format!(
                        "as root: echo 1 > {}/{}/abort; umount -l {path}",
                        probe::FUSECTL_DIR,
                        again.entry.minor
                    ),
                ),
            }
        }
    }
}
