use std::path::PathBuf;

use clap::Args;
use exp::eval::archive::RunFolder;
use exp::store::workspace;

use super::init::open_repo;
use super::{Context, ui};

/// Reset the workspace: remove run folders the store holds unchanged (check them out again any
/// time). Modified or never-committed folders are kept, unless --force, which first saves each
/// under a `saved/<ID>-<time>` ref and says which. Never loses data.
///
/// Run folders and prepared/ are where the config's paths.experiments_dir and
/// paths.prepared_dir put them (experiments/ and prepared/ without a config).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp clean --dry-run\n  exp clean --clean-prepared\n  exp clean --force\n  exp clean --config cfg.yaml --dry-run"
)]
pub struct CleanArgs {
    /// The config whose paths say where runs and prepared datasets are [default:
    /// config/eval_config.yaml when the workspace has it, else experiments/ and prepared/]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Say what would happen; change nothing
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,
    /// Also remove the prepared datasets (prepared/; rebuilt by the next run)
    #[arg(long, alias = "clean_prepared")]
    pub clean_prepared: bool,
    /// Save modified and uncommitted run folders under saved/… refs, then remove them too
    #[arg(long, short)]
    pub force: bool,
    /// Print what was done as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &CleanArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let folders = exp::eval::config::workspace_folders(args.config.as_deref(), repo.workspace())?;
    let progress = ui::TermProgress::new();
    let r = workspace::clean(
        &repo,
        &folders,
        args.dry_run,
        args.clean_prepared,
        args.force,
        &RunFolder::new(repo.workspace()),
        &progress,
    )?;
    if args.json {
        return ui::print_json(ui::Schema::CLEAN, &r);
    }
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for (path, refn, id) in &r.saved {
        if r.dry_run {
            ui::outln!("would save {path} as {refn}")?;
        } else {
            ui::outln!(
                "saved {path} as {refn} ({}); restore with: exp checkout {refn}",
                id.short()
            )?;
        }
    }
    for path in &r.removed {
        ui::outln!("{verb} {path}")?;
    }
    if let Some(p) = &r.prepared {
        ui::outln!("{verb} {p}/")?;
    }
    for (path, why) in &r.kept {
        ui::outln!("kept {path}: {why}")?;
    }
    if !r.kept.is_empty() {
        ui::outln!(
            "commit a kept folder with `exp commit FOLDER`, or use --force to save and remove \
             modified and uncommitted ones (a folder whose stored copy is damaged always stays)"
        )?;
    }
    if r.removed.is_empty() && r.kept.is_empty() && r.prepared.is_none() {
        ui::outln!("nothing to clean")?;
    }
    Ok(())
}
