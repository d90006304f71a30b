use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct InitArgs {}

pub fn run(_ctx: &Context, _args: &InitArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp init is not built yet")
}
