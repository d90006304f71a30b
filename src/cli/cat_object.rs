use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct CatObjectArgs {}

pub fn run(_ctx: &Context, _args: &CatObjectArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp cat_object is not built yet")
}
