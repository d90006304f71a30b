use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct RunArgs {}

pub fn run(_ctx: &Context, _args: &RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp run is not built yet")
}
