use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct CommitArgs {}

pub fn run(_ctx: &Context, _args: &CommitArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp commit is not built yet")
}
