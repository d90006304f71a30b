//! `exp pull`: fetch, then bring local runs and tags up to date where nothing is lost.
use clap::Args;

use exp::remote::{self, RefStatus};
use exp::store::Repo;

use super::{Context, ui};

/// Fetch from a remote, then create or fast-forward local runs and tags. A run that differs on
/// both sides is a conflict: yours stays, theirs is at remotes/<remote>/runs/<ID>
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    exp pull\n  \
    exp pull cloud --json\n\n\
    Pull moves refs only: `exp checkout ID` materializes a pulled run in experiments/.")]
pub struct PullArgs {
    /// The remote [default: origin, or the only one]
    #[arg(add = clap_complete::ArgValueCompleter::new(super::completions::remote))]
    pub remote: Option<String>,
    /// Print the outcome as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(ctx: &Context, args: &PullArgs) -> super::Result<()> {
    let cwd = std::env::current_dir()?;
    let repo = Repo::locate(ctx.repo.as_deref(), &cwd)?;
    let target = remote::resolve_remote(&repo, args.remote.as_deref())?;
    let progress = ui::TermProgress::new();
    let report = remote::pull(&repo, &target, &progress)?;
    if args.json {
        ui::print_json(ui::Schema::PULL, &report)?;
    } else {
        super::fetch::print_refs(&report.refs, "")?;
        let pruned = report.fetch.refs.iter().filter(|u| u.status == RefStatus::Pruned);
        for u in pruned {
            ui::outln!("pruned remotes/{}/{}: gone from the remote", report.fetch.remote, u.name)?;
        }
        super::fetch::print_received(&report.fetch)?;
    }
    let conflicts: Vec<String> = report
        .refs
        .iter()
        .filter(|u| u.status == RefStatus::Conflict)
        .map(|u| u.name.clone())
        .collect();
    if !conflicts.is_empty() {
        return Err(remote::Error::Conflict {
            remote: report.fetch.remote.clone(),
            refs: conflicts,
        }
        .into());
    }
    Ok(())
}
