//! `distfs mount`: serve a distribution root as a read-only FUSE filesystem, in the
//! foreground, until `fusermount3 -u MOUNTPOINT`, SIGINT or SIGTERM; then exit 0.
//!
//! A root that is a name (`/ipns/<key>`, `/ipns/<domain>`) is resolved before mounting and
//! followed afterwards: a refresh task re-resolves it when its TTL runs out and on SIGHUP,
//! swaps the view's root atomically and invalidates the kernel's entries for the root,
//! project directories and `latest`. A refresh that fails or finds no acceptable record
//! keeps the current root and logs why.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use distfs::dist::coldstart::ColdStartConfig;
use distfs::dist::trace::Tracer;
use distfs::dist::DistView;
use distfs::fetch::{Fetcher, FetcherConfig, RecordApi, RecordClient, DEFAULT_RECORD_TIMEOUT};
use distfs::fs::mount::{lazy_unmount, mount, raise_readahead, Invalidator, MountConfig};
use distfs::fs::DistFs;
use distfs::name::{Resolved, Resolver, ResolverConfig, RootSpec};
use distfs::store::cache::CacheStore;
use distfs::store::disk::DiskStore;
use distfs::store::lock::CacheLock;
use distfs::store::quota::Quota;

/// Arguments of `distfs mount`.
#[derive(clap::Args)]
pub struct MountArgs {
    /// Where to mount (an existing directory).
    pub mountpoint: PathBuf,
    /// The distribution root: /ipfs/<cid>, /ipns/<key> or /ipns/<dnslink-domain>.
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: String,
    /// A trustless gateway to fetch blocks and IPNS records from (repeatable; tried in
    /// health order). Default, when neither this nor --routing is given: public gateways.
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// A delegated-routing endpoint to ask for IPNS records (repeatable).
    #[arg(long = "routing", value_name = "URL")]
    pub routings: Vec<String>,
    /// The DNS server (ip:port) for DNSLink lookups (default: the system resolver).
    #[arg(long, value_name = "ADDR")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// Shortest time (seconds) between two resolutions of a name root.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub min_ttl: u64,
    /// Longest time (seconds) between two resolutions of a name root.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub max_ttl: u64,
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

/// The root mounted when none is given.
const DEFAULT_ROOT: &str = "/ipns/dist.ipfs.tech";
/// Trustless gateways used when none is configured.
const DEFAULT_GATEWAYS: &[&str] = &["https://trustless-gateway.link"];
/// Delegated routing used when no gateway or routing endpoint is configured.
const DEFAULT_ROUTING: &[&str] = &["https://delegated-ipfs.dev"];

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

/// Runs the mount until it ends.
pub fn run(mut args: MountArgs) -> anyhow::Result<()> {
    let spec: RootSpec = args
        .root
        .parse()
        .map_err(|e| anyhow::anyhow!("--root: {e}"))?;
    if args.gateways.is_empty() && args.routings.is_empty() && !args.offline {
        args.gateways = DEFAULT_GATEWAYS.iter().map(|s| s.to_string()).collect();
        args.routings = DEFAULT_ROUTING.iter().map(|s| s.to_string()).collect();
    }
    if args.gateways.is_empty() && !args.offline {
        bail!(
            "no block source: give --gateway URL (repeatable), or --offline to use only the cache"
        );
    }
    if args.min_ttl == 0 || args.max_ttl < args.min_ttl {
        bail!("--min-ttl must be at least 1 and --max-ttl at least --min-ttl");
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
    // Every 2 s: evict if over the quota (a safety net for triggers lost to races).
    let sweep = Arc::clone(&quota);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            sweep.evict_if_over();
        }
    });
    let store = Arc::new(CacheStore::with_quota(quota, fetcher).with_offline(args.offline));
    let resolver = Arc::new(build_resolver(&args, &cache_dir)?);
    let first = runtime
        .block_on(resolver.resolve(&spec))
        .with_context(|| format!("resolving the root {spec}"))?;
    log_refused(&spec, &first);
    let root = first.cid;
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
    view.set_root_info(root_info(&spec, &first));

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
    tracing::info!(mountpoint = %args.mountpoint.display(), %root, root_spec = %spec, "mounted");
    if spec.is_mutable() {
        let follow = Follow {
            spec: spec.clone(),
            resolver,
            view: view.clone(),
            invalidator: Invalidator::new(&session),
            min_ttl: Duration::from_secs(args.min_ttl),
        };
        runtime.spawn(follow.run(first.ttl));
    }
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

