//! `distfs refresh`: asks the daemon mounted on a cache dir to re-resolve its root now. The
//! daemon is found through the cache dir's lock (which names its pid) and asked with SIGHUP,
//! which its refresh loop treats like an expired TTL. (The control socket of the operations
//! work will carry this and report the outcome; until then the outcome is in the daemon's log.)

use std::path::PathBuf;

use anyhow::{bail, Context};
use distfs::store::lock;

/// Arguments of `distfs refresh`.
#[derive(clap::Args)]
pub struct RefreshArgs {
    /// The cache directory of the mount to refresh (default: the one `distfs mount` uses).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Signals the daemon.
pub fn run(args: RefreshArgs) -> anyhow::Result<()> {
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(super::mount::default_cache_dir);
    let Some((pid, what)) =
        lock::holder(&dir).with_context(|| format!("reading the lock of {}", dir.display()))?
    else {
        bail!("no distfs mount uses the cache dir {}", dir.display());
    };
    if !what.starts_with("mounted at") {
        bail!(
            "distfs pid {pid} holds {} but is {what}, not a mount",
            dir.display()
        );
    }
    let Ok(pid_n) = pid.parse::<libc::pid_t>() else {
        bail!("the lock of {} names no valid pid ({pid:?})", dir.display());
    };
    // SAFETY: kill has no memory preconditions; the pid came from the holder's lock file.
    if unsafe { libc::kill(pid_n, libc::SIGHUP) } != 0 {
        let err = std::io::Error::last_os_error();
        bail!("could not signal distfs pid {pid} ({what}): {err}");
    }
    println!(
        "asked distfs pid {pid} ({what}) to re-resolve its root; its log says what came of it"
    );
    Ok(())
}
