use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct ImportArgs {}

pub fn run(_ctx: &Context, _args: &ImportArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp import is not built yet")
}
