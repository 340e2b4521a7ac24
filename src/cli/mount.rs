//! `distfs mount`: serve a distribution root as a read-only FUSE filesystem, in the
//! foreground, until `fusermount3 -u MOUNTPOINT`, SIGINT or SIGTERM; then exit 0.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cid::Cid;

use distfs::dist::coldstart::ColdStartConfig;
use distfs::dist::trace::Tracer;
use distfs::dist::DistView;
use distfs::fetch::{Fetcher, FetcherConfig};
use distfs::fs::mount::{lazy_unmount, mount, raise_readahead, MountConfig};
use distfs::fs::DistFs;
use distfs::store::cache::CacheStore;
use distfs::store::disk::DiskStore;
use distfs::store::lock::CacheLock;
use distfs::store::quota::Quota;

/// Arguments of `distfs mount`.
#[derive(clap::Args)]
pub struct MountArgs {
    /// Where to mount (an existing directory).
    pub mountpoint: PathBuf,
    /// The distribution root: /ipfs/<cid> (IPNS names and DNSLink come with name support).
    #[arg(long)]
    pub root: String,
    /// A trustless gateway to fetch blocks from (repeatable; tried in health order).
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// The block cache directory (default: $XDG_CACHE_HOME/distfs or ~/.cache/distfs;
    /// /var/cache/distfs for root).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep the cache under SIZE bytes (K/M/G/T suffixes, powers of 1024), evicting least
    /// recently used unpinned blocks; default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = distfs::store::quota::parse_size)]
    pub cache_size: Option<u64>,
    /// Serve from the cache only: blocks not cached fail at once with EIO.
    #[arg(long)]
    pub offline: bool,
    /// Let other users use the mount (needs user_allow_other in /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Seconds a read may wait for blocks before it fails with EIO.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub read_timeout: u64,
    /// Block requests in flight at once, across all gateways (throughput ≈ N × 256 KiB /
    /// latency; lower it for a gateway that rate-limits).
    #[arg(long, value_name = "N", default_value_t = FetcherConfig::default().max_in_flight)]
    pub max_in_flight: usize,
    /// Do not fetch the rest of an opened *.AppImage into the cache in the background.
    #[arg(long)]
    pub no_background_fetch: bool,
    /// Write one JSON line per read ({"path","size","offset","len"}) to FILE; `distfs
    /// trace` turns it into prefetch lists.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
}

/// The default cache directory for this user.
pub(crate) fn default_cache_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/cache/distfs");
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("distfs");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("distfs")
}

/// Parses `/ipfs/<cid>` (a bare CID is accepted too).
fn parse_root(root: &str) -> anyhow::Result<Cid> {
    if root.starts_with("/ipns/") {
        bail!("--root {root}: IPNS and DNSLink roots are not supported yet; give /ipfs/<cid>");
    }
    let s = root
        .strip_prefix("/ipfs/")
        .unwrap_or(root)
        .trim_end_matches('/');
    if s.contains('/') {
        bail!("--root {root}: give the CID of the distribution root directory, without a path");
    }
    Cid::from_str(s).with_context(|| format!("--root {root}: not a CID"))
}

/// Runs the mount until it ends.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    let root = parse_root(&args.root)?;
    if args.gateways.is_empty() && !args.offline {
        bail!(
            "no block source: give --gateway URL (repeatable), or --offline to use only the cache"
        );
    }
    let cache_dir = args.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let _lock = CacheLock::acquire(
        &cache_dir,
        &format!("mounted at {}", args.mountpoint.display()),
    )?;
    let disk = DiskStore::open_unsynced(&cache_dir)
        .with_context(|| format!("opening the cache in {}", cache_dir.display()))?;
    let quota = Arc::new(
        Quota::open(disk, args.cache_size)
            .with_context(|| format!("scanning the cache in {}", cache_dir.display()))?,
    );
    let deadline = Duration::from_secs(args.read_timeout.max(1));
    let config = FetcherConfig {
        deadline,
        max_in_flight: args.max_in_flight.max(1),
        ..FetcherConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("distfs-io")
        .build()
        .context("starting the async runtime")?;
    let _guard = runtime.enter();
    let fetcher = Fetcher::from_gateways(&args.gateways, config).context("configuring gateways")?;
    let store = Arc::new(CacheStore::with_quota(quota, fetcher).with_offline(args.offline));
    let tracer = match &args.trace {
        Some(path) => Some(
            Tracer::create(path)
                .with_context(|| format!("creating the trace file {}", path.display()))?,
        ),
        None => None,
    };
    // Offline, there is nothing to fetch ahead of time.
    let cold = ColdStartConfig {
        prefetch_lists: !args.offline,
        background: !args.no_background_fetch && !args.offline,
        ..ColdStartConfig::default()
    };
    let view = Arc::new(DistView::new(store.clone(), root, deadline).with_cold_start(cold, tracer));

    // Fail before mounting if the root cannot be had: a mount of nothing helps nobody.
    runtime
        .block_on(view.readdir(distfs::dist::ROOT_INO))
        .with_context(|| format!("reading the distribution root {root}"))?;

    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let fs = DistFs::new(view.clone(), runtime.handle().clone(), uid, gid);
    let cfg = MountConfig {
        mountpoint: args.mountpoint.clone(),
        allow_other: args.allow_other,
    };
    let session = mount(fs, &cfg)?;
    tracing::info!(mountpoint = %args.mountpoint.display(), %root, "mounted");
    // The FUSE connection's device number, for the fusectl abort of last resort.
    let fuse_dev = std::fs::metadata(&args.mountpoint).map(|m| m.dev()).ok();
    if let Some(dev) = fuse_dev {
        raise_readahead(dev);
    }

    let ended_by_signal = runtime.block_on(wait_for_end(&session));
    if ended_by_signal {
        tracing::info!("signal received: unmounting");
        lazy_unmount(&args.mountpoint);
        let start = Instant::now();
        while !session.guard.is_finished() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !session.guard.is_finished() {
            if let Some(dev) = fuse_dev {
                abort_connection(dev);
            }
            // The FUSE thread is stuck on a connection the kernel no longer serves; leave
            // without joining it.
            view.shutdown();
            flush_cache(&runtime, &store);
            std::process::exit(0);
        }
    }
    if let Err(e) = session.join() {
        tracing::debug!("FUSE session ended with: {e}");
    }
    view.shutdown();
    flush_cache(&runtime, &store);
    Ok(())
}

/// Lets the cache's background disk writes finish, so the next mount finds what this one
/// fetched.
fn flush_cache(runtime: &tokio::runtime::Runtime, store: &CacheStore) {
    if !runtime.block_on(store.flush(Duration::from_secs(30))) {
        tracing::warn!("some fetched blocks were not written to the cache before exit");
    }
}

/// Waits for SIGINT/SIGTERM (true) or for the session to end by an external unmount (false).
async fn wait_for_end(session: &fuser::BackgroundSession) -> bool {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals; unmount with fusermount3 -u");
        while !session.guard.is_finished() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        return false;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return true,
            _ = int.recv() => return true,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if session.guard.is_finished() {
                    return false;
                }
            }
        }
    }
}

/// Aborts the FUSE connection with device number `dev` through fusectl (root only; best
/// effort).
fn abort_connection(dev: u64) {
    let minor = libc::minor(dev);
    let path = format!("/sys/fs/fuse/connections/{minor}/abort");
    if let Err(e) = std::fs::write(&path, b"1") {
        tracing::debug!("could not abort the FUSE connection via {path}: {e}");
    }
}
