//! `distfs-appimage-runtime`: the ELF runtime at the front of the project's type-2 AppImages
//! (this program's bytes followed by a squashfs image; `scripts/mkappimage` packs them).
//!
//! Run as an AppImage it finds its squashfs image right after its own ELF section headers
//! (`e_shoff + e_shentsize * e_shnum`, checked for the `hsqs` magic), mounts it read-only with
//! `squashfuse -o offset=N` on a private temporary directory, runs `AppRun` from it with the
//! arguments and the AppImage environment (`APPIMAGE`, `APPDIR`, `ARGV0`, `OWD`), forwards
//! SIGINT/SIGTERM/SIGHUP/SIGQUIT to it, exits with its status (128 + signal if it was killed),
//! and always unmounts and removes the temporary directory. Runtime options:
//! `--appimage-offset` prints N; `--appimage-extract [PATTERN]` unpacks into `./squashfs-root`
//! with `unsquashfs -o N`. Failures of the runtime itself print one line on stderr and exit
//! 127. std and libc only: it must stay small and start fast.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

const PROG: &str = "distfs-appimage-runtime";
/// The squashfs superblock magic.
const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
/// How long squashfuse may take to show the mount.
const MOUNT_WAIT: Duration = Duration::from_secs(30);
/// How long a busy unmount is retried before it is done lazily.
const UNMOUNT_WAIT: Duration = Duration::from_secs(5);
/// How long squashfuse may take to exit after its unmount.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// Exit status for failures of the runtime itself (not of the application).
const EXIT_RUNTIME_FAILED: u8 = 127;

/// The application's pid once started (0 before), for the signal handler.
static APP_PID: AtomicI32 = AtomicI32::new(0);
/// The last signal received (0 if none).
static SIGNALLED: AtomicI32 = AtomicI32::new(0);

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(msg) => {
            eprintln!("{PROG}: {msg}");
            ExitCode::from(EXIT_RUNTIME_FAILED)
        }
    }
}

fn run() -> Result<u8, String> {
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let image = std::env::current_exe()
        .map_err(|e| format!("cannot find my own file via /proc/self/exe: {e}"))?;
    let offset = squashfs_offset(&image)?;

    match rest.first().map(|a| a.as_bytes()) {
        Some(b"--appimage-offset") => {
            println!("{offset}");
            Ok(0)
        }
        Some(b"--appimage-extract") => extract(&image, offset, rest.get(1)),
        Some(b"--appimage-help") => {
            println!(
                "AppImage runtime (distfs)\n  --appimage-offset           print the squashfs offset\n  --appimage-extract [PATTERN] extract into ./squashfs-root\n  --appimage-help             this text\nAny other arguments are passed to AppRun."
            );
            Ok(0)
        }
        Some(a) if a.starts_with(b"--appimage-") => Err(format!(
            "unknown runtime option {} (see --appimage-help)",
            String::from_utf8_lossy(a)
        )),
        _ => mount_and_run(&image, offset, argv0, rest),
    }
}

