use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct TagArgs {}

pub fn run(_ctx: &Context, _args: &TagArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp tag is not built yet")
}
