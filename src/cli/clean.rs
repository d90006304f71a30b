use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct CleanArgs {}

pub fn run(_ctx: &Context, _args: &CleanArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp clean is not built yet")
}
