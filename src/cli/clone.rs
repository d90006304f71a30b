use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct CloneArgs {}

pub fn run(_ctx: &Context, _args: &CloneArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp clone is not built yet")
}
