use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct ListArgs {}

pub fn run(_ctx: &Context, _args: &ListArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp list is not built yet")
}
