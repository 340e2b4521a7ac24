//! `distfs gc`: garbage-collects a cache directory that no daemon is using (the lock is
//! taken, so a running `distfs mount` on it makes this fail naming the mount): removes
//! crash leftovers (temp files, empty or oversized block files) and evicts least recently
//! used unpinned blocks down to `--cache-size`. Prints one summary line (or `--json`).

use std::path::PathBuf;

use anyhow::Context;
use distfs::store::disk::DiskStore;
use distfs::store::lock::CacheLock;
use distfs::store::quota::{parse_size, Quota};

/// Arguments of `distfs gc`.
#[derive(clap::Args)]
pub struct GcArgs {
    /// The cache directory (default: the one `distfs mount` uses).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
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
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(super::mount::default_cache_dir);
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
