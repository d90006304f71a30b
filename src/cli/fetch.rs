use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct FetchArgs {}

pub fn run(_ctx: &Context, _args: &FetchArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp fetch is not built yet")
}
