//! `distfs serve`: runs the trustless gateway (`distfs::serve`) over on-disk stores, CAR
//! files and a directory of IPNS records (which also takes verified records PUT to it), and,
//! with a pin token, the IPFS Pinning Service API over the first store.
//! Binds first, then prints the bound address as one line on stdout (so `--listen
//! 127.0.0.1:0` works for tests), and runs until SIGINT or SIGTERM, letting in-flight
//! requests finish (for up to 10 s) before exiting 0.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use distfs::serve::pins::{PinConfig, PinService};
use distfs::serve::{Gateway, GatewayConfig, GatewaySources};

/// Arguments of `distfs serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// An on-disk block store directory (repeatable; asked in order, before CAR files).
    #[arg(long = "store", value_name = "DIR")]
    stores: Vec<PathBuf>,
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
    /// Milliseconds added before every response (for benchmarks that model a distant gateway).
    #[arg(long, value_name = "MS", default_value_t = 0)]
    latency: u64,
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
    let sources = GatewaySources {
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
        metrics: !args.no_metrics,
    };
    let mut gateway = Gateway::open(&sources, config)
        .await
        .context("opening the gateway's sources")?;
    if let Some(token) = pin_token {
        let dir =
            pin_store.context("the pinning API needs a store to pin into: add --store DIR")?;
        let service = PinService::open(&dir, PinConfig::new(token))
            .await
            .context("starting the pinning API")?;
        gateway = gateway.with_pins(service);
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
