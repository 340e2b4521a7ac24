//! `distfs hub add|update|remove NAME [ROOT]`: the hub curator's command. Edits the
//! `projects.json` index at the root the curator's key names and republishes that root to a
//! `distfs serve` target in one run (`distfs::publish::hub`). Prints `key value` lines.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use distfs::dist::hub::RawEntry;
use distfs::fetch::{PushClient, DEFAULT_PUSH_TIMEOUT};
use distfs::name::key::Keypair;
use distfs::publish::hub::{edit_hub, HubEdit};
use distfs::publish::{self, Options};

use super::publish::{parse_duration, read_token};

/// Arguments of `distfs hub`.
#[derive(clap::Args, Debug)]
pub struct HubArgs {
    #[command(subcommand)]
    edit: EditCommand,
    /// The curator's key file; its IPNS name is the hub root.
    #[arg(long, value_name = "FILE", global = true)]
    key: Option<PathBuf>,
    /// The `distfs serve` to publish to (it must accept uploads: --upload-token-file).
    #[arg(long, value_name = "URL", global = true)]
    to: Option<String>,
    /// Build on this root (`/ipfs/CID`) instead of the one the target's record names.
    #[arg(long = "root", value_name = "/ipfs/CID", global = true)]
    base: Option<String>,
    /// Another trustless gateway to read the current root from (repeatable).
    #[arg(long = "gateway", value_name = "URL", global = true)]
    gateways: Vec<String>,
    /// A file whose first line is the upload token.
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// The upload token itself (visible in `ps`; prefer --token-file).
    #[arg(long, value_name = "TOKEN", global = true)]
    token: Option<String>,
    /// Record TTL (e.g. 60s, 5m, 1h).
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_duration, global = true)]
    ttl: Duration,
    /// How long the record stays valid (e.g. 7d).
    #[arg(long, value_name = "DUR", default_value = "7d", value_parser = parse_duration, global = true)]
    lifetime: Duration,
}

#[derive(clap::Subcommand, Debug)]
enum EditCommand {
    /// List a project under NAME whose own tree is ROOT.
    Add(EntryArgs),
    /// Point a listed NAME at a new ROOT (or publisher).
    Update(EntryArgs),
    /// Drop NAME from the index.
    Remove {
        /// The project name.
        name: String,
    },
}

#[derive(clap::Args, Debug)]
struct EntryArgs {
    /// The project name under /dist.
    name: String,
    /// The project's own root: /ipns/<key>, /ipns/<dnslink-domain> or /ipfs/<cid>.
    root: String,
    /// The only key whose record may give ROOT (k51…), checked by every mount.
    #[arg(long, value_name = "KEY")]
    publisher: Option<String>,
}

impl EntryArgs {
    fn entry(self) -> (String, RawEntry) {
        let entry = RawEntry {
            root: self.root,
            publisher: self
                .publisher
                .map(|p| p.trim_start_matches("/ipns/").to_string()),
        };
        (self.name, entry)
    }
}

/// Runs `distfs hub …`.
pub fn run(args: HubArgs) -> anyhow::Result<()> {
    let (Some(key_file), Some(to)) = (&args.key, &args.to) else {
        bail!("--key FILE and --to URL are needed");
    };
    let token = read_token(args.token_file.as_ref(), args.token.as_ref())?;
    let key = Keypair::load(key_file)
        .with_context(|| format!("loading the key {}", key_file.display()))?;
    let mut opts = Options::new(token);
    opts.ttl = args.ttl;
    opts.lifetime = args.lifetime;
    opts.gateways = args.gateways;
    if let Some(root) = &args.base {
        opts.root = Some(publish::root_of(root).map_err(anyhow::Error::msg)?);
    }
    if opts.lifetime <= opts.ttl {
        bail!("--lifetime must be longer than --ttl");
    }
    let edit = match args.edit {
        EditCommand::Add(e) => {
            let (name, entry) = e.entry();
            HubEdit::Add { name, entry }
        }
        EditCommand::Update(e) => {
            let (name, entry) = e.entry();
            HubEdit::Update { name, entry }
        }
        EditCommand::Remove { name } => HubEdit::Remove { name },
    };
    let client =
        PushClient::new(to, DEFAULT_PUSH_TIMEOUT).with_context(|| format!("target {to}"))?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let done = rt
        .block_on(edit_hub(&key, edit, &client, &opts))
        .with_context(|| format!("editing the hub index at {to}"))?;
    println!("name {}", done.name);
    println!("root /ipfs/{}", done.root);
    if let Some(prev) = done.previous {
        println!("previous /ipfs/{prev}");
    }
    println!("sequence {}", done.sequence);
    println!("entries {}", done.entries);
    Ok(())
}
