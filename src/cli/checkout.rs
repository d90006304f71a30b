use clap::Args;

use super::Context;

/// Not built yet.
#[derive(Args, Debug)]
pub struct CheckoutArgs {}

pub fn run(_ctx: &Context, _args: &CheckoutArgs) -> anyhow::Result<()> {
    anyhow::bail!("exp checkout is not built yet")
}
