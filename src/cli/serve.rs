//! `distfs serve`: runs the trustless gateway (`distfs::serve`) over on-disk stores, CAR
//! files and a directory of IPNS records (which also takes verified records PUT to it); with
//! `--upstream`, as a caching gateway (the site cache) in front of other gateways; with a pin
//! token, the IPFS Pinning Service API over the first store.
//! Binds first, then prints the bound address as one line on stdout (so `--listen
//! 127.0.0.1:0` works for tests), and runs until SIGINT or SIGTERM, letting in-flight
//! requests finish (for up to 10 s) before exiting 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use distfs::fetch::FetcherConfig;
use distfs::serve::pins::{PinConfig, PinService};
use distfs::serve::{Gateway, GatewayConfig, GatewaySources, UpstreamConfig};
use sha2::Digest;

/// Arguments of `distfs serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// An on-disk block store directory (repeatable; asked in order, before CAR files). With
    /// --upstream, the first one is the site cache's store and is asked last.
    #[arg(long = "store", value_name = "DIR")]
    stores: Vec<PathBuf>,
    /// An upstream trustless gateway (repeatable): blocks not held locally are fetched from
    /// it, verified, kept in the first --store (required) and served (a site cache).
    #[arg(long = "upstream", value_name = "URL", requires = "stores")]
    upstreams: Vec<String>,
    /// Size limit of the site cache's store (SIZE: a number with an optional K/M/G/T
    /// suffix); least recently used blocks are evicted past it. Default: no limit.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "upstreams")]
    store_size: Option<usize>,
    /// Seconds one upstream block fetch may take in all (failover included); then 504.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    upstream_timeout: u64,
    /// A CARv1 file to serve, loaded into memory with every block verified (repeatable).
    #[arg(long = "car", value_name = "FILE")]
    cars: Vec<PathBuf>,
    /// A directory of `<name>.ipns-record` files to serve; records accepted by
    /// `PUT /routing/v1/ipns/{name}` are written here (default: `<first --store>/ipns`).
    #[arg(long, value_name = "DIR")]
    ipns_dir: Option<PathBuf>,
    /// Accept block uploads (`POST /api/v1/car`) into the first --store from clients that
    /// send `Authorization: Bearer <the first line of FILE>`. Without it uploads are refused.
    #[arg(long, value_name = "FILE")]
    upload_token_file: Option<PathBuf>,
    /// Largest upload body (SIZE: a number with an optional K/M/G suffix).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    upload_max_size: Option<usize>,
    /// Print one line per finished request to stderr.
    #[arg(long)]
    log_requests: bool,
    /// Requests handled at once; more wait up to 10 s, then get 429.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_requests: u32,
    /// Do not serve `GET /metrics` (Prometheus metrics; on by default).
    #[arg(long)]
    no_metrics: bool,
    /// Accept HTTP provider announcements (`PUT /routing/v1/providers`) and answer
    /// `GET /routing/v1/providers/{cid}` from them (a delegated-routing endpoint for a site).
    #[arg(long)]
    accept_providers: bool,
    /// A delegated-routing endpoint to announce this gateway to (repeatable), as a provider
    /// of every --announce-root and every --car root; needs --public-url.
    #[arg(long = "announce", value_name = "ROUTING_URL", requires = "public_url")]
    announce: Vec<String>,
    /// The URL clients reach this gateway at (`http://10.0.0.5:8080`, `https://gw.example`),
    /// as announced.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// A root CID to announce (repeatable; CAR roots are announced too).
    #[arg(long = "announce-root", value_name = "CID", requires = "announce")]
    announce_roots: Vec<cid::Cid>,
    /// Milliseconds added before every response (for benchmarks that model a distant gateway).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency: u64,
    /// Send every response body through one shared link of this many megabits per second
    /// (for benchmarks that model a user's connection; off by default).
    #[arg(long, value_name = "MBIT", value_parser = clap::value_parser!(u64).range(1..))]
    rate_mbit: Option<u64>,
    /// Answer the IPFS Pinning Service API (`/pins`) for clients that send
    /// `Authorization: Bearer <the first line of FILE>`, and keep what they pin whole in the
    /// first --store. Without a pin token the API is off.
    #[arg(long, value_name = "FILE", conflicts_with = "pin_token")]
    pin_token_file: Option<PathBuf>,
    /// The pinning API token itself (visible to other local users in `ps`; prefer
    /// --pin-token-file).
    #[arg(long, value_name = "TOKEN")]
    pin_token: Option<String>,
}

/// Runs the gateway until a shutdown signal.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    distfs::daemon::malloc::cap_arenas(distfs::daemon::malloc::Arenas::PerCore); // before any thread starts
    let pin_token = pin_token(&args)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(serve(args, pin_token))
}

