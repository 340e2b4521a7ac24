//! `distfs add` (placeholder until the importer lands).
#[derive(clap::Args)]
pub struct AddArgs {}
pub fn run(_args: AddArgs) -> anyhow::Result<()> {
    anyhow::bail!("add: not built yet")
}
