use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct ShowArgs {}

pub fn run(_ctx: &Context, _args: &ShowArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp show is not built yet")
}
