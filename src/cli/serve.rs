//! `distfs serve` (placeholder until the gateway lands).
#[derive(clap::Args)]
pub struct ServeArgs {}
pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("serve: not built yet")
}
