use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct HashObjectArgs {}

pub fn run(_ctx: &Context, _args: &HashObjectArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp hash_object is not built yet")
}
