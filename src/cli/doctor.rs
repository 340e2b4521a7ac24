//! `distfs doctor`: checks the machine (/dev/fuse, fusermount3, /etc/fuse.conf, FUSE
//! passthrough: kernel 6.9 or later and root), the cache
//! dir, each gateway and root name given, and every distfs mount; prints one `ok`/`warn`/
//! `FAIL` line per finding with a `fix:` line under each problem. A dead or hung mount is
//! cleared with `--fix`, or after a y/N prompt when stdin is a terminal. Exits 0 when
//! nothing failed (warnings allowed), 1 otherwise.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use distfs::daemon::config::RawConfig;
use distfs::doctor::{self, Finding, Status};
use distfs::fetch::{RecordApi, RecordClient};
use distfs::name::{Resolver, ResolverConfig};

/// Arguments of `distfs doctor`.
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The cache directory to check (default: the one `distfs mount` would use).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// A gateway to check (repeatable): it must answer /ipfs/bafkqaaa?format=raw.
    #[arg(long = "gateway", value_name = "URL")]
    gateways: Vec<String>,
    /// A root to resolve through the gateways (repeatable): /ipns/<key>, /ipns/<domain>, /ipfs/<cid>.
    #[arg(long = "root", value_name = "ROOT")]
    roots: Vec<String>,
    /// The DNS server (ip:port) for DNSLink roots (default: the system resolver).
    #[arg(long, value_name = "ADDR")]
    dns_server: Option<std::net::SocketAddr>,
    /// Check only the distfs mount at PATH (repeatable; default: every distfs mount).
    #[arg(long = "mount", value_name = "PATH")]
    mounts: Vec<PathBuf>,
    /// Clear dead and hung mounts without asking (abort the FUSE connection, unmount lazily).
    #[arg(long)]
    fix: bool,
    /// The config file whose cache dir, gateways, root and DNS server are checked when not
    /// given as flags (default: $DISTFS_CONFIG, else /etc/distfs/config.toml if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Seconds a mount, gateway or name may take to answer before it counts as failed.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    timeout: u64,
}

/// Runs every check and prints the findings.
pub fn run(mut args: DoctorArgs) -> anyhow::Result<()> {
    // What the daemon would use: the config fills what the flags leave out.
    let file = RawConfig::load_applicable(args.config.as_deref())?;
    if args.cache_dir.is_none() {
        args.cache_dir = Some(file.cache_dir_or_default());
    }
    if args.gateways.is_empty() {
        args.gateways = file.gateway.clone().unwrap_or_default();
    }
    if args.roots.is_empty() {
        args.roots = file.root.iter().map(|r| r.to_string()).collect();
    }
    if args.dns_server.is_none() {
        args.dns_server = file.dns_server;
    }
    let bound = Duration::from_secs(args.timeout.max(1));
    let mut report = Report::default();
    report.add(doctor::dev_fuse());
    report.add(doctor::fusermount());
    report.add(doctor::fuse_conf());
    report.add(doctor::passthrough());
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(distfs::daemon::config::default_cache_dir);
    for f in doctor::cache_dir(&cache_dir) {
        report.add(f);
    }
    if !args.gateways.is_empty() || !args.roots.is_empty() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(network_checks(&args, bound, &mut report));
    }
    let only: Vec<PathBuf> = args
        .mounts
        .iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    for check in doctor::mounts(&only, bound)? {
        report.add(check.finding());
        if check.fixable() && (args.fix || ask(&check.entry.mountpoint)) {
            let fixed = doctor::fix_mount(&check, bound);
            // A cleared mount is no longer a failure.
            if fixed.status == Status::Ok {
                report.failed = report.failed.saturating_sub(1);
            }
            report.add(fixed);
        }
    }
    for p in &only {
        if !report.saw_mount(p) {
            report.add(Finding {
                status: Status::Fail,
                what: format!("mount {}: no distfs mount there", p.display()),
                fix: Some(format!(
                    "mount it: distfs mount {} --root ROOT",
                    p.display()
                )),
            });
        }
    }
    if report.failed > 0 {
        bail!("{} check(s) failed", report.failed);
    }
    Ok(())
}

async fn network_checks(args: &DoctorArgs, bound: Duration, report: &mut Report) {
    for url in &args.gateways {
        report.add(doctor::gateway(url, bound).await);
    }
    if args.roots.is_empty() {
        return;
    }
    let resolver = RecordClient::http_client()
        .map_err(anyhow::Error::from)
        .and_then(|http| {
            let sources = args
                .gateways
                .iter()
                .map(|u| RecordClient::new(u, RecordApi::Gateway, http.clone(), bound))
                .filter_map(Result::ok)
                .collect();
            Ok(Resolver::new(ResolverConfig {
                sources,
                dns_server: args.dns_server,
                state_dir: None,
                min_ttl: Duration::from_secs(1),
                max_ttl: Duration::from_secs(3600),
                publisher: None,
            })?)
        });
    for root in &args.roots {
        report.add(match &resolver {
            Ok(r) => doctor::name(r, root, bound).await,
            Err(e) => Finding {
                status: Status::Fail,
                what: format!("root {root}: cannot set up name resolution: {e:#}"),
                fix: Some("check the --gateway URLs and --dns-server".into()),
            },
        });
    }
}

/// On a terminal, asks whether to clear the mount at `path`; false otherwise.
fn ask(path: &std::path::Path) -> bool {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return false;
    }
    print!(
        "     clear {} now (abort its connection, unmount)? [y/N] ",
        path.display()
    );
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim(), "y" | "Y" | "yes")
}

/// Prints findings as they come and counts failures.
#[derive(Default)]
struct Report {
    failed: usize,
    seen: Vec<String>,
}

impl Report {
    fn add(&mut self, f: Finding) {
        let tag = match f.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        println!("{tag} {}", f.what);
        if let (Some(fix), false) = (&f.fix, f.status == Status::Ok) {
            println!("     fix: {fix}");
        }
        if f.status == Status::Fail {
            self.failed += 1;
        }
        self.seen.push(f.what);
    }

    /// Whether a finding about the mount at `p` was printed.
    fn saw_mount(&self, p: &std::path::Path) -> bool {
        let prefix = format!("mount {}:", p.display());
        self.seen.iter().any(|w| w.starts_with(&prefix))
    }
}
