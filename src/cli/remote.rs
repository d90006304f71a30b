use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct RemoteArgs {}

pub fn run(_ctx: &Context, _args: &RemoteArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp remote is not built yet")
}
