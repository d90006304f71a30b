use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct DiffArgs {}

pub fn run(_ctx: &Context, _args: &DiffArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp diff is not built yet")
}
