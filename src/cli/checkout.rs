use std::path::PathBuf;

use clap::Args;

use super::init::open_repo_for_runs;
use super::{Context, ui};

/// Materialize a run into the folder it was committed from (e.g. experiments/run_<ID>), or
/// `--to DIR`: byte-exact, with file modes and symlinks. HEAD then names it.
///
/// Files that differ but whose content the store already holds are replaced; changes the store
/// does not hold stop the checkout unless `--force`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp checkout t1_r20250821\n  exp checkout runs/20251127-130501~1 --to /tmp/old\n  \
exp checkout HEAD --force"
)]
pub struct CheckoutArgs {
    /// Revision: run id, runs/ID, tags/NAME, tag, hex prefix, HEAD, REF~N, REF@{N}
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::revision))]
    pub rev: String,
    /// Overwrite changes the store does not hold
    #[arg(long, short)]
    pub force: bool,
    /// Check out into DIR instead
    #[arg(long, value_name = "DIR")]
    pub to: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &CheckoutArgs) -> super::Result<()> {
    let repo = open_repo_for_runs(ctx)?;
    let progress = ui::TermProgress::new();
    let o = repo.checkout(&args.rev, args.to.as_deref(), args.force, &progress)?;
    if args.json {
        return ui::print_json(ui::Schema::CHECKOUT, &o);
    }
    let dest = o.dest.strip_prefix(repo.workspace()).unwrap_or(&o.dest);
    ui::outln!(
        "checked out {} ({}) into {}: {} files; {} written ({}), {} removed",
        args.rev,
        o.commit.short(),
        dest.display(),
        o.files,
        o.written,
        ui::human_bytes(o.bytes),
        o.removed
    )?;
    Ok(())
}
