use std::path::PathBuf;

use clap::Args;
use exp::store::workspace::{self, State};
use exp::store::worktree::ChangeKind;

use super::init::open_repo;
use super::{Context, ui};

/// Each run folder against the store: clean, modified, or untracked.
///
/// Run folders are looked for where the config's paths.experiments_dir puts them (experiments/
/// without a config).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  exp status\n  exp status --json\n  exp status --config cfg.yaml   # runs where cfg.yaml's paths.experiments_dir says"
)]
pub struct StatusArgs {
    /// The config whose paths.experiments_dir holds the runs [default: config/eval_config.yaml
    /// when the workspace has it, else experiments/]
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the status as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &StatusArgs) -> super::Result<()> {
    let repo = open_repo(ctx)?;
    let folders = exp::eval::config::workspace_folders(args.config.as_deref(), repo.workspace())?;
    let runs = workspace::status(&repo, &folders)?;
    if args.json {
        return ui::print_json(ui::Schema::STATUS, &ui::Named("runs", &runs));
    }
    if runs.is_empty() {
        let (shown, _) = repo.workspace_key(&folders.experiments)?;
        ui::outln!("no run folders in {shown}/")?;
        return Ok(());
    }
    let mut t = ui::table(["folder", "state", "ref", "changes"]).cut(["folder", "changes"]);
    for r in &runs {
        let state = match r.state {
            State::Clean => "clean",
            State::Modified => "modified",
            State::Untracked => "untracked",
            State::Damaged => "damaged in store",
        };
        let mut changes: Vec<String> = r
            .changes
            .iter()
            .take(5)
            .map(|c| {
                let k = match c.kind {
                    ChangeKind::Modified => "M",
                    ChangeKind::Added => "A",
                    ChangeKind::Deleted => "D",
                };
                format!("{k} {}", c.path)
            })
            .collect();
        if r.changes.len() > 5 {
            changes.push(format!("… and {} more", r.changes.len() - 5));
        }
        changes.extend(r.damaged.iter().take(5).map(|p| format!("! {p}")));
        let refn = match (&r.ref_name, r.commit) {
            (Some(n), Some(c)) => format!("{n} ({})", c.short()),
            _ => "-".into(),
        };
        t.add_row(vec![r.path.clone(), state.into(), refn, changes.join("\n")]);
    }
    ui::outln!("{t}")?;
    if runs.iter().any(|r| r.state == State::Damaged) {
        ui::outln!(
            "! = the store's copy fails verification; the folder may be the only good one: \
             `exp commit FOLDER` stores it again (`exp fsck` lists all damage)"
        )?;
    }
    Ok(())
}
