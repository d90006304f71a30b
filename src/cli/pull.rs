use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct PullArgs {}

pub fn run(_ctx: &Context, _args: &PullArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp pull is not built yet")
}