/// The resolver for name roots: record sources from the gateways and routing endpoints, the
/// last good records kept in `<cache>/names`.
fn build_resolver(args: &MountArgs, cache_dir: &std::path::Path) -> anyhow::Result<Resolver> {
    let http = RecordClient::http_client()?;
    let mut sources = Vec::new();
    if !args.offline {
        for (urls, api) in [
            (&args.gateways, RecordApi::Gateway),
            (&args.routings, RecordApi::Routing),
        ] {
            for url in urls {
                sources.push(RecordClient::new(
                    url,
                    api,
                    http.clone(),
                    DEFAULT_RECORD_TIMEOUT,
                )?);
            }
        }
    }
    Ok(Resolver::new(ResolverConfig {
        sources,
        dns_server: args.dns_server,
        state_dir: Some(cache_dir.join("names")),
        min_ttl: Duration::from_secs(args.min_ttl),
        max_ttl: Duration::from_secs(args.max_ttl),
    })?)
}

fn log_refused(spec: &RootSpec, resolved: &Resolved) {
    for (source, reason) in &resolved.refused {
        tracing::warn!(root = %spec, %source, "{reason}");
    }
}

/// The root's facts for its xattrs (`user.distfs.root`, `.sequence`, `.publisher`).
fn root_info(spec: &RootSpec, resolved: &Resolved) -> distfs::dist::RootInfo {
    let (sequence, publisher) = (resolved.sequence, resolved.publisher.clone());
    distfs::dist::RootInfo {
        spec: spec.to_string(),
        sequence,
        publisher,
    }
}

/// The refresh task of a name root.
struct Follow {
    spec: RootSpec,
    resolver: Arc<Resolver>,
    view: Arc<DistView>,
    invalidator: Invalidator,
    min_ttl: Duration,
}

impl Follow {
    /// Re-resolves at each TTL and on SIGHUP until the runtime shuts down.
    async fn run(self, first_ttl: Duration) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = signal(SignalKind::hangup()).ok();
        let mut wait = first_ttl;
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = hup_recv => tracing::info!(root = %self.spec, "SIGHUP: refreshing"),
            }
            wait = match self.refresh_impl().await {
                Ok(ttl) => ttl,
                Err(e) => {
                    tracing::warn!(root = %self.spec, "refresh failed, keeping the current root {}: {e:#}", self.view.root_cid());
                    self.min_ttl
                }
            };
        }
    }

    /// One refresh: resolve, and swap the root if it moved. Returns the next wait.
    async fn refresh_impl(&self) -> anyhow::Result<Duration> {
        let resolved = self.resolver.resolve(&self.spec).await?;
        log_refused(&self.spec, &resolved);
        let current = self.view.root_cid();
        if resolved.cid != current {
            let stale = self
                .view
                .swap_root(resolved.cid)
                .await
                .with_context(|| format!("new root {} is not readable", resolved.cid))?;
            let n = self.invalidator.apply(stale).await;
            tracing::info!(
                root = %self.spec,
                old = %current,
                new = %resolved.cid,
                sequence = ?resolved.sequence,
                source = %resolved.source,
                invalidated = n,
                "root moved"
            );
        }
        self.view.set_root_info(root_info(&self.spec, &resolved));
        Ok(resolved.ttl)
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
