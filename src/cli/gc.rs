use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct GcArgs {}

pub fn run(_ctx: &Context, _args: &GcArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp gc is not built yet")
}
