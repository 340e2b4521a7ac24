//! `distfs status`: asks the daemon that holds a cache dir for its state, through the
//! control socket, and prints it (human text; `--json` for scripts, with the stable field
//! names documented in `distfs::daemon::status`; `--prometheus` for the metrics in
//! Prometheus text format). With no daemon on the cache dir it says so and exits 1.

use std::path::PathBuf;

use anyhow::bail;
use distfs::daemon::client;
use distfs::daemon::config::cache_dir_for;
use distfs::daemon::protocol::{Outcome, Request};

/// Arguments of `distfs status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// The cache directory of the daemon (default: the configured one).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The config file that names the cache directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the status as JSON.
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Print the daemon's metrics in Prometheus text format instead.
    #[arg(long)]
    pub prometheus: bool,
}

/// Prints the daemon's status or metrics.
pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let dir = cache_dir_for(args.cache_dir, args.config.as_deref())?;
    let request = if args.prometheus {
        Request::Metrics
    } else {
        Request::Status
    };
    match client::request(&dir, &request, |_, _, _| {})? {
        Outcome::Metrics(text) => print!("{text}"),
        Outcome::Status(s) if args.json => println!("{}", serde_json::to_string_pretty(&s)?),
        Outcome::Status(s) => print!("{}", s.to_text()),
        other => bail!("unexpected answer from the daemon: {other:?}"),
    }
    Ok(())
}