/// Reads the byte offset of the squashfs image appended to the ELF file `image`.
fn squashfs_offset(image: &Path) -> Result<u64, String> {
    let shown = image.display();
    let mut f = File::open(image).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let mut hdr = [0u8; 64];
    f.read_exact(&mut hdr)
        .map_err(|e| format!("{shown}: too short for an ELF header: {e}"))?;
    if &hdr[..4] != b"\x7fELF" {
        return Err(format!("{shown}: not an ELF file"));
    }
    let big = match hdr[5] {
        1 => false,
        2 => true,
        other => return Err(format!("{shown}: unknown ELF data encoding {other}")),
    };
    let num = |at: usize, len: usize| -> u64 {
        let bytes = &hdr[at..at + len];
        let mut v = 0u64;
        for i in 0..len {
            let b = if big { bytes[i] } else { bytes[len - 1 - i] };
            v = (v << 8) | u64::from(b);
        }
        v
    };
    let (shoff, shentsize, shnum) = match hdr[4] {
        1 => (num(0x20, 4), num(0x2E, 2), num(0x30, 2)),
        2 => (num(0x28, 8), num(0x3A, 2), num(0x3C, 2)),
        other => return Err(format!("{shown}: unknown ELF class {other}")),
    };
    let offset = shentsize
        .checked_mul(shnum)
        .and_then(|t| t.checked_add(shoff))
        .ok_or_else(|| format!("{shown}: ELF section header fields overflow"))?;
    let mut magic = [0u8; 4];
    f.seek(SeekFrom::Start(offset))
        .and_then(|_| f.read_exact(&mut magic))
        .map_err(|e| {
            format!("{shown}: no squashfs image after the ELF part (offset {offset}): {e}")
        })?;
    if &magic != SQUASHFS_MAGIC {
        return Err(format!(
            "{shown}: no squashfs image at offset {offset} (magic {magic:02x?}, not \"hsqs\"): not an AppImage, or built without the runtime's section headers at its end"
        ));
    }
    Ok(offset)
}

/// Finds `prog` in `PATH`.
fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

fn need(prog: &str, why: &str) -> Result<PathBuf, String> {
    which(prog).ok_or_else(|| {
        format!("{prog} not found in PATH: it is needed to {why}; install it (Debian: apt install squashfuse fuse3 squashfs-tools), or unpack with --appimage-extract")
    })
}

/// `--appimage-extract [PATTERN]`: unpacks the image (or the paths matching PATTERN) into
/// `./squashfs-root`, overwriting what is there.
fn extract(image: &Path, offset: u64, pattern: Option<&OsString>) -> Result<u8, String> {
    let unsquashfs = which("unsquashfs").ok_or_else(|| {
        "unsquashfs not found in PATH: it is needed to extract; install it (Debian: apt install squashfs-tools)".to_string()
    })?;
    let mut cmd = Command::new(unsquashfs);
    cmd.args(["-no-progress", "-f", "-d", "squashfs-root", "-o"])
        .arg(offset.to_string())
        .arg(image)
        .args(pattern)
        .stdin(Stdio::null());
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run unsquashfs: {e}"))?;
    if !status.success() {
        return Err(format!("unsquashfs failed ({status})"));
    }
    Ok(0)
}

/// Mounts the image, runs `AppRun` in it, and cleans up whatever happens.
fn mount_and_run(
    image: &Path,
    offset: u64,
    argv0: OsString,
    args: Vec<OsString>,
) -> Result<u8, String> {
    let squashfuse = need("squashfuse", "mount the AppImage's contents")?;
    let fusermount = need("fusermount3", "unmount the AppImage's contents")?;
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing: load the fuse module (modprobe fuse), or unpack with --appimage-extract".into());
    }
    install_signal_handlers();
    let dir = make_mount_dir(image)?;
    let mut mounted = Mounted {
        dir,
        fusermount,
        squashfuse: None,
    };
    // Its own process group: a terminal's Ctrl-C goes to the application, not to the
    // filesystem it runs from.
    let child = Command::new(squashfuse)
        .arg("-f")
        .arg("-o")
        .arg(format!("ro,offset={offset}"))
        .arg(image)
        .arg(&mounted.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start squashfuse: {e}"))?;
    mounted.squashfuse = Some(child);
    mounted.wait_until_mounted()?;
    if SIGNALLED.load(Ordering::SeqCst) != 0 {
        return Ok(128 + SIGNALLED.load(Ordering::SeqCst) as u8);
    }

    let app_run = mounted.dir.join("AppRun");
    if !app_run.is_file() {
        return Err(format!("{}: the image has no AppRun", image.display()));
    }
    let owd = std::env::current_dir().unwrap_or_default();
    let mut app = Command::new(&app_run)
        .args(args)
        .env("APPIMAGE", image)
        .env("APPDIR", &mounted.dir)
        .env("ARGV0", argv0)
        .env("OWD", owd)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", app_run.display()))?;
    APP_PID.store(app.id() as i32, Ordering::SeqCst);
    let early = SIGNALLED.load(Ordering::SeqCst);
    if early != 0 {
        // The signal came between spawn and the store above: pass it on now.
        // SAFETY: kill has no memory preconditions; the pid is our un-reaped child.
        unsafe {
            libc::kill(app.id() as i32, early);
        }
    }
    let status = app.wait().map_err(|e| format!("waiting for AppRun: {e}"))?;
    APP_PID.store(0, Ordering::SeqCst);
    Ok(exit_code(status))
}