/// The pinning API token from --pin-token or the first line of --pin-token-file.
fn pin_token(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let token = match (&args.pin_token_file, &args.pin_token) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the pin token file {}", path.display()))?;
            text.lines().next().unwrap_or_default().trim().to_string()
        }
        (None, Some(t)) => t.trim().to_string(),
        (None, None) => return Ok(None),
    };
    if token.is_empty() || token.contains(char::is_whitespace) {
        anyhow::bail!("the pin token must be non-empty, with no spaces");
    }
    Ok(Some(token))
}

async fn serve(args: ServeArgs, pin_token: Option<String>) -> anyhow::Result<()> {
    let pin_store = args.stores.first().cloned();
    let upstream = match args.stores.first() {
        Some(dir) if !args.upstreams.is_empty() => Some(UpstreamConfig {
            urls: args.upstreams.clone(),
            dir: dir.clone(),
            size: args.store_size.map(|n| n as u64),
            fetcher: FetcherConfig {
                deadline: Duration::from_secs(args.upstream_timeout),
                ..FetcherConfig::default()
            },
        }),
        _ => None,
    };
    let sources = GatewaySources {
        upstream,
        stores: args.stores,
        cars: args.cars,
        ipns_dir: args.ipns_dir,
        upload_token_file: args.upload_token_file,
        upload_max_bytes: args.upload_max_size,
    };
    let config = GatewayConfig {
        max_concurrent: args.max_requests as usize,
        queue_timeout: Duration::from_secs(10),
        log_requests: args.log_requests,
        latency: Duration::from_millis(args.latency),
        rate_bits_per_sec: args.rate_mbit.map(|m| m.saturating_mul(1_000_000)),
        metrics: !args.no_metrics,
    };
    let mut gateway = Gateway::open(&sources, config)
        .await
        .context("opening the gateway's sources")?;
    if let Some(token) = pin_token {
        let dir =
            pin_store.context("the pinning API needs a store to pin into: add --store DIR")?;
        let mut pin_config = PinConfig::new(token);
        pin_config.upstreams = args.upstreams.clone();
        // With --upstream the site cache already holds the first store's lock and quota: pins
        // must live in that quota, or its evictions would not see them.
        let service = match gateway.upstream() {
            Some(up) => PinService::with_quota(up.cache().quota().clone(), pin_config).await,
            None => PinService::open(&dir, pin_config).await,
        }
        .context("starting the pinning API")?;
        gateway = gateway.with_pins(service);
    }
    if args.accept_providers {
        gateway = gateway.with_provider_announcements();
    }
    if let Some(url) = &args.public_url {
        let mut roots = args.announce_roots.clone();
        roots.extend_from_slice(gateway.car_roots());
        if !args.announce.is_empty() {
            start_announcing(&args.announce, url, &roots)?;
        }
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr}").context("printing the bound address")?;
        out.flush().context("printing the bound address")?;
    }
    // One shutdown signal, two listeners: the server drains on it, and a deadline stops
    // waiting for clients that never finish reading.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut drain_rx = stop_rx.clone();
    let drain = async move {
        let _ = drain_rx.wait_for(|stop| *stop).await;
    };
    let server = distfs::serve::run(listener, Arc::new(gateway), drain);
    tokio::select! {
        served = server => served.context("serving HTTP")?,
        _ = async {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("requests still in flight {SHUTDOWN_GRACE:?} after the signal; exiting");
        }
    }
    Ok(())
}

/// Spawns the announcement loop for `roots` at `public_url` to every endpoint in `routing`.
fn start_announcing(
    routing: &[String],
    public_url: &str,
    roots: &[cid::Cid],
) -> anyhow::Result<()> {
    use distfs::fetch::multiaddr::multiaddr_of_url;
    use distfs::fetch::routing::{ProviderRecord, RoutingClient, DEFAULT_ROUTING_TIMEOUT};
    anyhow::ensure!(
        !roots.is_empty(),
        "--announce needs something to announce: add --announce-root CID or a --car"
    );
    let addr = multiaddr_of_url(public_url).with_context(|| {
        format!("--public-url {public_url:?}: expected http(s)://host[:port] with no path")
    })?;
    let clients = routing
        .iter()
        .map(|u| RoutingClient::new(u, DEFAULT_ROUTING_TIMEOUT))
        .collect::<Result<Vec<_>, _>>()
        .context("--announce")?;
    // A stable peer ID derived from the public URL (the record schema wants one; an HTTP
    // provider has no libp2p identity).
    let seed: [u8; 32] = sha2::Sha256::digest(public_url.as_bytes()).into();
    let id = distfs::name::key::Keypair::from_seed(seed)
        .name()
        .to_string();
    let keys = roots.iter().map(|c| c.to_string()).collect();
    let record = ProviderRecord::gateway(&id, vec![addr], keys);
    tokio::spawn(distfs::serve::providers::announce_loop(clients, record));
    Ok(())
}

/// A SIZE value: a number with an optional K/M/G/T suffix (powers of 1024).
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("unknown suffix {c:?}; use K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 64M)"))?;
    n.checked_mul(1usize << shift)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is zero or too large"))
}

/// How long in-flight requests may keep running after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
