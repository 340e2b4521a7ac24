//! `distfs refresh`: asks the daemon mounted on a cache dir, through its control socket, to
//! re-resolve its root now, and prints what came of it (the old and new root and the
//! record's sequence, or why it failed; exit 1 then).

use std::path::PathBuf;

use anyhow::bail;
use distfs::daemon::client;
use distfs::daemon::config::cache_dir_for;
use distfs::daemon::protocol::{Outcome, Request};

/// Arguments of `distfs refresh`.
#[derive(clap::Args)]
pub struct RefreshArgs {
    /// The cache directory of the mount to refresh (default: the configured one).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The config file that names the cache directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Asks the daemon and prints the outcome.
pub fn run(args: RefreshArgs) -> anyhow::Result<()> {
    let dir = cache_dir_for(args.cache_dir, args.config.as_deref())?;
    let Outcome::Refreshed(o) = client::request(&dir, &Request::Refresh, |_, _, _| {})? else {
        bail!("unexpected answer from the daemon");
    };
    let seq = o
        .sequence
        .map_or(String::new(), |s| format!(", sequence {s}"));
    if o.old == o.new {
        println!(
            "re-resolved {}: unchanged at {}{seq} (from {}; next in {} s)",
            o.root, o.new, o.source, o.ttl_secs
        );
    } else {
        println!(
            "re-resolved {}: moved from {} to {}{seq} (from {}; next in {} s)",
            o.root, o.old, o.new, o.source, o.ttl_secs
        );
    }
    Ok(())
}
