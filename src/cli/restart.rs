//! `distfs restart`: asks the daemon mounted on a cache dir to hand its live mount over to a
//! new process (`distfs::daemon::restart`), then waits until the new process answers on the
//! control socket. Programs using the mount notice nothing. With no daemon: exit 1.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use distfs::daemon::client;
use distfs::daemon::config::cache_dir_for;
use distfs::daemon::protocol::{Outcome, Request};

/// How long the new daemon may take to answer on the control socket after the hand-over.
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Arguments of `distfs restart`.
#[derive(clap::Args)]
pub struct RestartArgs {
    /// The cache directory of the mount to restart (default: the configured one).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The config file that names the cache directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The distfs binary to start (default: the running daemon's executable path, which
    /// names the upgraded binary after a package upgrade).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
}

/// Asks for the hand-over and waits for the new daemon.
pub fn run(args: RestartArgs) -> anyhow::Result<()> {
    let dir = cache_dir_for(args.cache_dir, args.config.as_deref())?;
    let binary = match args.binary {
        Some(b) => Some(
            std::path::absolute(&b)
                .with_context(|| format!("--binary {}", b.display()))?
                .display()
                .to_string(),
        ),
        None => None,
    };
    let Outcome::Restarted(o) = client::request(&dir, &Request::Restart { binary }, |_, _, _| {})?
    else {
        bail!("unexpected answer from the daemon");
    };
    let start = Instant::now();
    loop {
        match client::request(&dir, &Request::Status, |_, _, _| {}) {
            Ok(Outcome::Status(s)) if s.pid == o.new_pid => break,
            _ if start.elapsed() > SERVE_TIMEOUT => bail!(
                "pid {} handed the mount to pid {}, which did not answer on the control socket within {} s",
                o.old_pid,
                o.new_pid,
                SERVE_TIMEOUT.as_secs()
            ),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    println!(
        "restarted: pid {} handed the mount to pid {}",
        o.old_pid, o.new_pid
    );
    Ok(())
}