/// The exit code a shell would report for `status`.
fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        (Some(c), _) => c as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        (None, None) => EXIT_RUNTIME_FAILED,
    }
}

/// A private, empty directory `$TMPDIR/.mount_<name>XXXXXX`.
fn make_mount_dir(image: &Path) -> Result<PathBuf, String> {
    let stem: String = image
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let template = std::env::temp_dir().join(format!(".mount_{stem}XXXXXX"));
    let template = CString::new(template.into_os_string().into_vec())
        .map_err(|_| "TMPDIR contains a NUL byte".to_string())?;
    let raw = template.into_raw();
    // SAFETY: `raw` is a writable NUL-terminated buffer ending in XXXXXX, as mkdtemp needs;
    // it is taken back into a CString right after.
    let made = unsafe { libc::mkdtemp(raw) };
    // SAFETY: `raw` came from `CString::into_raw` and mkdtemp kept its length.
    let path = unsafe { CString::from_raw(raw) };
    if made.is_null() {
        return Err(format!(
            "cannot create a mount directory in {}: {}",
            std::env::temp_dir().display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(PathBuf::from(OsString::from_vec(path.into_bytes())))
}

/// The mounted image: unmounted, waited for and removed on drop.
struct Mounted {
    dir: PathBuf,
    fusermount: PathBuf,
    squashfuse: Option<Child>,
}

impl Mounted {
    /// Polls until the directory is a mount point (its device differs from its parent's).
    fn wait_until_mounted(&mut self) -> Result<(), String> {
        let parent_dev = self
            .dir
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.dev());
        let start = Instant::now();
        loop {
            let dev = std::fs::metadata(&self.dir).ok().map(|m| m.dev());
            if dev.is_some() && dev != parent_dev {
                return Ok(());
            }
            if let Some(child) = self.squashfuse.as_mut() {
                if let Ok(Some(st)) = child.try_wait() {
                    self.squashfuse = None;
                    return Err(format!(
                        "squashfuse exited ({st}) before the image was mounted (see its message above)"
                    ));
                }
            }
            if SIGNALLED.load(Ordering::SeqCst) != 0 {
                return Ok(());
            }
            if start.elapsed() > MOUNT_WAIT {
                return Err(format!(
                    "the image was not mounted within {MOUNT_WAIT:?} (squashfuse still starting)"
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn unmount(&self, lazy: bool) -> bool {
        let mut cmd = Command::new(&self.fusermount);
        cmd.arg("-u").arg("-q");
        if lazy {
            cmd.arg("-z");
        }
        cmd.arg(&self.dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(mut child) = self.squashfuse.take() {
            // A process the application left behind may keep the mount busy for a moment.
            let start = Instant::now();
            while !self.unmount(false) {
                if start.elapsed() > UNMOUNT_WAIT {
                    self.unmount(true);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let start = Instant::now();
            while !matches!(child.try_wait(), Ok(Some(_))) {
                if start.elapsed() > EXIT_WAIT {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    SIGNALLED.store(sig, Ordering::SeqCst);
    let pid = APP_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe; the pid is our un-reaped child.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Forwards terminating signals to the application (and remembers them) instead of dying
/// with the image still mounted.
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: a zeroed sigaction with a handler that only touches atomics and calls
        // kill (async-signal-safe) is a valid disposition; SA_RESTART keeps waits going.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}
