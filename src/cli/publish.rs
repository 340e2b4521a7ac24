//! `distfs publish`: adds a version of a project to the distribution a key's IPNS name points
//! at, and pushes the new blocks and a new signed record to a `distfs serve` target
//! (`distfs::publish`). Prints what it did as `key value` lines on stdout. With
//! `--pin-service URL`, then asks each pinning service to pin the new root and prints one
//! `pin URL STATE REQUESTID` line per service.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use distfs::fetch::multiaddr::multiaddr_of_url;
use distfs::fetch::pinning::{Pin, PinState, PinningClient, DEFAULT_PINNING_TIMEOUT};
use distfs::fetch::{PushClient, DEFAULT_PUSH_TIMEOUT};
use distfs::name::key::Keypair;
use distfs::publish::pin::PinOutcome;
use distfs::publish::{self, Options, Release};

/// Arguments of `distfs publish`.
#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    /// The key file (from `distfs key gen FILE`) whose IPNS name is the distribution.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Project directory name (e.g. `kubo`).
    #[arg(long, value_name = "NAME")]
    project: String,
    /// The key's name is this one project's own tree (version directories at its root; no
    /// distribution above it), as `distfs mount --project NAME=/ipns/KEY` shows it.
    #[arg(long)]
    single: bool,
    /// Version directory name (e.g. `v1.2.0`); must not exist yet.
    #[arg(long, value_name = "VER")]
    version: String,
    /// Also point `/dist/<project>/<CH>` at this version (e.g. `beta`).
    #[arg(long, value_name = "CH")]
    channel: Option<String>,
    /// Build on this root (`/ipfs/CID`) instead of the one the target's record names.
    #[arg(long, value_name = "/ipfs/CID")]
    root: Option<String>,
    /// The `distfs serve` to publish to (it must accept uploads: --upload-token-file).
    #[arg(long, value_name = "URL")]
    to: String,
    /// Another trustless gateway to read the current tree from, after the target
    /// (repeatable).
    #[arg(long = "gateway", value_name = "URL")]
    gateways: Vec<String>,
    /// A file whose first line is the upload token.
    #[arg(long, value_name = "FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The upload token itself (visible to other local users in `ps`; prefer --token-file).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Record TTL: how soon readers look for a newer record (e.g. 60s, 5m, 1h).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration)]
    ttl: Duration,
    /// How long the record stays valid (e.g. 7d).
    #[arg(long, value_name = "DUR", default_value = "7d", value_parser = parse_duration)]
    lifetime: Duration,
    /// `owner` field of the version's dist.json.
    #[arg(long, value_name = "TEXT")]
    owner: Option<String>,
    /// `description` field of the version's dist.json.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// After publishing, ask this IPFS Pinning Service API endpoint to pin the new root
    /// (repeatable; e.g. another `distfs serve` with a pin token, or a commercial service).
    #[arg(long = "pin-service", value_name = "URL")]
    pin_services: Vec<String>,
    /// The access token for --pin-service (default: $DISTFS_PIN_TOKEN).
    #[arg(long, value_name = "TOKEN")]
    pin_token: Option<String>,
    /// How long to wait for each pinning service to report the root pinned.
    #[arg(long, value_name = "DUR", default_value = "120s", value_parser = parse_duration)]
    pin_wait: Duration,
    /// Files (or directories) to publish in the version directory, under their base names.
    #[arg(required = true, value_name = "FILES")]
    files: Vec<PathBuf>,
}

