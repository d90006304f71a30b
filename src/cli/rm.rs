use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct RmArgs {}

pub fn run(_ctx: &Context, _args: &RmArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp rm is not built yet")
}
