//! Finding distfs mounts and telling whether each is alive, for `distfs doctor`: the mount
//! table (`/proc/self/mountinfo`, where our mounts have type `fuse.distfs` because
//! [`super::mount::mount`] sets the subtype), a liveness probe that cannot hang its caller,
//! and the remedy for a dead or hung mount (abort the FUSE connection through fusectl, then
//! detach the mount point lazily).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// The mount type of a distfs mount (`fuse.` + the subtype [`super::mount::mount`] sets).
pub const FS_TYPE: &str = "fuse.distfs";
/// Where the kernel's FUSE control filesystem lives.
pub const FUSECTL_DIR: &str = "/sys/fs/fuse/connections";

/// One line of the mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    /// Where it is mounted (octal escapes decoded).
    pub mountpoint: PathBuf,
    /// The filesystem type (`fuse.distfs`).
    pub fstype: String,
    /// The mount source (`distfs`).
    pub source: String,
    /// The device number's major part.
    pub major: u32,
    /// The device number's minor part: for FUSE, the connection's number in fusectl.
    pub minor: u32,
}

/// Parses `/proc/self/mountinfo` text; lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    let fields: Vec<&str> = line.split(' ').collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let mountpoint = unescape(fields.get(4)?);
    let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    Some(MountEntry {
        mountpoint: PathBuf::from(mountpoint),
        fstype: fields.get(dash + 1)?.to_string(),
        source: unescape(fields.get(dash + 2)?),
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
    })
}

/// Decodes the kernel's `\ooo` octal escapes (space, tab, newline, backslash).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let d = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(d, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every distfs mount in this process's mount namespace: type `fuse.distfs`, or plain
/// `fuse` with source `distfs` (mounts made before the subtype was set).
pub fn distfs_mounts() -> std::io::Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.fstype == FS_TYPE || (m.fstype == "fuse" && m.source == "distfs"))
        .collect())
}

/// How a mount answered the probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// It answered.
    Alive,
    /// "Transport endpoint is not connected": the daemon is gone.
    Dead,
    /// No answer within the bound: the daemon is stuck or stopped.
    Hung {
        /// How long the probe waited.
        after: Duration,
    },
    /// Some other error.
    Failed {
        /// The error.
        reason: String,
    },
}

/// Asks the filesystem at `path` for its statistics (`statfs`, which the kernel always
/// forwards to the daemon, unlike a `stat` it may answer from its attribute cache) on a
/// helper thread, waiting at most `bound`. A hung probe's thread stays blocked until the
/// connection is aborted or the process exits.
pub fn probe(path: &Path, bound: Duration) -> Liveness {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("distfs-probe".into())
        .spawn(move || {
            let _ = tx.send(statfs(&owned));
        });
    if let Err(e) = spawned {
        return Liveness::Failed {
            reason: format!("cannot start a probe thread: {e}"),
        };
    }
    match rx.recv_timeout(bound) {
        Ok(Ok(())) => Liveness::Alive,
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOTCONN) => Liveness::Dead,
        Ok(Err(e)) => Liveness::Failed {
            reason: e.to_string(),
        },
        Err(_) => Liveness::Hung { after: bound },
    }
}

fn statfs(path: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid C string; `buf` is a properly sized, writable statvfs.
    let rc = unsafe {
        let mut buf: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c.as_ptr(), &mut buf)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Aborts the FUSE connection numbered `minor` (the mount's device minor) by writing its
/// fusectl `abort` file, mounting fusectl first when it is not (root only). Every request
/// waiting on the connection then fails, so a hung mount can be unmounted.
pub fn abort_connection(minor: u32) -> std::io::Result<()> {
    let dir = Path::new(FUSECTL_DIR);
    let abort = dir.join(minor.to_string()).join("abort");
    if !abort.exists() && is_empty_dir(dir) {
        mount_fusectl(dir);
    }
    std::fs::write(&abort, b"1")
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

fn mount_fusectl(dir: &Path) {
    let (Ok(target), Ok(kind)) = (
        std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()),
        std::ffi::CString::new("fusectl"),
    ) else {
        return;
    };
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            kind.as_ptr(),
            target.as_ptr(),
            kind.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        tracing::debug!(
            "mounting fusectl on {} failed: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "\
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
612 30 0:77 / /tmp/a\\040b rw,nosuid,nodev,relatime shared:300 - fuse.distfs distfs ro,user_id=0
613 30 0:78 / /tmp/c rw - fuse.other x rw
garbage";
        let all = parse_mountinfo(text);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].fstype, "ext3");
        assert_eq!(all[0].mountpoint, PathBuf::from("/mnt2"));
        let d = &all[1];
        assert_eq!(d.mountpoint, PathBuf::from("/tmp/a b"));
        assert_eq!((d.fstype.as_str(), d.source.as_str()), (FS_TYPE, "distfs"));
        assert_eq!((d.major, d.minor), (0, 77));
        assert_eq!(all[2].fstype, "fuse.other");
    }

    #[test]
    fn probes_a_live_directory() {
        assert_eq!(
            probe(Path::new("/"), Duration::from_secs(5)),
            Liveness::Alive
        );
        assert!(matches!(
            probe(Path::new("/no/such/dir"), Duration::from_secs(5)),
            Liveness::Failed { .. }
        ));
    }
}