/// Runs a publish.
pub fn run(args: PublishArgs) -> anyhow::Result<()> {
    let token = read_token(args.token_file.as_ref(), args.token.as_ref())?;
    let pinners = pin_clients(&args)?;
    let key = Keypair::load(&args.key)
        .with_context(|| format!("loading the key {}", args.key.display()))?;
    let mut opts = Options::new(token);
    opts.ttl = args.ttl;
    opts.lifetime = args.lifetime;
    opts.gateways = args.gateways;
    if let Some(root) = &args.root {
        opts.root = Some(publish::root_of(root).map_err(anyhow::Error::msg)?);
    }
    if opts.lifetime <= opts.ttl {
        bail!("--lifetime must be longer than --ttl");
    }
    let release = Release {
        project: args.project,
        version: args.version,
        channel: args.channel,
        files: args.files,
        owner: args.owner,
        description: args.description,
        single: args.single,
    };
    let client = PushClient::new(&args.to, DEFAULT_PUSH_TIMEOUT)
        .with_context(|| format!("target {}", args.to))?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let done = rt
        .block_on(publish::publish(&key, &release, &client, &opts))
        .with_context(|| {
            format!(
                "publishing {} {} to {}",
                release.project, release.version, args.to
            )
        })?;
    println!("name {}", done.name);
    println!("root /ipfs/{}", done.root);
    if let Some(prev) = done.previous {
        println!("previous /ipfs/{prev}");
    }
    println!("version /ipfs/{}", done.version_dir);
    println!("sequence {}", done.sequence);
    println!(
        "pushed {} of {} new blocks ({} bytes) in {} uploads; {} were already at the target",
        done.pushed.sent,
        done.pushed.blocks,
        done.pushed.bytes,
        done.pushed.uploads,
        done.pushed.skipped
    );
    if !pinners.is_empty() {
        let pin = Pin {
            cid: done.root.to_string(),
            name: Some(format!("{}/{}", release.project, release.version)),
            origins: multiaddr_of_url(&args.to).into_iter().collect(),
            meta: Default::default(),
        };
        let outcomes = rt.block_on(publish::pin::request_pins(&pinners, &pin, args.pin_wait));
        report_pins(&outcomes, args.pin_wait);
    }
    Ok(())
}

/// Clients for --pin-service, checked before anything is published.
fn pin_clients(args: &PublishArgs) -> anyhow::Result<Vec<PinningClient>> {
    if args.pin_services.is_empty() {
        return Ok(Vec::new());
    }
    let token = match &args.pin_token {
        Some(t) => t.trim().to_string(),
        None => std::env::var("DISTFS_PIN_TOKEN")
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    if token.is_empty() {
        bail!(
            "--pin-service needs an access token: pass --pin-token TOKEN or set DISTFS_PIN_TOKEN"
        );
    }
    args.pin_services
        .iter()
        .map(|url| {
            PinningClient::new(url, &token, DEFAULT_PINNING_TIMEOUT)
                .with_context(|| format!("--pin-service {url}"))
        })
        .collect()
}

/// One `pin ENDPOINT STATE REQUESTID` line per endpoint on stdout (`pin ENDPOINT error`
/// when it could not be asked), and a warning on stderr for each that did not pin. The
/// release stays published either way.
fn report_pins(outcomes: &[PinOutcome], wait: Duration) {
    for o in outcomes {
        match &o.result {
            Ok(st) => {
                println!("pin {} {} {}", o.endpoint, st.status.as_str(), st.requestid);
                match st.status {
                    PinState::Pinned => {}
                    PinState::Failed => eprintln!(
                        "warning: pinning service {} failed to pin the root: {} (the release is published)",
                        o.endpoint,
                        st.info_text("reason").unwrap_or_else(|| "no reason given".into())
                    ),
                    PinState::Queued | PinState::Pinning => eprintln!(
                        "warning: pinning service {} still reports {} after {wait:?}; check {}/pins/{}",
                        o.endpoint,
                        st.status.as_str(),
                        o.endpoint,
                        st.requestid
                    ),
                }
            }
            Err(e) => {
                println!("pin {} error", o.endpoint);
                eprintln!("warning: pinning service: {e} (the release is published)");
            }
        }
    }
}

/// The upload token from `--token-file FILE` (its first line) or `--token`.
pub(super) fn read_token(file: Option<&PathBuf>, token: Option<&String>) -> anyhow::Result<String> {
    let token = match (file, token) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            text.lines().next().unwrap_or_default().trim().to_string()
        }
        (None, Some(t)) => t.trim().to_string(),
        (None, None) => bail!("an upload token is needed: pass --token-file FILE"),
    };
    if token.is_empty() {
        bail!("the upload token is empty");
    }
    Ok(token)
}

/// A duration: a number with an optional unit `s`, `m`, `h` or `d` (seconds by default).
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 60s, 5m, 1h, 7d)"))?;
    let secs = match unit {
        's' => Some(n),
        'm' => n.checked_mul(60),
        'h' => n.checked_mul(3600),
        'd' => n.checked_mul(86_400),
        _ => return Err(format!("unknown unit {unit:?}: use s, m, h or d")),
    };
    match secs {
        Some(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(format!("{text:?} is zero or too large")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("m").is_err());
    }
}
