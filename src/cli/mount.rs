//! `distfs mount`: parses the flags into a raw config, lays them over the config file,
//! validates, and runs the daemon (`distfs::daemon`) in the foreground until
//! `fusermount3 -u MOUNTPOINT`, SIGINT or SIGTERM; then exits 0.

use std::path::PathBuf;

use distfs::daemon::config::{self, RawConfig};
use distfs::store::quota::parse_size;

/// Arguments of `distfs mount`. Every flag may also be set in the config file under its
/// long name (see distfs.conf(5)); a flag given here wins over the file.
#[derive(clap::Args)]
pub struct MountArgs {
    /// Where to mount (an existing directory); may come from the config file instead.
    pub mountpoint: Option<PathBuf>,
    /// The config file (default: $DISTFS_CONFIG, else /etc/distfs/config.toml if it exists).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The distribution root: /ipfs/<cid>, /ipns/<key> or /ipns/<dnslink-domain>
    /// [default: /ipns/dist.ipfs.tech].
    #[arg(long)]
    pub root: Option<String>,
    /// A trustless gateway to fetch blocks and IPNS records from (repeatable; tried in
    /// health order). Default, when neither this nor --routing is given: public gateways,
    /// and first the local gateway (--local-gateway) when it answers.
    #[arg(long = "gateway", value_name = "URL")]
    pub gateways: Vec<String>,
    /// A delegated-routing endpoint to ask for IPNS records (repeatable).
    #[arg(long = "routing", value_name = "URL")]
    pub routings: Vec<String>,
    /// The local Kubo gateway (ip:port) probed at start when no gateway is configured;
    /// "" turns the probe off [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub local_gateway: Option<String>,
    /// The DNS server (ip:port) for DNSLink lookups (default: the system resolver).
    #[arg(long, value_name = "ADDR")]
    pub dns_server: Option<std::net::SocketAddr>,
    /// Accept a name root only when the IPNS record that gives it is signed by this key
    /// (its name, /ipns/k51… or k51…): a DNSLink pointing elsewhere is refused.
    #[arg(long, value_name = "NAME")]
    pub publisher: Option<String>,
    /// Shortest time (seconds) between two resolutions of a name root [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub min_ttl: Option<u64>,
    /// Longest time (seconds) between two resolutions of a name root [default: 3600].
    #[arg(long, value_name = "SECONDS")]
    pub max_ttl: Option<u64>,
    /// The block cache directory (default: $XDG_CACHE_HOME/distfs or ~/.cache/distfs;
    /// /var/cache/distfs for root). Holds the control socket `control.sock`.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Keep the cache under SIZE bytes (K/M/G/T suffixes, powers of 1024), evicting least
    /// recently used unpinned blocks; default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Serve from the cache only: blocks not cached fail at once with EIO.
    #[arg(long)]
    pub offline: bool,
    /// Let other users use the mount (needs user_allow_other in /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Seconds a read may wait for blocks before it fails with EIO [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub read_timeout: Option<u64>,
    /// Most block requests in flight at once, across all gateways; below it the window
    /// follows the round trip and the blocks' size (41 of 256 KiB at 20 ms, more for small
    /// blocks). Throughput ≤ N × 256 KiB / latency; lower it for a gateway that rate-limits
    /// [default: 128].
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// Do not fetch the rest of an opened *.AppImage into the cache in the background
    /// (`background-fetch = false` in the config file).
    #[arg(long)]
    pub no_background_fetch: bool,
    /// Do not copy fully cached files whole for FUSE passthrough (`passthrough = false` in
    /// the config file). With it (kernel 6.9 or later, root), a file whose blocks are all
    /// cached is copied whole into the cache dir once it is closed, within the quota, and
    /// later opens are read by the kernel from that copy at local-disk speed; the copy is
    /// proved once per daemon run, not on every read as blocks are.
    #[arg(long)]
    pub no_passthrough: bool,
    /// Run the daemon under a small supervisor process that holds the mount and starts a
    /// new daemon on it if the daemon dies (`supervise = true` in the config file).
    #[arg(long)]
    pub supervise: bool,
    /// Write one JSON line per read ({"path","size","offset","len"}) to FILE; `distfs
    /// trace` turns it into prefetch lists.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (a loopback address such as
    /// 127.0.0.1:9477; port 0 picks one, shown by `distfs status`).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Add /dist/NAME, a project of its own name: ROOT (/ipns/<key>, /ipns/<domain> or
    /// /ipfs/<cid>) is that project's tree (version directories, `versions`), followed on
    /// its own TTL (repeatable; `[projects]` in the config file, where a publisher key can
    /// be pinned too).
    #[arg(long = "project", value_name = "NAME=ROOT", value_parser = config::parse_project_arg)]
    pub projects: Vec<(String, distfs::dist::hub::ProjectSource)>,
}

impl MountArgs {
    /// The flags as a raw config (a flag not given is `None`, so the file can set it).
    fn raw(self) -> anyhow::Result<RawConfig> {
        let root = match self.root {
            Some(r) => Some(r.parse().map_err(|e| anyhow::anyhow!("--root: {e}"))?),
            None => None,
        };
        let list = |v: Vec<String>| (!v.is_empty()).then_some(v);
        let local_gateway = match self.local_gateway.as_deref() {
            Some(text) => Some(
                config::parse_local_gateway(text)
                    .map_err(|e| anyhow::anyhow!("--local-gateway: {e}"))?,
            ),
            None => None,
        };
        Ok(RawConfig {
            mountpoint: self.mountpoint,
            root,
            gateway: list(self.gateways),
            routing: list(self.routings),
            dns_server: self.dns_server,
            publisher: match self.publisher {
                Some(p) => Some(
                    p.trim_start_matches("/ipns/")
                        .parse()
                        .map_err(|e| anyhow::anyhow!("--publisher: {e}"))?,
                ),
                None => None,
            },
            cache_dir: self.cache_dir,
            cache_size: self.cache_size,
            offline: self.offline.then_some(true),
            allow_other: self.allow_other.then_some(true),
            read_timeout: self.read_timeout,
            max_in_flight: self.max_in_flight,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            background_fetch: self.no_background_fetch.then_some(false),
            passthrough: self.no_passthrough.then_some(false),
            supervise: self.supervise.then_some(true),
            trace: self.trace,
            metrics_listen: self.metrics_listen,
            local_gateway,
            projects: (!self.projects.is_empty()).then(|| self.projects.into_iter().collect()),
        })
    }
}

/// Runs the mount until it ends.
pub fn run(args: MountArgs) -> anyhow::Result<()> {
    distfs::daemon::malloc::cap_arenas(distfs::daemon::malloc::Arenas::One); // before any thread starts
    let file = RawConfig::load_applicable(args.config.as_deref())?;
    let config = args.raw()?.over(file).validate()?;
    distfs::fs::mount::check_allow_other(config.allow_other)?; // before any slow work
                                                               // The supervisor's children and a restart's successor run the same command line.
    let child = std::env::var_os(distfs::daemon::supervise::FD_ENV).is_some()
        || distfs::daemon::restart::inherited().is_some();
    if config.supervise && !child {
        distfs::daemon::supervise::run(config)?;
    } else {
        distfs::daemon::run(config)?;
    }
    Ok(())
}
