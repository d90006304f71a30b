use std::path::PathBuf;

use clap::Args;
use exp::error::Hinted;
use exp::eval::archive::RunFolder;
use exp::store::CommitOptions;

use super::init::open_repo_for_runs;
use super::{Context, ui};

/// Commit a run folder to the store as `runs/<RUN_ID>` (also `exp archive`).
///
/// The run id comes from a folder named `run_<RUN_ID>`, else the folder's own name, or `--run`.
/// Message, tag and status default to what the run's run.json says. Committing an unchanged
/// folder again stores nothing and makes no new commit.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp commit experiments/run_20251127-130501 -m \"baseline\"\n  \
exp archive --experiment_name t1_r20250821 --tag t1\n  exp commit --run 20251127-130501 --dry-run"
)]
pub struct CommitArgs {
    /// The run folder [default: experiments/run_<ID> for `--run ID`]
    pub run_dir: Option<PathBuf>,
    /// Run id (or name) to commit as; alone, selects experiments/run_<ID>
    #[arg(long = "run", value_name = "ID", visible_aliases = ["run-id", "experiment-name"],
          aliases = ["run_id", "experiment_name"], add = clap_complete::ArgValueCompleter::new(super::completions::run_id))]
    pub run: Option<String>,
    /// Commit message [default: run.json's "message", else "commit run <ID>"]
    #[arg(short, long)]
    pub message: Option<String>,
    /// Also tag the commit as NAME
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// List what would be stored; store nothing
    #[arg(long, alias = "dry_run")]
    pub dry_run: bool,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &CommitArgs) -> super::Result<()> {
    let repo = open_repo_for_runs(ctx)?;
    let dir = match (&args.run_dir, &args.run) {
        (Some(d), _) => d.clone(),
        (None, Some(id)) => run_dir_of(&repo, id),
        (None, None) => {
            return Err(Hinted::new(
                "no run folder given",
                "pass the folder (exp commit experiments/run_ID) or --run ID",
            )
            .into());
        }
    };
    if !dir.exists() {
        return Err(Hinted::new(
            format!("run folder {} does not exist", dir.display()),
            "`exp status` lists the run folders in experiments/",
        )
        .into());
    }
    let options = CommitOptions {
        run_id: args.run.clone(),
        message: args.message.clone(),
        tag: args.tag.clone(),
        dry_run: args.dry_run,
        parent: None,
    };
    let progress = ui::TermProgress::new();
    let o = repo.commit_run(&dir, &RunFolder::new(repo.workspace()), &options, &progress)?;
    for w in &o.warnings {
        eprintln!("warning: {w}");
    }
    if args.json {
        return ui::print_json(ui::Schema::COMMIT, &o);
    }
    let sizes = format!(
        "{} files, {}; {} new objects, {} stored",
        o.stored.files,
        ui::human_bytes(o.stored.bytes),
        o.stored.new_objects,
        ui::human_bytes(o.stored.new_bytes)
    );
    if o.dry_run {
        let mut t = ui::table(["file", "size", "new"]).cut(["file"]);
        for f in &o.stored.listing {
            t.add_row(vec![
                f.path.clone(),
                ui::human_bytes(f.size),
                if f.new { "yes" } else { "" }.into(),
            ]);
        }
        ui::outln!("{t}")?;
        let what = if o.unchanged { "unchanged, nothing to commit" } else { "would commit" };
        ui::outln!(
            "dry run: {} {what} ({} files, {}, {} new)",
            o.ref_name,
            o.stored.files,
            ui::human_bytes(o.stored.bytes),
            o.stored.new_objects
        )?;
        return Ok(());
    }
    let id = o.commit.map(|c| c.short()).unwrap_or_default();
    if o.unchanged {
        ui::outln!("{} unchanged at {id} ({sizes})", o.ref_name)?;
    } else {
        ui::outln!("committed {} {id} ({sizes})", o.ref_name)?;
    }
    if let Some(t) = &o.tag {
        ui::outln!("tagged tags/{t}")?;
    }
    Ok(())
}

/// The folder of run `id`: `run_<ID>` or `<ID>` where the config keeps runs, then in
/// `experiments/`.
fn run_dir_of(repo: &exp::store::Repo, id: &str) -> PathBuf {
    let named = repo.default_run_dir(id);
    let standard = exp::store::workspace::Folders::standard(repo.workspace()).experiments;
    let candidates = [
        named.clone(),
        named.with_file_name(id),
        standard.join(format!("run_{id}")),
        standard.join(id),
    ];
    candidates.iter().find(|d| d.exists()).unwrap_or(&named).clone()
}
