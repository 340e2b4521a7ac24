//! `distfs gc`: garbage-collects a cache directory. When a daemon holds it, the daemon does
//! it (through its control socket): crash leftovers removed, evicted down to its quota or
//! `--cache-size`. Otherwise this process takes the lock and removes crash leftovers (temp
//! files, empty or oversized block files) and evicts least recently used unpinned blocks
//! down to `--cache-size`. Prints one summary line (or `--json`).

use std::path::PathBuf;

use anyhow::{bail, Context};
use distfs::daemon::client;
use distfs::daemon::config::cache_dir_for;
use distfs::daemon::protocol::{Outcome, Request};
use distfs::store::disk::DiskStore;
use distfs::store::lock::CacheLock;
use distfs::store::quota::{parse_size, Quota};

/// Arguments of `distfs gc`.
#[derive(clap::Args)]
pub struct GcArgs {
    /// The cache directory (default: the configured one).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The config file that names the cache directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Evict down to SIZE bytes (K/M/G/T suffixes, powers of 1024); without it only crash
    /// leftovers are removed.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the collection.
pub fn run(args: GcArgs) -> anyhow::Result<()> {
    let dir = cache_dir_for(args.cache_dir.clone(), args.config.as_deref())?;
    if client::daemon_of(&dir)?.is_some() {
        return through_daemon(&dir, &args);
    }
    let _lock = CacheLock::acquire(&dir, "running gc")?;
    let disk = DiskStore::open_unsynced(&dir)
        .with_context(|| format!("opening the cache in {}", dir.display()))?;
    let quota = Quota::open(disk, args.cache_size)
        .with_context(|| format!("scanning the cache in {}", dir.display()))?;
    let scan = quota.scan_report();
    let gc = quota.gc().context("collecting")?;
    let temp = scan.temp_removed + gc.temp_removed;
    if args.json {
        let v = serde_json::json!({
            "temp_removed": temp,
            "bad_removed": scan.bad_removed,
            "evicted_blocks": gc.evicted_blocks,
            "evicted_bytes": gc.evicted_bytes,
            "bytes": gc.bytes_after,
            "blocks": gc.blocks_after,
            "pinned_bytes": gc.pinned_bytes,
            "limit": args.cache_size,
        });
        println!("{v}");
    } else {
        println!(
            "gc {}: removed {temp} temp and {} torn files; evicted {} blocks ({} bytes); \
             now {} blocks, {} bytes ({} pinned)",
            dir.display(),
            scan.bad_removed,
            gc.evicted_blocks,
            gc.evicted_bytes,
            gc.blocks_after,
            gc.bytes_after,
            gc.pinned_bytes
        );
    }
    if let Some(limit) = args.cache_size {
        if gc.bytes_after > limit {
            eprintln!(
                "distfs: warning: pinned blocks alone ({} bytes) exceed --cache-size {limit}",
                gc.pinned_bytes
            );
        }
    }
    Ok(())
}

/// Asks the daemon holding `dir` to collect, and prints its report.
fn through_daemon(dir: &std::path::Path, args: &GcArgs) -> anyhow::Result<()> {
    let request = Request::Gc {
        target: args.cache_size,
    };
    let Outcome::Collected(gc) = client::request(dir, &request, |_, _, _| {})? else {
        bail!("unexpected answer from the daemon");
    };
    if args.json {
        println!("{}", serde_json::to_string(&gc)?);
    } else {
        println!(
            "gc {} (by the running daemon): removed {} temp files; evicted {} blocks ({} bytes); \
             now {} blocks, {} bytes ({} pinned)",
            dir.display(),
            gc.temp_removed,
            gc.evicted_blocks,
            gc.evicted_bytes,
            gc.blocks,
            gc.bytes,
            gc.pinned_bytes
        );
    }
    Ok(())
}
