use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct FsckArgs {}

pub fn run(_ctx: &Context, _args: &FsckArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp fsck is not built yet")
}
