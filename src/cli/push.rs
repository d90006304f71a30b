use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct PushArgs {}

pub fn run(_ctx: &Context, _args: &PushArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp push is not built yet")
}
