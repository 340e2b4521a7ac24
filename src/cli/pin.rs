//! `distfs pin` and `distfs unpin`. When a daemon holds the cache dir, they go through its
//! control socket: PATH may then be a path inside the mount (absolute under the mount
//! point, or relative to the mount root) or `/ipfs/<cid>[/path]`, and the daemon fetches
//! the whole DAG at that path (and the directories on the way) and keeps it through
//! eviction, `gc` and restarts. Otherwise they work on the cache dir directly (taking its
//! lock) and PATH must be `/ipfs/<cid>[/path]`. Progress shows as a bar on a terminal,
//! as plain lines otherwise; a summary line ends it.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use distfs::daemon::client;
use distfs::daemon::config::{cache_dir_for, RawConfig};
use distfs::daemon::pin::{classify, label, PinPath, Recorder};
use distfs::daemon::protocol::{Outcome, Request};
use distfs::fetch::{Fetcher, FetcherConfig};
use distfs::store::cache::CacheStore;
use distfs::store::disk::DiskStore;
use distfs::store::lock::CacheLock;
use distfs::store::pins::PinProgress;
use distfs::store::quota::Quota;

/// Arguments of `distfs pin`.
#[derive(clap::Args)]
pub struct PinArgs {
    /// What to pin: a path inside the mount (with a running daemon), or
    /// /ipfs/<cid>[/path/inside].
    pub target: String,
    /// The cache directory (default: the configured one).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The config file (names the cache directory and, without a daemon, the gateways).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Without a daemon: a trustless gateway to fetch missing blocks from (repeatable;
    /// default: the configured ones).
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// Without a daemon: seconds one block may take before the pin fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub read_timeout: u64,
}

/// Arguments of `distfs unpin`.
#[derive(clap::Args)]
pub struct UnpinArgs {
    /// What to unpin: the path given to `pin`, or the pinned root CID or label.
    pub target: String,
    /// The cache directory (default: the configured one).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The config file that names the cache directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Shows pin progress: a bar-like line rewritten on a terminal, plain lines otherwise.
struct Progress {
    tty: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, blocks: u64, bytes: u64, queued: u64) {
        let total = blocks + queued;
        let pct = (blocks * 100).checked_div(total).unwrap_or(100);
        if self.tty {
            let filled = usize::try_from(pct / 5).unwrap_or(20).min(20);
            eprint!(
                "\rpinning [{}{}] {blocks}/{total} blocks, {}   ",
                "#".repeat(filled),
                " ".repeat(20 - filled),
                distfs::daemon::status::human_bytes(bytes)
            );
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("pinning: {blocks} blocks, {bytes} bytes, {queued} queued");
        }
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Runs `distfs pin`.
pub fn pin(args: PinArgs) -> anyhow::Result<()> {
    let dir = cache_dir_for(args.cache_dir.clone(), args.config.as_deref())?;
    if let Some((_, holder)) = client::daemon_of(&dir)? {
        let progress = Progress::new();
        let request = Request::Pin {
            path: absolute_if_inside(&args.target, &holder),
        };
        let answer = client::request(&dir, &request, |b, n, q| progress.show(b, n, q));
        progress.end();
        let Outcome::Pinned(p) = answer? else {
            bail!("unexpected answer from the daemon");
        };
        println!(
            "pinned {}: {} blocks, {} bytes ({} fetched)",
            p.label, p.blocks, p.bytes, p.fetched
        );
        return Ok(());
    }
    pin_offline(args, &dir)
}

/// A relative path typed in a shell whose working directory is inside the mount is made
/// absolute, so the daemon places it under its mount point; anything else is sent as given
/// (a relative path then counts from the mount root).
fn absolute_if_inside(target: &str, holder: &str) -> String {
    let Some(mountpoint) = holder.strip_prefix("mounted at ") else {
        return target.to_owned();
    };
    match std::env::current_dir() {
        Ok(cwd) if !target.starts_with('/') && cwd.starts_with(mountpoint) => {
            cwd.join(target).display().to_string()
        }
        _ => target.to_owned(),
    }
}

/// `distfs pin` with no daemon: this process fetches into the cache dir under its lock.
fn pin_offline(args: PinArgs, dir: &Path) -> anyhow::Result<()> {
    let (root, path) = match classify(&args.target, Path::new("/nonexistent-mountpoint"))? {
        PinPath::Ipfs(cid, segs) => (cid, segs),
        PinPath::Mount(_) => bail!(
            "{}: no daemon uses {}; without one give /ipfs/<cid>[/path]",
            args.target,
            dir.display()
        ),
    };
    let label = label(&root, &path);
    let gateways = if args.gateways.is_empty() {
        RawConfig::load_applicable(args.config.as_deref())?
            .gateway
            .unwrap_or_default()
    } else {
        args.gateways.clone()
    };
    let _lock = CacheLock::acquire(dir, &format!("pinning {label}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let _guard = runtime.enter();
    let disk = DiskStore::open_unsynced(dir)
        .with_context(|| format!("opening the cache in {}", dir.display()))?;
    let quota = Arc::new(Quota::open(disk, None).context("scanning the cache")?);
    let config = FetcherConfig {
        deadline: std::time::Duration::from_secs(args.read_timeout.max(1)),
        ..FetcherConfig::default()
    };
    let fetcher = Fetcher::from_gateways(&gateways, config).context("configuring gateways")?;
    let store = CacheStore::with_quota(quota, fetcher).with_offline(gateways.is_empty());
    let shown = Progress::new();
    let progress = move |p: PinProgress| shown.show(p.blocks, p.bytes, p.queued);
    let report = runtime.block_on(async {
        let rec = Recorder::new(&store);
        let segs: Vec<&str> = path.iter().map(String::as_str).collect();
        let target = distfs::walk::resolve_path(&rec, &root, &segs)
            .await
            .with_context(|| format!("resolving {label}"))?;
        let extra = rec.into_seen();
        let report = store.pin(target, &extra, &label, &progress).await?;
        anyhow::Ok(report)
    });
    Progress::new().end();
    let report = report?;
    if !runtime.block_on(store.flush(std::time::Duration::from_secs(60))) {
        bail!(
            "pinned blocks were not all written to {} within 60 s",
            dir.display()
        );
    }
    println!(
        "pinned {label}: {} blocks, {} bytes ({} fetched)",
        report.blocks, report.bytes, report.fetched
    );
    Ok(())
}

/// Runs `distfs unpin`.
pub fn unpin(args: UnpinArgs) -> anyhow::Result<()> {
    let dir = cache_dir_for(args.cache_dir.clone(), args.config.as_deref())?;
    let removed: Vec<(String, u64)> = if let Some((_, holder)) = client::daemon_of(&dir)? {
        let request = Request::Unpin {
            path: absolute_if_inside(&args.target, &holder),
        };
        let Outcome::Unpinned(list) = client::request(&dir, &request, |_, _, _| {})? else {
            bail!("unexpected answer from the daemon");
        };
        list
    } else {
        let _lock = CacheLock::acquire(&dir, &format!("unpinning {}", args.target))?;
        let target = args.target.trim_end_matches('/');
        distfs::store::pins::unpin_records(&dir, target)?
            .into_iter()
            .map(|r| (r.label, r.keys.len() as u64))
            .collect()
    };
    if removed.is_empty() {
        bail!("{}: not pinned in {}", args.target, dir.display());
    }
    for (label, blocks) in removed {
        println!("unpinned {label} ({blocks} blocks)");
    }
    Ok(())
}
