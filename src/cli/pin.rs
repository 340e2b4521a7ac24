//! `distfs pin` and `distfs unpin` on a cache directory no daemon is using (they take the
//! cache lock): `pin /ipfs/<cid>[/path]` fetches the whole DAG at that path (and the
//! directories on the way) into the cache and keeps it through eviction, `gc` and restarts;
//! `unpin` releases it. Against a running daemon these go through its control socket
//! (not here yet).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use cid::Cid;
use distfs::fetch::{Fetcher, FetcherConfig};
use distfs::store::cache::CacheStore;
use distfs::store::disk::DiskStore;
use distfs::store::lock::CacheLock;
use distfs::store::pins::PinProgress;
use distfs::store::quota::Quota;
use distfs::store::BlockStore;

/// Arguments of `distfs pin`.
#[derive(clap::Args)]
pub struct PinArgs {
    /// What to pin: /ipfs/<cid> or /ipfs/<cid>/path/inside.
    pub target: String,
    /// The cache directory (default: the one `distfs mount` uses).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A trustless gateway to fetch missing blocks from (repeatable).
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// Seconds one block may take before the pin fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub read_timeout: u64,
}

/// Arguments of `distfs unpin`.
#[derive(clap::Args)]
pub struct UnpinArgs {
    /// What to unpin: the same /ipfs/... text given to `pin`, or the pinned root CID.
    pub target: String,
    /// The cache directory (default: the one `distfs mount` uses).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Splits `/ipfs/<cid>/a/b` into the CID and the path segments.
fn parse_target(target: &str) -> anyhow::Result<(Cid, Vec<String>)> {
    let Some(rest) = target.strip_prefix("/ipfs/") else {
        bail!("{target}: give /ipfs/<cid>[/path] (pinning paths inside a mount needs the daemon's control socket)");
    };
    let mut parts = rest.split('/').filter(|s| !s.is_empty());
    let cid = parts.next().unwrap_or_default();
    let cid = Cid::from_str(cid).with_context(|| format!("{target}: not a CID"))?;
    Ok((cid, parts.map(str::to_owned).collect()))
}

/// Records the CIDs of the blocks a path resolution reads (to pin the path itself).
struct Recorder<'a> {
    store: &'a CacheStore,
    seen: std::sync::Mutex<Vec<Cid>>,
}

#[async_trait::async_trait]
impl BlockStore for Recorder<'_> {
    async fn get(
        &self,
        cid: &Cid,
    ) -> Result<Option<distfs::block::Block>, distfs::store::StoreError> {
        let b = BlockStore::get(self.store, cid).await?;
        if b.is_some() {
            self.seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(*cid);
        }
        Ok(b)
    }
    async fn put(&self, block: distfs::block::Block) -> Result<(), distfs::store::StoreError> {
        BlockStore::put(self.store, block).await
    }
    async fn has(&self, cid: &Cid) -> Result<bool, distfs::store::StoreError> {
        BlockStore::has(self.store, cid).await
    }
}

/// Runs `distfs pin`.
pub fn pin(args: PinArgs) -> anyhow::Result<()> {
    let (root, path) = parse_target(&args.target)?;
    let label = format!(
        "/ipfs/{root}{}",
        path.iter().map(|s| format!("/{s}")).collect::<String>()
    );
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(super::mount::default_cache_dir);
    let _lock = CacheLock::acquire(&dir, &format!("pinning {label}"))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let _guard = runtime.enter();
    let disk = DiskStore::open_unsynced(&dir)
        .with_context(|| format!("opening the cache in {}", dir.display()))?;
    let quota = Arc::new(Quota::open(disk, None).context("scanning the cache")?);
    let config = FetcherConfig {
        deadline: Duration::from_secs(args.read_timeout.max(1)),
        ..FetcherConfig::default()
    };
    let fetcher = Fetcher::from_gateways(&args.gateways, config).context("configuring gateways")?;
    let store = CacheStore::with_quota(quota, fetcher).with_offline(args.gateways.is_empty());
    let tty = std::io::stderr().is_terminal();
    let progress = move |p: PinProgress| {
        if tty {
            eprint!(
                "\rpinning: {} blocks, {} bytes, {} queued   ",
                p.blocks, p.bytes, p.queued
            );
            let _ = std::io::stderr().flush();
        }
    };
    let report = runtime.block_on(async {
        let rec = Recorder {
            store: &store,
            seen: Default::default(),
        };
        let segs: Vec<&str> = path.iter().map(String::as_str).collect();
        let target = distfs::walk::resolve_path(&rec, &root, &segs)
            .await
            .with_context(|| format!("resolving {label}"))?;
        let extra = rec.seen.into_inner().unwrap_or_else(|e| e.into_inner());
        let report = store.pin(target, &extra, &label, &progress).await?;
        anyhow::Ok(report)
    });
    if tty {
        eprintln!();
    }
    let report = report?;
    if !runtime.block_on(store.flush(Duration::from_secs(60))) {
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
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(super::mount::default_cache_dir);
    let _lock = CacheLock::acquire(&dir, &format!("unpinning {}", args.target))?;
    let target = args.target.trim_end_matches('/');
    let removed = distfs::store::pins::unpin_records(&dir, target)?;
    if removed.is_empty() {
        bail!("{target}: not pinned in {}", dir.display());
    }
    for r in removed {
        println!("unpinned {} ({} blocks)", r.label, r.keys.len());
    }
    Ok(())
}
