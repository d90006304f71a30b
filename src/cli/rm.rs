use clap::Args;

use super::init::open_repo;
use super::{Context, ui};

/// Drop a ref (a run or a tag). Its objects stay recoverable until `exp gc` runs after the
/// grace period.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  exp rm 20251127-130501\n  exp rm tags/old-baseline")]
pub struct RmArgs {
    /// runs/ID, tags/NAME, or a bare run id or tag name
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev: String,
}

pub fn run(ctx: &Context, args: &RmArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let (name, old) = repo.remove_ref(&args.rev)?;
    ui::outln!("removed {name} (was {old})")?;
    ui::outln!(
        "recover it until `exp gc` prunes it (after the grace period): exp tag {} {old}",
        name.short()
    )?;
    Ok(())
}
