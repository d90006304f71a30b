use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct LogArgs {}

pub fn run(_ctx: &Context, _args: &LogArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp log is not built yet")
}
