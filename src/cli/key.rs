//! `distfs key gen FILE`: writes a new Ed25519 key (libp2p `PrivateKey` protobuf, mode
//! 0600, never over an existing file) and prints its IPNS name.

use std::path::PathBuf;

use anyhow::Context;
use distfs::name::Keypair;

/// Arguments of `distfs key`.
#[derive(clap::Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(clap::Subcommand)]
enum KeyCommand {
    /// Write a new Ed25519 key to FILE and print its IPNS name (k51…).
    Gen {
        /// Where to write the key; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Print the IPNS name of the key in FILE.
    Name {
        /// A key file written by `distfs key gen` (or `ipfs key export`).
        file: PathBuf,
    },
}

/// Runs `distfs key …`.
pub fn run(args: KeyArgs) -> anyhow::Result<()> {
    match args.command {
        KeyCommand::Gen { file } => {
            let key = Keypair::try_generate()?;
            key.save(&file)
                .with_context(|| format!("writing a new key to {}", file.display()))?;
            println!("{}", key.name());
        }
        KeyCommand::Name { file } => {
            let key = Keypair::load(&file)?;
            println!("{}", key.name());
        }
    }
    Ok(())
}
