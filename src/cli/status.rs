use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct StatusArgs {}

pub fn run(_ctx: &Context, _args: &StatusArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp status is not built yet")
}
